"""The popularity prior of short histories.

A user known by a few items says little about their taste, and what most people take
is then the better guess: on MovieLens-100K, users held out of the fit and known by
their first item are ranked better by popularity alone than by every personal signal
(ndcg@10 0.49–0.52 against 0.38–0.40; bench/RESULTS.md, "Seventeenth session"). The
prior adds the catalogue's popularity to a user's blend with a weight that depends on
how many items the user has liked, fitted on the validation slice:

    s(u, i) += w(n_u) · w_behaviour · (ū · v_i) / σ(ū)

ū is the mean of the fitted users' ALS factors: its scores ū·v_i follow the items'
popularity closely (correlation 0.99 with the number of their users on MovieLens).
As a query against the ALS factors V it needs no item array of its own: stage 1
searches it with the behaviour query (popular items are candidates), and the re-scorer
reads it against V, neutral (the catalogue mean) for items without interactions: a new
item has no users, and its text-predicted factors would lend it a popularity it does
not have. σ(ū) is its spread over the catalogue, as for every signal (:mod:`.fusion`), and the
weight is in units of the behaviour weight, so a scenario that halves the personal
signals halves it too.

w(n) is fitted at the history lengths :data:`LENGTHS` as a new user is met: each
validation user is known by their first n liked items, their held-out (latest) items
stay the targets, and the items in between are neither targets nor candidates. Every
other weight stays as fitted, and the prior's weight is chosen on
``fusion.GRIDS["popularity"]`` by ndcg@10, each length on its own. The weights are then
made non-increasing in n by isotonic regression (weighted by the users at each
length): a prior does not grow as the history does, and each length's choice is noisy;
pooling neighbours keeps what a running minimum would lose where one item says more
than two. Between the lengths w is linear in log n; below the first it is the first's
(a user with no liked item too); it reaches 0 at twice the last length.

Why the table stops at 8 items: the first n items of a long history lie far from its
held-out ones, more so as n grows, and the recency signals lose their footing there,
so the emulation favours popularity more than serving would. Fitted up to 32 items on
MovieLens-100K (seed 2), it gave 1 at 16 and 0.5 at 32, and cost the warm users
(16 items and more) 0.0023 ndcg@10 (0.2871 → 0.2848); emulating with the latest n
items instead kept the warm ranking but gave a user known by one item 0.83, against
the 6–8 that users held out of the fit need (bench/RESULTS.md, "Seventeenth session").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import isotonic_regression

from llmrec.recommender.fusion import fit_weights

LENGTHS = (1, 2, 4, 8)
MIN_USERS = 50  # validation users with at least n liked items for w(n) to be fitted
MAX_LENGTHS = 64  # a saved table's rows at most (a file's bound; fit writes len(LENGTHS))
MAX_WEIGHT = 1e6  # a saved weight at most (the blend's other weights are far below)


def along_lengths(lengths: Any, table: Any, values: Any, beyond: float | None = None) -> np.ndarray:
    """``values`` given at the history lengths ``table`` (ascending, ≥ 1), read at each of
    ``lengths``: linear in log n, the first value below the table (a length of 0
    too), the last one (or ``beyond``) above it. float64."""
    n = np.log(np.maximum(np.asarray(lengths, dtype=np.float64), 1.0))
    return np.interp(n, np.log(np.asarray(table, dtype=np.float64)), np.asarray(values, dtype=np.float64),
                     right=beyond)


class PopularityPrior(NamedTuple):
    """The fitted prior: ``direction`` (f,) = ū / σ(ū) against the ALS factors, and the
    weight table w(``lengths``) = ``weights`` (float64, lengths ascending)."""

    direction: np.ndarray
    lengths: np.ndarray
    weights: np.ndarray

    def weight(self, lengths: Any) -> np.ndarray:
        """w(n) for each history length n (float64)."""
        return along_lengths(lengths, self.lengths, self.weights)

    def queries(self, lengths: Any) -> np.ndarray:
        """Per-row query vectors against V, w(n)·ū/σ(ū) (float32, (len(lengths), f))."""
        w = self.weight(lengths)
        return (w[:, None] * self.direction[None, :].astype(np.float64)).astype(np.float32)


def mean_user(als: Any) -> np.ndarray:
    """ū: the mean of an ALS model's user factors (float64)."""
    return np.asarray(als.user_factors_, dtype=np.float64).mean(axis=0)


def prior_for(als: Any, cov_V: np.ndarray, lengths: Any, weights: Any) -> PopularityPrior | None:
    """The served prior of ``als`` (its ū, scaled by its spread under the factors'
    covariance ``cov_V``) with a fitted table; None where every weight is 0 or ū
    scores every item alike."""
    weights = np.asarray(weights, dtype=np.float64)
    u = mean_user(als)
    sigma = float(np.sqrt(max(u @ cov_V @ u, 0.0)))
    if not (weights > 0).any() or sigma <= 1e-12:
        return None
    return PopularityPrior((u / sigma).astype(np.float32), np.asarray(lengths, dtype=np.float64), weights)


def fit_table(matrices_for: Callable[[int], tuple[dict[str, np.ndarray], np.ndarray, np.ndarray] | None],
              fixed: dict[str, float]) -> tuple[list[int], list[float], dict[str, Any]]:
    """w(n) at each of :data:`LENGTHS` for which ``matrices_for(n)`` gives validation
    matrices (:func:`.training.validation_matrices` of the users cut to n items, with a
    "popularity" signal), the other weights held at ``fixed``. Returns (lengths,
    weights, report): the table ends at 0 at twice the last length fitted."""
    lengths: list[int] = []
    chosen: list[float] = []
    users: list[int] = []
    report: dict[str, Any] = {}
    for n in LENGTHS:
        matrices = matrices_for(n)
        if matrices is None:  # too few validation users with n liked items
            break
        signals, relevant, n_relevant = matrices
        without = fit_weights(signals, relevant, n_relevant, fixed={**fixed, "popularity": 0.0}, rounds=0)[1]
        fitted, value = fit_weights(signals, relevant, n_relevant, fixed=fixed, rounds=1)
        lengths.append(n)
        chosen.append(float(fitted["popularity"]))
        users.append(len(n_relevant))
        report[str(n)] = {"users": users[-1], "chosen": chosen[-1],
                          "ndcg_without": float(without), "ndcg_with": float(value)}
    if not lengths:
        return [], [], report
    weights = [float(w) for w in isotonic_regression(chosen, weights=users, increasing=False).x]
    for n, w in zip(lengths, weights):
        report[str(n)]["weight"] = w
    return lengths + [2 * lengths[-1]], weights + [0.0], report


__all__ = ["LENGTHS", "MAX_LENGTHS", "MAX_WEIGHT", "MIN_USERS", "PopularityPrior", "along_lengths", "fit_table",
           "mean_user", "prior_for"]
