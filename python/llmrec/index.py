"""Exact top-k search over item vectors: the ranker every part of llmrec ends in."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from llmrec import _core
from llmrec._checks import (allow_to_native, as_float_matrix, as_queries, check_choice,
                            check_int, check_k, check_threads, check_vector_norms, exclude_to_csr)
from llmrec._fileformat import load_arrays, save_arrays
from llmrec._index_base import IndexBase
from llmrec._validate import array, fail, meta_choice

_METRICS = ("ip", "cosine")
_KIND = "ExactIndex"
_KIND_VERSION = 1


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

    Examples
    --------
    >>> index = ExactIndex(np.random.rand(1000, 64).astype(np.float32))
    >>> ids, scores = index.search(np.random.rand(64), k=5)
    """

    def __init__(self, vectors: Any, *, metric: str = "ip", num_threads: int = 0) -> None:
        self._metric = check_choice(metric, "metric", _METRICS)
        self._num_threads = check_threads(num_threads)
        items = as_float_matrix(vectors, "vectors", allow_empty=True)
        if self._metric == "cosine":
            items = self._normalized_copy(items)
        else:
            check_vector_norms(items, "vectors")
        self._items = items  # the rows searched; replaced (never mutated in place) by add
        self._buffer = items  # storage with spare capacity once add() has been called
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Dimension d of the vectors."""
        return int(self._items.shape[1])

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors as a read-only (n, d) view (unit length for cosine)."""
        view = self._items.view()
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return int(self._items.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support: the searched rows (as a plain array: no spare capacity, no memory
        map) and the settings; the lock is rebuilt by :meth:`__setstate__`."""
        return {"metric": self._metric, "num_threads": self._num_threads,
                "vectors": np.asarray(self._items)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._metric = state["metric"]
        self._num_threads = state["num_threads"]
        self._items = self._buffer = state["vectors"]
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ExactIndex(n={len(self)}, dim={self.dim}, metric={self._metric!r})"

    def add(self, vectors: Any) -> np.ndarray:
        """Append item vectors of shape (m, d); returns their new ids (int64, consecutive).

        Searches running in other threads keep seeing the rows that existed when they
        started; storage grows geometrically, so repeated adds cost amortised O(m).
        """
        rows = as_float_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        if self._metric == "cosine":
            rows = self._normalized_copy(rows)
        else:
            check_vector_norms(rows, "vectors")
        with self._lock:
            n, m = len(self), rows.shape[0]
            buffer = self._buffer
            if buffer is self._items or not buffer.flags.writeable or n + m > buffer.shape[0]:
                buffer = np.empty((max(n + m, 2 * n, 16), self.dim), dtype=np.float32)
                buffer[:n] = self._items
            buffer[n:n + m] = rows
            self._buffer = buffer
            self._items = buffer[:n + m]
        return np.arange(n, n + m, dtype=np.int64)

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
            single 1-D query, one array of ids is accepted too.
        allow : bool mask of length n or array of ids, optional
            Only these items may be returned, for every query.

        Returns
        -------
        ids : int64 array (nq, k), or (k,) for a 1-D query
        scores : float32 array of the same shape
            Sorted by score descending, ties by smaller id; where fewer than k items
            qualify, the rest is id -1 and score -inf.
        """
        items = self._items  # one consistent snapshot even if add() runs concurrently
        n = items.shape[0]
        if n == 0:
            raise ValueError("the index is empty: add vectors before searching")
        k = check_k(k, n)
        matrix, single = as_queries(queries, "queries", self.dim)
        excluded = exclude_to_csr(exclude, matrix.shape[0], n, single_query=single)
        allow_mask, allow_ids = allow_to_native(allow, n)
        ids, scores = _core.search_exact(
            items, matrix, k,
            exclude_indptr=None if excluded is None else excluded[0],
            exclude_ids=None if excluded is None else excluded[1],
            allow_mask=allow_mask, allow_ids=allow_ids,
            normalize_queries=self._metric == "cosine", num_threads=self._num_threads)
        return (ids[0], scores[0]) if single else (ids, scores)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (versioned, checksummed, atomically replaced)."""
        save_arrays(path, _KIND, _KIND_VERSION, {"metric": self._metric},
                    {"vectors": self._items})

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
        index._lock = threading.Lock()
        return index
