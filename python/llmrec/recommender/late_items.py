"""Items without interactions at fit time, re-solved as interactions arrive."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class LateItems:
    """The items that had no interactions when the model was fitted (added later with
    ``add_items``, or in the catalogue but never seen). Their factors start as the text
    prior F·W; each ``update`` that touches one re-solves it from every interaction it
    has received since (the ALS item step with the users' vectors fixed), so a new item
    learns from its first clicks without a refit. Fitted items keep their factors until
    the next fit: one click moves a well-estimated vector little."""

    def __init__(self, late: np.ndarray) -> None:
        self._late = {int(i) for i in late}
        self._users: dict[int, set[int]] = {}

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
            state._users.setdefault(item, set()).add(user)
        return state

    def add(self, rows: np.ndarray) -> None:
        """New items: late from the start."""
        self._late.update(int(i) for i in rows)

    def record(self, user: int, rows: np.ndarray) -> np.ndarray:
        """Note ``user``'s interactions; returns the late item rows among ``rows``."""
        touched = np.unique([int(r) for r in rows if int(r) in self._late]).astype(np.int64)
        for item in touched.tolist():
            self._users.setdefault(item, set()).add(int(user))
        return touched

    def interactions(self, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
        """The items' interactions as a binary (len(rows), m) matrix over ``users`` (m,),
        the union of the users who touched them. Returns (matrix, users)."""
        per_item = [np.array(sorted(self._users.get(int(i), ())), dtype=np.int64) for i in rows]
        users = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(u) for u in per_item], out=indptr[1:])
        indices = np.searchsorted(users, np.concatenate(per_item)) if per_item else indptr[:0]
        matrix = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                               shape=(len(rows), len(users)))
        return matrix, users


__all__ = ["LateItems"]
