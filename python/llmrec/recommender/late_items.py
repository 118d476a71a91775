"""Items without interactions at fit time, re-solved as interactions arrive."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

# Re-solved items that join every request's candidates: stage 1 still searches their
# text prior, which their clicks may have left far behind (until the next fit).
FRESH_CANDIDATES = 256
# A late item is re-solved from its latest distinct clickers, at most this many: the cost
# of one re-solve stays O(CLICKERS·f²) (~2 ms at f = 64) however viral the item gets.
CLICKERS = 2000
# The next-item factors are re-solved from the histories of the latest this many clickers.
TRANSITION_CLICKERS = 200


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
    items, 1 % of their clicks fed: ndcg@10 0.307 frozen → 0.261 with it, 0.327
    without; bench/RESULTS.md, "Cold items after their first clicks"). The next-item
    factors keep it (``gram``): without it they over-promote new items over the whole
    catalogue."""
    Y = vectors.astype(np.float64)
    f = Y.shape[1]
    out = priors.astype(np.float64).copy()
    for row in range(evidence.shape[0]):
        span = slice(evidence.indptr[row], evidence.indptr[row + 1])
        if span.start == span.stop:
            continue
        y = Y[evidence.indices[span]]
        c = 1.0 + alpha * evidence.data[span].astype(np.float64)
        if gram is None:
            A = (y.T * c) @ y + shrinkage * np.eye(f)
        else:
            A = gram + (y.T * (c - 1.0)) @ y + shrinkage * np.eye(f)
        out[row] = np.linalg.solve(A, c @ y + shrinkage * out[row])
    return out.astype(np.float32)


def transition_evidence(rows: np.ndarray, clickers: list[np.ndarray], history: Any,
                        n_items: int, window: int = 3) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """What the clickers of each item took just before it and just after it: two
    (len(rows), n_items) matrices of Σ 1/distance over distances ≤ ``window`` (the
    fit's transition weights). ``history(user)`` gives a user's items, oldest first."""
    before: list[tuple[int, np.ndarray, np.ndarray]] = []
    after: list[tuple[int, np.ndarray, np.ndarray]] = []
    for k, item in enumerate(rows.tolist()):
        for user in clickers[k][-TRANSITION_CLICKERS:].tolist():
            h = history(user)
            at = np.flatnonzero(h == item)
            if not len(at):
                continue
            t = int(at[0])
            start = max(0, t - window)
            before.append((k, h[start:t], 1.0 / (t - np.arange(start, t))))
            later = h[t + 1:t + 1 + window]
            after.append((k, later, 1.0 / np.arange(1, len(later) + 1)))

    def matrix(parts: list[tuple[int, np.ndarray, np.ndarray]]) -> sp.csr_matrix:
        r = np.concatenate([np.full(len(c), k) for k, c, _ in parts]) if parts else np.zeros(0, int)
        c = np.concatenate([c for _, c, _ in parts]) if parts else np.zeros(0, int)
        v = np.concatenate([v for _, _, v in parts]) if parts else np.zeros(0)
        out = sp.csr_matrix((v.astype(np.float32), (r, c)), shape=(len(rows), n_items))
        out.sum_duplicates()
        return out

    return matrix(before), matrix(after)


class LateItems:
    """The items that had no interactions when the model was fitted (added later with
    ``add_items``, or in the catalogue but never seen). Their factors start as the text
    prior F·W; each ``update`` that touches one re-solves it from the clicks it has
    received since, its latest ``CLICKERS`` distinct users (:func:`solve_late_factors`),
    so a new item learns from its first clicks without a refit. Fitted items keep their factors until the next fit: one
    click moves a well-estimated vector little."""

    def __init__(self, late: np.ndarray) -> None:
        self._late = {int(i) for i in late}
        self._users: dict[int, dict[int, None]] = {}  # item → its clickers, oldest first
        self._recent: dict[int, None] = {}  # re-solved items, oldest first
        self.fresh_rows = np.zeros(0, dtype=np.int64)  # the newest FRESH_CANDIDATES of them

    @classmethod
    def from_histories(cls, late: np.ndarray, indptr: np.ndarray, items: np.ndarray) -> LateItems:
        """Rebuild the state from saved histories (``indptr``, ``items``: users' item rows)."""
        state = cls(late)
        is_late = np.zeros(int(items.max(initial=-1)) + 1, dtype=bool)
        known = late[late < len(is_late)]
        is_late[known] = True
        hits = np.flatnonzero(is_late[items]) if len(items) else np.zeros(0, dtype=np.int64)
        users = np.searchsorted(indptr, hits, side="right") - 1
        for item, user in zip(items[hits].tolist(), users.tolist()):
            state._add_clicker(item, user)
        state._note_fresh(sorted(state._users))  # the latest added count as the newest
        return state

    def late_among(self, rows: np.ndarray) -> np.ndarray:
        """The late item rows among ``rows`` (unique, sorted)."""
        return np.unique([int(r) for r in rows if int(r) in self._late]).astype(np.int64)

    def add(self, rows: np.ndarray) -> None:
        """New items: late from the start."""
        self._late.update(int(i) for i in rows)

    def record(self, user: int, rows: np.ndarray) -> np.ndarray:
        """Note ``user``'s interactions; returns the late item rows among ``rows``."""
        touched = self.late_among(rows)
        for item in touched.tolist():
            self._add_clicker(item, int(user))
        if len(touched):
            self._note_fresh(touched.tolist())
        return touched

    def _add_clicker(self, item: int, user: int) -> None:
        clickers = self._users.setdefault(item, {})
        clickers.pop(user, None)
        clickers[user] = None
        if len(clickers) > CLICKERS:
            del clickers[next(iter(clickers))]

    def _note_fresh(self, items: list[int]) -> None:
        for item in items:
            self._recent.pop(item, None)
            self._recent[item] = None
        while len(self._recent) > FRESH_CANDIDATES:
            del self._recent[next(iter(self._recent))]
        # Replaced whole: a concurrent ranking reads the old array or the new one.
        self.fresh_rows = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))

    def clickers(self, rows: np.ndarray) -> list[np.ndarray]:
        """Each item's latest distinct clickers (user rows), oldest first."""
        return [np.fromiter(self._users.get(int(i), ()), dtype=np.int64) for i in rows]

    def interactions(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """The items' interactions as a binary (len(rows), m) matrix over ``users`` (m,),
        the union of their latest clickers. Returns (matrix, users)."""
        per_item = self.clickers(rows)
        users = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(u) for u in per_item], out=indptr[1:])
        indices = np.searchsorted(users, np.concatenate(per_item)) if per_item else indptr[:0]
        matrix = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                               shape=(len(rows), len(users)))
        return matrix, users


__all__ = ["CLICKERS", "FRESH_CANDIDATES", "LateItems", "TRANSITION_CLICKERS", "solve_late_factors",
           "transition_evidence"]
