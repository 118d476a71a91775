"""Native wrong answers that once came back silently, checked against float64 references
at every SIMD level."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec import ExactIndex, QuantizedIndex, _core
from quantized_view import search_quantized

EPS32 = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------- k-means
@pytest.mark.parametrize("d, k", [(32, 8), (4, 300), (8, 5)])  # inner-product path and direct path
@pytest.mark.parametrize("exponent", [70, -80])
def test_kmeans_is_scale_invariant(rng, simd_level, d, k, exponent):
    """Power-of-two scales are exact and float rounding ignores them, so clustering data
    far outside float32's comfortable range (1e21: squares overflow; 1e-24: squares
    underflow) must give the clustering of the unscaled data, scaled."""
    x = rng.standard_normal((1000, d)).astype(np.float32)
    scale = np.float32(2.0**exponent)
    centroids, assignment = _core.kmeans_train(x, k, 10, 3, 1)
    scaled_centroids, scaled_assignment = _core.kmeans_train(x * scale, k, 10, 3, 1)
    np.testing.assert_array_equal(scaled_assignment, assignment)
    np.testing.assert_array_equal(scaled_centroids, centroids * scale)
    np.testing.assert_array_equal(_core.kmeans_assign(x * scale, centroids * scale, 1), assignment)


def test_kmeans_at_1e19_assigns_every_row_to_its_nearest_centroid(rng, simd_level):
    x = (rng.standard_normal((2000, 32)) * 1e19).astype(np.float32)
    centroids, assignment = _core.kmeans_train(x, 16, 5, 0, 0)
    assert np.isfinite(centroids).all()
    assert assignment.min() >= 0 and assignment.max() < 16
    x64, c64 = x.astype(np.float64) / 1e19, centroids.astype(np.float64) / 1e19
    dist = ((x64[:, None, :] - c64[None, :, :]) ** 2).sum(-1)
    chosen = dist[np.arange(len(x)), assignment]
    # The float32 distances the search compares carry relative error ~ d * eps.
    assert (chosen <= dist.min(1) * (1 + 64 * 32 * EPS32)).all()


# ---------------------------------------------------------------- inverted lists
def test_identical_vectors_find_items_through_lists(simd_level):
    """np.ones: every item went to list 0 (batch scores 24.0) while one query scored an
    empty list 24.000002 and returned only padding."""
    x = np.ones((300, 24), np.float32)
    for codec in ("fp16", "sq8", "pq4"):
        index = QuantizedIndex(x, codec=codec, partitions=4, random_state=0)
        ids, scores = index.search(x[0], k=3)
        assert (ids >= 0).all(), (codec, ids)
        np.testing.assert_allclose(scores, 24.0, rtol=24 * EPS32 * 4)
        ids, _ = index.search(x[:5], k=3)
        assert (ids >= 0).all(), codec


@pytest.mark.parametrize("codec", ["fp16", "sq8", "pq4"])
def test_each_item_probes_its_own_list_first(rng, simd_level, codec):
    """Items drawn from a few distinct vectors tie with each other; a query equal to an
    item, with one probe, must scan the list the item was put in."""
    distinct = rng.standard_normal((6, 16)).astype(np.float32)
    x = distinct[rng.integers(0, 6, 400)]
    index = QuantizedIndex(x, codec=codec, partitions=12, random_state=1)
    assignment = index._state.lists.assignment
    for i in range(0, 400, 9):
        ids, _ = index.search(x[i], k=400, probes=1, rerank=0)
        found = ids[ids >= 0]
        assert len(found) > 0
        assert (assignment[found] == assignment[i]).all()
        assert i in found


# ---------------------------------------------------------------- cosine and the norm contract
@pytest.mark.parametrize("value", [1e-40, 1e-45, 1e-20, 1e30, 3e38])
def test_cosine_normalises_any_finite_vector(simd_level, value):
    x = np.full((3, 4), value, np.float32)
    x[1, 0] = -x[1, 0]
    reference = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    for index in (ExactIndex(x, metric="cosine"), QuantizedIndex(x, codec="fp16", metric="cosine")):
        ids, scores = index.search(x[0], k=3)
        assert np.isfinite(scores).all() and (ids >= 0).all()
        expected = reference @ reference[0]
        np.testing.assert_allclose(scores, np.sort(expected)[::-1], atol=8 * EPS32)
    np.testing.assert_allclose(ExactIndex(x, metric="cosine").vectors, reference, atol=2 * EPS32)


def test_zero_vectors_stay_zero_under_cosine():
    x = np.zeros((2, 5), np.float32)
    index = ExactIndex(x, metric="cosine")
    np.testing.assert_array_equal(index.vectors, 0)
    ids, scores = index.search(np.ones(5), k=2)
    np.testing.assert_array_equal(ids, [0, 1])
    np.testing.assert_array_equal(scores, 0)


@pytest.mark.parametrize("cls, kwargs", [(ExactIndex, {}), (QuantizedIndex, {"codec": "sq8"}),
                                         (QuantizedIndex, {"codec": "pq4", "partitions": 2})])
def test_vectors_whose_products_overflow_are_refused(cls, kwargs):
    """1e30*1e30 + (-1e30)*1e30 is inf - inf = NaN: such an item used to vanish."""
    x = np.array([[1e30, -1e30]] + [[1.0, 0.0]] * 40, np.float32)
    with pytest.raises(ValueError, match="L2 norm"):
        cls(x, **kwargs)
    ok = np.ones((40, 2), np.float32)
    index = cls(ok, **kwargs)
    with pytest.raises(ValueError, match="L2 norm"):
        index.add(x[:1])
    with pytest.raises(ValueError, match="L2 norm"):
        index.search(np.array([1e30, 1e30], np.float32), k=1)


def test_largest_supported_norms_give_finite_exact_scores(rng, simd_level):
    x = rng.standard_normal((200, 32))
    x *= (2.0**63 * 0.999) / np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float32)
    ids, scores = ExactIndex(x).search(x[:20], k=200)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    x64 = x.astype(np.float64)
    expected = np.take_along_axis(x64[:20] @ x64.T, ids, axis=1)
    bound = 32 * EPS32 * np.linalg.norm(x64[:20], axis=1)[:, None] * np.linalg.norm(x64, axis=1).max()
    assert (np.abs(scores - expected) <= bound).all()


# ---------------------------------------------------------------- exclusions
def test_exclusions_in_any_order(rng, simd_level):
    items = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    rows = [rng.choice(300, size, replace=False) for size in (50, 0, 120)]
    rows[0] = np.concatenate([rows[0], rows[0][:5]])  # duplicates too
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    ids = np.concatenate(rows).astype(np.int64)
    got, _ = _core.search_exact(items, queries, 300, exclude_indptr=indptr, exclude_ids=ids)
    scores64 = queries.astype(np.float64) @ items.T.astype(np.float64)
    for q, row in enumerate(rows):
        kept = got[q][got[q] >= 0]
        assert not set(kept.tolist()) & set(row.tolist())
        assert len(kept) == 300 - len(set(row.tolist()))
        np.testing.assert_array_equal(np.sort(kept), np.setdiff1d(np.arange(300), row))
        assert (np.diff(scores64[q, kept]) <= 16 * 16 * EPS32 * np.abs(scores64[q]).max()).all()
    index = QuantizedIndex(items, codec="sq8", random_state=0)
    state = index._state
    got_q, _ = search_quantized("sq8", state.n, 16, state.codes, index._mid, index._step, items,
                                      queries, 300, indptr, ids, None, None, 4, 1, None, None, None, None, 1,
                                      None, state.item_scales, state.item_bases, index._bases)
    for q, row in enumerate(rows):
        assert not set(got_q[q].tolist()) & set(row.tolist())
