"""How much of the exact ranking the two-stage ranking keeps.

:func:`exact_top_k` ranks the whole catalogue by the blended score (every item
re-scored by the native stage-2 kernel, no stage-1 search); :func:`staged_recall`
compares :meth:`Recommender.recommend` against it. The scale benchmark reports it, and
a test checks it on a small seeded catalogue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.recommender import catalogue, scoring


def exact_top_k(rec: Any, user_ids: Any, k: int = 10, *, scenario: Any = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Item rows and scores (n, k) of the exact full ranking of the blended score for
    known users, items they interacted with (disliked ones too) and removed items
    excluded, as ``recommend`` does. One user at a time: memory is O(n_items) per call."""
    rec._check_fitted()
    users = rec._state.user_map.rows(list(np.atleast_1d(np.asarray(user_ids, dtype=object))), "user_ids")
    weights = rec._weights(scenario)
    gather = lambda snap: rec._users_of(snap, users, "user_ids", True, dislikes=True)  # noqa: E731
    with rec._state.publisher.pin(gather) as (snap, (vectors, seen)):
        signals = scoring.make_signals(weights, rec._state.geometry, **vectors)
        out_ids = np.full((len(users), k), -1, dtype=np.int64)
        out_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        every = np.arange(snap.n_items, dtype=np.int64)
        removed = catalogue.removed_mask(snap, snap.n_items)
        if removed is not None:
            every[removed != 0] = -1
        for row in range(len(users)):
            candidates = every.copy()
            candidates[seen[row][seen[row] < snap.n_items]] = -1
            one = signals.rows(slice(row, row + 1))
            ids, scores = scoring.rescore(snap.items, one, candidates[None, :], k, rec._state.geometry.mean_E,
                                          rec._state.settings["num_threads"], rec._state.geometry.mean_G,
                                          rec._state.geometry.mean_V)
            out_ids[row], out_scores[row] = ids[0], scores[0]
    return out_ids, out_scores


def staged_recall(rec: Any, user_ids: Any, k: int = 10) -> float:
    """Mean over users of |two-stage top k ∩ exact top k| / |exact top k|."""
    exact, _ = exact_top_k(rec, user_ids, k)
    staged = rec.recommend(list(np.atleast_1d(np.asarray(user_ids, dtype=object))), k)
    staged_rows = _rows(rec, np.asarray(staged.ids).reshape(len(exact), -1))
    hits = [len(np.intersect1d(a[a >= 0], b[b >= 0])) / max(int((a >= 0).sum()), 1)
            for a, b in zip(exact, staged_rows)]
    return float(np.mean(hits))


def _rows(rec: Any, ids: np.ndarray) -> np.ndarray:
    """Item rows of caller ids (−1 padding kept)."""
    flat = np.asarray(ids, dtype=object).reshape(-1)
    out = np.full(len(flat), -1, dtype=np.int64)
    valid = np.array([v is not None and not (isinstance(v, (int, np.integer)) and v == -1) for v in flat],
                     dtype=bool)
    if valid.any():
        out[valid] = rec._state.item_map.rows(list(flat[valid]), "ids")
    return out.reshape(np.shape(ids))


__all__ = ["exact_top_k", "staged_recall"]
