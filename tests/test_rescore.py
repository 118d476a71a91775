"""The native stage-2 re-scorer (``_core.rescore_candidates``) against numpy float64."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec import _core
from tolerances import assert_within, gamma


def _reference(candidates, matrices, queries, applies, fallbacks, offset, k):
    """float64 top-k of the candidates, and each score's float32 rounding bound: every
    signal a dot of d terms (γ_d), then the signals and the offset added (one rounding
    each): γ_{d_max + signals + 1} times the sum of the absolute terms."""
    nq, c = candidates.shape
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.full((nq, k), -np.inf)
    bounds = np.zeros((nq, k))
    largest = np.zeros((nq, 1))  # the largest bound among each row's candidates
    g = gamma(max(M.shape[1] for M in matrices) + len(matrices) + 1)
    for q in range(nq):
        rows = []
        for item in candidates[q]:
            if item < 0:
                continue
            total, magnitude = -float(offset[q]), abs(float(offset[q]))
            for M, Q, a, f in zip(matrices, queries, applies, fallbacks):
                if a is not None and not a[item]:
                    total += float(f[q])
                    magnitude += abs(float(f[q]))
                else:
                    total += M[item].astype(np.float64) @ Q[q].astype(np.float64)
                    magnitude += np.abs(M[item].astype(np.float64)) @ np.abs(Q[q].astype(np.float64))
            if np.isfinite(total):
                rows.append((-total, item, g * magnitude))
        rows.sort()
        largest[q] = max((row[2] for row in rows), default=0.0)
        for r, (neg, item, bound) in enumerate(rows[:k]):
            ids[q, r], scores[q, r], bounds[q, r] = item, -neg, bound
    return ids, scores, bounds, largest


def _problem(rng, n=300, nq=7, c=40):
    dims = (16, 13, 37)
    matrices = [rng.standard_normal((n, d)).astype(np.float32) for d in dims]
    queries = [rng.standard_normal((nq, d)).astype(np.float32) for d in dims]
    applies = [None, (rng.random(n) < 0.7).astype(np.uint8), None]
    fallbacks = [None, rng.standard_normal(nq).astype(np.float32), None]
    candidates = np.stack([rng.permutation(n)[:c] for _ in range(nq)]).astype(np.int64)
    candidates[rng.random(candidates.shape) < 0.1] = -1
    offset = rng.standard_normal(nq).astype(np.float32)
    return candidates, matrices, queries, applies, fallbacks, offset


@pytest.mark.parametrize("k", [1, 10, 60])
def test_matches_float64_reference(rng, simd_level, k):
    problem = _problem(rng)
    ids, scores = _core.rescore_candidates(*problem, k, num_threads=2)
    ref_ids, ref_scores, bounds, largest = _reference(*problem, k)
    # the i-th best within the largest bound among the row's candidates (order statistics)
    assert_within(scores, ref_scores, largest)
    # Ids agree except where two reference scores are closer than their rounding bounds.
    with np.errstate(invalid="ignore"):  # -inf padding
        gaps = np.abs(np.diff(ref_scores, axis=1))
    close = np.zeros_like(ids, dtype=bool)
    near = gaps <= 2 * largest
    close[:, 1:] |= near
    close[:, :-1] |= near
    assert np.all((ids == ref_ids) | close)
    assert ids.shape == scores.shape == (7, k)
    if k == 60:  # more than the valid candidates: padded
        assert np.all((ids == -1) == np.isneginf(scores)) and (ids == -1).any()


def test_ties_go_to_the_smaller_id(simd_level):
    matrix = np.ones((50, 8), dtype=np.float32)
    candidates = np.array([[30, 7, 12, -1, 3, 45]], dtype=np.int64)
    ids, scores = _core.rescore_candidates(candidates, [matrix], [np.ones((1, 8), np.float32)],
                                           [None], [None], np.zeros(1, np.float32), 4)
    assert ids.tolist() == [[3, 7, 12, 30]] and np.all(scores == 8.0)


def test_non_finite_scores_are_dropped():
    matrix = np.ones((5, 4), dtype=np.float32)
    matrix[2] = np.inf
    ids, scores = _core.rescore_candidates(np.array([[2, 1]]), [matrix], [np.ones((1, 4), np.float32)],
                                           [None], [None], np.zeros(1, np.float32), 2)
    assert ids.tolist() == [[1, -1]] and scores[0, 0] == 4.0 and np.isneginf(scores[0, 1])


def test_many_rows_threads_equal_serial(rng):
    problem = _problem(rng, n=2000, nq=100, c=64)
    one = _core.rescore_candidates(*problem, 10, num_threads=1)
    two = _core.rescore_candidates(*problem, 10, num_threads=2)
    # exact by contract: each query row is scored whole by one thread
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_bad_inputs_are_rejected(rng):
    candidates, matrices, queries, applies, fallbacks, offset = _problem(rng)
    bad = candidates.copy()
    bad[0, 0] = len(matrices[0])
    with pytest.raises(ValueError, match="candidate ids"):
        _core.rescore_candidates(bad, matrices, queries, applies, fallbacks, offset, 5)
    with pytest.raises(ValueError, match="query array"):
        _core.rescore_candidates(candidates, matrices, [q[:, 1:] for q in queries], applies, fallbacks,
                                 offset, 5)
    with pytest.raises(ValueError, match="fallback"):
        _core.rescore_candidates(candidates, matrices, queries, applies, [None] * 3, offset, 5)
    with pytest.raises(ValueError, match="applies"):
        _core.rescore_candidates(candidates, matrices, queries, [None, np.ones(3, np.uint8), None],
                                 fallbacks, offset, 5)
    with pytest.raises(ValueError, match="offset"):
        _core.rescore_candidates(candidates, matrices, queries, applies, fallbacks, offset[:2], 5)
    with pytest.raises(ValueError, match="k must be positive"):
        _core.rescore_candidates(candidates, matrices, queries, applies, fallbacks, offset, 0)
    with pytest.raises(ValueError, match="same rows"):
        _core.rescore_candidates(candidates, [matrices[0], matrices[1][:5], matrices[2]], queries,
                                 applies, fallbacks, offset, 5)


def test_a_mapped_matrix_may_hold_fewer_rows(rng, simd_level):
    """A term with a row map reads item i's row at map[i] of a matrix of any height (the
    cold signal keeps rows only for items without interactions, the others sharing row 0,
    skipped through ``applies``): the same scores as its rows spread over every item;
    maps beyond its rows, or row scales not one per stored row, refused."""
    candidates, matrices, queries, applies, fallbacks, offset = _problem(rng)
    n = len(matrices[0])
    stored = rng.standard_normal((6, 9)).astype(np.float32)
    slots = rng.integers(0, 6, n).astype(np.int32)
    extra_q = rng.standard_normal((len(offset), 9)).astype(np.float32)
    extra_applies = (slots > 0).astype(np.uint8)
    extra_fallback = np.zeros(len(offset), np.float32)
    k = 10
    ids, scores = _core.rescore_candidates(candidates, [*matrices, stored], [*queries, extra_q],
                                           [*applies, extra_applies], [*fallbacks, extra_fallback], offset, k,
                                           2, [None] * 4, [None, None, None, slots])
    want_ids, want, bounds, largest = _reference(candidates, [*matrices, stored[slots]], [*queries, extra_q],
                                                 [*applies, extra_applies], [*fallbacks, extra_fallback], offset, k)
    assert_within(scores, want, bounds)
    assert (np.abs(scores - want) <= 2 * largest + 1e-30).all()
    args = (candidates, [*matrices, stored], [*queries, extra_q], [*applies, extra_applies],
            [*fallbacks, extra_fallback], offset, k, 1)
    with pytest.raises(ValueError, match="row_maps"):
        _core.rescore_candidates(*args, [None] * 4, [None, None, None, np.full(n, 6, np.int32)])
    with pytest.raises(ValueError, match="row_scales"):
        _core.rescore_candidates(*args, [None, None, None, np.ones(n, np.float32)], [None, None, None, slots])
    with pytest.raises(ValueError, match="same rows"):  # without a map, every matrix has n rows
        _core.rescore_candidates(*args, [None] * 4, [None] * 4)
