"""Items without interactions at fit time, re-solved as interactions arrive."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Re-solved items that join every request's candidates: stage 1 still searches their
# text prior, which their clicks may have left far behind (until the next fit).
FRESH_CANDIDATES = 256
# A late item is re-solved from its latest distinct clickers, at most this many: the cost
# of one re-solve stays O(CLICKERS·f²) (~2 ms at f = 64) however viral the item gets.
CLICKERS = 2000


def solve_late_factors(clicks: sp.csr_matrix, user_vectors: np.ndarray, priors: np.ndarray,
                       confidence: float, shrinkage: float) -> np.ndarray:
    """Factors of items from their clicks: v = argmin Σ_u c (1 − y_u·v)² + μ‖v − prior‖²
    over the users u who clicked (rows of ``clicks`` over ``user_vectors``), c =
    ``confidence``, μ = ``shrinkage``, float64. No clicks give exactly the prior.

    Only clicks count as evidence, unlike the fit's implicit ALS step, where every user
    who did not click is a "no": a new item has not been shown to most users yet, and
    that term pulls a once-clicked item far below its unclicked twins (MovieLens cold
    items, 1 % of their clicks fed: ndcg@10 0.307 frozen → 0.261 with it, 0.327
    without; bench/RESULTS.md, "Cold items after their first clicks")."""
    Y = user_vectors.astype(np.float64)
    f = Y.shape[1]
    out = priors.astype(np.float64).copy()
    for row in range(clicks.shape[0]):
        users = clicks.indices[clicks.indptr[row]:clicks.indptr[row + 1]]
        if len(users):
            A = confidence * Y[users].T @ Y[users] + shrinkage * np.eye(f)
            out[row] = np.linalg.solve(A, confidence * Y[users].sum(axis=0) + shrinkage * out[row])
    return out.astype(np.float32)


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

    def add(self, rows: np.ndarray) -> None:
        """New items: late from the start."""
        self._late.update(int(i) for i in rows)

    def record(self, user: int, rows: np.ndarray) -> np.ndarray:
        """Note ``user``'s interactions; returns the late item rows among ``rows``."""
        touched = np.unique([int(r) for r in rows if int(r) in self._late]).astype(np.int64)
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


__all__ = ["CLICKERS", "FRESH_CANDIDATES", "LateItems", "solve_late_factors"]
