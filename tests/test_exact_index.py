"""ExactIndex: every SIMD level against a float64 numpy reference, filters, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import llmrec
from llmrec import ExactIndex
from reference import assert_topk_matches, reference_scores
from tolerances import assert_within, gamma, score_tolerance


def _data(rng, n, d, nq, dtype=np.float32):
    return (rng.standard_normal((n, d)).astype(dtype), rng.standard_normal((nq, d)).astype(dtype))


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("n,d,nq,k", [
    (1, 1, 1, 1), (1, 3, 2, 5), (5, 7, 3, 10), (37, 8, 4, 4), (100, 15, 5, 7),
    (257, 16, 6, 1), (1000, 17, 7, 10), (3000, 33, 17, 25), (2048, 128, 9, 10),
    (999, 130, 13, 64), (4099, 384, 3, 10), (70_000, 20, 2, 10), (300, 128, 33, 5),
    (5000, 45, 70, 10), (1200, 5, 257, 3),
])
def test_search_matches_numpy_at_every_level(simd_level, rng, metric, n, d, nq, k):
    items, queries = _data(rng, n, d, nq)
    index = ExactIndex(items, metric=metric)
    ids, scores = index.search(queries, k=k)
    assert_topk_matches(ids, scores, reference_scores(items, queries, metric), k,
                        tol=score_tolerance(items, queries, metric))


def test_levels_agree_with_scalar(rng):
    items, queries = _data(rng, 20_000, 61, 11)
    index = ExactIndex(items)
    results = {}
    previous = llmrec._core.active_simd_level()
    try:
        for level in llmrec.build_info()["simd_supported"]:
            llmrec._core.set_simd_level(level)
            results[level] = index.search(queries, k=20)
    finally:  # the level the process ran at (LLMREC_SIMD may have lowered it), not the best
        llmrec._core.set_simd_level(previous)
    ref, bound = reference_scores(items, queries), score_tolerance(items, queries)
    ids0, scores0 = results["scalar"]
    for level, (ids, scores) in results.items():
        assert_topk_matches(ids, scores, ref, 20, tol=bound)
        # each level's k-th best is within the row's largest bound of the exact k-th best
        assert_within(scores, scores0, 2 * bound.max(axis=1, keepdims=True), level)


def test_exact_ties_break_by_smaller_id(simd_level, rng):
    # Small integers make every score exact, with many ties.
    items = rng.integers(-2, 3, size=(3000, 9)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(6, 9)).astype(np.float32)
    for threads in (1, 2):
        ids, scores = ExactIndex(items, num_threads=threads).search(queries, k=50)
        ref = reference_scores(items, queries)
        expected = np.stack([np.lexsort((np.arange(3000), -row))[:50] for row in ref])
        np.testing.assert_array_equal(ids, expected)


def test_thread_counts_give_identical_results(rng):
    items, queries = _data(rng, 100_000, 24, 40)
    serial = ExactIndex(items, num_threads=1).search(queries, k=15)
    # exact by contract: every score is one dot product whichever thread computes it
    for threads in (0, 2, 3, 8):
        ids, scores = ExactIndex(items, num_threads=threads).search(queries, k=15)
        np.testing.assert_array_equal(ids, serial[0])
        np.testing.assert_array_equal(scores, serial[1])


def test_many_queries_over_many_items_at_every_thread_count(simd_level, rng):
    # 400 queries of d = 384 give each of two or three threads an L2-sized query block of
    # their own, so the items are not split into ranges; 3 of them are too few, and their
    # items are split. Both ways must give the same top-100 (k large: heaps matter).
    items, queries = _data(rng, 40_000, 384, 400)
    exclude = sp.random(400, 40_000, density=1e-3, format="csr", random_state=rng)
    qualifies = exclude.toarray() == 0
    one_thread = ExactIndex(items, num_threads=1)
    serial = {n: one_thread.search(queries[:n], k=100, exclude=exclude[:n]) for n in (400, 3)}
    assert_topk_matches(*serial[400], reference_scores(items, queries), 100, qualifies,
                        tol=score_tolerance(items, queries))
    for threads in (2, 3, 8):
        index = ExactIndex(items, num_threads=threads)
        for n, (want_ids, want_scores) in serial.items():
            ids, scores = index.search(queries[:n], k=100, exclude=exclude[:n])
            # exact by contract for a given batch (the kernel's query tiles follow the
            # batch, not the threads): every score is one dot product whoever computes it
            np.testing.assert_array_equal(ids, want_ids)
            np.testing.assert_array_equal(scores, want_scores)


def test_single_query_returns_1d(rng):
    items, queries = _data(rng, 50, 6, 1)
    ids, scores = ExactIndex(items).search(queries[0], k=4)
    assert ids.shape == (4,) and scores.shape == (4,)
    ids2, _ = ExactIndex(items).search(queries, k=4)
    np.testing.assert_array_equal(ids, ids2[0])


def test_k_larger_than_n_pads(simd_level, rng):
    items, queries = _data(rng, 3, 5, 2)
    ids, scores = ExactIndex(items).search(queries, k=6)
    assert ids.shape == (2, 6)
    assert np.all(ids[:, 3:] == -1) and np.all(np.isneginf(scores[:, 3:]))
    assert sorted(ids[0, :3]) == [0, 1, 2]


def test_cosine_zero_vectors_score_zero(simd_level, rng):
    items = rng.standard_normal((10, 4)).astype(np.float32)
    items[3] = 0
    index = ExactIndex(items, metric="cosine")
    ids, scores = index.search(np.zeros(4, np.float32), k=10)
    assert np.all(scores == 0) and list(ids) == list(range(10))
    ids, scores = index.search(-items[0], k=10)
    assert not np.isnan(scores).any()
    assert scores[list(ids).index(3)] == 0
    # ‖x/‖x‖‖ = 1 up to the normalisation's rounding (γ_{d/2+3} per component) and the
    # float64 norm of the float32 result
    assert_within(np.linalg.norm(index.vectors, axis=1)[[0, 1, 2, 4]], 1, gamma(4 // 2 + 4))


def test_float32_input_is_not_copied_and_other_input_is_converted(rng):
    items = rng.standard_normal((20, 8)).astype(np.float32)
    assert np.shares_memory(ExactIndex(items).vectors, items)
    as_f64 = items.astype(np.float64)
    index = ExactIndex(as_f64)
    assert index.vectors.dtype == np.float32 and not np.shares_memory(index.vectors, as_f64)
    fortran = np.asfortranarray(items)
    np.testing.assert_array_equal(ExactIndex(fortran).vectors, items)
    np.testing.assert_array_equal(ExactIndex(items.tolist()).vectors, items)
    assert not ExactIndex(items).vectors.flags.writeable


def test_add_appends_and_search_sees_new_items(rng):
    items, queries = _data(rng, 30, 8, 3)
    index = ExactIndex(items[:10])
    np.testing.assert_array_equal(index.add(items[10:25]), np.arange(10, 25))
    np.testing.assert_array_equal(index.add(items[25:]), np.arange(25, 30))
    assert len(index) == 30 and index.dim == 8
    ids, scores = index.search(queries, k=5)
    assert_topk_matches(ids, scores, reference_scores(items, queries), 5,
                        tol=score_tolerance(items, queries))
    assert index.add(np.zeros((0, 8), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="dimension 8"):
        index.add(np.zeros((2, 9), np.float32))


def test_empty_index_can_grow(rng):
    index = ExactIndex(np.zeros((0, 4), np.float32), metric="cosine")
    with pytest.raises(ValueError, match="empty"):
        index.search(np.ones(4), k=1)
    index.add(rng.standard_normal((3, 4)))
    assert index.search(np.ones(4), k=2)[0].shape == (2,)


# ----------------------------------------------------------------------------- filters

def _qualifies(nq, n, excluded=None, allowed=None):
    q = np.ones((nq, n), dtype=bool)
    if excluded is not None:
        q &= ~excluded
    if allowed is not None:
        q &= allowed[None, :]
    return q


@pytest.mark.parametrize("n", [500, 40_000])
def test_exclude_csr_and_lists(simd_level, rng, n):
    items, queries = _data(rng, n, 19, 5)
    ref = reference_scores(items, queries)
    # Exclude each query's own best items, the ones that would otherwise be returned.
    best = np.argsort(-ref, axis=1)[:, :30]
    excluded = np.zeros((5, n), dtype=bool)
    np.put_along_axis(excluded, best, True, axis=1)
    excluded[:, rng.integers(0, n, 50)] = True
    index = ExactIndex(items)
    csr = sp.csr_matrix(excluded.astype(np.float32))
    for exclude in (csr, csr.tocoo(), [np.flatnonzero(row)[::-1] for row in excluded]):
        ids, scores = index.search(queries, k=12, exclude=exclude)
        assert_topk_matches(ids, scores, ref, 12, _qualifies(5, n, excluded=excluded),
                            tol=score_tolerance(items, queries))


def test_exclude_unsorted_csr_and_explicit_zeros(rng):
    items, queries = _data(rng, 50, 4, 1)
    csr = sp.csr_matrix((np.array([1.0, 0.0, 1.0]), np.array([7, 3, 2]), np.array([0, 3])),
                        shape=(1, 50))
    ids, _ = ExactIndex(items).search(queries, k=50, exclude=csr)
    # Explicit zeros are not exclusions: item 3 stays, 7 and 2 go.
    assert 3 in ids[0] and 7 not in ids[0] and 2 not in ids[0] and ids[0, -2:].tolist() == [-1, -1]


def test_single_query_accepts_one_id_array(rng):
    items, queries = _data(rng, 40, 5, 1)
    ids, _ = ExactIndex(items).search(queries[0], k=40, exclude=[1, 2, 3])
    assert not {1, 2, 3} & set(ids.tolist()) and (ids == -1).sum() == 3


@pytest.mark.parametrize("fraction", [0.001, 0.05, 0.5, 1.0])
def test_allow_mask_and_ids(simd_level, rng, fraction):
    n = 20_000
    items, queries = _data(rng, n, 12, 4)
    allowed = rng.random(n) < fraction
    allowed[rng.integers(0, n)] = True
    ref = reference_scores(items, queries)
    index = ExactIndex(items)
    for allow in (allowed, np.flatnonzero(allowed), np.flatnonzero(allowed).tolist()):
        ids, scores = index.search(queries, k=30, allow=allow)
        assert_topk_matches(ids, scores, ref, 30, _qualifies(4, n, allowed=allowed),
                            tol=score_tolerance(items, queries))


def test_allow_and_exclude_together(simd_level, rng):
    n = 3000
    items, queries = _data(rng, n, 10, 3)
    allowed = np.zeros(n, bool)
    allowed[rng.choice(n, 40, replace=False)] = True
    excluded = np.zeros((3, n), bool)
    excluded[:, np.flatnonzero(allowed)[:25]] = True
    ids, scores = ExactIndex(items).search(queries, k=20, allow=allowed,
                                           exclude=sp.csr_matrix(excluded))
    assert_topk_matches(ids, scores, reference_scores(items, queries), 20,
                        _qualifies(3, n, excluded, allowed), tol=score_tolerance(items, queries))
    assert (ids == -1).sum(axis=1).tolist() == [5, 5, 5]


def test_everything_filtered_gives_padding(rng):
    items, queries = _data(rng, 10, 3, 2)
    ids, scores = ExactIndex(items).search(queries, k=3, allow=np.zeros(10, bool))
    assert np.all(ids == -1) and np.all(np.isneginf(scores))
    ids, _ = ExactIndex(items).search(queries, k=3, exclude=[np.arange(10), np.arange(10)])
    assert np.all(ids == -1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), d=st.integers(1, 40), nq=st.integers(1, 9), k=st.integers(1, 40),
       metric=st.sampled_from(["ip", "cosine"]), seed=st.integers(0, 2**32 - 1),
       use_allow=st.booleans(), use_exclude=st.booleans())
def test_random_filters_property(n, d, nq, k, metric, seed, use_allow, use_exclude):
    rng = np.random.default_rng(seed)
    items, queries = _data(rng, n, d, nq)
    allowed = rng.random(n) < 0.6 if use_allow else None
    excluded = rng.random((nq, n)) < 0.2 if use_exclude else None
    ids, scores = ExactIndex(items, metric=metric).search(
        queries, k=k, allow=allowed, exclude=None if excluded is None else sp.csr_matrix(excluded))
    assert_topk_matches(ids, scores, reference_scores(items, queries, metric), k,
                        _qualifies(nq, n, excluded, allowed),
                        tol=score_tolerance(items, queries, metric))


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def small_index(rng):
    return ExactIndex(rng.standard_normal((20, 4)).astype(np.float32))


@pytest.mark.parametrize("vectors,error,match", [
    (np.array([["a", "b"]]), TypeError, "vectors must hold real numbers"),
    (np.zeros((2, 3), complex), TypeError, "vectors must hold real numbers"),
    (np.zeros(4, np.float32), ValueError, r"2-D array of shape \(n, d\)"),
    (np.zeros((2, 3, 4), np.float32), ValueError, "2-D"),
    (np.zeros((3, 0), np.float32), ValueError, "at least one column"),
    (np.array([[1.0, np.nan]]), ValueError, "NaN or infinite"),
    (np.array([[1.0, np.inf]]), ValueError, "NaN or infinite"),
    (sp.eye(3, format="csr"), TypeError, "dense"),
])
def test_bad_vectors(vectors, error, match):
    with pytest.raises(error, match=match):
        ExactIndex(vectors)


def test_bad_constructor_options():
    with pytest.raises(ValueError, match="metric must be one of"):
        ExactIndex(np.ones((2, 2)), metric="l2")
    with pytest.raises(ValueError, match="num_threads must be >= 0"):
        ExactIndex(np.ones((2, 2)), num_threads=-1)
    with pytest.raises(TypeError, match="num_threads must be an integer"):
        ExactIndex(np.ones((2, 2)), num_threads=1.5)


@pytest.mark.parametrize("queries,error,match", [
    (np.zeros(5, np.float32), ValueError, "dimension 4"),
    (np.zeros((2, 3), np.float32), ValueError, "dimension 4"),
    (np.zeros((2, 2, 4), np.float32), ValueError, "shape"),
    (np.zeros((0, 4), np.float32), ValueError, "empty"),
    (np.array([0, 1, np.nan, 0]), ValueError, "NaN"),
    (np.array([0, -np.inf, 0, 0]), ValueError, "NaN or infinite"),
    (["a", "b", "c", "d"], TypeError, "queries must hold real numbers"),
])
def test_bad_queries(small_index, queries, error, match):
    with pytest.raises(error, match=match):
        small_index.search(queries, k=3)


@pytest.mark.parametrize("k,error", [(0, ValueError), (-3, ValueError), (1.5, TypeError),
                                     (True, TypeError), ("3", TypeError), (None, TypeError)])
def test_bad_k(small_index, k, error):
    with pytest.raises(error, match="k must be"):
        small_index.search(np.ones(4), k=k)


@pytest.mark.parametrize("exclude,error,match", [
    (sp.csr_matrix((2, 19)), ValueError, r"exclude must have shape"),
    (sp.csr_matrix((3, 20)), ValueError, r"exclude must have shape"),
    ([[1], [2], [3]], ValueError, "one id array per query"),
    ([[1], [20]], ValueError, r"exclude\[1\] holds item id 20, outside \[0, 20\)"),
    ([[-1], [2]], ValueError, "holds item id -1"),
    ([[0.5], [2]], TypeError, "integer item ids"),
    (5, TypeError, "exclude must be a scipy sparse matrix"),
    ("abc", TypeError, "exclude must be"),
])
def test_bad_exclude(small_index, exclude, error, match):
    with pytest.raises(error, match=match):
        small_index.search(np.ones((2, 4)), k=3, exclude=exclude)


@pytest.mark.parametrize("allow,error,match", [
    (np.ones(19, bool), ValueError, r"allow as a boolean mask must have shape \(20,\)"),
    (np.array([0, 20]), ValueError, "allow holds item id 20"),
    (np.array([[1, 2]]), ValueError, "1-D"),
    (np.array([0.5]), TypeError, "integer item ids"),
    (sp.eye(20, format="csr"), TypeError, "not a sparse matrix"),
])
def test_bad_allow(small_index, allow, error, match):
    with pytest.raises(error, match=match):
        small_index.search(np.ones(4), k=3, allow=allow)


def test_native_layer_rejects_unsafe_arguments(rng):
    from llmrec import _core

    items = rng.standard_normal((10, 4)).astype(np.float32)
    q = items[:2].copy()
    with pytest.raises(ValueError, match="allow ids must be sorted, unique and in"):
        _core.search_exact(items, q, 3, allow_ids=np.array([3, 10], np.int64))
    with pytest.raises(ValueError, match="allow ids must be sorted"):
        _core.search_exact(items, q, 3, allow_ids=np.array([5, 2], np.int64))
    with pytest.raises(ValueError, match="indptr"):
        _core.search_exact(items, q, 3, exclude_indptr=np.array([0, 5, 1], np.int64),
                           exclude_ids=np.array([1], np.int64))
    with pytest.raises(TypeError):
        _core.search_exact(items.astype(np.float64), q, 3)
    with pytest.raises(ValueError, match="dimension"):
        _core.search_exact(items, q[:, :3].copy(), 3)
