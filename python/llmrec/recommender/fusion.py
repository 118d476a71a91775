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

from llmrec._checks import check_real

SIGNALS = ("behaviour", "sequence", "transition", "text", "query", "towers", "cold")
# "towers" appears only in the blends of a Recommender with towers (it starts at 1 there
# and is fitted); blends without it are exactly those of a Recommender without towers.
# "cold" (items without interactions, :mod:`.cold_kernel`) likewise appears only where
# fit chose it, on a cold-item validation of its own.
DEFAULT_WEIGHTS = {"behaviour": 1.0, "sequence": 1.0, "transition": 1.0, "text": 0.0, "query": 1.0}
GRIDS = {"sequence": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0),
         "transition": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
         "text": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2),
         "towers": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0),
         # the popularity prior of short histories (:mod:`.popularity`), fitted per length
         "popularity": (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)}


def check_weights(weights: Mapping[str, Any], name: str) -> dict[str, float]:
    """Validate a {signal: weight} mapping (missing signals weigh 0)."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"{name} must be a mapping of signal -> weight, got {type(weights).__name__}")
    out = {s: 0.0 for s in SIGNALS if s not in ("towers", "cold")}  # those two: only where given
    for key, value in weights.items():
        if key not in SIGNALS:
            raise ValueError(f"{name} has unknown signal {key!r}; signals are {list(SIGNALS)}")
        out[key] = check_real(value, f"{name}[{key!r}]", low=0.0)
    return out


class HeldOut:
    """The held-out items of a validation slice, for ndcg@k of many score matrices
    over the same candidates: ``relevant`` (n, C) bool marks them among the candidates,
    ``n_relevant`` (n,) counts all of each row's held-out items (those outside the
    candidates count in the ideal DCG too)."""

    def __init__(self, relevant: np.ndarray, n_relevant: np.ndarray, k: int = 10) -> None:
        self.k = min(k, relevant.shape[1])
        self.rows, self.cols = np.nonzero(relevant)
        self.n = relevant.shape[0]
        self.discount = 1.0 / np.log2(np.arange(2, self.k + 2))
        self.idcg = np.cumsum(self.discount)[np.minimum(n_relevant, self.k) - 1]

    def ndcg(self, scores: np.ndarray) -> float:
        """Mean ndcg@k of the rows of ``scores`` (n, C)."""
        k, C = self.k, scores.shape[1]
        # A held-out item's rank is the number of the row's k best scores above it
        # (ranks >= k miss): one value partition per row instead of a sorted top k.
        best = np.partition(scores, C - k, axis=1)[:, C - k:]
        rank = (best[self.rows] > scores[self.rows, self.cols][:, None]).sum(axis=1)
        gains = np.where(rank < k, self.discount[np.minimum(rank, k - 1)], 0.0)
        dcg = np.bincount(self.rows, weights=gains, minlength=self.n)
        return float(np.mean(dcg / self.idcg))


def fit_weights(signals: Mapping[str, np.ndarray], relevant: np.ndarray, n_relevant: np.ndarray,
                *, fixed: Mapping[str, float] | None = None, rounds: int = 2
                ) -> tuple[dict[str, float], float]:
    """Coordinate ascent of the weights of ``signals`` ({name: (n, C) normalised scores}).

    ``fixed`` weights are not searched. Returns (weights, validation ndcg@10).
    """
    # towers (when present) start at 1, like the other personal signals
    weights = {name: DEFAULT_WEIGHTS.get(name, 1.0 if name == "towers" else 0.0) for name in signals}
    weights["behaviour"] = 1.0
    fixed = dict(fixed or {})
    weights.update({k: v for k, v in fixed.items() if k in weights})
    names = list(signals)
    stacked = np.stack([np.asarray(signals[name], dtype=np.float32) for name in names])
    held_out = HeldOut(relevant, n_relevant)

    def value(w: Mapping[str, float]) -> float:
        total = np.tensordot(np.array([w[name] for name in names], dtype=np.float32), stacked, axes=1)
        return held_out.ndcg(total)

    best = value(weights)
    for _ in range(rounds):
        improved = False
        for name in names:
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


__all__ = ["DEFAULT_WEIGHTS", "SIGNALS", "HeldOut", "check_weights", "fit_weights"]
