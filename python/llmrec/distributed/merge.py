"""Merging per-shard top-k lists into one (no Ray needed: unit-testable on its own)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_topk(ids: Sequence[np.ndarray], scores: Sequence[np.ndarray], k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted per-shard results into the k best per query.

    ``ids[s]``/``scores[s]`` are shard s's results, shape (nq, k_s), with global ids,
    each row sorted by score descending and ties by smaller id, padded with -1/-inf;
    the shards hold increasing, disjoint id ranges and come in that order. Returns
    (nq, k) int64 ids and float32 scores with the same contract, padded where fewer
    than k items qualify in all shards together.

    A stable sort of the concatenated rows by score is enough for ties: among equal
    scores it keeps the concatenation order, which is shard order (increasing id ranges)
    then each shard's own order (increasing ids). Padding scores are -inf, and real
    scores are finite (the indexes guarantee it), so padding sorts last. (The same order
    as :func:`llmrec._arrays.result_order`, which sorts on the ids too: 2-3x slower here.)
    """
    if len(ids) != len(scores) or not ids:
        raise ValueError("merge_topk needs one (ids, scores) pair per shard, at least one")
    nq = ids[0].shape[0]
    all_ids = np.concatenate(ids, axis=1) if len(ids) > 1 else ids[0]
    all_scores = np.concatenate(scores, axis=1) if len(scores) > 1 else scores[0]
    width = all_ids.shape[1]
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    out_scores = np.full((nq, k), -np.inf, dtype=np.float32)
    if width == 0 or nq == 0:
        return out_ids, out_scores
    # -x is exact in float32, and -0.0 and 0.0 compare equal, so ties stay ties.
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    taken = min(k, width)
    out_ids[:, :taken] = np.take_along_axis(all_ids, order, axis=1)
    out_scores[:, :taken] = np.take_along_axis(all_scores, order, axis=1)
    return out_ids, out_scores


def shard_bounds(n: int, num_shards: int) -> np.ndarray:
    """Split ids 0..n-1 into ``num_shards`` contiguous ranges of near-equal size
    (``bounds[s]:bounds[s+1]``); every range is non-empty when num_shards <= n."""
    return np.array([s * n // num_shards for s in range(num_shards + 1)], dtype=np.int64)


def split_exclusions(indptr: np.ndarray, ids: np.ndarray, bounds: np.ndarray
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut per-query excluded ids (CSR: ``indptr``, ``ids`` sorted within each row) into
    one CSR per shard, with ids local to the shard (global id - bounds[s])."""
    nq = indptr.shape[0] - 1
    row_of = np.repeat(np.arange(nq, dtype=np.int64), np.diff(indptr))
    out = []
    for s in range(bounds.shape[0] - 1):
        start, stop = int(bounds[s]), int(bounds[s + 1])
        inside = (ids >= start) & (ids < stop)
        counts = np.bincount(row_of[inside], minlength=nq)
        local_indptr = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(counts, out=local_indptr[1:])
        out.append((local_indptr, ids[inside] - start))
    return out
