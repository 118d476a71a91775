"""What ExactIndex and QuantizedIndex share: their metric, thread count and the
normalisation of rows for cosine."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec import _core
from llmrec._arrays import result_order
from llmrec._checks import allow_to_native, as_id_array, check_sparse_structure, exclude_lists, exclude_to_csr
from llmrec._row_ids import RowIds
from llmrec._rwlock import ReadWriteLock


class IndexBase:
    """Mixin for the native indexes; subclasses set ``_metric``, ``_num_threads``,
    ``_row_ids`` and ``_rw``, and define ``_n_rows``."""

    _metric: str
    _num_threads: int
    _row_ids: RowIds
    _rw: ReadWriteLock

    def _n_rows(self) -> int:
        """Rows stored, removed ones included."""
        raise NotImplementedError

    @property
    def metric(self) -> str:
        """"ip" or "cosine"."""
        return self._metric

    @property
    def num_threads(self) -> int:
        """Threads used by search (0 = all cores)."""
        return self._num_threads

    def _normalized_copy(self, rows: np.ndarray) -> np.ndarray:
        """Unit-length copy of ``rows`` (zero rows stay zero), computed natively."""
        rows = rows.copy()
        _core.normalize_rows(rows, self._num_threads)
        return rows

    # ------------------------------------------------------------ caller ids and removals
    def _filters(self, exclude: Any, allow: Any, nq: int, n_rows: int, single: bool
                 ) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
        """(exclude as CSR arrays or None, allow mask, allow ids) in rows, from caller ids."""
        row_ids = self._row_ids
        if row_ids.identity:
            return (exclude_to_csr(exclude, nq, n_rows, single_query=single),
                    *allow_to_native(allow, n_rows))
        excluded = None
        if exclude is not None:
            if sp.issparse(exclude):  # its column numbers are caller ids
                if exclude.shape[0] != nq:
                    raise ValueError(f"exclude must have one row per query ({nq}), got {exclude.shape[0]}")
                check_sparse_structure(exclude, "exclude")
                csr = sp.csr_matrix(exclude)
                csr.eliminate_zeros()
                get = row_ids.id_map().get
                rows = np.fromiter((get(i, -1) for i in csr.indices.tolist()), dtype=np.int64,
                                   count=len(csr.indices))
                keep = (rows >= 0) & (rows < n_rows)
                kept_before = np.concatenate([[0], np.cumsum(keep)])
                excluded = (kept_before[csr.indptr].astype(np.int64), rows[keep])
            else:
                lists = [row_ids.translate(as_id_array(e, f"exclude[{i}]", allow_scalar=True), n_rows)
                         for i, e in enumerate(exclude_lists(exclude, nq, single_query=single))]
                indptr = np.zeros(nq + 1, dtype=np.int64)
                np.cumsum([len(r) for r in lists], out=indptr[1:])
                excluded = (indptr, np.concatenate(lists) if lists else np.zeros(0, np.int64))
        if allow is None:
            return excluded, None, None
        if sp.issparse(allow) or np.asarray(allow).dtype == np.bool_:
            raise TypeError("allow must be an array of item ids when the index has caller ids "
                            "(a boolean mask has no ids)")
        rows = row_ids.translate(as_id_array(allow, "allow", allow_scalar=True), n_rows)
        if rows.size * 8 > n_rows:  # dense lists scan faster as a mask than as gathered rows
            mask = np.zeros(n_rows, dtype=np.uint8)
            mask[rows] = 1
            return excluded, mask, None
        return excluded, None, rows

    def _caller_results(self, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Native results (rows) as caller ids, equal scores ordered by id again."""
        if self._row_ids.identity:
            return rows, scores
        ids = self._row_ids.to_ids(rows)
        order = result_order(ids, scores)
        return np.take_along_axis(ids, order, -1), np.take_along_axis(scores, order, -1)

    @property
    def ids(self) -> np.ndarray:
        """The caller ids of the items in the index (not removed), in insertion order."""
        return self._row_ids.live_ids(self._n_rows())

    def __len__(self) -> int:
        """Items in the index (removed ones not counted)."""
        n = self._n_rows()
        return n - self._row_ids.n_removed(n)

    def remove(self, ids: Any) -> None:
        """Remove items: no search returns them from the next call on (they are skipped
        inside the native scan, so a search still returns k items where k others
        qualify). Their storage is kept until :meth:`compact` (or a rebuild). Unknown or
        already removed ids raise :class:`llmrec.UnknownIdError`, an id given twice
        ``ValueError``; nothing is removed then."""
        with self._rw.write():
            n = self._n_rows()
            rows = self._row_ids.rows_of(ids, n, "ids")
            self._row_ids.mark_removed(rows, n)



