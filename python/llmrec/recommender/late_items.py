"""Items without interactions at fit time, re-solved as interactions arrive."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

# A late item is re-solved from its latest distinct clickers, at most this many: the cost
# of one re-solve stays O(CLICKERS·f²) (~2 ms at f = 64) however viral the item gets.
CLICKERS = 2000


def solve_late_factors(evidence: sp.csr_matrix, vectors: np.ndarray, priors: np.ndarray,
                       alpha: float, shrinkage: float, gram: np.ndarray | None = None) -> np.ndarray:
    """Factors of items from positive evidence: v = argmin Σ_j c_j (1 − y_j·v)² +
    μ‖v − prior‖² over the entries j of the item's row of ``evidence`` (columns index
    ``vectors``), c_j = 1 + alpha·r_j, μ = ``shrinkage``; float64. An empty row gives
    exactly the prior. With ``gram`` (YᵀY of every row of ``vectors``) every other row
    counts as a "no" at confidence 1, as in an implicit ALS step.

    Only clicks count as evidence, unlike the fit's implicit ALS step, where every user
    who did not click is a "no": a new item has not been shown to most users yet, and
    that term pulls a once-clicked item far below its unclicked twins (MovieLens cold
    items, 1 % of their clicks fed, seed 0: ndcg@10 0.307 frozen → 0.261 with it, 0.327
    without; bench/RESULTS.md, "New items after their first clicks"). The next-item
    factors keep it (``gram``): without it they over-promote new items over the whole
    catalogue."""
    f = vectors.shape[1]
    out = priors.astype(np.float64).copy()
    for row in range(evidence.shape[0]):
        span = slice(evidence.indptr[row], evidence.indptr[row + 1])
        if span.start == span.stop:
            continue
        y = vectors[evidence.indices[span]].astype(np.float64)  # only the rows used
        c = 1.0 + alpha * evidence.data[span].astype(np.float64)
        if gram is None:
            A = (y.T * c) @ y + shrinkage * np.eye(f)
        else:
            A = gram + (y.T * (c - 1.0)) @ y + shrinkage * np.eye(f)
        out[row] = np.linalg.solve(A, c @ y + shrinkage * out[row])
    return out.astype(np.float32)


class LateItems:
    """The items that had no interactions when the model was fitted (added later with
    ``add_items``, or in the catalogue but never seen). Their factors start as the text
    prior F·W; each ``update`` that touches one re-solves it from the clicks it has
    received since, its latest ``CLICKERS`` distinct users (:func:`solve_late_factors`),
    so a new item learns from its first clicks without a refit. Fitted items keep their
    factors until the next fit: one click moves a well-estimated vector little."""

    def __init__(self, late: np.ndarray, window: int = 3) -> None:
        self._late = {int(i) for i in late}
        self._window = window
        self._users: dict[int, dict[int, None]] = {}  # item → its clickers, oldest first
        # item → {item taken just before / after it: Σ 1/distance}, the fit's next-item
        # weights, counted click by click
        self._before: dict[int, dict[int, float]] = {}
        self._after: dict[int, dict[int, float]] = {}

    @classmethod
    def from_histories(cls, late: np.ndarray, indptr: np.ndarray, items: np.ndarray,
                       window: int = 3) -> LateItems:
        """Rebuild the state from saved histories (``indptr``, ``items``: users' item rows)."""
        state = cls(late, window)
        is_late = np.zeros(int(items.max(initial=-1)) + 1, dtype=bool)
        is_late[late[late < len(is_late)]] = True
        hits = np.flatnonzero(is_late[items]) if len(items) else np.zeros(0, dtype=np.int64)
        users = np.searchsorted(indptr, hits, side="right") - 1
        for at, user in zip(hits.tolist(), users.tolist()):
            item = int(items[at])
            state._add_clicker(item, user)
            start, stop = indptr[user], indptr[user + 1]
            for d in range(1, window + 1):
                if at - d >= start:
                    state._pair(int(items[at - d]), item, d)
                if at + d < stop and not is_late[items[at + d]]:  # late pairs: counted once, above
                    state._pair(item, int(items[at + d]), d)
        return state

    def add(self, rows: np.ndarray) -> None:
        """New items: late from the start."""
        self._late.update(int(i) for i in rows)

    def record(self, user: int, rows: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Note ``user``'s new clicks ``rows`` (in order), ``previous`` being the user's
        history before them. Returns the late items to re-solve: those clicked, and
        those just before the clicks (they gained next items)."""
        sequence = [int(i) for i in previous[len(previous) - self._window:]] + [int(i) for i in rows]
        first = len(sequence) - len(rows)
        touched: set[int] = set()
        for t in range(first, len(sequence)):
            item = sequence[t]
            if item in self._late:
                self._add_clicker(item, int(user))
                touched.add(item)
            for d in range(1, self._window + 1):
                if t - d >= 0 and sequence[t - d] != item:
                    touched.update(self._pair(sequence[t - d], item, d))
        return np.array(sorted(touched), dtype=np.int64)

    def forget(self, user: int, history: np.ndarray, histories: Any) -> bool:
        """Take a forgotten user's clicks out: each late item of ``history`` (the user's
        items before they were erased) gets its clickers and next-item counts again from
        its other clickers' ``histories`` (:class:`.history.Histories`, the user's now
        empty), as :meth:`from_histories` would count them. O(those clickers' histories).
        Returns False, changing nothing, where such an item has as many clickers as are
        kept (``CLICKERS``: older ones may be missing): then rebuild with
        :meth:`from_histories`."""
        late = [int(i) for i in history if int(i) in self._late]
        if any(len(self._users.get(item, ())) >= CLICKERS for item in late):
            return False
        for item in late:
            clickers: dict[int, None] = {}
            before: dict[int, float] = {}
            after: dict[int, float] = {}
            for other in self._users.get(item, ()):
                items = histories.get(other) if other != user else history[:0]
                at = np.flatnonzero(items == item)
                if not len(at):
                    continue
                clickers[other] = None
                p = int(at[0])
                for d in range(1, self._window + 1):
                    if p - d >= 0:
                        before[int(items[p - d])] = before.get(int(items[p - d]), 0.0) + 1.0 / d
                    if p + d < len(items):
                        after[int(items[p + d])] = after.get(int(items[p + d]), 0.0) + 1.0 / d
            _put(self._users, item, clickers)
            _put(self._before, item, before)
            _put(self._after, item, after)
        return True

    def _pair(self, first: int, then: int, distance: int) -> list[int]:
        """Count ``then`` taken ``distance`` after ``first``; returns the late ones of the two."""
        hit = []
        if then in self._late:
            counts = self._before.setdefault(then, {})
            counts[first] = counts.get(first, 0.0) + 1.0 / distance
            hit.append(then)
        if first in self._late:
            counts = self._after.setdefault(first, {})
            counts[then] = counts.get(then, 0.0) + 1.0 / distance
            hit.append(first)
        return hit

    def _add_clicker(self, item: int, user: int) -> None:
        clickers = self._users.setdefault(item, {})
        clickers.pop(user, None)
        clickers[user] = None
        if len(clickers) > CLICKERS:
            del clickers[next(iter(clickers))]

    def clicked(self, rows: np.ndarray) -> np.ndarray:
        """Per item of ``rows``: whether it has clickers since the fit (bool)."""
        return np.array([bool(self._users.get(int(i))) for i in rows], dtype=bool)

    def late(self) -> np.ndarray:
        """The late items' rows, ascending (int64)."""
        return np.array(sorted(self._late), dtype=np.int64)

    def transitions(self, rows: np.ndarray, n_items: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """What was taken just before and just after each item: two (len(rows),
        n_items) matrices of Σ 1/distance."""
        def matrix(counts: dict[int, dict[int, float]]) -> sp.csr_matrix:
            per_item = [counts.get(int(i), {}) for i in rows]
            indptr = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum([len(c) for c in per_item], out=indptr[1:])
            cols = np.fromiter((j for c in per_item for j in c), dtype=np.int64, count=indptr[-1])
            vals = np.fromiter((v for c in per_item for v in c.values()), dtype=np.float32, count=indptr[-1])
            return sp.csr_matrix((vals, cols, indptr), shape=(len(rows), n_items))

        return matrix(self._before), matrix(self._after)

    def interactions(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """The items' interactions as a binary (len(rows), m) matrix over ``users`` (m,),
        the union of their latest clickers. Returns (matrix, users)."""
        per_item = [np.fromiter(self._users.get(int(i), ()), dtype=np.int64) for i in rows]
        users = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(u) for u in per_item], out=indptr[1:])
        indices = np.searchsorted(users, np.concatenate(per_item)) if per_item else indptr[:0]
        matrix = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                               shape=(len(rows), len(users)))
        return matrix, users


def mark_fresh(items: Any, late: LateItems, rows: np.ndarray | None = None) -> None:
    """Tell the cold signal's rows (``items.Z``, if any) which late items of ``rows``
    (default: all) have no clicks since the fit: the new items' shift applies to those."""
    if items.Z is not None:
        rows = late.late() if rows is None else np.asarray(rows, dtype=np.int64)
        items.Z.mark_fresh(rows, ~late.clicked(rows))


__all__ = ["CLICKERS", "LateItems", "mark_fresh", "solve_late_factors"]


def _put(table: dict[int, Any], item: int, value: dict[int, Any]) -> None:
    """``table[item] = value``, or no entry where ``value`` is empty."""
    if value:
        table[item] = value
    else:
        table.pop(item, None)
