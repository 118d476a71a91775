"""QuantizedIndex (fp16, sq8): codec round trips, every SIMD kernel against a numpy model
of the integer arithmetic, recall floors, filters, threads, add, files and bad input."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

import llmrec
from llmrec import ExactIndex, QuantizedIndex, _core
from llmrec._fileformat import FormatError
from quantized_view import search_quantized
from reference import assert_topk_matches, reference_scores, reference_topk
from tolerances import assert_within, gamma, score_tolerance


def clustered(rng, n, d, nq, clusters=50):
    """Anisotropic clusters: a structured set on which quantization error matters."""
    centres = rng.standard_normal((clusters, d)).astype(np.float32) * 2
    scales = rng.uniform(0.2, 1.5, size=(clusters, d)).astype(np.float32)
    members = rng.integers(0, clusters, n)
    items = centres[members] + rng.standard_normal((n, d)).astype(np.float32) * scales[members]
    asked = rng.integers(0, clusters, nq)
    queries = centres[asked] + rng.standard_normal((nq, d)).astype(np.float32) * scales[asked]
    return items.astype(np.float32), queries.astype(np.float32)


def recall(ids, expected):
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, (b >= 0).sum())
                          for a, b in zip(ids, expected)]))


def sq8_slot_codes(index):
    """The int8 codes s (slots, d) of an sq8 index, in slot order."""
    slots = index._state.codes.shape[0] * 16
    plain = _core.sq8_decode(index._state.codes, 0, slots, index._mid, index._step)  # mid + s * step
    return np.rint((plain - index._mid) / np.where(index._step > 0, index._step, 1)).astype(np.int64)


def sq8_model(index, queries, *, with_bound=False):
    """float64 scores (nq, n) that the sq8 kernels must reproduce: the query quantized to
    int8 exactly as the core does (float32 arithmetic, round half to even), times codes;
    residual codes add q . base (a coarse centroid, or the item's list centroid) and
    multiply the integer dot by the item's scale."""
    state = index._state
    n = state.n
    slot_of = np.arange(n)
    if state.lists is not None:
        used = np.flatnonzero(state.lists.slot_ids >= 0)
        slot_of = np.empty(n, np.int64)
        slot_of[state.lists.slot_ids[used]] = used
    s = sq8_slot_codes(index)[slot_of]
    q = np.atleast_2d(np.asarray(queries, np.float32))
    w = q * index._step
    largest = np.abs(w).max(axis=1, keepdims=True).astype(np.float32)
    safe = np.where(largest > 0, largest, np.float32(1))
    t = np.clip(np.rint(w * (np.float32(127) / safe)), -127, 127).astype(np.int64)
    t[(largest == 0).ravel()] = 0
    scale = np.where(largest > 0, largest / np.float32(127), 0).astype(np.float64)
    offset = q.astype(np.float64) @ index._mid.astype(np.float64)
    dots = (t @ s.T).astype(np.float64)
    q_abs = np.abs(q.astype(np.float64))
    d = q.shape[1]
    if state.item_scales is None:  # plain codes (version 1 files)
        model = scale * dots + offset[:, None]
        # the integer dot converts exactly (|dot| ≤ 127²·d < 2²⁴); q·mid is a float32 dot
        # (γ_d), then one product and one sum
        bound = gamma(d + 2) * (np.abs(scale * dots) + (q_abs @ np.abs(index._mid.astype(np.float64)))[:, None])
        return (model, bound) if with_bound else model
    item_scale = state.item_scales[slot_of].astype(np.float64)
    if state.lists is None:
        bases, base_of = index._bases, state.item_bases[:n]
    else:
        bases, base_of = index._centroids, state.lists.assignment
    base = q.astype(np.float64) @ bases.astype(np.float64).T
    model = scale * dots * item_scale[None, :] + offset[:, None] + base[:, base_of]
    # q·mid and q·base are float32 dots (γ_d); two products and two sums join them
    base_abs = q_abs @ np.abs(bases.astype(np.float64)).T
    bound = gamma(d + 4) * (np.abs(scale * dots * item_scale[None, :])
                            + (q_abs @ np.abs(index._mid.astype(np.float64)))[:, None]
                            + base_abs[:, base_of])
    return (model, bound) if with_bound else model


def all_sq8_kernels():
    """Yield each sq8 kernel this machine can run, by SIMD level and VNNI on/off."""
    previous = _core.active_simd_level()
    try:
        for level in _core.supported_simd_levels():
            _core.set_simd_level(level)
            for vnni in ([True, False] if level == "avx512" and _core.vnni_supported() else [True]):
                _core.set_vnni_enabled(vnni)
                yield _core.sq8_kernel()
    finally:
        _core.set_vnni_enabled(True)
        _core.set_simd_level(previous)


# ------------------------------------------------------------------- codecs

@pytest.mark.parametrize("partitions", [None, 8])
def test_sq8_decode_error_is_within_half_a_scaled_step(rng, partitions):
    items = rng.standard_normal((1000, 37)).astype(np.float32) * rng.uniform(0.1, 10, 37).astype(np.float32)
    index = QuantizedIndex(items, codec="sq8", partitions=partitions, random_state=1)
    decoded = index.reconstruct(np.arange(1000))
    state = index._state
    if partitions is None:
        a = state.item_scales[:1000]
        base = index._bases[state.item_bases[:1000]].astype(np.float64)
    else:
        slot_of = np.empty(1000, np.int64)
        used = np.flatnonzero(state.lists.slot_ids >= 0)
        slot_of[state.lists.slot_ids[used]] = used
        a = state.item_scales[slot_of]
        base = index._centroids[state.lists.assignment].astype(np.float64)
    # Each item's levels span its own residual: its largest |z| is an exact level.
    assert np.all(a > 0) and np.median(a) < 1
    mid, step = index._mid.astype(np.float64), index._step.astype(np.float64)
    z = (items - base - mid) / step  # float64 from the float32 inputs
    # the scale is max|z|/127 of float32 residuals: two differences and a quotient (γ_3
    # of the operands' size, which may cancel) before the max, the division by 127 after
    reach = (np.abs(items) + np.abs(base) + np.abs(mid)) / step
    assert_within(np.abs(z).max(1) / 127, a, gamma(3) * reach.max(1) / 127 + gamma(1) * a)
    # half a scaled step, plus the float32 rounding of mid + base + a·step·code (4 terms)
    bound = a[:, None] * index._step[None, :] / 2 * (1 + gamma(4)) + gamma(4) * (
        np.abs(items) + np.abs(base) + np.abs(index._mid) + a[:, None] * index._step[None, :] * 127)
    assert np.all(np.abs(decoded - items) <= bound)


def test_sq8_residual_codes_do_not_clamp_far_values(rng):
    items = rng.uniform(-1, 1, (200, 8)).astype(np.float32)
    index = QuantizedIndex(items, codec="sq8")
    far = np.full((1, 8), 50.0, np.float32)
    far[0, 3] = -20
    index.add(far)
    got = index.reconstruct([200])[0]
    assert index._state.item_scales[200] > 1  # wider than the trained range
    # within one scaled step (half a step of rounding, plus float32 roundings far below it)
    assert_within(got, far[0], float(index._state.item_scales[200] * index._step.max()))


def test_sq8_constant_dimension(rng):
    items = rng.standard_normal((100, 5)).astype(np.float32)
    items[:, 2] = 3.0
    index = QuantizedIndex(items, codec="sq8")
    # a zero-width dimension decodes to its constant up to the float32 rounding of mid
    assert_within(index.reconstruct(np.arange(100))[:, 2], 3.0, gamma(2) * 3.0)


def test_fp16_matches_numpy_rounding_bit_for_bit(simd_level, rng):
    values = np.concatenate([
        rng.standard_normal(5000).astype(np.float32) * 10.0 ** rng.integers(-9, 5, 5000),
        np.array([0.0, -0.0, 65504, -65504, 65519.99, 65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5,
                  6.103515625e-05, 1 + 2 ** -11, 1 + 3 * 2 ** -11, np.inf, -np.inf], np.float32)]).astype(np.float32)
    with np.errstate(over="ignore"):
        halves = values.astype(np.float16)
    bits = _core.fp16_encode(values)
    np.testing.assert_array_equal(bits, halves.view(np.uint16))
    decoded = _core.fp16_decode(bits.reshape(-1, 5))  # a shape with a SIMD tail
    np.testing.assert_array_equal(decoded.ravel(), halves.astype(np.float32))


# ------------------------------------------------------------------- kernels

@pytest.mark.parametrize("n,d,nq,k", [
    (1, 1, 1, 1), (15, 3, 2, 5), (17, 4, 3, 20), (100, 7, 9, 10), (1000, 33, 1, 10),
    (2049, 64, 17, 7), (5000, 130, 33, 10), (40_000, 16, 3, 5),
])
def test_sq8_kernels_match_the_integer_model(rng, n, d, nq, k):
    items, queries = clustered(rng, n, d, nq, clusters=7)
    index = QuantizedIndex(items, codec="sq8", keep_vectors=False)
    model, bound = sq8_model(index, queries, with_bound=True)
    results = {}
    for kernel in all_sq8_kernels():
        ids, scores = index.search(queries, k=k, rerank=0)
        assert_topk_matches(ids, scores, model, k, tol=bound)
        results[kernel] = (ids, scores)
    ids0, scores0 = results["scalar"]
    for name, (ids, scores) in results.items():
        # the i-th best of two kernels: each within the row's largest bound of the model's
        assert_within(scores, scores0, 2 * bound.max(axis=1, keepdims=True), name)


@pytest.mark.parametrize("n,d,nq", [(50, 5, 3), (3000, 128, 40), (20_000, 24, 2)])
def test_fp16_search_at_every_level_matches_decoded_reference(simd_level, rng, n, d, nq):
    items, queries = clustered(rng, n, d, nq, clusters=5)
    index = QuantizedIndex(items, codec="fp16", keep_vectors=False)
    decoded = items.astype(np.float16).astype(np.float32)
    ids, scores = index.search(queries, k=10)
    assert_topk_matches(ids, scores, reference_scores(decoded, queries), 10,
                        tol=score_tolerance(decoded, queries))


# ------------------------------------------------------------------- quality

def test_recall_floors_on_clustered_data(rng):
    items, queries = clustered(np.random.default_rng(7), 30_000, 64, 100)
    expected = reference_topk(reference_scores(items, queries), 10)
    sq8 = QuantizedIndex(items, codec="sq8", random_state=0)
    assert recall(sq8.search(queries, k=10, rerank=0)[0], expected) >= 0.97
    ids, scores = sq8.search(queries, k=10, rerank=4)
    assert recall(ids, expected) >= 0.995
    # re-ranked scores are exact float32 dots
    assert_within(scores, np.take_along_axis(reference_scores(items, queries), ids, 1),
                  np.take_along_axis(score_tolerance(items, queries), ids, 1))
    fp16 = QuantizedIndex(items, codec="fp16", keep_vectors=False)
    assert recall(fp16.search(queries, k=10)[0], expected) >= 0.99


@pytest.mark.parametrize("codec", ["sq8", "fp16"])
def test_rerank_returns_exact_results_like_exact_index(rng, codec):
    items, queries = clustered(rng, 5000, 48, 20)
    ids, scores = QuantizedIndex(items, codec=codec).search(queries, k=10, rerank=50)
    exact_ids, exact_scores = ExactIndex(items).search(queries, k=10)
    # two float32 computations of the same dots: the i-th best within twice the row's bound
    bound = score_tolerance(items, queries)
    assert_within(scores, exact_scores, 2 * bound.max(axis=1, keepdims=True))
    assert_topk_matches(ids, scores, reference_scores(items, queries), 10, tol=bound)


def test_cosine_metric(rng):
    items, queries = clustered(rng, 3000, 32, 10)
    items[5] = 0.0
    index = QuantizedIndex(items, codec="sq8", metric="cosine")
    ids, scores = index.search(queries, k=10, rerank=20)
    ref = reference_scores(items, queries, "cosine")
    assert_topk_matches(ids, scores, ref, 10, tol=score_tolerance(items, queries, "cosine"))


# ------------------------------------------------------------------- filters

def _qualifies(nq, n, exclude_rows, allow):
    ok = np.ones((nq, n), bool)
    for q, row in enumerate(exclude_rows):
        ok[q, row] = False
    if allow is not None:
        mask = np.zeros(n, bool)
        mask[allow] = True
        ok &= mask
    return ok


@pytest.mark.parametrize("codec", ["sq8", "fp16"])
@pytest.mark.parametrize("allow_kind", ["none", "mask", "dense_ids", "sparse_ids"])
def test_filters_never_leak(rng, codec, allow_kind):
    n, d, nq, k = 4000, 20, 7, 15
    items, queries = clustered(rng, n, d, nq)
    exclude = [rng.choice(n, rng.integers(0, 300), replace=False) for _ in range(nq)]
    # Exclude the unfiltered winners too, so that the filter decides the result.
    top = reference_topk(reference_scores(items, queries), 5)
    exclude = [np.union1d(e, t) for e, t in zip(exclude, top)]
    allow = None
    if allow_kind == "mask":
        allow = rng.random(n) < 0.5
    elif allow_kind == "dense_ids":
        allow = rng.choice(n, n // 3, replace=False)
    elif allow_kind == "sparse_ids":
        allow = rng.choice(n, 40, replace=False)  # gathered path
    allow_ids = np.flatnonzero(allow) if allow is not None and allow.dtype == bool else allow
    ok = _qualifies(nq, n, exclude, allow_ids)
    index = QuantizedIndex(items, codec=codec)
    for kernel in all_sq8_kernels():
        for rerank in (0, 3):
            ids, scores = index.search(queries, k=k, exclude=exclude, allow=allow, rerank=rerank)
            for q in range(nq):
                got = ids[q][ids[q] >= 0]
                assert ok[q, got].all(), f"{kernel}: a filtered item leaked"
                assert len(got) == min(k, ok[q].sum())
            if rerank and allow_kind == "sparse_ids":  # the shortlist holds every allowed item
                assert_topk_matches(ids, scores, reference_scores(items, queries), k, qualifies=ok,
                                    tol=score_tolerance(items, queries))


def test_fewer_qualifying_than_k_pads(rng):
    items, queries = clustered(rng, 100, 8, 3)
    index = QuantizedIndex(items, codec="sq8")
    for rerank in (0, 2):
        ids, scores = index.search(queries, k=10, allow=[3, 50, 99], exclude=[[3], [], [3, 50, 99]],
                                   rerank=rerank)
        assert sorted(ids[0][:2]) == [50, 99] and np.all(ids[0][2:] == -1)
        assert np.all(np.isneginf(scores[0][2:]))
        assert np.all(ids[2] == -1) and np.all(np.isneginf(scores[2]))
    ids, _ = index.search(queries[0], k=200)
    assert ids.shape == (200,) and np.all(ids[100:] == -1) and sorted(ids[:100]) == list(range(100))


def test_sparse_exclude_matrix(rng):
    items, queries = clustered(rng, 500, 8, 4)
    index = QuantizedIndex(items, codec="sq8")
    first, _ = index.search(queries, k=5)
    matrix = sp.csr_matrix((np.ones(20), (np.repeat(np.arange(4), 5), first.ravel())), shape=(4, 500))
    ids, _ = index.search(queries, k=5, exclude=matrix)
    for row, seen in zip(ids, first):
        assert not np.isin(row, seen).any()


# ------------------------------------------------------------------- threads

@pytest.mark.parametrize("codec", ["sq8", "fp16"])
def test_thread_counts_and_concurrent_searches_agree(rng, codec):
    items, queries = clustered(rng, 60_000, 32, 24)
    serial = QuantizedIndex(items, codec=codec, num_threads=1, random_state=0).search(queries, k=10, rerank=0)
    # exact by contract: training and scoring give each item the same arithmetic on any
    # thread count
    for threads in (0, 2, 3):
        ids, scores = QuantizedIndex(items, codec=codec, num_threads=threads,
                                     random_state=0).search(queries, k=10, rerank=0)
        np.testing.assert_array_equal(ids, serial[0])
        np.testing.assert_array_equal(scores, serial[1])
    index = QuantizedIndex(items, codec=codec, num_threads=2)
    single = [index.search(q, k=10) for q in queries]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda q: index.search(q, k=10), queries))
    for (a, b), (c, e) in zip(single, parallel):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, e)


