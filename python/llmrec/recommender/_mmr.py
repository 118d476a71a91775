"""Maximal marginal relevance for the Recommender: the native re-ranker
(:func:`llmrec.diversity.mmr_rerank`) when this build has it, else numpy.

Both follow one contract: pick, k times, the candidate maximising
(1 − λ)·rel − λ·max cosine to the items already picked (λ = diversity).
"""

from __future__ import annotations

import numpy as np

try:  # the native re-ranker, when this build has it
    from llmrec.diversity import mmr_rerank as _native_mmr
except ImportError:  # pragma: no cover - depends on the build
    _native_mmr = None


def _numpy_mmr(candidates: np.ndarray, relevance: np.ndarray, item_vectors: np.ndarray,
               k: int, lambda_: float) -> np.ndarray:
    """One query: greedy MMR over ``candidates`` (rows of ``item_vectors``), no padding."""
    vectors = item_vectors[candidates].astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    rel = relevance.astype(np.float64)
    chosen: list[int] = []
    max_sim = np.zeros(len(candidates))
    available = np.ones(len(candidates), dtype=bool)
    for step in range(min(k, len(candidates))):
        penalty = max_sim if step else np.zeros(len(candidates))
        value = np.where(available, (1.0 - lambda_) * rel - lambda_ * penalty, -np.inf)
        best = int(np.argmax(value))
        chosen.append(best)
        available[best] = False
        similarity = vectors @ vectors[best]
        max_sim = similarity if step == 0 else np.maximum(max_sim, similarity)
    return candidates[np.asarray(chosen, dtype=np.int64)]


def mmr(candidates: np.ndarray, relevance: np.ndarray, item_vectors: np.ndarray, k: int,
        lambda_: float) -> np.ndarray:
    """Re-rank each row of ``candidates`` (n, C; -1 = empty) to k ids (n, k; -1 padding)."""
    if _native_mmr is not None:
        ids, _ = _native_mmr(candidates, relevance, item_vectors, k, lambda_)
        return np.asarray(ids, dtype=np.int64)
    out = np.full((len(candidates), k), -1, dtype=np.int64)
    for row in range(len(candidates)):
        valid = candidates[row] >= 0
        picked = _numpy_mmr(candidates[row][valid], relevance[row][valid], item_vectors, k, lambda_)
        out[row, :len(picked)] = picked
    return out
