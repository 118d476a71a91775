"""In-place maintenance of the indexes: update, remove (skipped inside the native scan),
caller int64 ids, compact, and what files and pickles keep of them — against a numpy
float64 reference over the live rows, at every SIMD level; and searches running while
other threads rewrite rows see each row old or new, never half written."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest

from llmrec import ExactIndex, FormatError, QuantizedIndex, UnknownIdError
from quantized_view import search_quantized
from reference import assert_topk_matches, reference_scores
from tolerances import score_tolerance

TIME_LIMIT_S = 30.0

QUANTIZED = [dict(codec="sq8"), dict(codec="fp16"), dict(codec="pq4"),
             dict(codec="sq8", partitions=6), dict(codec="fp16", partitions=4),
             dict(codec="pq4", partitions=3)]


class Truth:
    """The reference: each live caller id's current float32 vector."""

    def __init__(self, ids, vectors):
        self.rows = {int(i): v.copy() for i, v in zip(ids, vectors)}

    def add(self, ids, vectors):
        for i, v in zip(ids, vectors):
            self.rows[int(i)] = v.copy()

    def remove(self, ids):
        for i in ids:
            del self.rows[int(i)]

    def matrix(self):
        ids = np.array(sorted(self.rows), dtype=np.int64)
        return ids, np.stack([self.rows[int(i)] for i in ids])

    def check(self, index, queries, k, metric="ip", **search):
        """The index's results against the reference (ids mapped to sorted positions, so
        that ties by smaller id are ties by smaller position)."""
        ids, matrix = self.matrix()
        got_ids, got_scores = index.search(queries, k, **search)
        got_ids, got_scores = np.atleast_2d(got_ids), np.atleast_2d(got_scores)
        assert np.isin(got_ids[got_ids >= 0], ids).all(), "a removed or unknown id was returned"
        positions = np.where(got_ids >= 0, np.searchsorted(ids, got_ids), -1)
        qualifies = np.ones((len(got_ids), len(ids)), dtype=bool)
        if "allow" in search:
            qualifies &= np.isin(ids, search["allow"])[None, :]
        for row, excluded in enumerate(search.get("exclude", [])):
            qualifies[row] &= ~np.isin(ids, excluded)
        assert_topk_matches(positions, got_scores, reference_scores(matrix, queries, metric), k,
                            qualifies, tol=score_tolerance(matrix, queries, metric))


def _data(rng, n=300, d=16):
    return rng.standard_normal((n, d)).astype(np.float32)


def _maintain(index, truth, rng, d, caller_ids):
    """Remove some items, rewrite others, add a few (with caller ids when asked)."""
    live = np.array(sorted(truth.rows))
    gone = rng.choice(live, 40, replace=False)
    index.remove(gone)
    truth.remove(gone)
    live = np.array(sorted(truth.rows))
    changed = rng.choice(live, 30, replace=False)
    new_rows = rng.standard_normal((30, d)).astype(np.float32)
    index.update(changed, new_rows)
    truth.add(changed, new_rows)
    extra = rng.standard_normal((5, d)).astype(np.float32)
    if caller_ids:
        new_ids = np.array([10**15 + 3, 2**62, 2**40, 5_000_001, 77], dtype=np.int64)
        got = index.add(extra, ids=new_ids)
        assert np.array_equal(got, new_ids)
    else:
        new_ids = index.add(extra)
    truth.add(new_ids, extra)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("caller_ids", [False, True])
def test_exact_maintenance_matches_numpy(simd_level, rng, metric, caller_ids):
    X = _data(rng)
    ids = rng.permutation(10**6)[:len(X)].astype(np.int64) if caller_ids else np.arange(len(X))
    index = ExactIndex(X, metric=metric, ids=ids if caller_ids else None)
    truth = Truth(ids, X)
    _maintain(index, truth, rng, X.shape[1], caller_ids)
    assert len(index) == len(truth.rows)
    assert sorted(index.ids.tolist()) == sorted(truth.rows)
    queries = _data(rng, 7)
    for k in (1, 10, len(truth.rows), len(truth.rows) + 3):  # all live items, then padding
        truth.check(index, queries, k, metric)
    # removed items are skipped inside the scan: the k best live items, never fewer
    best = index.search(queries[0], 5)[0]
    index.remove(best)
    truth.remove(best)
    got = index.search(queries[0], 5)[0]
    assert (got >= 0).all() and not np.isin(got, best).any()
    truth.check(index, queries, 10, metric)
    live = np.array(sorted(truth.rows))
    truth.check(index, queries, 6, metric, exclude=[live[:50]] * 7, allow=live[20:200])


