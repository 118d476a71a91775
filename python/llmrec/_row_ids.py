"""The caller ids of an index's rows and the rows removed from it (the faiss
``IndexIDMap`` habit, plus deletion): what :class:`~llmrec.ExactIndex` and
:class:`~llmrec.QuantizedIndex` share for ``add(..., ids=)``, ``update`` and ``remove``.

Rows are the native scan's numbering (append order). Until caller ids are given, a row's
id is its number (no map is kept); the first ``add(..., ids=...)`` switches to an
explicit map. Removed rows stay stored, marked in a byte mask that the native scan
skips (``deleted_mask``), until the index is compacted.

Writers (the index's write lock held) mutate this object; searches read it under the
read lock, so they never see it half changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec._arrays import appended, grow_rows
from llmrec._checks import as_id_array
from llmrec.exceptions import UnknownIdError


def _no_duplicates(ids: np.ndarray, name: str) -> None:
    if len(ids) > 1:
        ordered = np.sort(ids)
        same = np.flatnonzero(ordered[1:] == ordered[:-1])
        if len(same):
            raise ValueError(f"{name} holds id {int(ordered[same[0]])} more than once")


class RowIds:
    """Row ↔ caller id, and the removed rows, of one index."""

    def __init__(self) -> None:
        self.row_ids: np.ndarray | None = None    # row -> caller id (grow_rows); None: id == row
        self.id_rows: dict[int, int] | None = None  # live caller id -> row; None: id == row
        self.deleted: np.ndarray | None = None    # uint8 per row (grow_rows), 1 = removed
        self.next_id = 0                          # ids given by add() without ids start here

    @property
    def identity(self) -> bool:
        """Whether every row's id is its row number."""
        return self.row_ids is None

    def row_map(self) -> np.ndarray:
        """Row -> caller id, once ids are not row numbers (``identity`` is False)."""
        assert self.row_ids is not None, "rows are their own ids: no row -> id array"
        return self.row_ids

    def id_map(self) -> dict[int, int]:
        """Live caller id -> row, once ids are not row numbers (``identity`` is False)."""
        assert self.id_rows is not None, "rows are their own ids: no id -> row dict"
        return self.id_rows

    # ------------------------------------------------------------ writers
    def new_ids(self, ids: Any, m: int, n_rows: int) -> np.ndarray | None:
        """Checked ids for ``m`` rows about to be appended after ``n_rows``: the caller's
        (distinct, not in use), or consecutive ones from ``next_id`` when ``ids`` is None
        (None itself while ids are row numbers)."""
        if ids is None:
            if self.identity:
                return None
            return np.arange(self.next_id, self.next_id + m, dtype=np.int64)
        ids = as_id_array(ids, "ids")
        if len(ids) != m:
            raise ValueError(f"ids must hold one id per vector ({m}), got {len(ids)}")
        if len(ids) and int(ids.min()) < 0:
            raise ValueError(f"ids holds {int(ids.min())}: ids must be >= 0 (results mark "
                             "missing items with -1)")
        _no_duplicates(ids, "ids")
        for i in ids.tolist():
            if self.contains(i, n_rows):
                raise ValueError(f"ids holds id {i}, already in the index (update() rewrites a row)")
        return ids

    def append(self, n_rows: int, m: int, ids: np.ndarray | None) -> None:
        """Record rows n_rows .. n_rows + m, with caller ``ids`` (None: row numbers)."""
        if self.deleted is not None:  # the mask covers every row (the scan reads n bytes)
            self.deleted = grow_rows(self.deleted[:n_rows], n_rows + m)
        if ids is None and self.identity:
            self.next_id = max(self.next_id, n_rows + m)
            return
        if self.identity:  # switch to an explicit map
            self.row_ids = np.arange(n_rows, dtype=np.int64)
            live = self.live_rows(n_rows)
            self.id_rows = dict(zip(live.tolist(), live.tolist()))
        assert ids is not None, "new_ids() gives ids once they are not row numbers"
        self.row_ids = appended(self.row_map()[:n_rows], ids)
        self.id_map().update(zip(ids.tolist(), range(n_rows, n_rows + m)))
        if len(ids):
            self.next_id = max(self.next_id, int(ids.max()) + 1)

    def mark_removed(self, rows: np.ndarray, n_rows: int) -> None:
        if self.deleted is None or len(self.deleted) < n_rows:
            base = np.zeros(0, np.uint8) if self.deleted is None else self.deleted
            self.deleted = grow_rows(base, n_rows)
        self.deleted[rows] = 1
        if self.id_rows is not None:
            for i in self.row_map()[rows].tolist():
                self.id_rows.pop(i, None)

    # ------------------------------------------------------------ readers
    def contains(self, caller_id: int, n_rows: int) -> bool:
        if self.identity:
            return 0 <= caller_id < n_rows and not self.is_removed(caller_id)
        row = self.id_map().get(caller_id)
        return row is not None and row < n_rows

    def is_removed(self, row: int) -> bool:
        return self.deleted is not None and row < len(self.deleted) and bool(self.deleted[row])

    def rows_of(self, ids: Any, n_rows: int, name: str = "ids") -> np.ndarray:
        """Rows of live caller ids; ``UnknownIdError`` for an id not in the index (or
        removed), ``ValueError`` for an id given twice."""
        ids = as_id_array(ids, name)
        _no_duplicates(ids, name)
        if self.identity:
            bad = (ids < 0) | (ids >= n_rows)
            if self.deleted is not None:
                bad[~bad] = self.deleted[ids[~bad]] != 0
            if bad.any():
                raise UnknownIdError(f"unknown id {int(ids[bad][0])} in {name}: not in the index "
                                     "(never added, or removed)", int(ids[bad][0]))
            return ids
        rows = np.empty(len(ids), dtype=np.int64)
        id_rows = self.id_map()
        for j, i in enumerate(ids.tolist()):
            row = id_rows.get(i)
            if row is None or row >= n_rows:
                raise UnknownIdError(f"unknown id {i} in {name}: not in the index (never added, "
                                     "or removed)", i)
            rows[j] = row
        return rows

    def translate(self, ids: np.ndarray, n_rows: int) -> np.ndarray:
        """Rows (sorted, unique) of those caller ids that are live in the first
        ``n_rows`` rows; the others are dropped (a filter naming an absent item is moot)."""
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        get = self.id_map().get
        rows = np.unique(np.asarray([get(i, -1) for i in ids.tolist()], dtype=np.int64))
        return rows[(rows >= 0) & (rows < n_rows)]

    def deleted_mask(self, n_rows: int) -> np.ndarray | None:
        """The first ``n_rows`` of the removed-row mask, or None when none is removed."""
        if self.deleted is None:
            return None
        return self.deleted[:n_rows]

    def n_removed(self, n_rows: int) -> int:
        return 0 if self.deleted is None else int(np.count_nonzero(self.deleted[:n_rows]))

    def to_ids(self, rows: np.ndarray) -> np.ndarray:
        """Caller ids of result rows; -1 (padding) stays -1."""
        if self.identity:
            return rows
        return np.where(rows >= 0, self.row_map()[np.maximum(rows, 0)], -1)

    def live_rows(self, n_rows: int) -> np.ndarray:
        """The rows not removed, in order."""
        return np.arange(n_rows) if self.deleted is None else np.flatnonzero(self.deleted[:n_rows] == 0)

    def live_ids(self, n_rows: int) -> np.ndarray:
        """The caller ids of the rows not removed, in row order."""
        rows = self.live_rows(n_rows)
        return rows.astype(np.int64) if self.identity else self.row_map()[rows].copy()

    # ------------------------------------------------------------ files
    def arrays(self, n_rows: int) -> dict[str, np.ndarray]:
        """What a file must keep: ``row_ids`` with caller ids, ``deleted`` with removals."""
        out = {}
        if not self.identity:
            out["row_ids"] = np.ascontiguousarray(self.row_map()[:n_rows])
        if self.deleted is not None and self.deleted[:n_rows].any():
            out["deleted"] = np.ascontiguousarray(self.deleted[:n_rows])
        return out

    @classmethod
    def from_arrays(cls, row_ids: np.ndarray | None, deleted: np.ndarray | None, n_rows: int,
                    fail: Any) -> RowIds:
        """Rebuild from :meth:`arrays` (checked: one id per row, live ids distinct, a 0/1
        mask); ``fail(message)`` makes the error to raise."""
        out = cls()
        out.next_id = n_rows
        if deleted is not None:
            if deleted.shape != (n_rows,) or ((deleted != 0) & (deleted != 1)).any():
                raise fail(f"array 'deleted' must hold {n_rows} bytes of 0 or 1")
            out.deleted = np.array(deleted, dtype=np.uint8)
        if row_ids is not None:
            if row_ids.shape != (n_rows,):
                raise fail(f"array 'row_ids' must hold {n_rows} ids")
            live = np.arange(n_rows) if out.deleted is None else np.flatnonzero(out.deleted == 0)
            ids = row_ids[live]
            if len(np.unique(ids)) != len(ids):
                raise fail("array 'row_ids' holds an id twice among the rows not removed")
            out.row_ids = np.array(row_ids, dtype=np.int64)
            out.id_rows = dict(zip(ids.tolist(), live.tolist()))
            out.next_id = int(row_ids.max()) + 1 if n_rows else 0
        return out
