"""One request's ranking over a pinned snapshot: stage-1 candidates (or the whole
catalogue when it is small), their exact re-scoring (:mod:`.scoring`), and the MMR
re-ranking that trades relevance for diversity; the popular items for a visitor without
a history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.diversity import mmr_rerank
from llmrec.recommender import catalogue, scoring
from llmrec.recommender.history import Histories
from llmrec.recommender.snapshot import Snapshot

if TYPE_CHECKING:
    from llmrec.recommender.state import Fitted


def rank(state: Fitted, snap: Snapshot, vectors: dict[str, np.ndarray | None], weights: dict[str, float],
         k: int, exclude: Any, allow_rows: np.ndarray | None, diversity: float,
         query: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` (ids, scores) per row of the users' signal ``vectors`` (and encoded
    ``query``) under the blend ``weights``; ``exclude``: a CSR (n, n_items) or n id
    arrays never returned; ``allow_rows``: the only items returned (None: all);
    ``diversity``: the MMR trade-off (0: relevance only)."""
    s, geometry = state.settings, state.geometry
    items = snap.items
    n_items = len(items.V)
    n = next(len(v) for v in (*vectors.values(), query) if v is not None)
    signals = scoring.make_signals(weights, geometry, query=query, **vectors)
    pool = k if diversity == 0 else max(5 * k, 50)
    C = min(max(s["candidates"], 4 * pool), n_items)
    if C >= n_items and allow_rows is None:
        removed = catalogue.removed_mask(snap, n_items)
        candidates = np.broadcast_to(np.arange(n_items), (n, n_items)).copy()
        if isinstance(exclude, list):
            for row, ids in enumerate(exclude):
                candidates[row, ids] = -1
        elif exclude is not None:
            dense = exclude.tocoo()
            candidates[dense.row, dense.col] = -1
        if removed is not None:
            candidates[:, removed != 0] = -1
    else:
        # Stage 1 skips removed items inside its scans; re-solved items are searched
        # by their current rows (update rewrites them in the index).
        candidates = items.index.search(signals, geometry, C, exclude, allow_rows, items.E)
        candidates = np.where(candidates < n_items, candidates, -1)
        candidates = catalogue.drop_removed(candidates, snap.removed)
    ids, top = scoring.rescore(items, signals, candidates, pool, geometry.mean_E, s["num_threads"],
                               geometry.mean_G, geometry.mean_V)
    if diversity == 0:
        return ids, top
    return diversify(items, ids, top, k, diversity)


def diversify(items: scoring.Items, ids: np.ndarray, scores: np.ndarray, k: int,
              diversity: float) -> tuple[np.ndarray, np.ndarray]:
    """MMR over each row's top candidates: relevance min-max scaled to [0, 1] per row
    (so λ trades it against cosine on a like scale); similarity is the cosine of
    [unit factors ; unit text vectors] (factors alone without text)."""
    valid = ids >= 0
    if not valid.any():
        return ids[:, :k], scores[:, :k]
    low = np.where(valid, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(valid, scores, -np.inf).max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    relevance = np.where(valid, (scores - low) / span, -np.inf).astype(np.float32)
    union = np.unique(ids[valid])
    local = np.where(valid, np.searchsorted(union, ids), -1).astype(np.int64)
    vectors = items.Vn[union] if items.E is None else np.hstack([items.Vn[union], items.E[union]])
    picked, _ = mmr_rerank(local, relevance, vectors, k, diversity)
    out_ids = np.where(picked >= 0, union[np.maximum(picked, 0)], -1).astype(np.int64)
    # Each chosen id's score: find (row, id) among the candidates' (row, id) keys.
    width = int(union[-1]) + 2
    rows = np.arange(len(ids))[:, None] * width
    keys = (rows + ids + 1).ravel()
    sorter = np.argsort(keys, kind="stable")
    found = sorter[np.searchsorted(keys, (rows + out_ids + 1).ravel(), sorter=sorter)]
    out_scores = np.where(out_ids >= 0, scores.ravel()[found].reshape(out_ids.shape), -np.inf)
    return out_ids, out_scores.astype(np.float32)


def popular(histories: Histories, n_items: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k items (one row) most users have in their ``histories`` (likes: dislikes do
    not count), ties by catalogue order, each scored by its number of users."""
    counts = histories.item_counts(n_items)
    order = np.argsort(-counts, kind="stable")[:k]
    ids = np.full((1, k), -1, dtype=np.int64)
    scores = np.full((1, k), -np.inf, dtype=np.float32)
    ids[0, :len(order)] = order
    scores[0, :len(order)] = counts[order]
    return ids, scores
