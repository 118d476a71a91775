"""MMR re-ranking and intra-list diversity against float64 numpy references."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec import _core
from llmrec.diversity import intra_list_diversity, mmr_rerank
from llmrec.evaluation import ranking_metrics
from tolerances import UNIT64, gamma


# ----------------------------------------------------------------- references
def unit_rows(vectors):
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def mmr_scores(rel, sim, selected, remaining, lam):
    """float64 MMR scores of the remaining positions given the selected ones."""
    penalty = sim[np.ix_(remaining, selected)].max(axis=1) if selected else 0.0
    return (1 - lam) * rel[remaining] - lam * penalty


def reference_mmr(candidates, relevance, vectors, k, lam):
    """Greedy MMR in float64 for one query; returns ids and, per step, the gap between
    the best and the second-best score (how safely float32 can agree)."""
    valid = np.flatnonzero(candidates >= 0)
    ids, rel = candidates[valid], relevance[valid].astype(np.float64)
    unit = unit_rows(vectors[ids])
    sim = unit @ unit.T
    selected, gaps = [], []
    remaining = list(range(len(ids)))
    while remaining and len(selected) < k:
        scores = mmr_scores(rel, sim, selected, remaining, lam)
        order = np.lexsort((ids[remaining], -rel[remaining], -scores))
        gaps.append(scores[order[0]] - scores[order[1]] if len(order) > 1 else np.inf)
        selected.append(remaining.pop(order[0]))
    return ids[selected], min(gaps, default=np.inf)


def mmr_tolerance(d, lam, relevance):
    """Bound on a float32 MMR score (1 − λ)·rel − λ·max sim: a cosine of float32 rows is
    within γ_{2d+6} (tolerances.cosine_tolerance), the max keeps that, and the two
    products and the difference add γ_3 of the terms' size."""
    rel = np.abs(np.asarray(relevance, dtype=np.float64))
    top = float(rel[np.isfinite(rel)].max(initial=0.0))
    return lam * gamma(2 * d + 6) + gamma(3) * ((1 - lam) * top + lam)


def assert_mmr_valid(ids, rel_out, candidates, relevance, vectors, k, lam, atol=None):
    """Replay the native picks in float64: each must be a best choice within twice the
    score bound (``atol``; default mmr_tolerance), the relevance returned must be the
    candidate's own, and padding must follow."""
    if atol is None:
        atol = 2 * mmr_tolerance(vectors.shape[1], lam, relevance)
    valid = np.flatnonzero(candidates >= 0)
    cand, rel = candidates[valid], relevance[valid].astype(np.float64)
    n_take = min(k, len(cand))
    assert np.all(ids[n_take:] == -1) and np.all(np.isneginf(rel_out[n_take:]))
    got = ids[:n_take]
    assert len(np.unique(got)) == n_take and np.isin(got, cand).all()
    position = {int(c): p for p, c in enumerate(cand)}
    picks = [position[int(i)] for i in got]
    np.testing.assert_array_equal(rel_out[:n_take], relevance[valid][picks].astype(np.float32))
    unit = unit_rows(vectors[cand])
    sim = unit @ unit.T
    remaining = list(range(len(cand)))
    for step, pick in enumerate(picks):
        scores = mmr_scores(rel, sim, picks[:step], remaining, lam)
        assert scores[remaining.index(pick)] >= scores.max() - atol, f"step {step} is not a best pick"
        remaining.remove(pick)


def random_case(rng, nq=5, c=40, n=300, d=24, pad=0.2):
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    candidates = np.stack([rng.choice(n, size=c, replace=False) for _ in range(nq)])
    candidates[rng.random((nq, c)) < pad] = -1
    relevance = rng.random((nq, c)).astype(np.float32)
    relevance[candidates < 0] = -np.inf
    return candidates, relevance, vectors


