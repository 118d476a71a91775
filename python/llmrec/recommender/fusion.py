"""The blend: one weight per scoring signal, fitted on a validation slice.

Every signal is an inner product between a per-user (or per-request) vector and a
per-item vector, divided by its spread over the catalogue (the standard deviation of
that user's scores over all items, computed exactly from the items' covariance), so the
weights are comparable across signals and users. The final score is

    s(u, i) = Σ_k w_k · x_{u,k} · g_{i,k} / σ_k(u)

The weights are fitted by coordinate ascent over a small grid, maximising ndcg@10 of
the held-out (latest) interactions of each user among candidate items; the behaviour
weight is fixed at 1 (only ratios matter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SIGNALS = ("behaviour", "sequence", "transition", "text", "query")
DEFAULT_WEIGHTS = {"behaviour": 1.0, "sequence": 1.0, "transition": 1.0, "text": 0.0, "query": 1.0}
GRIDS = {"sequence": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0),
         "transition": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
         "text": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)}


def check_weights(weights: Mapping[str, Any], name: str) -> dict[str, float]:
    """Validate a {signal: weight} mapping (missing signals weigh 0)."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"{name} must be a mapping of signal -> weight, got {type(weights).__name__}")
    out = {s: 0.0 for s in SIGNALS}
    for key, value in weights.items():
        if key not in SIGNALS:
            raise ValueError(f"{name} has unknown signal {key!r}; signals are {list(SIGNALS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}[{key!r}] must be a real number, got {type(value).__name__}")
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name}[{key!r}] must be finite and >= 0, got {value}")
        out[key] = float(value)
    return out


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, n_relevant: np.ndarray, k: int = 10) -> float:
    """Mean ndcg@k over rows: ``scores`` (n, C) of candidates, ``relevant`` (n, C) bool,
    ``n_relevant`` (n,) held-out items per row (those outside the candidates count in
    the ideal DCG too)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    gains = np.take_along_axis(relevant, top, axis=1) / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = ideal[np.minimum(n_relevant, k) - 1]
    return float(np.mean(gains.sum(axis=1) / idcg))


def fit_weights(signals: Mapping[str, np.ndarray], relevant: np.ndarray, n_relevant: np.ndarray,
                *, fixed: Mapping[str, float] | None = None, rounds: int = 2
                ) -> tuple[dict[str, float], float]:
    """Coordinate ascent of the weights of ``signals`` ({name: (n, C) normalised scores}).

    ``fixed`` weights are not searched. Returns (weights, validation ndcg@10).
    """
    weights = {name: DEFAULT_WEIGHTS.get(name, 0.0) for name in signals}
    weights["behaviour"] = 1.0
    fixed = dict(fixed or {})
    weights.update({k: v for k, v in fixed.items() if k in weights})

    def value(w: Mapping[str, float]) -> float:
        total = sum(w[name] * scores for name, scores in signals.items())
        return ndcg_at_k(total, relevant, n_relevant)

    best = value(weights)
    for _ in range(rounds):
        improved = False
        for name in signals:
            if name == "behaviour" or name in fixed or name not in GRIDS:
                continue
            for candidate in GRIDS[name]:
                trial = dict(weights, **{name: candidate})
                score = value(trial)
                if score > best + 1e-6:
                    best, weights, improved = score, trial, True
        if not improved:
            break
    return weights, best


__all__ = ["DEFAULT_WEIGHTS", "SIGNALS", "check_weights", "fit_weights", "ndcg_at_k"]
