"""Hostile and careless calls into llmrec._core and the native-backed classes.

Every case here once crashed the interpreter (SIGSEGV, SIGABRT, SIGFPE) or wrote out of
bounds. Each runs in a fresh subprocess that must exit normally after the expected
Python exception: a crash shows up as a negative return code, not as a failed assertion
in this process.
"""

from __future__ import annotations


import numpy as np
import pytest
import scipy.sparse as sp

from llmrec import ALS, ExactIndex, QuantizedIndex, _core
from llmrec._checks import MAX_THREADS, check_sparse_structure, check_threads

from isolated import assert_raises_isolated
from quantized_view import search_quantized

_PRELUDE = """
import numpy as np, scipy.sparse as sp
from llmrec import ALS, ExactIndex, QuantizedIndex, _core
rng = np.random.default_rng(0)
"""

# name -> (code that must raise, expected exception type, pattern in its message)
CRASHES = {
    "sq8 at 1e19": ("QuantizedIndex((rng.standard_normal((2000, 32)) * 1e19).astype(np.float32), codec='sq8')",
                    "ValueError", "L2 norm"),
    "pq4 partitions at 1e19": ("QuantizedIndex((rng.standard_normal((2000, 32)) * 1e19).astype(np.float32), "
                               "codec='pq4', partitions=4)", "ValueError", "L2 norm"),
    "sq8 d=128 at 3e18": ("QuantizedIndex((rng.standard_normal((2000, 128)) * 3e18).astype(np.float32), codec='sq8')",
                          "ValueError", "L2 norm"),
    "kmeans NaN d>16": ("x = rng.random((1000, 32), dtype=np.float32); x[5, 3] = np.nan; _core.kmeans_train(x, 8)",
                        "ValueError", "NaN"),
    "kmeans inf k>256": ("x = rng.random((1000, 4), dtype=np.float32); x[5, 3] = np.inf; _core.kmeans_train(x, 300)",
                         "ValueError", "NaN"),
    "kmeans_assign inf centroids": ("_core.kmeans_assign(np.ones((10, 32), np.float32), "
                                    "np.full((3, 32), np.inf, np.float32))", "ValueError", "NaN"),
    "ExactIndex threads 2**62": ("x = rng.random((1000, 8), dtype=np.float32); "
                                 "ExactIndex(x, num_threads=2**62).search(x[:100], k=3)", "ValueError", "at most 1024"),
    "QuantizedIndex threads 2**62": ("QuantizedIndex(rng.random((1000, 8), dtype=np.float32), num_threads=2**62)",
                                     "ValueError", "at most 1024"),
    "ALS threads 2**62": ("ALS(num_threads=2**62, iterations=1).fit(sp.random(100, 50, density=0.1, format='csr', "
                          "random_state=0))", "ValueError", "at most 1024"),
    "ALS column index >= n_cols": ("m = sp.random(100, 50, density=0.1, format='csr', random_state=0); "
                                   "m.indices[3] = 1000; ALS(iterations=1).fit(m)", "ValueError", "out of range"),
    "ALS decreasing indptr": ("m = sp.random(100, 50, density=0.1, format='csr', random_state=0); "
                              "m.indptr[5] = m.indptr[7] + 3; ALS(iterations=1).fit(m)", "ValueError", "indptr"),
    "als_solve column index >= n_cols": (
        "X = np.zeros((2, 4), np.float32); Y = np.ones((3, 4), np.float32); "
        "_core.als_solve(np.array([0, 1, 2]), np.array([0, 7], np.int32), np.ones(2, np.float32), Y, X, "
        "np.eye(4, dtype=np.float32))", "ValueError", "column index"),
    "sq8_encode first_slot wraps": (
        "b = np.zeros((1, _core.sq8_block_bytes(8)), np.uint8); "
        "_core.sq8_encode(np.ones((1, 8), np.float32), np.zeros(8, np.float32), np.ones(8, np.float32), b, 2**64 - 1, 1)",
        "ValueError", "first_slot"),
    "pq4_encode first_slot wraps": (
        "b = np.zeros((1, _core.pq4_block_bytes(4)), np.uint8); "
        "_core.pq4_encode(np.ones((1, 8), np.float32), np.ones((4, 16, 2), np.float32), b, 2**64 - 1, 1)",
        "ValueError", "first_slot"),
    "sq8_decode first wraps": (
        "b = np.zeros((1, _core.sq8_block_bytes(8)), np.uint8); "
        "_core.sq8_decode(b, 2**64 - 1, 1, np.zeros(8, np.float32), np.ones(8, np.float32))", "ValueError", "first"),
    "QuantizedView n wraps the block count": (
        "b = np.zeros((1, _core.sq8_block_bytes(8)), np.uint8); "
        "_core.QuantizedView('sq8', 2**64 - 1, 8, b, np.zeros(8, np.float32), np.ones(8, np.float32))",
        "ValueError", "sq8 codes"),
    # Fuzz: a view of no items over storage with base numbers read past an empty copy.
    "QuantizedView of no items with item_bases": (
        "x = rng.standard_normal((300, 16)).astype(np.float32); i = QuantizedIndex(x, random_state=0); "
        "s = i._state; v = _core.QuantizedView('sq8', 0, 16, s.codes, i._mid, i._step, "
        "item_scales=s.item_scales, item_bases=s.item_bases, bases=i._bases); v.search(x[:1], 2**20)",
        "ValueError", "at most"),
}


