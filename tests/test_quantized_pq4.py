"""QuantizedIndex codec="pq4": codebooks, codes and lookup tables against numpy, every
SIMD kernel against a numpy model of the uint8 table sums, recall with re-ranking,
filters, partitions, add, files and bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from llmrec import QuantizedIndex, _core
from reference import assert_topk_matches, reference_scores, reference_topk
from test_quantized import _qualifies, clustered, recall
from tolerances import assert_within, dot_tolerance, gamma, score_tolerance


def codes_of(index):
    """(n, m) centroid indices of every item, recovered from the decoded rows."""
    rows = index.reconstruct(np.arange(len(index)))
    m, dsub = index.pq_subspaces, index.dim // index.pq_subspaces
    sub = rows.reshape(len(index), m, 1, dsub)
    match = np.all(sub == index._codebooks[None], axis=3)  # (n, m, 16)
    assert np.all(match.any(axis=2)), "a decoded sub-vector is not a centroid"
    return match.argmax(axis=2)


def numpy_tables(queries, codebooks):
    """The float tables, per-subspace minima and the one uint8 scale, as documented."""
    m, _, dsub = codebooks.shape
    q = queries.reshape(len(queries), m, dsub).astype(np.float64)
    table = np.einsum("qsd,scd->qsc", q, codebooks.astype(np.float64))
    low = table.min(axis=2, keepdims=True)
    widest = (table - low).max(axis=(1, 2))
    scale = np.where(widest > 0, 255.0 / widest, 1.0)
    return table, low, scale


def pq4_sums(index, queries):
    """Integer table sums (nq, n) and the per-query bias and 1 / scale."""
    luts, bias, inverse = _core.pq4_tables(np.ascontiguousarray(queries, np.float32), index._codebooks)
    codes = codes_of(index)
    m = index.pq_subspaces
    return luts[:, np.arange(m)[None, :], codes].astype(np.int64).sum(axis=2), bias, inverse


def pq4_model(index, queries):
    """Scores (nq, n) the kernels must reproduce: bias + (sum of uint8 table entries) / a."""
    acc, bias, inverse = pq4_sums(index, queries)
    return bias[:, None].astype(np.float64) + acc * inverse[:, None].astype(np.float64)


def pq4_tolerance(index, queries):
    """The model's float32 rounding: the integer sum converts exactly (≤ 255·m < 2²⁴), then
    one product and one sum (or one fma): γ_2 (|bias| + acc/a) per score."""
    acc, bias, inverse = pq4_sums(index, queries)
    return gamma(2) * (np.abs(bias[:, None].astype(np.float64)) + acc * inverse[:, None].astype(np.float64))


def test_tables_match_numpy(rng, simd_level):
    items = rng.standard_normal((500, 24)).astype(np.float32)
    queries = rng.standard_normal((9, 24)).astype(np.float32)
    for m in (3, 4, 12, 24):  # odd m gets a zero padding table
        index = QuantizedIndex(items, codec="pq4", pq_subspaces=m, keep_vectors=False, random_state=0)
        luts, bias, inverse = _core.pq4_tables(queries, index._codebooks)
        assert luts.shape == (9, m + m % 2, 16) and luts.dtype == np.uint8
        table, low, scale = numpy_tables(queries, index._codebooks)
        expected = np.clip(np.rint((table - low) * scale[:, None, None]), 0, 255)
        # float32 tables move an entry by far less than one byte step, which can flip a
        # rounding to the next integer and no further
        assert np.abs(luts[:, :m].astype(int) - expected).max() <= 1
        assert np.all(luts[:, m:] == 0)
        assert luts[:, :m].max() == 255  # the widest table spans the whole byte
        # table entries are float32 dots of dsub terms (γ_dsub); the bias sums the m minima
        # (γ_m more); the inverse scale divides a float32 difference of two entries
        dsub = queries.shape[1] // m
        q = np.abs(queries.reshape(9, m, dsub).astype(np.float64))
        magnitude = np.einsum("qsd,scd->qsc", q, np.abs(index._codebooks.astype(np.float64)))
        assert_within(bias, low.sum(axis=(1, 2)),
                      gamma(dsub + m) * magnitude.max(axis=2).sum(axis=1), f"m={m}")
        widest = 255.0 / scale
        assert_within(inverse, 1 / scale,
                      (2 * gamma(dsub) * magnitude.max(axis=(1, 2)) + gamma(3) * widest) / 255, f"m={m}")


def test_tables_are_the_same_bytes_at_every_level(rng):
    # The AVX-512 tables round every product and sum as the scalar code does; values on
    # exact halves check the ties-to-even rounding of the bytes.
    tables = {}
    previous = _core.active_simd_level()
    try:
        for level in _core.supported_simd_levels():
            _core.set_simd_level(level)
            for trial, (m, dsub) in enumerate([(4, 1), (7, 2), (16, 3), (64, 2), (5, 8)]):
                codebooks = rng.standard_normal((m, 16, dsub)).astype(np.float32) if level == "scalar" \
                    else tables[("scalar", trial)][0]
                queries = rng.standard_normal((6, m * dsub)).astype(np.float32) if level == "scalar" \
                    else tables[("scalar", trial)][1]
                if trial % 2 == 0 and level == "scalar":
                    codebooks, queries = np.round(codebooks * 4) / 4, np.round(queries * 2) / 2
                tables[(level, trial)] = (codebooks, queries, _core.pq4_tables(queries, codebooks))
    finally:
        _core.set_simd_level(previous)
    for (level, trial), (_, _, got) in tables.items():
        for a, b in zip(got, tables[("scalar", trial)][2]):
            np.testing.assert_array_equal(a, b, err_msg=f"{level} {trial}")


def test_codes_are_the_nearest_centroids(rng):
    items = rng.standard_normal((777, 16)).astype(np.float32)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=8, keep_vectors=False, random_state=1)
    assert index._codebooks.shape == (8, 16, 2)
    codes = codes_of(index)
    sub = items.reshape(777, 8, 1, 2)
    dist = ((sub - index._codebooks[None]) ** 2).sum(axis=3)
    chosen = np.take_along_axis(dist, codes[:, :, None], axis=2)[:, :, 0]
    # squared distances of 2 terms computed in float32: each within γ_4 Σ(|x| + |c|)²
    reach = ((np.abs(sub) + np.abs(index._codebooks[None])) ** 2).sum(axis=3)
    assert np.all(chosen <= dist.min(axis=2) + 2 * gamma(4) * reach.max(axis=2))
    # k-means codebooks beat a random choice of centroids by far.
    err = ((index.reconstruct(np.arange(777)) - items) ** 2).sum(1).mean()
    assert err < 0.5 * (items ** 2).sum(1).mean()


@pytest.mark.parametrize("n,d,m,nq,k", [
    (16, 4, 1, 1, 3), (33, 6, 3, 2, 5), (100, 8, 4, 5, 10), (1000, 30, 5, 3, 10),
    (4097, 64, 32, 9, 10), (40_000, 32, 16, 3, 5),
    (6000, 32, 16, 5, 64),  # large k: hits buffered before the heap
    (3000, 16, 8, 7, 10), (2000, 24, 12, 6, 33),  # query groups of 4, 2 and 1 per code pass
    (5000, 64, 32, 11, 200),  # thresholds rise during a group's pass: integer floors refreshed
])
def test_every_kernel_matches_the_table_model(rng, n, d, m, nq, k):
    items, queries = clustered(rng, n, d, nq, clusters=7)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=m, keep_vectors=False, random_state=0)
    model = pq4_model(index, queries)
    results = {}
    previous = _core.active_simd_level()
    try:
        for level in _core.supported_simd_levels():
            _core.set_simd_level(level)
            ids, scores = index.search(queries, k=k, rerank=0)
            assert_topk_matches(ids, scores, model, k, tol=pq4_tolerance(index, queries))
            results[_core.pq4_kernel()] = (ids, scores)
    finally:
        _core.set_simd_level(previous)
    # Exact by contract: every kernel sums the same uint8 tables (the same bytes at every
    # level) in integers, then applies the same float32 bias + acc / a.
    ids0, scores0 = results["scalar"]
    for name, (ids, scores) in results.items():
        np.testing.assert_array_equal(scores, scores0, err_msg=name)
        np.testing.assert_array_equal(ids, ids0, err_msg=name)


def test_recall_floor_with_rerank():
    items, queries = clustered(np.random.default_rng(11), 20_000, 64, 100)
    expected = reference_topk(reference_scores(items, queries), 10)
    index = QuantizedIndex(items, codec="pq4", random_state=0)
    assert index.pq_subspaces == 32
    plain = recall(index.search(queries, k=10, rerank=0)[0], expected)
    reranked_ids, reranked_scores = index.search(queries, k=10, rerank=30)
    assert plain >= 0.25
    assert recall(reranked_ids, expected) >= 0.95
    rows = np.arange(len(queries))[:, None]
    exact = reference_scores(items, queries)
    assert_within(reranked_scores, exact[rows, reranked_ids],
                  score_tolerance(items, queries)[rows, reranked_ids])


@pytest.mark.parametrize("partitions", [None, 8])
@pytest.mark.parametrize("allow_kind", ["none", "mask", "sparse_ids"])
def test_filters_never_leak(rng, partitions, allow_kind):
    n, d, nq, k = 3000, 16, 6, 12
    items, queries = clustered(rng, n, d, nq)
    exclude = [rng.choice(n, rng.integers(0, 300), replace=False) for _ in range(nq)]
    top = reference_topk(reference_scores(items, queries), 5)
    exclude = [np.union1d(e, t) for e, t in zip(exclude, top)]
    allow = {"none": None, "mask": rng.random(n) < 0.5,
             "sparse_ids": rng.choice(n, 40, replace=False)}[allow_kind]
    allow_ids = np.flatnonzero(allow) if allow is not None and allow.dtype == bool else allow
    ok = _qualifies(nq, n, exclude, allow_ids)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=8, partitions=partitions, random_state=0)
    previous = _core.active_simd_level()
    try:
        for level in _core.supported_simd_levels():
            _core.set_simd_level(level)
            for rerank in (0, 3):
                kwargs = {"probes": 8} if partitions else {}
                ids, scores = index.search(queries, k=k, exclude=exclude, allow=allow, rerank=rerank, **kwargs)
                for q in range(nq):
                    got = ids[q][ids[q] >= 0]
                    assert ok[q, got].all(), f"{level}: a filtered item leaked"
                    assert len(got) == min(k, ok[q].sum())
                if rerank and allow_kind == "sparse_ids":
                    assert_topk_matches(ids, scores, reference_scores(items, queries), k, qualifies=ok,
                                        tol=score_tolerance(items, queries))
    finally:
        _core.set_simd_level(previous)


def test_partitions_with_every_probe_equal_the_flat_scan(rng):
    items, queries = clustered(rng, 5000, 32, 8)
    flat = QuantizedIndex(items, codec="pq4", keep_vectors=False, random_state=3)
    ivf = QuantizedIndex(items, codec="pq4", partitions=6, keep_vectors=False, random_state=3)
    np.testing.assert_array_equal(flat._codebooks, ivf._codebooks)
    model = pq4_model(flat, queries)
    ids, scores = ivf.search(queries, k=10, probes=6, rerank=0)
    assert_topk_matches(ids, scores, model, 10, tol=pq4_tolerance(flat, queries))


def test_add_save_load_round_trip(tmp_path, rng):
    items, queries = clustered(rng, 1000, 16, 5)
    for partitions in (None, 4):
        index = QuantizedIndex(items[:700], codec="pq4", pq_subspaces=4, partitions=partitions, random_state=0)
        assert list(index.add(items[700:])) == list(range(700, 1000))
        whole = QuantizedIndex(items[:700], codec="pq4", pq_subspaces=4, partitions=partitions, random_state=0)
        np.testing.assert_array_equal(index.reconstruct(np.arange(700)), whole.reconstruct(np.arange(700)))
        kwargs = {"probes": 4} if partitions else {}
        expected = index.search(queries, k=10, rerank=0, **kwargs)
        path = tmp_path / f"pq4-{partitions}.llmrec"
        index.save(path)
        for mmap in (False, True):
            loaded = QuantizedIndex.load(path, mmap=mmap)
            assert loaded.codec == "pq4" and loaded.pq_subspaces == 4 and len(loaded) == 1000
            got = loaded.search(queries, k=10, rerank=0, **kwargs)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
            np.testing.assert_array_equal(loaded.reconstruct(np.arange(1000)), index.reconstruct(np.arange(1000)))
        assert index.memory_bytes() >= 1000 * 2 + index._codebooks.nbytes
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.llmrec"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        QuantizedIndex.load(bad)


def test_concurrent_search_equals_serial(rng):
    items, queries = clustered(rng, 3000, 32, 40)
    index = QuantizedIndex(items, codec="pq4", random_state=0, num_threads=2)
    serial = [index.search(q, k=5) for q in queries]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda q: index.search(q, k=5), queries))
    for (a, b), (c, e) in zip(serial, parallel):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, e)


def test_bad_input(rng):
    items = rng.standard_normal((100, 12)).astype(np.float32)
    with pytest.raises(ValueError, match="divide the dimension 12"):
        QuantizedIndex(items, codec="pq4", pq_subspaces=5)
    with pytest.raises(ValueError, match="applies only to codec='pq4'"):
        QuantizedIndex(items, codec="sq8", pq_subspaces=4)
    with pytest.raises(ValueError, match="at least 16 training vectors"):
        QuantizedIndex(items[:10], codec="pq4", pq_subspaces=4)
    with pytest.raises(ValueError, match="at least 16 training vectors"):
        QuantizedIndex(items, codec="pq4", pq_subspaces=4, train_size=8)
    with pytest.raises(ValueError, match="at most 256"):
        QuantizedIndex(rng.standard_normal((20, 512)).astype(np.float32), codec="pq4", pq_subspaces=512)
    with pytest.raises(TypeError):
        QuantizedIndex(items, codec="pq4", pq_subspaces=2.5)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=6)
    assert index.pq_subspaces == 6
    with pytest.raises(ValueError):
        index.search(rng.standard_normal((2, 11)), k=3)
    with pytest.raises(ValueError):
        index.search(np.full((1, 12), np.nan), k=3)
    with pytest.raises(ValueError):
        index.add(rng.standard_normal((3, 13)))
    # The default subspace count: d / 2, else the largest divisor up to 256.
    assert QuantizedIndex(items, codec="pq4").pq_subspaces == 6
    assert QuantizedIndex(rng.standard_normal((30, 7)).astype(np.float32), codec="pq4").pq_subspaces == 7


def test_kernels_agree_when_the_bias_dwarfs_the_table_range(rng):
    # Scores far from zero relative to the tables' spread: the kernels' integer floors
    # (the smallest sum whose float score passes) must stay exact.
    items, queries = clustered(rng, 3000, 16, 9, clusters=5)
    items = items * 0.01 + 300.0
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=8, keep_vectors=False, random_state=0)
    model = pq4_model(index, queries)
    results = []
    previous = _core.active_simd_level()
    try:
        for level in _core.supported_simd_levels():
            _core.set_simd_level(level)
            for k in (5, 40):
                ids, scores = index.search(queries, k=k, rerank=0)
                assert_topk_matches(ids, scores, model, k, tol=pq4_tolerance(index, queries))
                results.append((level, k, ids, scores))
    finally:
        _core.set_simd_level(previous)
    for level, k, ids, scores in results:  # exact: integer sums, one float32 formula
        ref = next(r for r in results if r[0] == "scalar" and r[1] == k)
        np.testing.assert_array_equal(ids, ref[2], err_msg=level)
        np.testing.assert_array_equal(scores, ref[3], err_msg=level)


def exact_order(acc, k, qualifies=None):
    """The contract's top-k ids: codec score (monotone in the integer sum) descending,
    smaller id first among equal sums; -1 where fewer than k items qualify."""
    nq, n = acc.shape
    out = np.full((nq, k), -1, np.int64)
    for q in range(nq):
        keep = np.arange(n) if qualifies is None else np.flatnonzero(qualifies[q])
        order = keep[np.lexsort((keep, -acc[q, keep]))][:k]
        out[q, :len(order)] = order
    return out


@pytest.mark.parametrize("n,nq,k,threads", [
    (20_000, 9, 300, 1),    # many reservoir compactions per query
    (20_000, 5, 32, 1),     # the smallest buffered k
    (5_000, 6, 1_000, 1),   # reservoir of 2,000 over 5,000 items
    (1_500, 4, 1_000, 1),   # n <= 2k: straight to the heap
    (40_000, 3, 400, 2),    # few queries: item ranges split, reservoirs merged by the driver
    (30_000, 16, 256, 2),   # many queries: query blocks on two threads
])
def test_reservoir_large_k_is_the_exact_codec_order(rng, simd_level, n, nq, k, threads):
    items, queries = clustered(rng, n, 32, nq, clusters=40)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=16, keep_vectors=False, random_state=0,
                           num_threads=threads)
    acc, _, _ = pq4_sums(index, queries)
    ids, scores = index.search(queries, k=k, rerank=0)
    np.testing.assert_array_equal(ids, exact_order(acc, k))
    assert_topk_matches(ids, scores, pq4_model(index, queries), k, tol=pq4_tolerance(index, queries))


def test_reservoir_ties_keep_the_smaller_ids(rng, simd_level):
    # 60 distinct rows repeated 300 times: each codec score is shared by 300 items, so
    # every compaction cuts through a run of equal scores.
    base = rng.standard_normal((60, 16)).astype(np.float32)
    items = base[rng.integers(0, 60, 18_000)]
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=8, keep_vectors=False, random_state=0)
    acc, _, _ = pq4_sums(index, queries)
    for k in (50, 450, 2_000):
        ids, scores = index.search(queries, k=k, rerank=0)
        np.testing.assert_array_equal(ids, exact_order(acc, k), err_msg=f"k={k}")
        for row_ids, row_scores in zip(ids, scores):
            same = np.diff(row_scores) == 0
            assert np.all(np.diff(row_ids)[same] > 0), "equal scores must list smaller ids first"


@pytest.mark.parametrize("allow_kind", ["none", "mask", "sparse_ids"])
def test_large_k_with_filters_is_the_exact_codec_order(rng, simd_level, allow_kind):
    n, nq, k = 12_000, 5, 200
    items, queries = clustered(rng, n, 32, nq, clusters=30)
    exclude = [rng.choice(n, rng.integers(0, 3_000), replace=False) for _ in range(nq)]
    allow = {"none": None, "mask": rng.random(n) < 0.6, "sparse_ids": rng.choice(n, 900, replace=False)}[allow_kind]
    allow_ids = np.flatnonzero(allow) if allow is not None and allow.dtype == bool else allow
    ok = _qualifies(nq, n, exclude, allow_ids)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=16, keep_vectors=False, random_state=0)
    acc, _, _ = pq4_sums(index, queries)
    ids, scores = index.search(queries, k=k, exclude=exclude, allow=allow, rerank=0)
    np.testing.assert_array_equal(ids, exact_order(acc, k, ok))
    assert_topk_matches(ids, scores, pq4_model(index, queries), k, qualifies=ok,
                        tol=pq4_tolerance(index, queries))
    # Without exclusions the reservoir path runs; it must agree with the filtered form.
    if allow_kind == "none":
        ids, _ = index.search(queries, k=k, rerank=0)
        np.testing.assert_array_equal(ids, exact_order(acc, k))


def test_rerank_with_a_long_shortlist_matches_numpy(rng, simd_level):
    items, queries = clustered(rng, 20_000, 32, 12, clusters=40)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=16, random_state=0)
    k, factor = 10, 32
    acc, _, _ = pq4_sums(index, queries)
    shortlist = exact_order(acc, k * factor)
    exact = queries.astype(np.float64) @ items.astype(np.float64).T
    bound = score_tolerance(items, queries)
    ids, scores = index.search(queries, k=k, rerank=factor)
    for q in range(len(queries)):
        cand = shortlist[q]
        order = cand[np.lexsort((cand, -exact[q, cand]))][:k]
        # Exact float32 re-scores may order near-ties differently from float64.
        assert set(ids[q]) <= set(cand)
        assert_rescored(scores[q], ids[q], exact[q], order, bound[q], cand)


def assert_rescored(scores, ids, exact, order, bound, candidates):
    """One query's re-scored top-k against the float64 top-k of its candidates: the i-th
    float32 score is within the candidates' largest bound of the i-th exact score (order
    statistics move no more than the values), and each returned id's exact score is within
    its own bound plus that of the i-th exact one."""
    largest = bound[candidates].max()
    assert_within(scores, exact[order], largest)
    assert_within(exact[ids], exact[order], bound[ids] + largest)


def float_contract_order(acc, bias, inverse, k):
    """Top-k ids and float32 scores under the float contract: score = float32(bias + acc / a)
    (an exact float64 product and sum, then one rounding: what the kernels' fma gives
    except in a case of probability ~2^-29), descending, smaller id first among equal
    floats, even where different integer sums round to the same float."""
    scores = (acc.astype(np.float64) * inverse[:, None].astype(np.float64)
              + bias[:, None].astype(np.float64)).astype(np.float32)
    n = acc.shape[1]
    ids = np.stack([np.lexsort((np.arange(n), -row))[:k] for row in scores])
    return ids, np.take_along_axis(scores, ids, axis=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_sums_that_round_to_one_float_tie_by_id(rng, simd_level, threads):
    # A bias far above the tables' spread: neighbouring integer sums share a float score,
    # so the kernels' integer floors and the reservoir's integer cut must decide ties on
    # the float scores (smaller id first), not on the sums.
    items, queries = clustered(rng, 6000, 16, 7, clusters=5)
    items, queries = items * 0.001 + 300.0, queries + 3.0
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=8, keep_vectors=False, random_state=0,
                           num_threads=threads)
    acc, bias, inverse = pq4_sums(index, queries)
    for k in (5, 40, 300):  # the heap path, and the reservoir path (k >= 32)
        want_ids, want_scores = float_contract_order(acc, bias, inverse, k)
        top = np.take_along_axis(acc, want_ids, axis=1)
        scores = np.take_along_axis(
            (acc.astype(np.float64) * inverse[:, None] + bias[:, None]).astype(np.float32), want_ids, axis=1)
        assert k < 40 or np.any((np.diff(scores, axis=1) == 0) & (np.diff(top, axis=1) != 0)), \
            "the data must have different sums with one float score"
        ids, got = index.search(queries, k=k, rerank=0)
        np.testing.assert_array_equal(ids, want_ids, err_msg=f"k={k}")
        np.testing.assert_array_equal(got, want_scores, err_msg=f"k={k}")


def probed_items(index, queries, probes):
    """Per query, the items of its `probes` best lists (float64 q . c), or None where the
    probes-th and next centroid scores are too close for float32 to be sure of the order
    (closer than the sum of their dot products' rounding bounds)."""
    lists = index._state.lists
    cscores = queries.astype(np.float64) @ index._centroids.astype(np.float64).T
    cbounds = dot_tolerance(queries, index._centroids.T)
    out = []
    for row, rbound in zip(cscores, cbounds):
        order = np.argsort(-row, kind="stable")
        if probes < len(row) and (row[order[probes - 1]] - row[order[probes]]
                                  <= rbound[order[probes - 1]] + rbound[order[probes]]):
            out.append(None)
            continue
        slots = [np.arange(lists.starts[p], lists.starts[p] + lists.sizes[p]) for p in order[:probes]]
        out.append(np.sort(lists.slot_ids[np.concatenate(slots)]))
    return out


def contract_rows(acc, bias, inverse, candidates, k):
    """Top-k ids and float32 scores of each query among its candidate ids, under the float
    contract (score descending, smaller id first among equal floats), padded with -1 / -inf."""
    scores = (acc.astype(np.float64) * inverse[:, None].astype(np.float64)
              + bias[:, None].astype(np.float64)).astype(np.float32)
    ids = np.full((len(acc), k), -1, np.int64)
    out = np.full((len(acc), k), -np.inf, np.float32)
    for q, cand in enumerate(candidates):
        order = cand[np.lexsort((cand, -scores[q, cand]))][:k]
        ids[q, :len(order)], out[q, :len(order)] = order, scores[q, order]
    return ids, out


@pytest.mark.parametrize("probes,k,threads", [
    (1, 10, 1), (3, 160, 1),   # the reservoir without cuts, and with a few
    (6, 700, 2),               # many cuts per query, queries on two threads
    (24, 40, 2),               # every list: the flat scan's result
    (2, 5_000, 1),             # k above the probed items: padded rows
])
def test_partitioned_reservoir_is_the_exact_codec_order(rng, simd_level, probes, k, threads):
    items, queries = clustered(rng, 8_000, 32, 13, clusters=30)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=16, partitions=24, keep_vectors=False,
                           random_state=0, num_threads=threads)
    acc, bias, inverse = pq4_sums(index, queries)
    candidates = probed_items(index, queries, probes)
    sure = [q for q, c in enumerate(candidates) if c is not None]
    assert len(sure) >= 8
    want_ids, want_scores = contract_rows(acc[sure], bias[sure], inverse[sure], [candidates[q] for q in sure], k)
    ids, scores = index.search(queries, k=k, probes=probes, rerank=0)
    np.testing.assert_array_equal(ids[sure], want_ids)
    np.testing.assert_array_equal(scores[sure], want_scores)
    # The filtered form (the heap path) with a filter that removes nothing: the same scores
    # (it may keep a larger id among equal scores at the cut, arriving from a later list).
    heap_ids, heap_scores = index.search(queries, k=k, probes=probes, rerank=0, allow=np.ones(len(items), bool))
    np.testing.assert_array_equal(heap_scores, scores)
    assert np.mean(heap_ids == ids) > 0.99