def test_add_while_searching(rng):
    items, queries = clustered(rng, 2000, 16, 4)
    index = QuantizedIndex(items[:1000], codec="sq8")
    errors = []

    def searcher():
        try:
            for _ in range(50):
                ids, _ = index.search(queries, k=5)
                assert ids.min() >= 0
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=searcher)
    thread.start()
    for chunk in np.array_split(items[1000:], 20):
        index.add(chunk)
    thread.join()
    assert not errors and len(index) == 2000


# ------------------------------------------------------------------- add, files

@pytest.mark.parametrize("codec", ["sq8", "fp16"])
def test_add_matches_encoding_everything_at_once(rng, codec):
    items, queries = clustered(rng, 1000, 19, 5)
    whole = QuantizedIndex(items, codec=codec)
    grown = QuantizedIndex(items[:333], codec=codec)
    if codec == "sq8":  # start from the same trained ranges, so the codes must agree
        grown = QuantizedIndex.__new__(QuantizedIndex)
        grown.__dict__.update(whole.__dict__)
        grown._lock = threading.Lock()
        grown._state = grown._empty_state()
        grown._append(items[:333], initial=True)
    for part in (items[333:334], items[334:800], items[800:800], items[800:]):
        new_ids = grown.add(part)
        assert new_ids.dtype == np.int64
    assert len(grown) == 1000
    np.testing.assert_array_equal(grown.reconstruct(np.arange(1000)), whole.reconstruct(np.arange(1000)))
    for rerank in (0, 4):
        a, b = grown.search(queries, k=7, rerank=rerank), whole.search(queries, k=7, rerank=rerank)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("codec", ["sq8", "fp16"])
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, rng, codec, keep, mmap):
    items, queries = clustered(rng, 1001, 12, 6)
    index = QuantizedIndex(items, codec=codec, metric="cosine", keep_vectors=keep)
    path = tmp_path / "q.llmrec"
    index.save(path)
    loaded = QuantizedIndex.load(path, mmap=mmap)
    assert (len(loaded), loaded.dim, loaded.codec, loaded.metric, loaded.keeps_vectors) == \
        (1001, 12, codec, "cosine", keep)
    assert loaded.memory_bytes() == index.memory_bytes()
    for a, b in zip(index.search(queries, k=9), loaded.search(queries, k=9)):
        np.testing.assert_array_equal(a, b)
    loaded.add(items[:5])  # copies memory-mapped storage
    assert len(loaded) == 1006