@pytest.mark.parametrize("name", list(CRASHES))
def test_former_crash_raises(name):
    assert_raises_isolated(_PRELUDE, *CRASHES[name])


def _quantized_lists(rng, codec="sq8"):
    x = rng.standard_normal((300, 16)).astype(np.float32)
    index = QuantizedIndex(x, codec=codec, partitions=4, random_state=0)
    state = index._state
    lists = state.lists
    args = [codec, state.n, 16, state.codes, index._mid, index._step, None,
            x[:2].copy(), 5, None, None, None, None, 0, 1, index._centroids,
            lists.starts, lists.sizes, lists.slot_ids.copy(), 4, index._codebooks,
            state.item_scales, None, None]
    return x, args


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
@pytest.mark.parametrize("bad_id", [-10**9, 300, 2**62])
@pytest.mark.parametrize("with_allow", [False, True])
def test_search_quantized_checks_slot_ids(rng, codec, bad_id, with_allow):
    _, args = _quantized_lists(rng, codec)
    slot_ids, starts = args[18], args[16]
    slot_ids[starts[0]] = bad_id  # inside list 0's range
    if with_allow:
        args[11] = np.ones(300, np.uint8)
    with pytest.raises(ValueError, match="slot ids out of range"):
        search_quantized(*args)


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
@pytest.mark.parametrize("where", ["bool dtype", "three ids", "overlapping lists"])
def test_search_quantized_never_repeats_an_id(rng, codec, where):
    # Fuzz finding F30: bool slot ids (cast to 0/1) returned one item five times in a row.
    _, args = _quantized_lists(rng, codec)
    slot_ids, starts = args[18], args[16].copy()
    if where == "bool dtype":
        args[18] = slot_ids.astype(bool)
    elif where == "three ids":  # 300 slots, 3 ids, k=5: some id must come back twice
        slot_ids[slot_ids >= 0] %= 3
    else:  # list 1 read from list 0's slots: may also read padding (out of range)
        starts[1] = starts[0]
        args[16] = starts
    # Checked once, when the view of the storage is built: an error, whatever the queries.
    with pytest.raises(ValueError, match="slot ids (repeated|out of range)"):
        search_quantized(*args)


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
def test_quantized_view_ignores_writes_after_its_checks(rng, codec):
    # The view copies what it indexes with (list layout, slot ids, base numbers): writing
    # hostile values into the caller's arrays afterwards must not reach the search.
    x, args = _quantized_lists(rng, codec)
    view = _core.QuantizedView(*args[:4], args[4], args[5], None, *args[15:19], args[20], args[21])
    before = view.search(x[:2], 5, probes=4)
    args[16][:] = 2**62
    args[17][:] = 2**62
    args[18][:] = -(10**9)
    after = view.search(x[:2], 5, probes=4)
    np.testing.assert_array_equal(before[0], after[0])
    assert ((after[0] >= 0) & (after[0] < 300)).all()
    flat = QuantizedIndex(x, codec="sq8", random_state=0)
    state = flat._state
    bases = state.item_bases.copy()
    view = _core.QuantizedView("sq8", state.n, 16, state.codes, flat._mid, flat._step,
                               item_scales=state.item_scales, item_bases=bases, bases=flat._bases)
    before = view.search(x[:2], 5)
    bases[:] = 60000  # far past the bases
    np.testing.assert_array_equal(view.search(x[:2], 5)[0], before[0])


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_search_quantized_rerank_leaves_out_unbounded_rows(rng, codec, bad):
    # Fuzz finding F31: inf rows in `vectors` re-scored to [inf, nan, inf, ...]. The exact
    # re-scoring leaves out candidates whose score is not finite (topk::rescore's contract).
    x, args = _quantized_lists(rng, codec)
    vectors = x.copy()
    vectors[::2, 0] = bad  # every other row
    args[6], args[13] = vectors, 4
    ids, scores = search_quantized(*args)
    real = ids >= 0
    assert real.any() and np.isfinite(scores[real]).all() and (ids[real] % 2 == 1).all()
    assert (np.diff(np.where(real, scores, -np.inf), axis=1) <= 0).all()
    args[6] = x  # the same call with bounded rows re-scores exactly
    ids, scores = search_quantized(*args)
    q, rows = x[:2].astype(np.float64), x.astype(np.float64)
    expected = np.take_along_axis(q @ rows.T, ids, axis=1)
    # float32 sums of d products: |error| <= d * eps * sum |q_i x_i|
    bound = np.take_along_axis(np.abs(q) @ np.abs(rows).T, ids, axis=1) * 16 * np.finfo(np.float32).eps
    assert (np.abs(scores - expected) <= bound).all()