@pytest.mark.parametrize("params", QUANTIZED, ids=lambda p: "-".join(str(v) for v in p.values()))
@pytest.mark.parametrize("caller_ids", [False, True])
def test_quantized_maintenance_matches_numpy(simd_level, rng, params, caller_ids):
    X = _data(rng)
    ids = rng.permutation(10**6)[:len(X)].astype(np.int64) if caller_ids else np.arange(len(X))
    index = QuantizedIndex(X, random_state=1, ids=ids if caller_ids else None, **params)
    truth = Truth(ids, X)
    _maintain(index, truth, rng, X.shape[1], caller_ids)
    probes = params.get("partitions")
    queries = _data(rng, 7)
    n_rows = len(X) + 5
    # rerank >= rows / k: every live item re-scored exactly, so the reference applies
    for k in (1, 10, len(truth.rows), len(truth.rows) + 3):
        truth.check(index, queries, k, probes=probes, rerank=-(-n_rows // k))
    # the codec scan alone (no re-ranking) still returns k live items after the best go
    best = index.search(queries[0], 5, probes=probes, rerank=0)[0]
    index.remove(best)
    truth.remove(best)
    got = index.search(queries[0], 5, probes=probes, rerank=0)[0]
    assert (got >= 0).all() and not np.isin(got, best).any()
    truth.check(index, queries, 8, probes=probes, rerank=n_rows)


@pytest.mark.parametrize("params", QUANTIZED, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_quantized_update_encodes_as_add_does(rng, params):
    """A rewritten row holds exactly the codes add() gives the same vector."""
    X = _data(rng)
    index = QuantizedIndex(X, random_state=2, **params)
    twin = pickle.loads(pickle.dumps(index))
    rows = rng.standard_normal((4, X.shape[1])).astype(np.float32)
    index.update([3, 17, 200, 5], rows)
    added = twin.add(rows)
    # exact: the same encoder, the same trained parameters, the same vectors
    np.testing.assert_array_equal(index.reconstruct([3, 17, 200, 5]), twin.reconstruct(added))


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
def test_partitioned_update_moves_the_row_to_its_new_list(rng, codec):
    X = _data(rng, 400)
    index = QuantizedIndex(X, codec=codec, metric="cosine", partitions=8, random_state=3)
    for item in (0, 123, 399):
        target = X[(item * 7 + 11) % len(X)] * -1.0  # far from where the item was
        index.update([item], target[None, :])
        lists = index._state.lists
        nearest = index._nearest_lists(index._normalized_copy(target[None, :]))[0]
        assert lists.assignment[item] == nearest
        start = lists.starts[nearest]
        assert item in lists.slot_ids[start:start + lists.sizes[nearest]]
        # its own vector probes its list first: found with one probe, at cosine 1
        ids, scores = index.search(target, 1, probes=1)
        assert ids[0] == item and abs(scores[0] - 1.0) <= 1e-5  # exact re-rank of a unit row


def test_bad_ids_are_refused(rng):
    X = _data(rng, 50)
    for index in (ExactIndex(X), QuantizedIndex(X, codec="sq8"), ExactIndex(X, ids=np.arange(100, 150))):
        base = 100 if len(index.search(X[0], 1)[0]) and index.search(X[0], 1)[0][0] >= 100 else 0
        with pytest.raises(UnknownIdError):
            index.remove([base + 50])
        with pytest.raises(UnknownIdError):
            index.update([-1], X[:1])
        with pytest.raises(ValueError, match="more than once"):
            index.remove([base + 1, base + 1])
        with pytest.raises(ValueError, match="already in the index"):
            index.add(X[:1], ids=[base + 2])
        with pytest.raises(ValueError, match="more than once"):
            index.add(X[:2], ids=[7_000, 7_000])
        with pytest.raises(ValueError, match="one id per vector"):
            index.add(X[:2], ids=[7_001])
        with pytest.raises(TypeError):
            index.add(X[:1], ids=[1.5])
        with pytest.raises(ValueError, match=">= 0"):
            index.add(X[:1], ids=[-1])
        with pytest.raises(ValueError, match="as many rows"):
            index.update([base + 3, base + 4], X[:1])
        index.remove([base + 5])
        with pytest.raises(UnknownIdError):
            index.remove([base + 5])  # twice
        with pytest.raises(UnknownIdError):
            index.update([base + 5], X[:1])
        before = index.search(X[:3], 4)
        with pytest.raises(UnknownIdError):
            index.remove([base + 6, base + 999])  # all or nothing
        np.testing.assert_array_equal(index.search(X[:3], 4)[0], before[0])
    with pytest.raises(TypeError, match="sequence of id arrays|sparse"):
        ExactIndex(X, ids=np.arange(50) + 1).search(X[0], 3, exclude="abc")


@pytest.mark.parametrize("make", [
    lambda X: ExactIndex(X, ids=np.arange(len(X)) * 3 + 1),
    lambda X: ExactIndex(X),
    lambda X: QuantizedIndex(X, codec="sq8", random_state=0),
    lambda X: QuantizedIndex(X, codec="pq4", partitions=4, random_state=0, ids=np.arange(len(X)) + 10**12),
], ids=["exact-ids", "exact", "sq8", "ivf-pq4-ids"])
def test_files_pickles_and_compact_keep_removals_and_ids(rng, tmp_path, make):
    X = _data(rng, 120)
    index = make(X)
    ids = index.ids
    index.remove(ids[[0, 5, 9]])
    index.update(ids[[1, 2]], X[[50, 60]] * 2)
    queries = _data(rng, 5)
    expected = index.search(queries, 12)
    path = tmp_path / "index.llmrec"
    index.save(path)
    loaded = type(index).load(path)
    mapped = type(index).load(path, mmap=True)
    copy = pickle.loads(pickle.dumps(index))
    for other in (loaded, mapped, copy):
        got = other.search(queries, 12)
        np.testing.assert_array_equal(got[0], expected[0])  # exact: same rows, same code
        np.testing.assert_array_equal(got[1], expected[1])
        assert np.array_equal(other.ids, index.ids) and len(other) == len(index) == 117
        with pytest.raises(UnknownIdError):
            other.remove(ids[[5]])
    mapped.update(ids[[3]], X[[3]])  # a memory-mapped index copies before writing
    index.compact()
    got = index.search(queries, 12)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert len(index) == 117 and np.array_equal(index.ids, loaded.ids)
    with pytest.raises(UnknownIdError):
        index.update(ids[[9]], X[:1])


def test_old_files_still_load_and_damaged_maintenance_arrays_are_refused(rng, tmp_path):
    from llmrec._fileformat import load_arrays, save_arrays

    X = _data(rng, 40)
    plain = tmp_path / "plain.llmrec"
    ExactIndex(X).save(plain)  # nothing removed: written as version 1, readable by earlier llmrec
    assert load_arrays(plain, "ExactIndex", max_kind_version=1)[2] == 1
    index = ExactIndex(X, ids=np.arange(40) + 5)
    index.remove([5, 6])
    path = tmp_path / "index.llmrec"
    index.save(path)
    meta, arrays, version = load_arrays(path, "ExactIndex", max_kind_version=2)
    assert version == 2 and set(arrays) == {"vectors", "row_ids", "deleted"}
    for name, bad in (("deleted", np.full(40, 2, np.uint8)), ("row_ids", np.zeros(40, np.int64)),
                      ("row_ids", np.arange(39, dtype=np.int64))):
        broken = tmp_path / f"broken-{name}-{len(bad)}.llmrec"
        save_arrays(broken, "ExactIndex", 2, meta, {**arrays, name: bad})
        with pytest.raises(FormatError):
            ExactIndex.load(broken)


@pytest.mark.parametrize("make", [
    lambda X: ExactIndex(X),
    lambda X: QuantizedIndex(X, codec="sq8", keep_vectors=False, random_state=0),
    lambda X: QuantizedIndex(X, codec="pq4", keep_vectors=False, random_state=0),
], ids=["exact", "sq8", "pq4"])
def test_concurrent_searches_see_each_row_old_or_new(rng, make):
    """Threads search while another rewrites rows back and forth between two versions:
    every score returned equals, bit for bit, that row's score under the old or the new
    version (same query, same code path), never something half written."""
    n, d = 3000, 32
    old = _data(rng, n, d)
    new = old.copy()
    changed = np.arange(0, n, 3)
    new[changed] = rng.standard_normal((len(changed), d)).astype(np.float32) * 3
    index = make(old)
    twin = pickle.loads(pickle.dumps(index))
    twin.update(changed, new[changed])
    query = _data(rng, 1, d)
    scores = {}
    for version, source in (("old", index), ("new", twin)):
        ids, s = source.search(query, n)
        scores[version] = dict(zip(ids[0].tolist(), s[0].tolist()))
    problems: list[str] = []
    done = threading.Event()
    searches = [0]
    deadline = time.monotonic() + TIME_LIMIT_S

    def search() -> None:
        while not done.is_set() and searches[0] < 400 and time.monotonic() < deadline:
            ids, s = index.search(query, 200)
            for i, value in zip(ids[0].tolist(), s[0].tolist()):
                if value != scores["old"][i] and value != scores["new"][i]:
                    problems.append(f"item {i} scored {value}, neither old nor new")
            searches[0] += 1

    def write() -> None:
        try:
            for j in range(60):
                if time.monotonic() > deadline:
                    return
                rows = (new if j % 2 == 0 else old)[changed]
                index.update(changed, rows)
        finally:
            done.set()

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIME_LIMIT_S + 5)
    assert not any(t.is_alive() for t in threads)
    assert not problems, problems[:3]
    assert searches[0] > 10


def test_native_deleted_mask_is_checked(rng):
    """The private module is reachable from Python: a mask of the wrong length is refused."""
    from llmrec import _core

    X = _data(rng, 40)
    with pytest.raises(ValueError, match="deleted mask"):
        _core.search_exact(X, X[:2], 3, deleted_mask=np.zeros(39, np.uint8))
    index = QuantizedIndex(X, codec="fp16")
    state = index._state
    with pytest.raises(ValueError, match="deleted mask"):
        search_quantized("fp16", 40, X.shape[1], state.codes, None, None, None, X[:2], 3,
                               deleted_mask=np.zeros(41, np.uint8))
    # non-zero bytes other than 1 mean removed too; every row removed: padding only
    ids, scores = _core.search_exact(X, X[:2], 3, deleted_mask=np.full(40, 7, np.uint8))
    assert (ids == -1).all() and np.isneginf(scores).all()


@pytest.mark.parametrize("k", [8, 40])
def test_pq4_dense_allow_ids_keep_k_results(rng, k):
    """Dense allow ids (applied as a mask) and removed rows are per-hit filters, so the
    pq4 scan keeps its heap instead of the unfiltered reservoirs (k >= 32), which a
    filtered item could fill: k allowed items come back whenever k qualify."""

    X = _data(rng, 640, 16)
    index = QuantizedIndex(X, codec="pq4", random_state=0)
    state = index._state
    allowed = np.arange(0, 640, 3, dtype=np.int64)  # dense: more than 1/8 of the items
    deleted = np.zeros(640, np.uint8)
    deleted[allowed[:20]] = 1
    for mask in (None, deleted):
        ids, _ = search_quantized("pq4", 640, 16, state.codes, None, None, None, X[:3], k,
                                        allow_ids=allowed, codebooks=index._codebooks,
                                        deleted_mask=mask)
        assert (ids >= 0).all() and np.isin(ids, allowed).all()
        if mask is not None:
            assert not np.isin(ids, allowed[:20]).any()


@pytest.mark.parametrize("codec", ["sq8", "fp16", "pq4"])
def test_partitioned_update_within_its_list_rewrites_the_slot(rng, codec):
    """A row that stays in its list is re-encoded in its slot (no new lists), with the
    codes add() would give it, and the search ranks it by its new vector."""
    X = _data(rng, 400)
    index = QuantizedIndex(X, codec=codec, partitions=8, random_state=4)
    twin = pickle.loads(pickle.dumps(index))
    lists = index._state.lists
    items = np.array([2, 50, 333])
    rows = (X[items] * 1.01).astype(np.float32)  # same direction: same nearest list
    assert (index._nearest_lists(rows) == lists.assignment[items]).all()
    index.update(items, rows)
    assert index._state.lists is lists  # nothing moved
    # exact: the same encoder, parameters and list (the residual's base) as add()
    np.testing.assert_array_equal(index.reconstruct(items), twin.reconstruct(twin.add(rows)))
    truth = Truth(np.arange(400), X)
    truth.add(items, rows)
    truth.check(index, _data(rng, 4), 10, probes=8, rerank=40)
