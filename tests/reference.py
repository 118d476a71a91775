"""Independent float64 numpy references for top-k search."""

from __future__ import annotations

import numpy as np


def reference_scores(items, queries, metric="ip"):
    """float64 scores (nq, n); cosine normalises both sides, zero vectors score 0."""
    x = np.asarray(items, dtype=np.float64)
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    if metric == "cosine":
        x = x / np.where(np.linalg.norm(x, axis=1, keepdims=True) == 0, 1, np.linalg.norm(x, axis=1, keepdims=True))
        q = q / np.where(np.linalg.norm(q, axis=1, keepdims=True) == 0, 1, np.linalg.norm(q, axis=1, keepdims=True))
    return q @ x.T


def reference_topk(scores, k, qualifies=None):
    """Top-k ids per row by score descending, ties by smaller id; -1 where none qualify."""
    nq, n = scores.shape
    ids = np.full((nq, k), -1, dtype=np.int64)
    for r in range(nq):
        candidates = np.arange(n) if qualifies is None else np.flatnonzero(qualifies[r])
        order = np.lexsort((candidates, -scores[r, candidates]))[:k]
        ids[r, :len(order)] = candidates[order]
    return ids


def assert_topk_matches(ids, scores, ref_scores, k, qualifies=None, *, tol):
    """Check a search result against the float64 reference.

    ``tol``: the absolute rounding bound of each score, an array (nq, n) like
    ``ref_scores`` or a scalar — e.g. tolerances.score_tolerance(items, queries, metric).
    Scores must equal the reference within their bound; ids must be the reference's,
    except that two items whose reference scores lie within the sum of their bounds may
    swap; padding must be exactly where fewer than k qualify.
    """
    ids = np.atleast_2d(ids)
    scores = np.atleast_2d(scores)
    ref_scores = np.atleast_2d(ref_scores)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), ref_scores.shape)
    expected = reference_topk(ref_scores, k, qualifies)
    assert ids.shape == scores.shape == expected.shape
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    for r in range(ids.shape[0]):
        n_valid = int((expected[r] >= 0).sum())
        assert np.all(ids[r, n_valid:] == -1) and np.all(np.isneginf(scores[r, n_valid:]))
        got = ids[r, :n_valid]
        assert np.all(got >= 0) and len(np.unique(got)) == n_valid
        if qualifies is not None:
            assert qualifies[r, got].all(), "a filtered-out item was returned"
        error = np.abs(scores[r, :n_valid] - ref_scores[r, got])
        assert np.all(error <= tol[r, got]), (
            f"row {r}: a score is off by {error.max():.3g}, "
            f"{(error / np.maximum(tol[r, got], 1e-300)).max():.3g} × its bound")
        # The i-th computed score and the i-th reference score are within the largest
        # bound in the row (order statistics move no more than the values do), and an id
        # differs from the reference's only where the two reference scores tie within it.
        want = ref_scores[r, expected[r, :n_valid]]
        row_bound = tol[r].max() if n_valid else 0.0
        assert np.all(np.abs(ref_scores[r, got] - want) <= tol[r, got] + row_bound), \
            f"row {r}: wrong ids"
        assert np.all(np.diff(scores[r, :n_valid]) <= 0), "scores not sorted descending"
