"""Mapping between the caller's ids (ints or strings) and dense row numbers."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from llmrec._arrays import appended, grow_rows, marked
from llmrec._checks import plain
from llmrec.exceptions import UnknownIdError


def _kind(values: np.ndarray, name: str) -> str:
    if values.size == 0:
        return "empty"
    if values.dtype.kind in "iu":
        return "int"
    if values.dtype.kind in "US":
        return "str"
    if values.dtype == object:
        if all(isinstance(v, (numbers.Integral,)) and not isinstance(v, bool) for v in values):
            return "int"
        if all(isinstance(v, str) for v in values):
            return "str"
    raise TypeError(f"{name} must be integers or strings (all of one kind), got dtype "
                    f"{values.dtype} with values like {plain(values[:3])!r}")


class IdMap:
    """Caller ids ↔ rows 0..n-1, in the order ids were first seen.

    All ids are integers (returned as int64) or all are strings (returned as an
    object array). Unknown ids raise :class:`UnknownIdError` naming the first of them.
    Ids added after construction go to a small dict first and are merged into the main
    hash index only once they are a sizeable share of it, so adding items or users one
    at a time does not rebuild the index on every call; likewise rows forgotten since
    the last merge are masked out of lookups by a small sorted array (removing one item
    of 1M rebuilt the index: 12 ms, plus as much again for the next lookup).
    """

    def __init__(self, ids: Any, what: str, gone: np.ndarray | None = None) -> None:
        values = np.asarray(ids)
        self.what = what
        self.kind = _kind(values, f"{what} ids")
        normal = self._normalise(values)
        # Rows whose id was removed (remove_items) or erased (forget_user): unknown to
        # every lookup, kept as rows until the model is compacted or refitted.
        self._gone = None if gone is None or not np.any(gone) else np.array(gone, dtype=np.uint8)
        live = None if self._gone is None else np.flatnonzero(self._gone == 0)
        _check_not_padding(normal, what, self.kind)
        index = pd.Index(normal if live is None else normal[live])
        if not index.is_unique:
            raise ValueError(f"duplicate {what} id {plain(index[index.duplicated()][0])!r}")
        # (main hash index, ids added since the last merge → row, the row of each index
        # position or None where they are equal, rows forgotten since the last merge
        # (sorted)), swapped as one object so that a concurrent lookup never sees a merged
        # index with a stale dict.
        self._tables: tuple[pd.Index, dict[Any, int], np.ndarray | None, np.ndarray] = (
            index, {}, live, _NONE)
        self._ids = normal if live is not None else index.to_numpy()  # all ids in row order (grow_rows: spare capacity)
        self._n = len(self._ids)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if len(self._tables) == 3:  # pickled before forgotten rows were masked
            self._tables = (*self._tables, _NONE)

    def _normalise(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "int":
            return values.astype(np.int64)
        if self.kind == "str":
            return values.astype(str).astype(object)
        return values.astype(object)

    def __len__(self) -> int:
        return self._n

    @property
    def ids(self) -> np.ndarray:
        """All ids, in row order."""
        n = self._n  # first: add() swaps the buffer before it raises n
        return self._ids[:n]

    def _check_kind(self, values: np.ndarray, name: str) -> None:
        kind = _kind(values, name)
        if kind != "empty" and self.kind not in ("empty", kind):
            raise TypeError(f"{name} must be {self.kind} ids like the ones the model was "
                            f"fitted with, got {kind} ids")

    def _lookup(self, values: np.ndarray) -> np.ndarray:
        """Rows of normalised ids, -1 where unknown."""
        index, recent, positions, dropped = self._tables
        rows = index.get_indexer(values)
        if positions is not None:
            rows = np.where(rows >= 0, positions[np.maximum(rows, 0)] if len(positions) else -1, -1)
        if len(dropped):
            rows[np.isin(rows, dropped)] = -1
        if recent:
            for j in np.flatnonzero(rows < 0):
                row = recent.get(values[j], -1)
                rows[j] = -1 if _holds(dropped, row) else row
        return rows

    def rows(self, ids: Any, name: str) -> np.ndarray:
        """Row numbers (int64) of ``ids``; raises UnknownIdError for an unknown id."""
        if isinstance(ids, list) and 0 < len(ids) <= _FEW:
            found = self._few_rows(ids)
            if found is not None:
                return found
        values = np.atleast_1d(np.asarray(ids, dtype=object if isinstance(ids, list) else None))
        if values.ndim != 1:
            raise ValueError(f"{name} must be one id or a 1-D sequence of ids, got shape "
                             f"{values.shape}")
        if values.size == 0:
            return np.zeros(0, dtype=np.int64)
        self._check_kind(values, name)
        rows = self._lookup(self._normalise(values))
        if (rows < 0).any():
            bad = plain(values[np.flatnonzero(rows < 0)[0]])
            raise UnknownIdError(f"unknown {self.what} id {bad!r} in {name}", bad)
        return rows.astype(np.int64)

    def _few_rows(self, ids: list[Any]) -> np.ndarray | None:
        """Rows of a short list of known ids of the map's kind, one hash lookup each
        without building arrays (the serving path: a request's items, an update's
        clicks); None where the general path must decide (another kind, an unknown or
        forgotten id: it raises the right error)."""
        index, recent, positions, dropped = self._tables
        rows = np.empty(len(ids), dtype=np.int64)
        for j, value in enumerate(ids):
            if not self._fast_kind(value):
                return None
            try:
                row = index.get_loc(value)
            except (KeyError, TypeError):
                row = recent.get(value)
                if row is None:
                    return None
            else:
                if not isinstance(row, int):
                    return None
                if positions is not None:
                    row = int(positions[row])
            if len(dropped) and _holds(dropped, row):
                return None
            rows[j] = row
        return rows

    def _fast_kind(self, value: Any) -> bool:
        if self.kind == "int":
            return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        return self.kind == "str" and isinstance(value, str)

    def contains(self, ids: Any) -> np.ndarray:
        """Whether each id is known (bool array)."""
        if isinstance(ids, list) and 0 < len(ids) <= _FEW and self._few_rows(ids) is not None:
            return np.ones(len(ids), dtype=bool)
        values = np.atleast_1d(np.asarray(ids, dtype=object if isinstance(ids, list) else None))
        if values.size == 0:
            return np.zeros(0, dtype=bool)
        self._check_kind(values, "ids")
        return self._lookup(self._normalise(values)) >= 0

    def add(self, ids: Any, name: str) -> np.ndarray:
        """Append new ids (all must be new and distinct); returns their rows."""
        values = np.atleast_1d(np.asarray(ids, dtype=object if isinstance(ids, list) else None))
        self._check_kind(values, name)
        if self.kind == "empty":
            self.kind = _kind(values, name)
        dtype = np.dtype(np.int64) if self.kind == "int" else np.dtype(object)
        if self._ids.dtype != dtype:
            self._ids = self._ids.astype(dtype)
        new = self._normalise(values)
        _check_not_padding(new, self.what, self.kind, name)
        index = pd.Index(new)
        if not index.is_unique:
            raise ValueError(f"duplicate {self.what} id {plain(index[index.duplicated()][0])!r} in {name}")
        known = self._lookup(new) >= 0
        if known.any():
            raise ValueError(f"{self.what} id {plain(new[np.flatnonzero(known)[0]])!r} in {name} already exists")
        start, stop = self._n, self._n + len(new)
        self._ids = appended(self._ids[:start], new)  # before n rises: ``ids`` reads n first
        self._n = stop
        index, recent, _, _ = self._tables
        if len(recent) + len(new) > _merge_at(index):
            self._rebuild()
        else:
            recent.update(zip(new.tolist(), range(start, stop)))
        return np.arange(start, stop, dtype=np.int64)

    def _rebuild(self) -> None:
        """One hash index over the rows not gone."""
        ids = self._ids[:self._n]
        if self._gone is None:
            self._tables = (pd.Index(ids.copy()), {}, None, _NONE)
            return
        live = np.flatnonzero(self.gone == 0)
        self._tables = (pd.Index(ids[live]), {}, live, _NONE)

    def forget(self, rows: np.ndarray, *, erase: bool = False) -> None:
        """Make the ids of ``rows`` unknown (their rows stay, as gaps): O(rows), the
        hash index is rebuilt only once the rows forgotten since its last merge are a
        sizeable share of it. With ``erase``, the ids themselves are overwritten too (0 or
        ""), here and in the hash index at once, so no copy of them remains."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        # The mask grows in spare capacity and is written in place: readers only ever
        # copy it (``gone``) or rebuild from it, under the writer's lock.
        self._gone = grow_rows(np.zeros(0, np.uint8) if self._gone is None else self._gone, self._n)
        self._gone[rows] = 1
        index, recent, positions, dropped = self._tables
        dropped = np.union1d(dropped, rows)
        if erase or len(dropped) > _merge_at(index):
            if erase:
                ids = self._ids.copy()  # readers holding the old array keep it whole
                ids[rows] = 0 if self.kind == "int" else ""
                self._ids = ids
            self._rebuild()
        else:
            self._tables = (index, recent, positions, dropped)

    def first_gone(self, rows: np.ndarray) -> int | None:
        """The first of ``rows`` whose id was removed or erased, or None: O(len(rows)), for
        a request that looked its ids up before a writer took them out."""
        gone = self._gone
        if gone is None or not len(rows):
            return None
        inside = rows[rows < len(gone)]  # rows past the mask came later: not removed
        hit = inside[gone[inside] != 0]
        return int(hit[0]) if len(hit) else None

    @property
    def gone(self) -> np.ndarray | None:
        """uint8 per row, 1 where the id was removed or erased; None when none was."""
        if self._gone is None:
            return None
        return marked(self._gone[:self._n], self._n, np.zeros(0, dtype=np.int64))

    def to_ids(self, rows: np.ndarray) -> np.ndarray:
        """Caller ids for row numbers; -1 rows (padding) stay -1."""
        rows = np.asarray(rows)
        ids = self.ids
        if self.kind == "int":
            out = np.full(rows.shape, -1, dtype=np.int64)
        else:
            out = np.full(rows.shape, -1, dtype=object)
        valid = rows >= 0
        out[valid] = ids[rows[valid]]
        return out