def test_corrupted_and_foreign_files(tmp_path, rng):
    items, _ = clustered(rng, 300, 8, 1)
    path = tmp_path / "q.llmrec"
    QuantizedIndex(items).save(path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "bad.llmrec"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        QuantizedIndex.load(bad)
    bad.write_bytes(bytes(data[:-100]))
    with pytest.raises(FormatError, match="truncated"):
        QuantizedIndex.load(bad)
    ExactIndex(items).save(bad)
    with pytest.raises(FormatError, match="ExactIndex"):
        QuantizedIndex.load(bad)


def test_memory_bytes(rng):
    items, _ = clustered(rng, 1000, 128, 1)
    # codes in whole blocks, mid and step, 5 coarse bases (1000 // 200), a scale and a base
    # number per slot
    assert QuantizedIndex(items, codec="sq8", keep_vectors=False).memory_bytes() == \
        63 * 16 * 128 + 2 * 128 * 4 + 5 * 128 * 4 + 63 * 16 * (4 + 2)
    assert QuantizedIndex(items, codec="fp16", keep_vectors=False).memory_bytes() == 1000 * 256
    assert QuantizedIndex(items, codec="fp16").memory_bytes() == 1000 * (256 + 512)


# ------------------------------------------------------------------- bad input

def test_bad_input_raises_clear_errors(rng):
    items, queries = clustered(rng, 100, 8, 2)
    with pytest.raises(ValueError, match="codec"):
        QuantizedIndex(items, codec="pq9")
    with pytest.raises(ValueError, match="pq_subspaces"):  # pq4 itself: test_quantized_pq4.py
        QuantizedIndex(items, codec="fp16", pq_subspaces=2)
    with pytest.raises(ValueError, match="training"):
        QuantizedIndex(items, partitions=101)
    with pytest.raises(ValueError, match="training"):
        QuantizedIndex(items, partitions=20, train_size=10)
    with pytest.raises(ValueError, match="probes"):
        QuantizedIndex(items, partitions=4).search(queries, probes=5)
    with pytest.raises(ValueError, match="partitions"):
        QuantizedIndex(items, partitions=0)
    with pytest.raises(ValueError, match="NaN"):
        QuantizedIndex(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        QuantizedIndex(np.zeros(5))
    with pytest.raises(ValueError, match="empty"):
        QuantizedIndex(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="fp16"):
        QuantizedIndex(np.full((2, 2), 1e6), codec="fp16")
    with pytest.raises(TypeError):
        QuantizedIndex(items, keep_vectors="yes")
    with pytest.raises(ValueError, match="train_size"):
        QuantizedIndex(items, train_size=0)
    index = QuantizedIndex(items, keep_vectors=False)
    with pytest.raises(ValueError, match="rerank"):
        index.search(queries, k=3, rerank=2)
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, k=0)
    with pytest.raises(ValueError, match="dimension"):
        index.search(np.zeros((2, 9)), k=3)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(8, np.inf), k=3)
    with pytest.raises(ValueError, match="partitions"):
        index.search(queries, k=3, probes=2)
    with pytest.raises(ValueError, match="outside"):
        index.search(queries, k=3, allow=[5, 100])
    with pytest.raises(ValueError, match="one id array per query"):
        index.search(queries, k=3, exclude=[[1]])
    with pytest.raises(ValueError, match="dimension"):
        index.add(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rerank"):
        QuantizedIndex(items).search(queries, rerank=-1)


def test_exported_from_package():
    assert llmrec.QuantizedIndex is QuantizedIndex


# ------------------------------------------------------------------- old files

def _write_version1_sq8(path, items, *, partitions=None, rng=None):
    """A file as llmrec wrote it before residual sq8 (kind version 1: plain codes)."""
    from llmrec._fileformat import save_arrays
    n, d = items.shape
    mid, step = _core.sq8_train(items)
    arrays = {"mid": mid, "step": step, "vectors": items}
    if partitions is None:
        codes = np.full((-(-n // 16), _core.sq8_block_bytes(d)), 0x80, np.uint8)
        _core.sq8_encode(items, mid, step, codes, 0)
    else:
        centroids, assignment = _core.kmeans_train(items, partitions, 5, 0)
        sizes = np.bincount(assignment, minlength=partitions).astype(np.int64)
        room = -(-sizes // 16) * 16
        starts = np.concatenate([[0], np.cumsum(room)[:-1]]).astype(np.int64)
        slot_ids = np.full(int(room.sum()), -1, np.int64)
        slots = np.empty(n, np.int64)
        for p in range(partitions):
            members = np.flatnonzero(assignment == p)
            slots[members] = starts[p] + np.arange(len(members))
        slot_ids[slots] = np.arange(n)
        codes = np.full((len(slot_ids) // 16, _core.sq8_block_bytes(d)), 0x80, np.uint8)
        _core.sq8_encode(items, mid, step, codes, 0, slots=slots)
        arrays.update(centroids=centroids, list_starts=starts, list_sizes=sizes, slot_ids=slot_ids,
                      assignment=assignment.astype(np.int32))
    arrays["codes"] = codes
    meta = {"codec": "sq8", "metric": "ip", "n": n, "dim": d, "keep_vectors": True,
            "partitions": partitions, "pq_subspaces": None}
    save_arrays(path, "QuantizedIndex", 1, meta, arrays)


@pytest.mark.parametrize("partitions", [None, 6])
def test_version1_plain_sq8_files_still_load_and_search(tmp_path, rng, partitions):
    items, queries = clustered(rng, 700, 20, 5)
    path = tmp_path / "v1.llmrec"
    _write_version1_sq8(path, items, partitions=partitions)
    index = QuantizedIndex.load(path)
    assert index._state.item_scales is None and not index._residual
    model, bound = sq8_model(index, queries, with_bound=True)
    for kernel in all_sq8_kernels():
        probes = {} if partitions is None else {"probes": partitions}
        ids, scores = index.search(queries, k=8, rerank=0, **probes)
        assert_topk_matches(ids, scores, model, 8, tol=bound)
    index.add(items[:10])  # plain codes keep growing as plain codes
    assert len(index) == 710 and index._state.item_scales is None
    # the same vector through the same encoder: the same code, decoded bit for bit
    np.testing.assert_array_equal(index.reconstruct([700]), index.reconstruct([0]))
    ids, _ = index.search(queries, k=5, rerank=4, **({} if partitions is None else {"probes": partitions}))
    np.testing.assert_array_equal(ids, ExactIndex(np.concatenate([items, items[:10]])).search(queries, k=5)[0])


def test_residual_file_missing_its_arrays_is_rejected(tmp_path, rng):
    from llmrec._fileformat import load_arrays, save_arrays
    items, _ = clustered(rng, 300, 8, 1)
    path = tmp_path / "q.llmrec"
    QuantizedIndex(items, codec="sq8").save(path)
    meta, arrays, version = load_arrays(path, "QuantizedIndex", max_kind_version=2)
    assert version == 2 and meta["residual"]
    for broken in ({"item_bases": np.full(304, 9999, np.uint16)}, {"item_scales": None}, {"bases": None}):
        changed = {name: np.array(a) for name, a in arrays.items()}
        for name, value in broken.items():
            if value is None:
                del changed[name]
            else:
                changed[name] = value
        save_arrays(path, "QuantizedIndex", version, meta, changed)
        with pytest.raises(FormatError, match="array .(item_bases|item_scales|bases)."):
            QuantizedIndex.load(path)


@pytest.mark.parametrize("allow_kind", ["sparse_ids", "mask"])
def test_residual_sq8_filtered_scan_matches_the_model(rng, allow_kind):
    # A sparse allow-list gathers codes, scales and base numbers before the kernels run.
    items, queries = clustered(rng, 5000, 40, 7, clusters=9)
    index = QuantizedIndex(items, codec="sq8", keep_vectors=False, random_state=2)
    allowed = np.sort(rng.choice(5000, 37 if allow_kind == "sparse_ids" else 2500, replace=False))
    allow = allowed if allow_kind == "sparse_ids" else np.isin(np.arange(5000), allowed)
    qualifies = np.zeros((7, 5000), bool)
    qualifies[:, allowed] = True
    model, bound = sq8_model(index, queries, with_bound=True)
    for kernel in all_sq8_kernels():
        ids, scores = index.search(queries, k=12, rerank=0, allow=allow)
        assert_topk_matches(ids, scores, model, 12, qualifies=qualifies, tol=bound)


def test_native_residual_arguments_are_checked(rng):
    items, queries = clustered(rng, 300, 8, 2)
    index = QuantizedIndex(items, codec="sq8", keep_vectors=False, random_state=0)
    state = index._state
    common = dict(mid=index._mid, step=index._step, queries=queries, k=3)
    with pytest.raises(ValueError, match="go together"):
        search_quantized("sq8", 300, 8, state.codes, item_scales=state.item_scales,
                               item_bases=state.item_bases, **common)
    with pytest.raises(ValueError, match="item_bases needs"):
        search_quantized("sq8", 300, 8, state.codes, item_scales=state.item_scales,
                               item_bases=state.item_bases[:5], bases=index._bases, **common)
    with pytest.raises(ValueError, match="bases must be"):
        search_quantized("sq8", 300, 8, state.codes, item_scales=state.item_scales,
                               item_bases=state.item_bases, bases=index._bases[:, :3], **common)
    codes = np.full_like(state.codes, 0x80)
    with pytest.raises(ValueError, match="base_of out of range"):
        _core.sq8_encode(items[:2], index._mid, index._step, codes, 0, bases=index._bases,
                         base_of=np.array([0, 10**6], np.int32), item_scales=np.zeros(len(codes) * 16, np.float32))
    with pytest.raises(ValueError, match="need item_scales"):
        _core.sq8_encode(items[:2], index._mid, index._step, codes, 0, bases=index._bases,
                         base_of=np.array([0, 1], np.int32))


@pytest.mark.parametrize("partitions", [None, 4])
def test_query_shortcut_and_general_path_agree_and_reject_bad_values(rng, partitions):
    # float32 C-contiguous queries skip the general conversion; everything else takes it.
    items, queries = clustered(rng, 800, 16, 5)
    index = QuantizedIndex(items, codec="sq8", partitions=partitions, random_state=0)
    extra = {} if partitions is None else {"probes": 4}
    fast = index.search(queries, k=6, **extra)
    for other in (queries.astype(np.float64), np.asfortranarray(queries), queries.tolist()):
        for a, b in zip(fast, index.search(other, k=6, **extra)):
            np.testing.assert_array_equal(a, b)
    single = index.search(queries[2], k=6, **extra)
    assert single[0].shape == (6,)
    np.testing.assert_array_equal(single[0], fast[0][2])
    for bad in (np.nan, np.inf, -np.inf):
        broken = queries.copy()
        broken[1, 3] = bad
        with pytest.raises(ValueError, match="queries contains NaN or infinite"):
            index.search(broken, k=3, **extra)
        with pytest.raises(ValueError, match="queries contains NaN or infinite"):
            index.search(broken[1], k=3, **extra)
    with pytest.raises(ValueError, match="dimension"):
        index.search(queries[:, :5], k=3, **extra)
    with pytest.raises(TypeError, match="k must be an integer"):
        index.search(queries, k=True, **extra)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(queries, k=0, **extra)