def test_search_quantized_checks_list_ranges_without_wrapping(rng):
    _, args = _quantized_lists(rng)
    args[16] = args[16].copy()
    args[17] = args[17].copy()
    args[16][1] = 2**62
    args[17][1] = 2**62  # start + size would wrap past int64
    with pytest.raises(ValueError, match="list starts and sizes"):
        search_quantized(*args)


def test_search_quantized_checks_item_bases(rng):
    x = rng.standard_normal((500, 16)).astype(np.float32)
    index = QuantizedIndex(x, codec="sq8", random_state=0)
    state = index._state
    bases = state.item_bases.copy()
    bases[7] = index._bases.shape[0]  # one past the last base
    with pytest.raises(ValueError, match="item_bases out of range"):
        search_quantized("sq8", state.n, 16, state.codes, index._mid, index._step, None, x[:1], 3,
                               None, None, np.ones(500, np.uint8), None, 0, 1, None, None, None, None, 1,
                               None, state.item_scales, bases, index._bases)


def test_encode_slots_and_copies_are_checked():
    d = 8
    blocks = np.zeros((2, _core.sq8_block_bytes(d)), np.uint8)
    x = np.ones((1, d), np.float32)
    mid, step = np.zeros(d, np.float32), np.ones(d, np.float32)
    for first in (32, 2**63, 2**64 - 1):
        with pytest.raises(ValueError):
            _core.sq8_encode(x, mid, step, blocks, first, 1)
    _core.sq8_encode(x, mid, step, blocks, 31, 1)  # the last slot is fine
    with pytest.raises(ValueError, match="slots out of range"):
        _core.sq8_encode(x, mid, step, blocks, 0, 1, slots=np.array([32]))
    with pytest.raises(ValueError, match="slots out of range"):
        _core.sq8_copy_slots(blocks, np.array([0]), blocks, np.array([-1]), d)
    pq = np.zeros((1, _core.pq4_block_bytes(4)), np.uint8)
    with pytest.raises(ValueError, match="slots out of range"):
        _core.pq4_copy_slots(pq, np.array([32]), pq, np.array([0]), 4)
    with pytest.raises(ValueError, match="slots out of range"):
        _core.pq4_decode(pq, np.array([2**40]), np.ones((4, 16, 2), np.float32))


