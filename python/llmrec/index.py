"""Exact top-k search over item vectors: the ranker every part of llmrec ends in."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from llmrec import _core
from llmrec._arrays import reserve_rows
from llmrec._checks import (as_float_matrix, as_queries, check_choice, check_int, check_k,
                            check_threads, check_vector_norms)
from llmrec._fileformat import load_arrays, save_arrays
from llmrec._index_base import IndexBase
from llmrec._row_ids import RowIds
from llmrec._rwlock import ReadWriteLock
from llmrec._validate import array, fail, meta_choice

_METRICS = ("ip", "cosine")
_KIND = "ExactIndex"
_KIND_VERSION = 2  # 2: optional caller ids (row_ids) and removed rows (deleted); 1 still loads


class ExactIndex(IndexBase):
    """Exact maximum inner-product (or cosine) search with filters, in native SIMD code.

    Parameters
    ----------
    vectors : array of shape (n, d)
        Item vectors; row i is item id i. float32 C-contiguous input is used without a
        copy (so do not modify it afterwards); anything else is converted once.
    metric : {"ip", "cosine"}
        "ip" scores by inner product; "cosine" normalises the stored vectors once (a
        copy) and each query per search; a zero vector scores 0. With "ip", vectors and
        queries must have an L2 norm of at most 2**63 (~9.2e18), so that every inner
        product is finite in float32 (``ValueError`` otherwise); "cosine" takes any
        finite vector, however small or large.
    num_threads : int
        Threads for search; 0 means all cores; at most 1024.
    ids : array of n int64, optional
        Caller ids of the rows (distinct); searches then return them. Default: row
        numbers 0 .. n - 1.

    Maintenance: :meth:`add` appends rows, :meth:`update` rewrites rows in place,
    :meth:`remove` takes items out of every later search (skipped inside the scan) and
    :meth:`compact` reclaims their storage. Searches hold a shared lock for the whole
    scan and writers an exclusive one (:class:`llmrec._rwlock.ReadWriteLock`), so a
    concurrent search sees each row either before or after a write, never half written.

    Examples
    --------
    >>> index = ExactIndex(np.random.rand(1000, 64).astype(np.float32))
    >>> ids, scores = index.search(np.random.rand(64), k=5)
    """

    def __init__(self, vectors: Any, *, metric: str = "ip", num_threads: int = 0,
                 ids: Any = None) -> None:
        self._metric = check_choice(metric, "metric", _METRICS)
        self._num_threads = check_threads(num_threads)
        items = as_float_matrix(vectors, "vectors", allow_empty=True)
        if self._metric == "cosine":
            items = self._normalized_copy(items)
        else:
            check_vector_norms(items, "vectors")
        self._items = items  # the rows searched (update and compact write under the write lock)
        self._buffer = items  # storage with spare capacity once add() has been called
        self._rw = ReadWriteLock()
        self._row_ids = RowIds()
        self._row_ids.append(0, len(items), self._row_ids.new_ids(ids, len(items), 0))

    def _n_rows(self) -> int:
        return int(self._items.shape[0])

    @property
    def dim(self) -> int:
        """Dimension d of the vectors."""
        return int(self._items.shape[1])

    @property
    def vectors(self) -> np.ndarray:
        """The stored rows as a read-only view (unit length for cosine), in insertion
        order; removed items' rows stay there until :meth:`compact` (see :attr:`ids`)."""
        view = self._items.view()
        view.flags.writeable = False
        return view

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support: the searched rows (as a plain array: no spare capacity, no memory
        map), their ids and removals, and the settings; the lock is rebuilt by
        :meth:`__setstate__`."""
        with self._rw.read():
            return {"metric": self._metric, "num_threads": self._num_threads,
                    "vectors": np.asarray(self._items), "row_ids": self._row_ids}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._metric = state["metric"]
        self._num_threads = state["num_threads"]
        self._items = self._buffer = state["vectors"]
        self._rw = ReadWriteLock()
        row_ids = state.get("row_ids")
        if row_ids is None:  # pickled before caller ids existed
            row_ids = RowIds()
            row_ids.append(0, len(self._items), None)
        self._row_ids = row_ids

    def __repr__(self) -> str:
        return f"ExactIndex(n={len(self)}, dim={self.dim}, metric={self._metric!r})"

    def add(self, vectors: Any, *, ids: Any = None) -> np.ndarray:
        """Append item vectors of shape (m, d); returns their ids (int64).

        ``ids``: caller ids (distinct, none already in the index; ``ValueError``
        otherwise); searches then return them. Without, the new items get consecutive
        ids (their row numbers while no caller ids were given). Storage grows
        geometrically, so repeated adds cost amortised O(m).
        """
        rows = self._stored_form(vectors)
        with self._rw.write():
            n, m = self._n_rows(), rows.shape[0]
            new_ids = self._row_ids.new_ids(ids, m, n)
            # self._buffer is the index's own storage once add() made it; until then it
            # is the caller's (or the file's) array, which is never written past its end.
            buffer = reserve_rows(None if self._buffer is self._items else self._buffer, self._items, n + m)
            buffer[n:n + m] = rows
            self._buffer = buffer
            self._items = buffer[:n + m]
            self._row_ids.append(n, m, new_ids)
        return np.arange(n, n + m, dtype=np.int64) if new_ids is None else new_ids

    def _stored_form(self, vectors: Any) -> np.ndarray:
        """New rows as the index stores them: checked float32, unit length for cosine."""
        rows = as_float_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        if self._metric == "cosine":
            return self._normalized_copy(rows)
        check_vector_norms(rows, "vectors")
        return rows

    def update(self, ids: Any, vectors: Any) -> None:
        """Rewrite the vectors of items already in the index, in place (m ids, (m, d)).

        Searches see each item's old row or its new one, never a mix (the write lock
        waits for running searches). The first update copies rows that the index does
        not own (the caller's array, a memory map). Unknown or removed ids raise
        :class:`llmrec.UnknownIdError`, an id given twice ``ValueError``.
        """
        rows = self._stored_form(vectors)
        with self._rw.write():
            n = self._n_rows()
            at = self._row_ids.rows_of(ids, n, "ids")
            if len(at) != rows.shape[0]:
                raise ValueError(f"ids ({len(at)}) and vectors ({rows.shape[0]}) must have as many rows")
            if self._buffer is self._items or not self._buffer.flags.writeable:
                self._buffer = np.array(self._items, dtype=np.float32, order="C")
                self._items = self._buffer[:n]
            self._buffer[at] = rows

    def compact(self) -> None:
        """Drop the storage of removed items. Their ids stay unknown; the others keep
        theirs (where ids were row numbers, the remaining items keep their numbers as
        caller ids)."""
        with self._rw.write():
            n = self._n_rows()
            if not self._row_ids.n_removed(n):
                return
            ids = self._row_ids.live_ids(n)
            deleted = self._row_ids.deleted_mask(n)
            assert deleted is not None  # some row is removed
            keep = np.flatnonzero(deleted == 0)
            next_id = self._row_ids.next_id
            self._items = self._buffer = np.ascontiguousarray(self._items[keep])
            self._row_ids = RowIds()
            self._row_ids.append(0, len(keep), ids)
            self._row_ids.next_id = max(self._row_ids.next_id, next_id)

    def search(self, queries: Any, k: int = 10, *, exclude: Any = None,
               allow: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the k best items for each query.

        Parameters
        ----------
        queries : array of shape (d,) or (nq, d)
        k : int
            Results per query, at most ``max(len(index), 1024)``: a k beyond the index
            returns every qualifying item, then padding (a k beyond both bounds raises
            ``ValueError``, it could only allocate padding).
        exclude : scipy sparse matrix (nq, n) or sequence of nq id arrays, optional
            Items never returned for each query (e.g. each user's seen items). For a
            single 1-D query, one array of ids is accepted too. With caller ids: id
            arrays only (ids not in the index are ignored).
        allow : bool mask of length n or array of ids, optional
            Only these items may be returned, for every query. With caller ids: an id
            array only (ids not in the index are ignored).

        Returns
        -------
        ids : int64 array (nq, k), or (k,) for a 1-D query
        scores : float32 array of the same shape
            Sorted by score descending, ties by smaller id; where fewer than k items
            qualify, the rest is id -1 and score -inf. Removed items never appear. With
            caller ids, which of several items tied at the k-th score is kept follows
            insertion order. A score is the float32 inner product summed in the order of
            the kernel's layout, which follows how many queries each thread scans: the
            same query can score differently in its last bits (by at most about 2d
            float32 epsilons × Σ|q_i·x_i|, d the dimension) in another batch or at
            another ``num_threads``.
        """
        matrix, single = as_queries(queries, "queries", self.dim)
        with self._rw.read():  # rows are rewritten only under the write lock
            items = self._items
            n = items.shape[0]
            if n == 0:
                raise ValueError("the index is empty: add vectors before searching")
            k = check_k(k, n)
            excluded, allow_mask, allow_ids = self._filters(exclude, allow, matrix.shape[0], n, single)
            ids, scores = _core.search_exact(
                items, matrix, k,
                exclude_indptr=None if excluded is None else excluded[0],
                exclude_ids=None if excluded is None else excluded[1],
                allow_mask=allow_mask, allow_ids=allow_ids,
                normalize_queries=self._metric == "cosine", num_threads=self._num_threads,
                deleted_mask=self._row_ids.deleted_mask(n))
            ids, scores = self._caller_results(ids, scores)
        return (ids[0], scores[0]) if single else (ids, scores)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (versioned, checksummed, atomically replaced)."""
        with self._rw.read():
            n = self._n_rows()
            extra = self._row_ids.arrays(n)
            # Version 1 where nothing needs 2: readable by earlier llmrec.
            save_arrays(path, _KIND, _KIND_VERSION if extra else 1, {"metric": self._metric},
                        {"vectors": self._items, **extra})

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False,
             num_threads: int = 0, verify: bool = True) -> ExactIndex:
        """Read an index written by :meth:`save`.

        With ``mmap=True`` the vectors are memory-mapped read-only instead of read into
        memory. ``verify`` checks the data checksum (reads the file once). The structure
        is checked either way (a float32 (n, d) matrix, a known metric), and the values
        are finite unless both ``mmap=True`` and ``verify=False`` (then nothing of the
        vectors is read at load).
        Raises ``llmrec.FormatError`` (a ``ValueError``) for a truncated, corrupted,
        inconsistent or foreign file.
        """
        meta, arrays, _ = load_arrays(path, _KIND, max_kind_version=_KIND_VERSION,
                                      mmap=mmap, verify=verify)
        num_threads = check_int(num_threads, "num_threads", minimum=0)
        index = cls.__new__(cls)
        index._metric = meta_choice(meta, "metric", path, _METRICS)
        index._num_threads = num_threads
        # Memory-mapped without verify, the vectors' values are not read (an O(1) load).
        vectors = array(arrays, "vectors", path, dtype=np.float32, ndim=2, finite=verify or not mmap)
        if vectors.shape[1] == 0:
            raise fail(path, "array 'vectors' has no columns")
        index._items = index._buffer = vectors
        index._rw = ReadWriteLock()
        n = vectors.shape[0]
        row_ids = array(arrays, "row_ids", path, dtype=np.int64, shape=(n,), required=False)
        deleted = array(arrays, "deleted", path, dtype=np.uint8, shape=(n,), required=False)
        index._row_ids = RowIds.from_arrays(row_ids, deleted, n, lambda message: fail(path, message))
        return index
