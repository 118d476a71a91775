"""Users' interaction histories in time order, and the recency weights built on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

TRANSITION_WINDOW = 3  # next-item pairs: items at most this far apart in a history


class Histories:
    """Each user's distinct items, oldest first (a repeat moves an item to its latest place).

    Stored as CSR arrays from ``fit`` plus a small dict of users changed since (by
    :meth:`set`), so updates cost O(that user's history), not O(all users). A user's
    array is replaced, never modified, so a reader holding one keeps a consistent
    history; the Recommender serialises writers and publishes changes under its lock.
    """

    def __init__(self, indptr: np.ndarray, items: np.ndarray) -> None:
        self._indptr = np.asarray(indptr, dtype=np.int64)
        self._items = np.asarray(items, dtype=np.int64)
        self._changed: dict[int, np.ndarray] = {}
        self._n = len(self._indptr) - 1
        self._base_counts: np.ndarray | None = None  # item counts of the arrays above
        self._erased: set[int] = set()  # users whose stored items were overwritten (not counted)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_erased", set())  # (absent from older pickles)

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, order: np.ndarray,
                    n_users: int) -> Histories:
        """Build from event arrays: ``order`` sorts events in time (ties keep row order)."""
        key = np.lexsort((np.arange(len(order)), order, users))
        u, i = users[key].astype(np.int64), items[key].astype(np.int64)
        # Keep each (user, item) pair's latest event only, in its place.
        pair = u * (int(i.max(initial=0)) + 1) + i
        _, latest_from_end = np.unique(pair[::-1], return_index=True)
        keep = np.sort(len(pair) - 1 - latest_from_end)
        u, i = u[keep], i[keep]
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
        return cls(indptr, i)

    def __len__(self) -> int:
        return self._n

    def get(self, user: int) -> np.ndarray:
        """The user's items, oldest first."""
        changed = self._changed.get(int(user))
        if changed is not None:
            return changed
        if user >= len(self._indptr) - 1:
            return np.zeros(0, dtype=np.int64)
        return self._items[self._indptr[user]:self._indptr[user + 1]]

    @staticmethod
    def merge(history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``history`` followed by ``items`` (newest last), each item kept at its latest place."""
        seq = np.concatenate((history, np.asarray(items, dtype=np.int64)))
        _, first_from_end = np.unique(seq[::-1], return_index=True)
        return seq[np.sort(len(seq) - 1 - first_from_end)]

    def set(self, user: int, history: np.ndarray) -> None:
        """Replace the user's history (a new user id grows the store)."""
        self._changed[int(user)] = history
        self._n = max(self._n, int(user) + 1)

    def append(self, user: int, items: np.ndarray) -> None:
        """Add interactions (in the order given, newest last); a new user id grows the store."""
        self.set(user, self.merge(self.get(user), items))

    def erase(self, user: int) -> None:
        """Empty the user's history and overwrite its items in the stored arrays (no
        copy of them remains). O(that history); only while no reader holds one of the
        stored histories (the Recommender drains its requests first)."""
        user = int(user)
        if user < len(self._indptr) - 1 and user not in self._erased:
            span = slice(self._indptr[user], self._indptr[user + 1])
            np.subtract.at(self._counts_of_arrays(), self._items[span], 1)
            if not self._items.flags.writeable:  # (arrays shared with a read-only source)
                self._items = self._items.copy()
            self._items[span] = 0
            self._erased.add(user)
        self.set(user, np.zeros(0, dtype=np.int64))

    def _counts_of_arrays(self) -> np.ndarray:
        """Item counts of the stored arrays (computed once), erased users left out."""
        base = getattr(self, "_base_counts", None)
        if base is None:  # (absent from older pickles)
            base = self._base_counts = np.bincount(self._items, minlength=0)
        return base

    def item_counts(self, n_items: int) -> np.ndarray:
        """How many users have each item in their history (int64, length ``n_items``;
        items beyond the histories count 0). The counts of the arrays built at fit or
        load are computed once; users changed since are corrected one by one, so the
        cost grows with the updates, not with the data."""
        base = self._counts_of_arrays()
        size = max(n_items, len(base))
        counts = np.zeros(size, dtype=np.int64)
        counts[:len(base)] = base
        erased = self._erased
        for user, history in list(self._changed.items()):  # a copy: writers may add users
            if user < len(self._indptr) - 1 and user not in erased:
                np.subtract.at(counts, self._items[self._indptr[user]:self._indptr[user + 1]], 1)
            np.add.at(counts, history, 1)
        return counts[:n_items]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr, items) of all users, changes folded in (for saving)."""
        rows = [self.get(u) for u in range(self._n)] if self._changed else None
        if rows is None:
            return self._indptr, self._items
        indptr = np.zeros(self._n + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        return indptr, (np.concatenate(rows) if rows else np.zeros(0, np.int64))

    def seen_lists(self, users: np.ndarray) -> list[np.ndarray]:
        """Each user's items, sorted (the cheap form of :meth:`seen` for a few users)."""
        return [np.sort(self.get(u)) for u in users]

    def seen(self, users: np.ndarray, n_items: int) -> sp.csr_matrix:
        """A (len(users), n_items) CSR matrix marking each user's items."""
        return seen_matrix([self.get(u) for u in users], n_items)


def seen_matrix(histories: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """A (len(histories), n_items) CSR matrix marking the items of each history."""
    rows = [np.sort(h) for h in histories]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                         shape=(len(rows), n_items))


def recency_weights(n: int, recency: float) -> np.ndarray:
    """1 + recency·p² for a history of n items, p = position / (n − 1) (0 oldest, 1 newest)."""
    if n == 0:
        return np.zeros(0)
    p = np.arange(n) / max(n - 1, 1)
    return 1.0 + recency * p * p


def weighted_rows(histories: list[np.ndarray], n_items: int, recency: float,
                  weights: list[np.ndarray] | None = None) -> sp.csr_matrix:
    """CSR rows of recency weights, one per history (item order is time order), each
    multiplied by the interaction's confidence multiplier when ``weights`` (aligned with
    ``histories``) are given."""
    indptr = np.zeros(len(histories) + 1, dtype=np.int64)
    np.cumsum([len(h) for h in histories], out=indptr[1:])
    indices = np.concatenate(histories) if histories else np.zeros(0, np.int64)
    data = (np.concatenate([recency_weights(len(h), recency) for h in histories])
            if histories else np.zeros(0))
    if weights is not None and len(data):
        data = data * np.concatenate(weights).astype(np.float64)
    matrix = sp.csr_matrix((data.astype(np.float32), indices.astype(np.int32), indptr),
                           shape=(len(histories), n_items))
    matrix.sort_indices()
    return matrix


def transitions(histories: list[np.ndarray], n_items: int, window: int = TRANSITION_WINDOW
                ) -> sp.csr_matrix:
    """Item → later item counts (n_items × n_items): each pair of a history at distance
    j ≤ ``window`` adds 1/j (the next item counts most)."""
    rows, cols, values = [], [], []
    for history in histories:
        for j in range(1, min(window, len(history) - 1) + 1):
            rows.append(history[:-j])
            cols.append(history[j:])
            values.append(np.full(len(history) - j, 1.0 / j, dtype=np.float32))
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    matrix = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_items, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix


__all__ = ["TRANSITION_WINDOW", "Histories", "recency_weights", "seen_matrix", "transitions",
           "weighted_rows"]
