"""The blend's validation metric and weight search against plain numpy references."""

import numpy as np
import pytest

from llmrec.recommender.fusion import HeldOut, fit_weights
from tolerances import metric_tolerance


def reference_ndcg(scores, relevant, n_relevant, k=10):
    """ndcg@k by a full sort of each row (float64)."""
    values = []
    for row, rel, n_rel in zip(scores.astype(np.float64), relevant, n_relevant):
        top = np.argsort(-row, kind="stable")[:k]
        dcg = sum(1.0 / np.log2(r + 2) for r, item in enumerate(top) if rel[item])
        idcg = sum(1.0 / np.log2(r + 2) for r in range(min(n_rel, k)))
        values.append(dcg / idcg)
    return float(np.mean(values))


@pytest.mark.parametrize("n_candidates", [5, 10, 300])
def test_held_out_ndcg_matches_a_full_sort(rng, n_candidates):
    n = 200
    scores = rng.standard_normal((n, n_candidates)).astype(np.float32)
    relevant = rng.random((n, n_candidates)) < 0.05
    relevant[np.arange(n), rng.integers(0, n_candidates, n)] = True
    # Some held-out items fall outside the candidates: they raise the ideal DCG only.
    n_relevant = relevant.sum(axis=1) + rng.integers(0, 3, n)
    got = HeldOut(relevant, n_relevant).ndcg(scores)
    assert got == pytest.approx(reference_ndcg(scores, relevant, n_relevant),
                                abs=2 * metric_tolerance(n, 10))


def test_fit_weights_finds_a_planted_blend(rng):
    n, C = 300, 400
    behaviour = rng.standard_normal((n, C)).astype(np.float32)
    sequence = rng.standard_normal((n, C)).astype(np.float32)
    truth = behaviour + 2.0 * sequence
    relevant = np.zeros((n, C), dtype=bool)
    relevant[np.arange(n)[:, None], np.argsort(-truth, axis=1)[:, :3]] = True
    n_relevant = relevant.sum(axis=1)
    weights, value = fit_weights({"behaviour": behaviour, "sequence": sequence}, relevant, n_relevant)
    assert weights["behaviour"] == 1.0 and weights["sequence"] == 2.0
    # the blend 1·b + 2·s is one float32 rounding on both sides (2·s is exact): the same
    # order, so the float64 ndcg agrees up to its own rounding
    bound = 2 * metric_tolerance(n, 10)
    assert value == pytest.approx(1.0, abs=bound)
    assert value == pytest.approx(reference_ndcg(behaviour + 2.0 * sequence, relevant, n_relevant),
                                  abs=bound)
    fixed, _ = fit_weights({"behaviour": behaviour, "sequence": sequence}, relevant, n_relevant,
                           fixed={"sequence": 0.5})
    assert fixed["sequence"] == 0.5
