"""Batch invariance of the inverted-list ranking, at every SIMD level: a query's scores
against packed items (``search_exact(batch_invariant=True)``, the scoring that assigns
items to lists and ranks a query's lists), its probed lists and its results are bit for
bit the same alone and inside batches of any size, at any position, on any thread count.
Checked against float64 references where the values themselves matter."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec import QuantizedIndex, _core
from reference import assert_topk_matches, reference_scores
from tolerances import score_tolerance

# Sizes around the kernels' tiles (1, 2, a few, 6 or 8 query rows; groups of 16 items).
BATCH_SIZES = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 33, 64]


def windows(q, nq, sizes=BATCH_SIZES):
    """(start, size) of batches that hold query q first, last and in the middle."""
    for size in sizes:
        if size > nq:
            continue
        for start in {max(0, q - size + 1), min(max(0, q - size // 2), nq - size), min(q, nq - size)}:
            if start <= q < start + size:
                yield start, size


def assert_same_as_alone(search, queries, alone_ids, alone_scores, step=7):
    for q in range(0, len(queries), step):
        for start, size in windows(q, len(queries)):
            ids, scores = search(queries[start:start + size])
            np.testing.assert_array_equal(ids[q - start], alone_ids[q], err_msg=f"query {q} in [{start}, +{size})")
            np.testing.assert_array_equal(scores[q - start], alone_scores[q],  # bit for bit
                                          err_msg=f"query {q} in [{start}, +{size})")


@pytest.mark.parametrize("n, d", [(300, 37), (16, 8), (5, 1), (70, 128)])
@pytest.mark.parametrize("threads", [1, 2])
def test_packed_search_does_not_depend_on_the_batch(rng, simd_level, n, d, threads):
    items = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((70, d)).astype(np.float32)
    k = n  # every score is compared

    def search(batch):
        return _core.search_exact(items, batch, k, batch_invariant=True, num_threads=threads)

    alone = [search(queries[q:q + 1]) for q in range(len(queries))]
    alone_ids = np.vstack([a[0] for a in alone])
    alone_scores = np.vstack([a[1] for a in alone])
    assert_topk_matches(alone_ids, alone_scores, reference_scores(items, queries), k,
                        tol=score_tolerance(items, queries))
    assert_same_as_alone(search, queries, alone_ids, alone_scores)


def test_packed_search_applies_every_filter(rng, simd_level):
    """The packed scan reads whole groups of 16 items, so filters are applied per hit: a
    sparse allow-list, exclusions and removed rows, against the float64 reference."""
    n, d, nq, k = 333, 20, 12, 9
    items = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((nq, d)).astype(np.float32)
    allow = np.sort(rng.choice(n, 30, replace=False)).astype(np.int64)  # sparse: < n / 8
    deleted = (rng.random(n) < 0.2).astype(np.uint8)
    excluded = [np.sort(rng.choice(allow, 4, replace=False)) for _ in range(nq)]
    indptr = np.concatenate([[0], np.cumsum([len(e) for e in excluded])]).astype(np.int64)
    qualifies = np.zeros((nq, n), bool)
    qualifies[:, allow] = True
    qualifies[:, deleted > 0] = False
    for q, e in enumerate(excluded):
        qualifies[q, e] = False
    ids, scores = _core.search_exact(items, queries, k, exclude_indptr=indptr,
                                     exclude_ids=np.concatenate(excluded).astype(np.int64),
                                     allow_ids=allow, deleted_mask=deleted, batch_invariant=True)
    assert_topk_matches(ids, scores, reference_scores(items, queries), k, qualifies,
                        tol=score_tolerance(items, queries))


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
def test_ivf_probes_and_results_do_not_depend_on_the_batch(rng, simd_level, codec):
    """The lists a query probes are the top `probes` of the assignment's own scoring
    (search_exact with batch_invariant over the centroids), and its results are the same
    alone and in every batch."""
    n, d, partitions = 1500, 24, 40
    x = rng.standard_normal((n, d)).astype(np.float32)
    index = QuantizedIndex(x, codec=codec, partitions=partitions, random_state=0)
    queries = np.vstack([x[:30], rng.standard_normal((40, d))]).astype(np.float32)
    lists = index._state.lists
    centroids = index._centroids
    non_empty = (lists.sizes > 0).astype(np.uint8)
    for threads in (1, 2):
        index._num_threads = threads
        for probes in (1, 3):
            def search(batch, probes=probes):
                return index.search(batch, k=n, probes=probes, rerank=0)

            alone = [search(queries[q]) for q in range(len(queries))]
            alone_ids = np.vstack([a[0] for a in alone])
            alone_scores = np.vstack([a[1] for a in alone])
            # k = n: the results name every item of the probed lists, hence the lists.
            ranked, _ = _core.search_exact(centroids, queries, probes, allow_mask=non_empty,
                                           batch_invariant=True, num_threads=threads)
            for q in range(len(queries)):
                found = alone_ids[q][alone_ids[q] >= 0]
                assert set(lists.assignment[found]) == set(ranked[q]), (threads, probes, q)
            assert_same_as_alone(search, queries, alone_ids, alone_scores, step=9)