def test_partitioned_reservoir_ties_keep_the_smaller_ids(rng, simd_level):
    # 50 distinct rows repeated: runs of equal scores spread over several lists, arriving
    # out of id order, cut by the reservoir: the kept ones must be the smallest ids.
    base = rng.standard_normal((50, 16)).astype(np.float32)
    items = base[rng.integers(0, 50, 12_000)] + rng.standard_normal((12_000, 16)).astype(np.float32) * 1e-4
    queries = rng.standard_normal((6, 16)).astype(np.float32)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=8, partitions=12, keep_vectors=False, random_state=0)
    acc, bias, inverse = pq4_sums(index, queries)
    everything = [np.arange(len(items))] * len(queries)
    for k in (30, 450, 2_000):
        want_ids, want_scores = contract_rows(acc, bias, inverse, everything, k)
        ids, scores = index.search(queries, k=k, probes=12, rerank=0)
        np.testing.assert_array_equal(ids, want_ids, err_msg=f"k={k}")
        np.testing.assert_array_equal(scores, want_scores, err_msg=f"k={k}")


def test_partitioned_rerank_rescores_the_codec_shortlist(rng, simd_level):
    items, queries = clustered(rng, 8_000, 32, 10, clusters=30)
    index = QuantizedIndex(items, codec="pq4", pq_subspaces=16, partitions=16, random_state=0)
    k, factor, probes = 10, 16, 4
    acc, bias, inverse = pq4_sums(index, queries)
    candidates = probed_items(index, queries, probes)
    shortlist, _ = contract_rows(acc, bias, inverse, [c if c is not None else np.arange(0) for c in candidates],
                                 k * factor)
    exact = queries.astype(np.float64) @ items.astype(np.float64).T
    bound = score_tolerance(items, queries)
    ids, scores = index.search(queries, k=k, probes=probes, rerank=factor)
    for q in range(len(queries)):
        if candidates[q] is None:
            continue
        cand = shortlist[q][shortlist[q] >= 0]
        order = cand[np.lexsort((cand, -exact[q, cand]))][:k]
        assert set(ids[q]) <= set(cand)
        assert_rescored(scores[q], ids[q], exact[q], order, bound[q], cand)