def check_known(rows: np.ndarray, n: int, ids: IdMap, name: str) -> None:
    """Raise :class:`~llmrec.UnknownIdError` for rows at or past ``n`` (they belong to ids
    added after the snapshot of ``n`` rows was taken) and for rows whose id was removed or
    forgotten since the caller looked it up (call under the publish lock)."""
    if len(rows) and int(rows.max()) >= n:
        bad = plain(ids.ids[int(rows.max())])
        raise UnknownIdError(f"unknown {ids.what} id {bad!r} in {name}", bad)
    row = ids.first_gone(rows)
    if row is not None:
        bad = plain(ids.ids[row])  # a forgotten user's id is already overwritten
        raise UnknownIdError(f"unknown {ids.what} id in {name}: removed or forgotten while this call ran", bad)


_NONE = np.zeros(0, dtype=np.int64)
PADDING_ID = -1  # the id of padding in rankings (ARCHITECTURE.md), never an item's
_FEW = 32  # ids looked up one by one: below this, cheaper than get_indexer's arrays


def _merge_at(index: pd.Index) -> int:
    """Pending additions or removals beyond which the hash index is rebuilt (amortised
    O(1) per id: a rebuild of n ids after n / 8 of them)."""
    return max(1024, len(index) // 8)


def _check_not_padding(ids: np.ndarray, what: str, kind: str, name: str | None = None) -> None:
    """Item ids may be any int but -1: the lists ``recommend`` and the other rankings
    return are padded with id -1 (score -inf), which must not name an item."""
    if what == "item" and kind == "int" and (ids == PADDING_ID).any():
        where = f" in {name}" if name else ""
        raise ValueError(f"item id {PADDING_ID}{where} is reserved: rankings pad their lists with "
                         f"id {PADDING_ID}; give that item another id")


def _holds(sorted_rows: np.ndarray, row: int) -> bool:
    at = int(np.searchsorted(sorted_rows, row))
    return at < len(sorted_rows) and int(sorted_rows[at]) == row


__all__ = ["IdMap", "check_known"]
