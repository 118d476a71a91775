"""Probabilities from blended scores: Platt scaling fitted on the validation slice.

The blend s(u, i) = Σ_k w_k·(x_{u,k}·g_{i,k} − x_{u,k}·μ_k)/σ_k(u) is a ranking score on a
per-user standardised scale. ``predict_proba`` turns it into P(u interacts with i in
the held-out window | s) = 1 / (1 + exp(−(a·s + b))), with (a, b) fitted by weighted
logistic regression on the validation slice of :func:`.training.fit_blend` (the model
trained without each sampled user's latest interactions):

* positives: every held-out (user, item) pair of the validation users;
* negatives: ``NEGATIVES_PER_USER`` items per user drawn uniformly among the items the
  user neither saw in training nor holds out, each weighing (those items' count) /
  (the number drawn), so the weighted sample stands for all of them and the fitted
  base rate is the true one (a probability for a random unseen item, not for a
  balanced sample).

Scores are read exactly as served (text interest, towers and the popularity prior
neutral for items without interactions), so the final model's scores, on the same
standardised scale, are mapped by the same (a, b).

Short histories carry the popularity prior (:mod:`.popularity`), whose term (up to 24
spreads) moves their scores far beyond a warm user's: mapped by the warm (a, b), a
user known by one item would get probabilities near 1 for every popular item. So each
length n of the prior's table gets its own (a, b), fitted the same way on the
validation users cut to their first n items (their held-out items the positives, the
negatives drawn outside their whole training history), and a user of n items is mapped
by (a, b) linear in log n between the table's lengths, the warm pair from the length
where the prior ends.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.special import expit

from llmrec.recommender import scoring
from llmrec.recommender.popularity import along_lengths

NEGATIVES_PER_USER = 50
_NEWTON_STEPS = 100
_RIDGE = 1e-6  # damps the 2×2 Newton system (invertible when the classes separate);
# the gradient has no such term, so the fixed point is the plain weighted optimum


class Calibration(NamedTuple):
    """P = 1 / (1 + exp(−(a·s + b))); counts of the pairs it was fitted on. ``short``:
    ((n, a_n, b_n), …) for history lengths n ascending under the popularity prior, the
    last with the warm (a, b) where the prior ends (empty: one pair for every user)."""

    a: float
    b: float
    positives: int
    negatives: int
    short: tuple[tuple[float, float, float], ...] = ()

    def probability(self, scores: np.ndarray, lengths: Any = None) -> np.ndarray:
        """P(interaction) of blended scores: σ(a·score + b), float64; ``lengths`` (one
        per score: the user's liked items) picks (a, b) along ``short``."""
        s = np.asarray(scores, dtype=np.float64)
        if not self.short or lengths is None:
            return expit(self.a * s + self.b)
        table = np.asarray(self.short, dtype=np.float64)
        a = along_lengths(lengths, table[:, 0], table[:, 1], beyond=self.a)
        b = along_lengths(lengths, table[:, 0], table[:, 2], beyond=self.b)
        return expit(a * s + b)

    def to_json(self) -> dict[str, Any]:
        """The record saved in the model's metadata."""
        return {"method": "platt", "a": self.a, "b": self.b, "positives": self.positives,
                "negatives": self.negatives, "short": [list(row) for row in self.short]}

    @classmethod
    def from_json(cls, value: Any) -> Calibration:
        """The calibration of a saved record; ``ValueError`` when it is not a valid one."""
        if not isinstance(value, dict) or value.get("method") != "platt":
            raise ValueError(f"calibration must be a Platt record, got {value!r}")
        a, b = float(value["a"]), float(value["b"])
        counts = int(value["positives"]), int(value["negatives"])
        if not (np.isfinite(a) and np.isfinite(b)) or min(counts) < 0:
            raise ValueError(f"calibration holds invalid values {value!r}")
        short = value.get("short", [])  # absent before the popularity prior
        if not isinstance(short, list) or not all(isinstance(r, list) and len(r) == 3 for r in short):
            raise ValueError(f"calibration 'short' must list [length, a, b] rows, got {short!r}")
        rows = tuple((float(n), float(sa), float(sb)) for n, sa, sb in short)
        if rows and (not np.isfinite(np.array(rows)).all() or rows[0][0] < 1
                     or any(later[0] <= row[0] for row, later in zip(rows, rows[1:]))):
            raise ValueError(f"calibration 'short' must hold finite rows of ascending lengths >= 1, got {short!r}")
        return cls(a, b, *counts, rows)


def pair_scores(raw: dict[str, tuple[np.ndarray, np.ndarray]], weights: dict[str, float],
                users: np.ndarray, items: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """Blended scores (float64) of pairs (row ``users[j]`` of the raw vectors, item
    ``items[j]``), from raw signals {name: (user vectors, item matrix)}."""
    out = np.zeros(len(users), dtype=np.float64)
    for name, (vectors, matrix) in raw.items():
        w = weights.get(name, 0.0)
        if w <= 0:
            continue
        X = np.asarray(vectors, dtype=np.float64)
        sigma = scoring.spread(X, scoring.covariance(matrix))
        mean = X @ np.asarray(matrix, dtype=np.float64).mean(axis=0)
        dots = np.einsum("jd,jd->j", X[users], np.asarray(matrix[items], dtype=np.float64))
        term = (dots - mean[users]) / np.where(sigma > 1e-12, sigma, np.inf)[users]
        if name in ("text", "towers", "popularity"):  # neutral for items without interactions, as served
            term[cold[items]] = 0.0
        out += w * term
    return out


def validation_pairs(raw: dict[str, tuple[np.ndarray, np.ndarray]], weights: dict[str, float],
                     hist: list[np.ndarray], held: list[np.ndarray], n_items: int, cold: np.ndarray,
                     rng: np.random.Generator, negatives: int = NEGATIVES_PER_USER,
                     catalogue: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, labels, sample weights) of the held-out pairs and the sampled negatives.
    ``catalogue``: the number of items the negatives stand for (default ``n_items``;
    the full catalogue's when the validation ran on a sub-catalogue)."""
    catalogue = n_items if catalogue is None else catalogue
    users, items, labels, sample_weights = [], [], [], []
    for u, (seen, out) in enumerate(zip(hist, held)):
        users.append(np.full(len(out), u))
        items.append(np.asarray(out, dtype=np.int64))
        labels.append(np.ones(len(out)))
        sample_weights.append(np.ones(len(out)))
        blocked = np.union1d(seen, out)
        free = catalogue - len(blocked)
        if free <= 0 or len(blocked) >= n_items:
            continue
        draw = rng.integers(0, n_items, size=2 * negatives + len(blocked))
        draw = draw[~np.isin(draw, blocked)][:negatives]
        users.append(np.full(len(draw), u))
        items.append(draw)
        labels.append(np.zeros(len(draw)))
        sample_weights.append(np.full(len(draw), free / max(len(draw), 1)))
    users_a, items_a = np.concatenate(users), np.concatenate(items)
    scores = pair_scores(raw, weights, users_a, items_a, cold)
    return scores, np.concatenate(labels), np.concatenate(sample_weights)


def fit_platt(scores: np.ndarray, labels: np.ndarray, sample_weights: np.ndarray | None = None,
              smooth: bool = False) -> tuple[float, float]:
    """(a, b) minimising the weighted logistic loss of P = σ(a·s + b) (Newton's method).
    ``smooth``: Platt's targets instead of 1 and 0 — (N₊ + 1)/(N₊ + 2) for the positives
    and 1/(N₋ + 2) for the negatives, N the classes' weights —, whose optimum is finite
    even where the scores separate the classes (hard labels then send a to infinity)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(s) if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
    if smooth:
        positive = y > 0.5
        n_pos, n_neg = w[positive].sum(), w[~positive].sum()
        y = np.where(positive, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    X = np.column_stack([s, np.ones_like(s)])
    prior = np.average(y, weights=w)
    theta = np.array([0.0, np.log(prior / (1 - prior)) if 0 < prior < 1 else 0.0])

    def loss(t: np.ndarray) -> float:
        z = X @ t
        return float(w @ (np.logaddexp(0.0, z) - y * z))

    current = loss(theta)
    for _ in range(_NEWTON_STEPS):
        p = expit(X @ theta)
        gradient = X.T @ (w * (p - y))
        hessian = (X * (w * p * (1 - p))[:, None]).T @ X + _RIDGE * w.sum() * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        # Backtracking (Armijo): a full Newton step overshoots where the scores span tens
        # of units (the popularity prior's short histories) and the logistic saturates.
        size = 1.0
        while size > 1e-8 and loss(theta - size * step) > current - 1e-4 * size * float(gradient @ step):
            size /= 2
        theta = theta - size * step
        current = loss(theta)
        if np.abs(size * step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def fit_calibration(raw: dict[str, tuple[np.ndarray, np.ndarray]], weights: dict[str, float],
                    hist: list[np.ndarray], held: list[np.ndarray], n_items: int, cold: np.ndarray,
                    random_state: Any, catalogue: int | None = None) -> Calibration:
    """Platt scaling of the blend ``weights`` on the validation users (see the module;
    ``catalogue`` as in :func:`validation_pairs`), with Platt's smoothed targets: the
    short histories' scores can separate their classes (:func:`fit_platt`)."""
    rng = np.random.default_rng(None if random_state is None else [int(random_state), 7])
    scores, labels, sample_weights = validation_pairs(raw, weights, hist, held, n_items, cold, rng,
                                                      catalogue=catalogue)
    a, b = fit_platt(scores, labels, sample_weights, smooth=True)
    return Calibration(a, b, int(labels.sum()), int(len(labels) - labels.sum()))


def reliability(probabilities: np.ndarray, labels: np.ndarray, sample_weights: np.ndarray | None = None,
                bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed frequency, total weight) per bin of equal weight mass
    (quantiles of the predictions), for a reliability curve."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(p) if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    cum = np.cumsum(w[order])
    edges = np.searchsorted(cum, np.linspace(0, cum[-1], bins + 1)[1:-1])
    predicted, observed, mass = [], [], []
    for part in np.split(order, edges):
        if len(part) == 0 or w[part].sum() == 0:
            continue
        predicted.append(np.average(p[part], weights=w[part]))
        observed.append(np.average(y[part], weights=w[part]))
        mass.append(w[part].sum())
    return np.array(predicted), np.array(observed), np.array(mass)


__all__ = ["NEGATIVES_PER_USER", "Calibration", "fit_calibration", "fit_platt", "pair_scores",
           "reliability", "validation_pairs"]