@pytest.mark.parametrize("make_bad", [
    lambda a: np.asfortranarray(a),
    lambda a: np.zeros((a.shape[0], 2 * a.shape[1]), a.dtype)[:, ::2],
    lambda a: a.astype(np.float64),
    lambda a: a.tolist(),
])
def test_in_place_outputs_are_not_silently_copied(rng, make_bad):
    rows = make_bad(rng.standard_normal((6, 4)).astype(np.float32))
    with pytest.raises((TypeError, ValueError), match="rows"):
        _core.normalize_rows(rows, 1)
    X = make_bad(np.zeros((3, 4), np.float32))
    Y = np.ones((5, 4), np.float32)
    with pytest.raises((TypeError, ValueError), match="X"):
        _core.als_solve(np.zeros(4, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), Y, X,
                        np.eye(4, dtype=np.float32))


def test_in_place_blocks_must_be_the_callers_array():
    d = 8
    x = np.ones((1, d), np.float32)
    good = np.zeros((1, _core.sq8_block_bytes(d)), np.uint8)
    for bad in (good.astype(np.int16), np.zeros((1, 2 * good.shape[1]), np.uint8)[:, ::2]):
        with pytest.raises((TypeError, ValueError), match="blocks"):
            _core.sq8_encode(x, np.zeros(d, np.float32), np.ones(d, np.float32), bad, 0, 1)
    readonly = good.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _core.sq8_encode(x, np.zeros(d, np.float32), np.ones(d, np.float32), readonly, 0, 1)
    scales = np.zeros(16, np.float64)
    with pytest.raises(TypeError, match="item_scales"):
        _core.sq8_encode(x, np.zeros(d, np.float32), np.ones(d, np.float32), good, 0, 1,
                         bases=np.zeros((1, d), np.float32), base_of=np.zeros(1, np.int32), item_scales=scales)
    pq = np.zeros((1, _core.pq4_block_bytes(4)), np.uint8)
    with pytest.raises(TypeError, match="blocks"):
        _core.pq4_encode(x, np.ones((4, 16, 2), np.float32), pq.astype(np.float32), 0, 1)
    # The right array is written in place.
    _core.sq8_encode(x, np.zeros(d, np.float32), np.ones(d, np.float32), good, 0, 1)
    assert good.any()


def test_base_numbers_are_not_cast_down():
    """An int64 base number 2**32 + 1 was cast to the int32 1 (in range: silently the
    wrong base); only int32 base numbers are taken."""
    d = 8
    x = np.ones((1, d), np.float32)
    blocks = np.zeros((1, _core.sq8_block_bytes(d)), np.uint8)
    args = (x, np.zeros(d, np.float32), np.ones(d, np.float32), blocks, 0, 1)
    bases = np.zeros((2, d), np.float32)
    with pytest.raises(TypeError):
        _core.sq8_encode(*args, bases=bases, base_of=np.array([2**32 + 1], np.int64),
                         item_scales=np.zeros(16, np.float32))
    _core.sq8_encode(*args, bases=bases, base_of=np.array([1], np.int32), item_scales=np.zeros(16, np.float32))
    assert blocks.any()


def test_thread_counts_are_capped(rng):
    assert check_threads(MAX_THREADS) == MAX_THREADS
    for bad in (-1, MAX_THREADS + 1, 2**62):
        with pytest.raises(ValueError, match="num_threads"):
            check_threads(bad)
    with pytest.raises(TypeError):
        check_threads(2.0)
    # Direct native calls with absurd counts behave as the cap (no wrap, same results).
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    expected = _core.search_exact(x, x[:40], 5, num_threads=1)
    for threads in (2**62, 2**63 - 1):
        got = _core.search_exact(x, x[:40], 5, num_threads=threads)
        np.testing.assert_array_equal(got[0], expected[0])
    assert _core._parallel_task_sum(100, 2**62) == sum(range(100))
    centroids, assignment = _core.kmeans_train(x, 8, 3, 0, 1)
    np.testing.assert_array_equal(_core.kmeans_train(x, 8, 3, 0, 2**62)[1], assignment)
    R_indptr, R_indices = np.array([0, 2, 3], np.int64), np.array([0, 4, 1], np.int32)
    Y = rng.standard_normal((5, 3)).astype(np.float32)
    X1, X2 = np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)
    gram = (Y.T @ Y).astype(np.float32)
    _core.als_solve(R_indptr, R_indices, np.ones(3, np.float32), Y, X1, gram, num_threads=1)
    _core.als_solve(R_indptr, R_indices, np.ones(3, np.float32), Y, X2, gram, num_threads=2**62)
    np.testing.assert_array_equal(X1, X2)
    assert np.abs(X1).sum() > 0
    with pytest.raises(ValueError):
        _core.search_exact(x, x[:1], 5, num_threads=-1)


