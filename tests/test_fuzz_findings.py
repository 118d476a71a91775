"""Regressions for the fuzz harness' findings (fuzz/FINDINGS.md on the fuzz branch).

Former crashes, hangs and huge allocations run in a fresh subprocess that must exit
normally after the expected Python exception; the others compare with numpy references.
"""

from __future__ import annotations

import subprocess
import textwrap

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec import FormatError, QuantizedIndex, _core
from llmrec._checks import as_float_matrix
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.diversity import intra_list_diversity, mmr_rerank
from llmrec.evaluation import auc, evaluate, leave_last_k, ranking_metrics

from isolated import assert_raises_isolated, run_isolated
from quantized_view import search_quantized

FLT_MIN = float(np.finfo(np.float32).tiny)

_PRELUDE = """
import numpy as np
from llmrec import ExactIndex, QuantizedIndex, _core
from llmrec.diversity import mmr_rerank
rng = np.random.default_rng(0)
x = rng.standard_normal((300, 16)).astype(np.float32)
ids, scores = _core.search_exact(x, x[:2], 20)
sq8 = QuantizedIndex(x, codec="sq8", random_state=0)
def sq8_search(k=5, step=None, threads=0, query=x[:2]):
    view = _core.QuantizedView("sq8", sq8._state.n, 16, sq8._state.codes, sq8._mid,
                               sq8._step if step is None else step, item_scales=sq8._state.item_scales,
                               item_bases=sq8._state.item_bases, bases=sq8._bases)
    return view.search(query, k, num_threads=threads)
"""

# name -> (code that must raise, exception, pattern in its message)
FORMER_CRASHES = {
    # F08: k was not capped: MemoryError (48 GiB .. PiB), hangs, and UBSan's signed
    # overflow in the result allocation (8 * k).
    "mmr_rerank k": ("_core.mmr_rerank(ids, scores, x, 2**62 + 1, 0.3, 0)", "ValueError", "at most max"),
    "mmr_rerank k 2**26": ("_core.mmr_rerank(ids, scores, x, 2**26, 0.3, 0)", "ValueError", "at most max"),
    "public mmr_rerank k": ("mmr_rerank(ids, scores, x, 2**53 + 1, 0.3)", "ValueError", "at most max"),
    "rescore_candidates k": ("_core.rescore_candidates(ids, [x], [x[:2]], [None], [None], "
                             "np.zeros(2, np.float32), 2**62 + 1, 0)", "ValueError", "at most max"),
    "rerank_exact k": ("_core.rerank_exact(x, x[:2], ids, 2**32, 0)", "ValueError", "at most max"),
    "search_exact k": ("_core.search_exact(x, x[:2], 2**62 + 1)", "ValueError", "at most max"),
    "search_quantized k": ("sq8_search(k=2**62 + 1)", "ValueError", "at most max"),
    "kmeans_train k > n": ("_core.kmeans_train(x, 10**9, 5, 0, 0)", "ValueError", "at least as many"),
    # F26: denormal steps made inf/NaN levels, then a float->int conversion (UB).
    "sq8_encode denormal step": (
        "b = np.zeros((1, _core.sq8_block_bytes(16)), np.uint8); "
        "_core.sq8_encode(x[:4], np.zeros(16, np.float32), np.full(16, 1e-42, np.float32), b, 0, 1)",
        "ValueError", "step"),
    "search_quantized denormal step": ("sq8_search(step=np.full(16, 1e-42, np.float32))", "ValueError", "step"),
    "sq8_decode negative step": (
        "_core.sq8_decode(sq8._state.codes, 0, 1, sq8._mid, -np.ones(16, np.float32))", "ValueError", "step"),
    "pq4_tables huge query": ("_core.pq4_tables(np.full((1, 16), 3e38, np.float32), "
                              "QuantizedIndex(x, codec='pq4', random_state=0)._codebooks)",
                              "ValueError", "L2 norm"),
}


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return run_isolated(_PRELUDE + textwrap.dedent(code))


@pytest.mark.parametrize("name", list(FORMER_CRASHES))
def test_former_crash_raises(name):
    assert_raises_isolated(_PRELUDE, *FORMER_CRASHES[name])