# ----------------------------------------------------------------- correctness
@pytest.mark.parametrize("d", [1, 5, 16, 33, 64, 130])
@pytest.mark.parametrize("lam", [0.1, 0.5, 0.9, 1.0])
def test_matches_float64_reference(simd_level, rng, d, lam):
    candidates, relevance, vectors = random_case(rng, d=d)
    # Scale rows arbitrarily: similarity is cosine, so pre-normalising must not matter.
    vectors *= rng.uniform(0.1, 10.0, size=(vectors.shape[0], 1)).astype(np.float32)
    k = 12
    ids, rel = mmr_rerank(candidates, relevance, vectors, k, lam)
    assert ids.shape == rel.shape == (5, k) and ids.dtype == np.int64 and rel.dtype == np.float32
    for q in range(len(candidates)):
        assert_mmr_valid(ids[q], rel[q], candidates[q], relevance[q], vectors, k, lam)
        want, gap = reference_mmr(candidates[q], relevance[q], vectors, k, lam)
        # no near-tie anywhere (a gap above two score bounds): the very same picks
        if gap > 2 * mmr_tolerance(d, lam, relevance[q]):
            np.testing.assert_array_equal(ids[q, :len(want)], want)


def test_all_levels_agree_with_scalar(rng):
    candidates, relevance, vectors = random_case(rng, nq=20, c=100, d=40)
    previous = _core.active_simd_level()
    try:
        results = {}
        for level in _core.supported_simd_levels():
            _core.set_simd_level(level)
            results[level] = mmr_rerank(candidates, relevance, vectors, 15, 0.4)
    finally:
        _core.set_simd_level(previous)
    for level, (ids, rel) in results.items():
        for q in range(len(candidates)):
            assert_mmr_valid(ids[q], rel[q], candidates[q], relevance[q], vectors, 15, 0.4)


def test_lambda_zero_is_relevance_order_ties_by_smaller_id(simd_level, rng):
    candidates, relevance, vectors = random_case(rng, nq=8, c=60)
    relevance = np.round(relevance * 5) / 5  # many exact ties
    relevance[candidates < 0] = np.nan  # never read in empty slots
    ids, rel = mmr_rerank(candidates, relevance, vectors, 20, 0.0)
    for q in range(8):
        valid = np.flatnonzero(candidates[q] >= 0)
        order = np.lexsort((candidates[q, valid], -relevance[q, valid]))[:20]
        np.testing.assert_array_equal(ids[q, :len(order)], candidates[q, valid][order])
        np.testing.assert_array_equal(rel[q, :len(order)], relevance[q, valid][order])


def test_lambda_zero_does_not_read_vectors(rng):
    vectors = np.full((10, 4), np.nan, dtype=np.float32)
    ids, _ = mmr_rerank([3, 1, 7], [0.2, 0.9, 0.5], vectors, 3, 0.0)
    np.testing.assert_array_equal(ids, [1, 7, 3])


def test_diversity_spreads_over_clusters(simd_level, rng):
    # Five tight, mutually orthogonal clusters; cluster 0 is the most relevant.
    d, per = 16, 8
    centers = np.eye(d, dtype=np.float32)[:5]
    vectors = np.repeat(centers, per, axis=0) + 0.01 * rng.standard_normal((5 * per, d)).astype(np.float32)
    cluster = np.repeat(np.arange(5), per)
    relevance = (1.0 - 0.05 * cluster + 0.001 * rng.random(5 * per)).astype(np.float32)
    candidates = rng.permutation(5 * per)
    rel = relevance[candidates]
    plain, _ = mmr_rerank(candidates, rel, vectors, 5, 0.0)
    assert set(cluster[plain]) == {0}
    diverse, diverse_rel = mmr_rerank(candidates, rel, vectors, 5, 0.5)
    np.testing.assert_array_equal(cluster[diverse], [0, 1, 2, 3, 4])
    assert diverse[0] == plain[0]
    np.testing.assert_array_equal(diverse_rel, relevance[diverse])
    spread = [intra_list_diversity(mmr_rerank(candidates, rel, vectors, 5, lam)[0], vectors)
              for lam in (0.0, 0.5, 1.0)]
    # Greedy MMR is not monotone in λ item by item; both diverse lists span all clusters.
    assert spread[0] < 0.01 and spread[1] > 0.9 and spread[2] > 0.9


