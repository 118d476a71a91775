"""Maximal marginal relevance: the native re-ranker when it is built, else numpy.

``llmrec.diversity.mmr_rerank`` (native) is used when importable; the numpy fallback
here follows the same contract so that results do not depend on which one ran.
"""

from __future__ import annotations

import numpy as np

try:  # the native re-ranker, when this build has it
    from llmrec.diversity import mmr_rerank as _native_mmr
except ImportError:  # pragma: no cover - depends on the build
    _native_mmr = None


def _numpy_mmr(candidates: np.ndarray, relevance: np.ndarray, item_vectors: np.ndarray,
               k: int, lambda_: float) -> np.ndarray:
    """Greedy MMR: pick argmax λ·rel − (1 − λ)·max cosine to the picked ones."""
    vectors = item_vectors[candidates].astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    rel = relevance.astype(np.float64)
    chosen: list[int] = []
    max_sim = np.full(len(candidates), -np.inf)
    available = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        value = np.where(available, lambda_ * rel - (1.0 - lambda_) * penalty, -np.inf)
        best = int(np.argmax(value))
        chosen.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, vectors @ vectors[best])
    return candidates[np.asarray(chosen, dtype=np.int64)]


def mmr(candidates: np.ndarray, relevance: np.ndarray, item_vectors: np.ndarray, k: int,
        lambda_: float) -> np.ndarray:
    """Re-rank ``candidates`` (ids, best first) to k ids by MMR with relevance weight λ."""
    if _native_mmr is not None:
        out = _native_mmr(candidates, relevance, item_vectors, k, lambda_)
        ids = out[0] if isinstance(out, tuple) else out
        ids = np.asarray(ids, dtype=np.int64)
        return ids[ids >= 0]
    return _numpy_mmr(candidates, relevance, item_vectors, k, lambda_)