def test_absurd_thread_counts_behave_as_the_cap():
    # F03: SIGFPE (division by zero) in kmeans_train, pq4_train, search_exact and
    # search_quantized. The native layer documents that a count above kMaxThreads (1024)
    # behaves as 1024 (llmrec/thread_pool.hpp); the public API rejects it (check_threads).
    # Results do not depend on the thread count, so they equal the one-thread results.
    result = _run_isolated("""
        for threads in (2**62, 2**63 - 1):
            a = _core.kmeans_train(x, 4, 5, 0, threads)
            b = _core.kmeans_train(x, 4, 5, 0, 1)
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            assert np.array_equal(_core.pq4_train(x, 4, 3, 0, threads), _core.pq4_train(x, 4, 3, 0, 1))
            for got, want in zip(sq8_search(threads=threads), sq8_search(threads=1)):
                assert np.array_equal(got, want)
            for got, want in zip(_core.search_exact(x, x[:5], 4, num_threads=threads),
                                 _core.search_exact(x, x[:5], 4, num_threads=1)):
                assert np.array_equal(got, want)
        print("same")
        """)
    assert "same" in result.stdout


# ------------------------------------------------------------------ F08: k is capped
def test_k_cap_is_max_of_items_and_1024(rng):
    for n in (300, 1500):
        x = rng.standard_normal((n, 8)).astype(np.float32)
        cand, scores = _core.search_exact(x, x[:2], 20)
        limit = max(n, 1024)
        calls = {
            "search_exact": lambda k: _core.search_exact(x, x[:2], k),
            "rerank_exact": lambda k: _core.rerank_exact(x, x[:2], cand, k, 0),
            "mmr_rerank": lambda k: _core.mmr_rerank(cand, scores, x, k, 0.3, 0),
            "rescore": lambda k: _core.rescore_candidates(cand, [x], [x[:2]], [None], [None],
                                                          np.zeros(2, np.float32), k, 0),
        }
        for name, call in calls.items():
            ids, values = call(limit)
            assert ids.shape == values.shape == (2, limit), name
            found = min(n, limit) if name == "search_exact" else 20
            assert (ids[:, :found] >= 0).all() and (ids[:, found:] == -1).all(), name
            assert np.isneginf(values[:, found:]).all(), name
            with pytest.raises(ValueError, match=f"at most max.*= {limit}"):
                call(limit + 1)
    with pytest.raises(ValueError, match="at most max"):
        mmr_rerank(cand, scores, x, 1501, 0.3)
    with pytest.raises(ValueError, match="num_threads"):
        mmr_rerank(cand, scores, x, 3, 0.3, num_threads=1025)


def test_rerank_exact_checks_what_it_scores(rng):
    # Found by the sanitized fuzz pass of this branch: an inf row among the candidates gave
    # the scores [inf, nan, -3.6, -inf, inf] (NaN breaks the sort's ordering).
    x = rng.standard_normal((50, 8)).astype(np.float32)
    q = x[:2].copy()
    cand = np.array([[3, 1, 4, -1], [5, 9, 2, 6]])
    ids, scores = _core.rerank_exact(x, q, cand, 3, 0)
    for row in range(2):
        mine = cand[row][cand[row] >= 0]
        exact = x[mine].astype(np.float64) @ q[row].astype(np.float64)
        np.testing.assert_array_equal(ids[row], mine[np.lexsort((mine, -exact))][:3])
    bad = x.copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match="candidates' rows"):
        _core.rerank_exact(bad, q, cand, 3, 0)
    bad[4, 2] = 1e30  # finite, but its dot products overflow float32
    with pytest.raises(ValueError, match="candidates' rows"):
        _core.rerank_exact(bad, q, cand, 3, 0)
    bad[4, 2] = 0
    bad[7] = np.nan  # a row no query asks for is not read
    np.testing.assert_array_equal(_core.rerank_exact(bad, q, cand, 3, 0)[0], ids)
    with pytest.raises(ValueError, match="L2 norm"):
        _core.rerank_exact(x, np.full((2, 8), 1e19, np.float32), cand, 3, 0)
    with pytest.raises(ValueError, match="candidate ids"):
        _core.rerank_exact(x, q, np.array([[3, 50, 1, -1], [0, 1, 2, -2]]), 3, 0)