def test_lambda_one_starts_with_most_relevant_then_least_similar(simd_level, rng):
    candidates, relevance, vectors = random_case(rng, nq=1, c=30, pad=0.0)
    ids, _ = mmr_rerank(candidates[0], relevance[0], vectors, 2, 1.0)
    assert ids[0] == candidates[0, np.argmax(relevance[0])]
    unit = unit_rows(vectors)
    sims = unit[candidates[0]] @ unit[ids[0]]
    sims[candidates[0] == ids[0]] = np.inf
    assert ids[1] == candidates[0, np.argmin(sims)]


def test_padding_short_and_empty_lists(simd_level, rng):
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    candidates = np.array([[4, -1, 9, -1], [-1, -1, -1, -1], [1, 2, 3, 5]])
    relevance = np.array([[0.5, np.nan, 0.7, -np.inf], [np.nan] * 4, [0.1, 0.2, 0.3, 0.4]])
    ids, rel = mmr_rerank(candidates, relevance, vectors, 6, 0.3)
    assert ids.shape == (3, 6)
    assert set(ids[0, :2]) == {4, 9} and np.all(ids[0, 2:] == -1) and np.all(np.isneginf(rel[0, 2:]))
    assert np.all(ids[1] == -1) and np.all(np.isneginf(rel[1]))
    assert set(ids[2, :4]) == {1, 2, 3, 5} and np.all(ids[2, 4:] == -1)
    for q in range(3):
        assert_mmr_valid(ids[q], rel[q], candidates[q], relevance[q], vectors, 6, 0.3)
    ids, rel = mmr_rerank(np.zeros((2, 0), dtype=np.int64), np.zeros((2, 0)), vectors, 3, 0.5)
    assert ids.shape == (2, 3) and np.all(ids == -1)
    ids, rel = mmr_rerank(np.zeros((0, 5), dtype=np.int64), np.zeros((0, 5)), vectors, 3, 0.5)
    assert ids.shape == (0, 3) and rel.shape == (0, 3)


def test_zero_vectors_have_zero_similarity(simd_level):
    vectors = np.array([[1, 0], [0, 0], [1, 0.01], [0, 1]], dtype=np.float32)
    ids, _ = mmr_rerank([0, 1, 2, 3], [1.0, 0.5, 0.9, 0.4], vectors, 4, 0.5)
    # After 0, item 2 (cosine ≈ 1) scores ≈ -0.05 while 1 (zero row) and 3 (orthogonal) keep
    # half their relevance.
    np.testing.assert_array_equal(ids, [0, 1, 3, 2])


def test_single_query_and_conversions(rng):
    candidates, relevance, vectors = random_case(rng, nq=1, c=25)
    batch = mmr_rerank(candidates, relevance, vectors, 7, 0.6)
    one = mmr_rerank(candidates[0].tolist(), relevance[0].astype(np.float64),
                     vectors.astype(np.float64), 7, 0.6)
    assert one[0].shape == one[1].shape == (7,)
    # exact: the float64 inputs hold float32 values, so the same row is computed the same way
    np.testing.assert_array_equal(one[0], batch[0][0])
    np.testing.assert_array_equal(one[1], batch[1][0])
    fortran = mmr_rerank(np.asfortranarray(candidates.astype(np.int32)), relevance,
                         np.asfortranarray(vectors), 7, 0.6)
    np.testing.assert_array_equal(fortran[0], batch[0])


def test_thread_counts_and_concurrent_calls_agree(rng):
    candidates, relevance, vectors = random_case(rng, nq=64, c=80, d=32)
    serial = mmr_rerank(candidates, relevance, vectors, 10, 0.5, num_threads=1)
    # exact by contract: each query is re-ranked whole by one thread
    for threads in (0, 2, 3, 8):
        ids, rel = mmr_rerank(candidates, relevance, vectors, 10, 0.5, num_threads=threads)
        np.testing.assert_array_equal(ids, serial[0])
        np.testing.assert_array_equal(rel, serial[1])
    results = [None] * 8

    def work(slot):
        results[slot] = mmr_rerank(candidates, relevance, vectors, 10, 0.5)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for ids, rel in results:
        np.testing.assert_array_equal(ids, serial[0])
        np.testing.assert_array_equal(rel, serial[1])