def test_kmeans_input_checks():
    x = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match="iterations"):
        _core.kmeans_train(x, 2, 2**62)
    with pytest.raises(ValueError, match="at least one centroid"):
        _core.kmeans_train(x, 0)
    with pytest.raises(ValueError, match="at least as many"):
        _core.kmeans_train(x, 2**40)  # refused before anything (k, d) is allocated
    with pytest.raises(ValueError, match="NaN"):
        _core.kmeans_assign(np.full((2, 4), np.nan, np.float32), x[:3])
    with pytest.raises(ValueError, match="NaN"):
        _core.pq4_train(np.full((20, 4), np.inf, np.float32), 2)
    with pytest.raises(ValueError, match="NaN"):
        _core.sq8_train(np.full((2, 4), np.nan, np.float32))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_structure_is_checked_before_scipy_reads_it(fmt):
    m = sp.random(20, 10, density=0.3, format=fmt, random_state=0)
    check_sparse_structure(m, "m")
    if fmt == "coo":
        m.col[0] = 10
    else:
        m.indices[0] = m.shape[0 if fmt == "csc" else 1]
    with pytest.raises(ValueError, match="range"):
        check_sparse_structure(m, "m")
    with pytest.raises(ValueError, match="range"):
        ALS(iterations=1).fit(m)


def test_exact_search_refuses_unbounded_queries(rng):
    x = rng.standard_normal((50, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="L2 norm"):
        _core.search_exact(x, np.full((1, 4), 1e19, np.float32), 3)
    with pytest.raises(ValueError, match="NaN|L2 norm"):
        ExactIndex(x).search(np.array([np.nan, 0, 0, 0], np.float32), k=3)
    # Cosine normalises the query first: any finite query is fine.
    index = ExactIndex(x, metric="cosine")
    ids, scores = index.search(np.full(4, 3e38, np.float32), k=3)
    assert (ids >= 0).all() and np.isfinite(scores).all()


def test_huge_k_and_rerank_do_not_wrap(rng):
    x = rng.standard_normal((64, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="at most max"):
        _core.search_exact(x, x[:2], 2**62)
    index = QuantizedIndex(x, codec="sq8", random_state=0)
    ids, _ = index.search(x[0], k=4, rerank=2**62)  # rerank * k saturates at n
    exact, _ = ExactIndex(x).search(x[0], k=4)
    np.testing.assert_array_equal(ids, exact)


def test_als_native_entry_points_check_their_csr(rng):
    Y = rng.standard_normal((5, 3)).astype(np.float32)
    X = np.zeros((2, 3), np.float32)
    gram = (Y.T @ Y).astype(np.float32)
    good = (np.array([0, 2, 3], np.int64), np.array([0, 4, 1], np.int32), np.ones(3, np.float32))
    bad = {
        "column index": (good[0], np.array([0, 5, 1], np.int32), good[2]),
        "column index out": (good[0], np.array([0, -1, 1], np.int32), good[2]),
        "non-decreasing": (np.array([0, 4, 3], np.int64), *good[1:]),
        "does not match": (np.array([0, 2, 4], np.int64), *good[1:]),
        r"n_rows \+ 1": (np.array([0, 3], np.int64), *good[1:]),
    }
    for pattern, (indptr, indices, values) in bad.items():
        with pytest.raises(ValueError, match=pattern):
            _core.als_solve(indptr, indices, values, Y, X, gram)
        with pytest.raises(ValueError, match=pattern):
            _core.als_loss(indptr, indices, values, X, Y, gram)
    assert np.isfinite(_core.als_loss(*good, X, Y, gram))


def test_unaligned_output_is_refused():
    buffer = bytearray(4 * 8 + 1)
    rows = np.frombuffer(buffer, dtype=np.float32, offset=1, count=8).reshape(2, 4)
    assert not rows.flags.aligned and rows.flags.writeable
    with pytest.raises(ValueError, match="aligned"):
        _core.normalize_rows(rows, 1)