# ------------------------------------------------------------------ F12: alignment
def _misaligned(a):
    """A C-contiguous copy of ``a`` at an address one byte past alignment."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


def test_misaligned_inputs_give_the_aligned_results(rng, simd_level):
    x = rng.standard_normal((200, 24)).astype(np.float32)
    q = rng.standard_normal((3, 24)).astype(np.float32)
    cand, _ = _core.search_exact(x, q, 10)
    centroids = x[:5].copy()
    for name, call, args in [
        ("als_gramian", _core.als_gramian, (x,)),
        ("search_exact", lambda a, b: _core.search_exact(a, b, 5), (x, q)),
        ("kmeans_assign", _core.kmeans_assign, (x, centroids)),
        ("rerank_exact", lambda a, b, c: _core.rerank_exact(a, b, c, 5, 0), (x, q, cand)),
        ("fp16_encode", _core.fp16_encode, (x,)),
        ("fp16_decode", _core.fp16_decode, (_core.fp16_encode(x),)),
    ]:
        want = call(*args)
        got = call(*[_misaligned(a) for a in args])
        for g, w in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want]):
            np.testing.assert_array_equal(g, w, err_msg=name)


def test_misaligned_fp16_codes_are_refused(rng):
    x = rng.standard_normal((64, 8)).astype(np.float32)
    codes = _misaligned(_core.fp16_encode(x))
    with pytest.raises(ValueError, match="aligned"):
        search_quantized("fp16", 64, 8, codes, None, None, None, x[:1], 3)


def test_as_float_matrix_returns_an_aligned_array(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    got = as_float_matrix(_misaligned(x), "x")
    assert got.flags.aligned and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x)
    assert as_float_matrix(x, "x") is x  # aligned float32 C input: no copy


# ------------------------------------------------------------------ F24: repeated ids
def test_rescore_returns_a_repeated_candidate_once(rng):
    V = rng.standard_normal((40, 6)).astype(np.float32)
    Q = rng.standard_normal((5, 6)).astype(np.float32)
    offset = rng.standard_normal(5).astype(np.float32)
    cand = rng.integers(-1, 40, (5, 30))  # many repeats
    best = int(np.argmax(V @ Q[0]))
    cand[0, :4] = best  # the best item, four times: it used to take four of the k places
    k = 12
    ids, scores = _core.rescore_candidates(cand, [V], [Q], [None], [None], offset, k, 0)
    for row in range(5):
        unique = np.unique(cand[row][cand[row] >= 0])
        exact = V[unique].astype(np.float64) @ Q[row].astype(np.float64) - offset[row]
        order = np.lexsort((unique, -exact))[:k]
        m = len(order)
        np.testing.assert_array_equal(ids[row, :m], unique[order])
        assert (ids[row, m:] == -1).all()
        # float32 dot of 6 terms: a few eps of the sum of |products|, plus the offset.
        bound = 8 * np.finfo(np.float32).eps * (np.abs(V[unique[order]]) @ np.abs(Q[row]) + abs(offset[row]))
        assert np.all(np.abs(scores[row, :m] - exact[order]) <= bound)


# ------------------------------------------------------------------ F26: quantizers
def test_sq8_train_steps_are_usable_for_tiny_and_huge_ranges(rng, simd_level):
    tiny = (rng.uniform(-1, 1, (64, 8)) * 1e-37).astype(np.float32)  # range / 254 is denormal
    tiny[:, 1] = 0  # a constant dimension keeps step 0
    mid, step = _core.sq8_train(tiny)
    assert step[1] == 0 and np.all(step[[0, *range(2, 8)]] >= FLT_MIN)
    blocks = np.zeros((4, _core.sq8_block_bytes(8)), np.uint8)
    _core.sq8_encode(tiny, mid, step, blocks, 0, 1)
    decoded = _core.sq8_decode(blocks, 0, 64, mid, step)
    # Each value is within half a step of its level (the step spans the range in 254).
    assert np.all(np.abs(decoded - tiny) <= step * 0.5 * (1 + 1e-6) + 1e-45)
    huge = np.array([[-3e38] * 4, [3e38] * 4], np.float32)  # hi - lo overflows float32
    mid, step = _core.sq8_train(huge)
    assert np.all(mid == 0) and np.all(np.isfinite(step))
    np.testing.assert_allclose(step, 6e38 / 254, rtol=1e-6)


def test_sq8_search_with_tiny_queries_is_finite(rng, simd_level):
    # The query's levels are w / max|w| * 127 with w = q * step: for q ~ 1e-36 the largest
    # |w| is ~1e-38 and 127 / it overflows float32 (every level became +-127, and 0 * inf
    # a NaN converted to int); the levels then come from double arithmetic.
    x = rng.standard_normal((300, 16)).astype(np.float32)
    index = QuantizedIndex(x, codec="sq8", keep_vectors=False, random_state=0)
    q = (rng.choice([-1, 1], 16) * rng.uniform(0.5, 2, 16)).astype(np.float32)
    small = q * np.float32(2.0**-120)  # exact: a power of two, every entry stays normal
    assert np.all(np.abs(small) >= FLT_MIN) and np.array_equal(small * np.float32(2.0**120), q)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.float32(127) / np.abs(small * index._step).max())
    ids, scores = index.search(small, k=5)
    assert (ids >= 0).all() and np.isfinite(scores).all()
    # Levels are scale-free: the ranking is the one of the same query at scale 1.
    big_ids, big_scores = index.search(q, k=5)
    np.testing.assert_array_equal(ids, big_ids)
    np.testing.assert_allclose(scores.astype(np.float64) * 2.0**120, big_scores, rtol=1e-5)


def test_quantized_load_refuses_a_denormal_step(tmp_path, rng):
    path = str(tmp_path / "q.llmrec")
    QuantizedIndex(rng.standard_normal((100, 8)).astype(np.float32), codec="sq8", random_state=0).save(path)
    meta, arrays, version = load_arrays(path, "QuantizedIndex", max_kind_version=99)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    arrays["step"][3] = np.float32(1e-42)
    save_arrays(path, "QuantizedIndex", version, meta, arrays)
    with pytest.raises(FormatError, match="step"):
        QuantizedIndex.load(path)


@pytest.mark.parametrize("field, value", [("list_starts", 2**63 - 16), ("list_sizes", 2**63 - 1)])
def test_quantized_load_list_ranges_do_not_wrap(tmp_path, rng, field, value):
    # Found by this branch's fuzz pass (files.quantized_index 2310): list_starts[1] = 2**63 - 1
    # wrapped start + size past int64, passed the range check and raised IndexError.
    path = str(tmp_path / "q.llmrec")
    QuantizedIndex(rng.standard_normal((300, 8)).astype(np.float32), codec="fp16", partitions=4,
                   random_state=0).save(path)
    meta, arrays, version = load_arrays(path, "QuantizedIndex", max_kind_version=99)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    arrays[field][1] = value
    save_arrays(path, "QuantizedIndex", version, meta, arrays)
    with pytest.raises(FormatError, match="run past|items, expected"):
        QuantizedIndex.load(path)


# ------------------------------------------------------------------ F21, F22: Python ints
def test_evaluation_int_arguments_raise_value_error():
    frame = pd.DataFrame({"user_id": [1, 1, 1, 2], "item_id": [1, 2, 3, 3], "timestamp": [1, 2, 3, 4]})
    for bad in (2**63, 2**64 - 1):
        with pytest.raises(ValueError, match="k must be at most"):
            leave_last_k(frame, k=bad)
    train, test = leave_last_k(frame, k=2**63 - 1)  # all but each user's oldest
    assert list(train.index) == [0, 3] and list(test.index) == [1, 2]
    test_m = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0]], np.float32))
    for call in (lambda k: ranking_metrics(np.array([[1, 2], [0, 2]]), test_m, k=k),
                 lambda k: evaluate(object.__new__(_Model), test_m * 0, test_m, k=k)):
        with pytest.raises(ValueError, match="at most max"):
            call(1025)
        with pytest.raises(ValueError, match="at most max"):
            call(2**64)
    with pytest.raises(ValueError, match="batch_size"):
        auc(np.zeros((2, 3)), test_m, batch_size=2**64)
    assert ranking_metrics(np.array([[1, 2], [0, 2]]), test_m, k=1024)["hit_rate"] == 1.0


@pytest.mark.parametrize("bad", [10**6, 2**31 - 1, 30, -1])
def test_evaluation_checks_sparse_structure_first(bad):
    # F29: auc with a CSR train whose column index is out of range: SIGSEGV in scipy
    # (10**6, 2**31 - 1), "double free or corruption" (-1), and n_cols (30) accepted.
    result = _run_isolated(f"""
        import scipy.sparse as sp
        from llmrec.evaluation import auc, evaluate, ranking_metrics
        test = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
        train = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=1)
        ind = train.indices.copy(); ind[3] = {bad}
        broken = sp.csr_matrix((train.data, ind, train.indptr), shape=train.shape)
        scores = rng.standard_normal((20, 30)).astype(np.float32)
        for call in (lambda: auc(scores, test, broken), lambda: auc(scores, broken),
                     lambda: ranking_metrics(np.zeros((20, 3), np.int64), broken, k=3),
                     lambda: ranking_metrics(np.zeros((20, 3), np.int64), test, k=3, train=broken)):
            try:
                call()
            except ValueError as error:
                assert "out of range" in str(error), error
            else:
                raise SystemExit("accepted")
        print("refused")
        """)
    assert "refused" in result.stdout


class _Model:
    def recommend(self, user_ids, user_items, k, exclude_seen=True):  # pragma: no cover
        raise AssertionError("k should have been refused first")


def test_intra_list_diversity_with_no_item_rows():
    out = intra_list_diversity(np.array([[-1, -1], [-1, -1]]), np.zeros((0, 4), np.float32))
    assert out.shape == (2,) and np.isnan(out).all()
    assert np.isnan(intra_list_diversity(np.array([-1, -1]), np.zeros((0, 4), np.float32)))
    with pytest.raises(ValueError, match="outside"):
        intra_list_diversity(np.array([[0, -1]]), np.zeros((0, 4), np.float32))