# ----------------------------------------------------------------- bad input
GOOD_C = np.array([[0, 1, 2]])
GOOD_R = np.array([[0.3, 0.2, 0.1]])
GOOD_V = np.eye(4, dtype=np.float32)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(candidates=[[0.0, 1.0, 2.0]]), TypeError, "candidates must hold integer"),
    (dict(candidates=np.array([[True, False, True]])), TypeError, "candidates must hold integer"),
    (dict(candidates=np.zeros((1, 1, 3), dtype=int)), ValueError, "candidates must have shape"),
    (dict(candidates=[[0, 1, 4]]), ValueError, "candidates holds item id 4, outside"),
    (dict(candidates=[[0, -2, 1]]), ValueError, "candidates holds item id -2"),
    (dict(candidates=[[0, 1, 1]]), ValueError, r"candidates\[0\] holds item id 1 more than once"),
    (dict(candidates=sp.csr_matrix(GOOD_C)), TypeError, "candidates must be a dense"),
    (dict(relevance=[[0.3, 0.2]]), ValueError, "relevance must have the shape of candidates"),
    (dict(relevance=[0.3, 0.2, 0.1]), ValueError, "relevance must have the shape of candidates"),
    (dict(relevance=[["a", "b", "c"]]), TypeError, "relevance must hold real numbers"),
    (dict(relevance=[[0.3, np.nan, 0.1]]), ValueError, "relevance contains NaN"),
    (dict(relevance=[[0.3, np.inf, 0.1]]), ValueError, "relevance contains NaN"),
    (dict(relevance=[[0.3, 1e39, 0.1]]), ValueError, "relevance contains NaN"),
    (dict(item_vectors=np.ones(4)), ValueError, "item_vectors must be a 2-D array"),
    (dict(item_vectors=np.ones((4, 0))), ValueError, "item_vectors must be a 2-D array"),
    (dict(item_vectors=np.array([["x"] * 4] * 4)), TypeError, "item_vectors must hold real numbers"),
    (dict(item_vectors=sp.eye(4)), TypeError, "item_vectors must be a dense"),
    (dict(item_vectors=np.where(np.eye(4) == 1, np.nan, 0)), ValueError,
     "item_vectors row 0 contains NaN or infinite"),
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=2.0), TypeError, "k must be an integer"),
    (dict(lambda_=-0.1), ValueError, r"lambda_ must be in \[0, 1\]"),
    (dict(lambda_=1.5), ValueError, r"lambda_ must be in \[0, 1\]"),
    (dict(lambda_=float("nan")), ValueError, r"lambda_ must be in \[0, 1\]"),
    (dict(lambda_="0.5"), TypeError, "lambda_ must be a real number"),
    (dict(lambda_=True), TypeError, "lambda_ must be a real number"),
    (dict(num_threads=-1), ValueError, "num_threads must be >= 0"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    args = dict(candidates=GOOD_C, relevance=GOOD_R, item_vectors=GOOD_V, k=2, lambda_=0.5)
    args.update(kwargs)
    num_threads = args.pop("num_threads", 0)
    with pytest.raises(error, match=match):
        mmr_rerank(args["candidates"], args["relevance"], args["item_vectors"], args["k"],
                   args["lambda_"], num_threads=num_threads)


def test_duplicates_named_per_query():
    vectors = np.eye(6, dtype=np.float32)
    candidates = np.array([[0, 1, 2], [3, 4, 3]])
    with pytest.raises(ValueError, match=r"candidates\[1\] holds item id 3 more than once"):
        mmr_rerank(candidates, np.ones((2, 3)), vectors, 2, 0.0)
    with pytest.raises(ValueError, match=r"^candidates holds item id 5 more than once"):
        mmr_rerank([5, -1, 5], [1.0, 0.0, 0.5], vectors, 2, 0.5)
    ids, _ = mmr_rerank([5, -1, -1, 2], [1.0, 0.0, 0.0, 0.5], vectors, 2, 0.5)  # -1 may repeat
    np.testing.assert_array_equal(ids, [5, 2])


def test_tiny_vectors_keep_their_direction(simd_level):
    vectors = np.array([[1e-25, 0], [1e-25, 1e-27], [0, 1e-25]], dtype=np.float32)
    ids, _ = mmr_rerank([0, 1, 2], [1.0, 0.9, 0.8], vectors, 3, 0.5)
    np.testing.assert_array_equal(ids, [0, 2, 1])  # 1 is nearly parallel to 0


def test_non_finite_vectors_only_matter_where_read(simd_level):
    vectors = np.eye(4, dtype=np.float32)
    vectors[3] = np.inf
    ids, _ = mmr_rerank([0, 1, 2], [0.3, 0.2, 0.1], vectors, 2, 0.5)
    assert set(ids) <= {0, 1, 2}
    with pytest.raises(ValueError, match="item_vectors row 3 contains NaN or infinite"):
        mmr_rerank([0, 3], [0.3, 0.2], vectors, 2, 0.5)
    huge = np.full((2, 4), 3e38, dtype=np.float32)  # finite, but squares overflow float32
    ids, _ = mmr_rerank([0, 1], [0.5, 0.4], huge, 2, 0.5)
    np.testing.assert_array_equal(ids, [0, 1])


def test_native_guards_memory_safety():
    vectors = np.eye(4, dtype=np.float32)
    rel = np.zeros((1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="candidate ids must be -1 or in"):
        _core.mmr_rerank(np.array([[0, 4]]), rel, vectors, 2, 0.5)
    with pytest.raises(ValueError, match="relevance must have the shape"):
        _core.mmr_rerank(np.array([[0, 1]]), np.zeros((1, 3), dtype=np.float32), vectors, 2, 0.5)
    with pytest.raises(ValueError, match="lambda"):
        _core.mmr_rerank(np.array([[0, 1]]), rel, vectors, 2, 2.0)
    with pytest.raises(ValueError, match="k must be positive"):
        _core.mmr_rerank(np.array([[0, 1]]), rel, vectors, 0, 0.5)


# ----------------------------------------------------------------- intra-list diversity
def test_intra_list_diversity_matches_pairwise_reference(rng):
    vectors = rng.standard_normal((60, 10))
    vectors[5] = 0
    ids = rng.integers(0, 60, size=(7, 6))
    ids[0, 2:] = -1
    ids[1, 1:] = -1  # one item: no pair
    ids[2, 3] = 5
    got = intra_list_diversity(ids, vectors.astype(np.float32))
    unit = unit_rows(vectors)
    for row, value in zip(ids, got):
        valid = row[row >= 0]
        if len(valid) < 2:
            assert np.isnan(value)
            continue
        sim = unit[valid] @ unit[valid].T
        m = len(valid)
        want = np.mean([1 - sim[i, j] for i in range(m) for j in range(m) if i != j])
        # computed in float64 from float32-rounded vectors: each rounding moves a cosine by
        # at most γ_4 (2u in the dot, u in each norm); float64 arithmetic adds γ_{2d+6}(u64)
        assert value == pytest.approx(want, abs=gamma(4) + gamma(2 * 10 + 6, UNIT64))
    assert intra_list_diversity(ids[3], vectors) == pytest.approx(
        got[3], abs=gamma(4) + gamma(2 * 10 + 6, UNIT64))


def test_intra_list_diversity_agrees_with_ranking_metrics(rng):
    vectors = rng.standard_normal((40, 6))
    ids = np.stack([rng.choice(40, size=5, replace=False) for _ in range(9)])
    test = sp.csr_matrix(np.ones((9, 40)))
    metrics = ranking_metrics(ids, test, k=5, item_features=vectors)
    # both in float64, ranking_metrics from the vectors rounded to float32 (γ_4 per cosine,
    # as above), averaged over pairs and lists
    assert metrics["diversity"] == pytest.approx(intra_list_diversity(ids, vectors).mean(),
                                                 abs=gamma(4) + 2 * gamma(2 * 6 + 6 + 20 + 9, UNIT64))


def test_intra_list_diversity_bad_inputs():
    with pytest.raises(ValueError, match="ids holds item id 9"):
        intra_list_diversity([[0, 9]], np.eye(3))
    with pytest.raises(TypeError, match="ids must hold integer"):
        intra_list_diversity([[0.5, 1.0]], np.eye(3))
    with pytest.raises(ValueError, match="item_vectors contains NaN"):
        intra_list_diversity([[0, 1]], np.array([[1.0, 0], [np.nan, 1], [0, 1]]))
