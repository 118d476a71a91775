"""The request channel over the items' int8 text codes (:mod:`llmrec.recommender.text_lists`,
issue 16 §3): it returns the top k by the exact int8 score among the rows of the probed
lists (a float64 reference over the same codes), honours exclude / allow / removals /
added items, keeps no second copy of the text, reads E laid out list by list (and stage
2 finds each item's row there), and survives save / load — including models saved with
the older partitioned request channel or with E in row order, converted at load."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from llmrec import FormatError, Recommender, _core
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.quantized import probed_lists
from llmrec.recommender import scoring
from llmrec.recommender.partitioned import PartitionedChannel
from llmrec.recommender.rows import Int8Rows
from llmrec.recommender.text_lists import TextLists

from recommender_helpers import WordEncoder, assert_crafted_copy_refused, small_data
from tolerances import assert_within, gamma


def clustered_text(rng, n=3000, d=24, clusters=30):
    centres = rng.standard_normal((clusters, d))
    rows = centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, d))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def decoded(text):
    """Each item's stored int8 row s_i·c_i in float64, in item order (wherever it is stored)."""
    at = np.arange(text.n) if text.slots is None else text.slots
    return text.codes[at].astype(np.float64) * text.scales[at].astype(np.float64)[:, None]


def reference_top(text, queries, rows_per_query, k):
    """Per query, the k best of its rows by the int8 score in float64 (ids, scores)."""
    decoded_rows = decoded(text)
    out = []
    for q, rows in zip(queries.astype(np.float64), rows_per_query):
        scores = decoded_rows[rows] @ q
        order = np.lexsort((rows, -scores))[:k]
        out.append((rows[order], scores[order]))
    return out


def check_against_reference(channel, text, queries, k, rows_per_query):
    found, _ = channel.search(queries, k, text=text)
    decoded_rows = decoded(text)
    for q, (ids, scores) in enumerate(reference_top(text, queries, rows_per_query, k)):
        got = found[q][found[q] >= 0]
        assert len(got) == len(ids)
        assert len(set(got.tolist())) == len(got)
        assert np.isin(got, rows_per_query[q]).all()
        # each score: a float32 sum of d products of magnitude ≤ |q_j|·s_i·127
        bound = 2 * 24 * np.finfo(np.float32).eps * (np.abs(decoded_rows[got]) @ np.abs(queries[q])) + 1e-12
        mine = decoded_rows[got] @ queries[q].astype(np.float64)
        kth = scores[-1]
        assert (mine >= kth - bound).all()  # nothing returned scores below the reference k-th


def test_search_is_the_exact_int8_top_k_of_the_probed_lists(rng):
    E = clustered_text(rng)
    channel = TextLists.build(Int8Rows.encode(E), 1, 0, probes=4)
    text = channel.lay_out(Int8Rows.encode(E))
    assert channel.partitions == round(4 * np.sqrt(len(E)))
    assert np.array_equal(np.sort(channel.order), np.arange(len(E)))
    queries = clustered_text(rng, n=12)
    lists = probed_lists(channel.centroids, queries, 4, 1)
    rows_per_query = [np.concatenate([channel.order[channel.starts[j]:channel.starts[j + 1]] for j in row])
                      .astype(np.int64) for row in lists]
    check_against_reference(channel, text, queries, 10, rows_per_query)
    # every list probed: the exact int8 top k of the whole catalogue
    channel.probes = channel.partitions
    check_against_reference(channel, text, queries, 10, [np.arange(len(E))] * len(queries))


def test_exclude_allow_removed_and_added_rows(rng):
    E = clustered_text(rng, n=2000)
    channel = TextLists.build(Int8Rows.encode(E), 1, 0)
    text = channel.lay_out(Int8Rows.encode(E))
    channel.probes = channel.partitions
    queries = clustered_text(rng, n=5)
    every = np.arange(len(E))
    first, _ = channel.search(queries, 20, text=text)
    excluded = [row[:5] for row in first]
    channel.remove(first[0][5:8])
    allow = every[::2]
    expected = [np.setdiff1d(np.intersect1d(allow, every), np.union1d(first[0][5:8], ex)) for ex in excluded]
    found, _ = channel.search(queries, 10, text=text, exclude=excluded, allow=allow)
    for q in range(len(queries)):
        assert np.isin(found[q][found[q] >= 0], expected[q]).all()
    for q, (ids, _) in enumerate(reference_top(text, queries, expected, 10)):
        assert set(found[q][found[q] >= 0].tolist()) == set(ids.tolist())
    # rows appended after the build: in no list, every search scores them
    more = clustered_text(rng, n=50)
    grown = text.appended(more)
    twin = TextLists(channel.centroids, channel.order, channel.starts, channel.n_main, channel.n_rows, 1,
                     1, channel.removed)
    twin.add(more)
    assert len(twin) == len(E) + 50 and len(channel) == len(E)
    best, _ = twin.search(more[:3], 1, text=grown)
    np.testing.assert_array_equal(best[:, 0], len(E) + np.arange(3))  # each its own best match
    with pytest.raises(ValueError, match="rows"):
        twin.search(more[:1], 1, text=text)  # the text must hold the channel's rows


def test_a_flat_channel_scores_every_row(rng):
    E = clustered_text(rng, n=1500)
    text = Int8Rows.encode(E)
    channel = TextLists.flat(len(E), E.shape[1], 1)
    assert channel.partitions == 0 and channel.probes == 0 and len(channel) == len(E)
    queries = clustered_text(rng, n=6)
    check_against_reference(channel, text, queries, 10, [np.arange(len(E))] * len(queries))
    channel.remove(np.arange(0, len(E), 3))
    kept = np.setdiff1d(np.arange(len(E)), np.arange(0, len(E), 3))
    found, _ = channel.search(queries, 10, text=text, exclude=[kept[:4]] * len(queries))
    for q, (ids, _) in enumerate(reference_top(text, queries, [kept[4:]] * len(queries), 10)):
        assert set(found[q][found[q] >= 0].tolist()) == set(ids.tolist())
    assert channel.lay_out(text) is text  # E in item order is the flat channel's layout


def test_lay_out_stores_each_list_as_one_run(rng):
    """E laid out list by list: list j's items at positions starts[j] … starts[j+1] − 1,
    later rows last in row order; every row reads back as before (same codes, same
    scales), through copies, appends and writes; laying out again is a no-op."""
    E = clustered_text(rng, n=1500)
    plain = Int8Rows.encode(E)
    channel = TextLists.build(plain, 1, 0)
    channel.add(np.zeros((7, E.shape[1]), np.float32))  # 7 rows appended after the build
    more = clustered_text(rng, n=7)
    grown = plain.appended(more)
    text = channel.lay_out(grown)
    assert text is not grown and grown.slots is None and text.slots.dtype == np.int32
    for j in range(channel.partitions):
        lo, hi = channel.starts[j], channel.starts[j + 1]
        np.testing.assert_array_equal(text.slots[channel.order[lo:hi]], np.arange(lo, hi))
    np.testing.assert_array_equal(text.slots[1500:], np.arange(1500, 1507))
    np.testing.assert_array_equal(decoded(text), decoded(grown))
    np.testing.assert_array_equal(text[[3, 1504, 0]], grown[[3, 1504, 0]])
    assert channel.lay_out(text) is text
    assert text.nbytes == grown.nbytes + 4 * 1507  # the slots: one int32 per item
    # appended rows are stored last; a write lands on the item's own row
    longer, plain_longer = text.appended(more[:2]), grown.appended(more[:2])
    np.testing.assert_array_equal(decoded(longer), decoded(plain_longer))
    np.testing.assert_array_equal(longer.slots[-2:], [1507, 1508])
    written, plain_written = longer.copy(), plain_longer.copy()
    written[[5, 1508]] = more[3:5]
    plain_written[[5, 1508]] = more[3:5]
    np.testing.assert_array_equal(decoded(written), decoded(plain_written))
    np.testing.assert_array_equal(decoded(longer), decoded(plain_longer))  # the copy's only
    np.testing.assert_array_equal(decoded(text.grown(1510))[-3:], 0.0)


def test_search_refuses_text_not_laid_out_for_its_lists(rng):
    E = clustered_text(rng, n=1200)
    channel = TextLists.build(Int8Rows.encode(E), 1, 0)
    other = TextLists.build(Int8Rows.encode(E), 1, 1)  # other lists
    channel.probes = channel.partitions
    with pytest.raises(ValueError, match="laid out"):
        channel.search(E[:2], 5, text=Int8Rows.encode(E))
    with pytest.raises(ValueError, match="laid out for other lists"):
        channel.search(E[:2], 5, text=other.lay_out(Int8Rows.encode(E)))
    with pytest.raises(ValueError, match="int32 slot"):
        Int8Rows(np.zeros((3, 2), np.int8), np.ones(3, np.float32), np.arange(3))


def test_native_rescore_reads_rows_where_the_row_map_says(rng, simd_level):
    """``row_maps``: item i's int8 row and row scale read at position map[i] (a float64
    reference of the same stored values, every SIMD level); maps out of range or of the wrong
    length refused."""
    n, d, nq, c, k = 400, 40, 5, 60, 7
    plain = Int8Rows.encode(clustered_text(rng, n=n, d=d))
    order = rng.permutation(n)
    text = plain.laid_out(order)
    V = rng.standard_normal((n, 8)).astype(np.float32)
    qe, qv = rng.standard_normal((nq, d)).astype(np.float32), rng.standard_normal((nq, 8)).astype(np.float32)
    candidates = np.stack([rng.choice(n, c, replace=False) for _ in range(nq)]).astype(np.int64)
    candidates[1, :4] = -1
    zero = np.zeros(nq, np.float32)
    ids, scores = _core.rescore_candidates(candidates, [text.codes, V], [qe, qv], [None, None], [None, None],
                                           zero, k, 2, [text.scales, None], [text.slots, None])
    full = decoded(plain) @ qe.astype(np.float64).T + V.astype(np.float64) @ qv.astype(np.float64).T
    size = np.abs(decoded(plain)) @ np.abs(qe.astype(np.float64)).T + np.abs(V) @ np.abs(qv.astype(np.float64)).T
    bound = gamma(d + 8) * size
    for q in range(nq):
        valid = candidates[q][candidates[q] >= 0]
        assert np.isin(ids[q], valid).all()
        assert_within(scores[q], full[ids[q], q], bound[ids[q], q])
        assert full[ids[q], q].min() >= np.sort(full[valid, q])[-k] - 2 * bound[:, q].max()
    base = (candidates, [text.codes], [qe], [None], [None], zero, k, 1, [text.scales])
    with pytest.raises(ValueError, match="row_maps"):
        _core.rescore_candidates(*base, [np.arange(n - 1, dtype=np.int32)])
    with pytest.raises(ValueError, match="row_maps"):
        _core.rescore_candidates(*base, [np.full(n, n, np.int32)])
    with pytest.raises(ValueError, match="row_maps"):
        _core.rescore_candidates(*base, [np.full(n, -1, np.int32)])
    with pytest.raises(ValueError, match="row_maps"):
        _core.rescore_candidates(*base, [None, None])


@pytest.fixture(scope="module")
def data():
    return small_data(300, 600)


def fresh(data, **kwargs):
    interactions, items, _ = data
    settings = {"index": "ivf-sq8", "probes": 3, "candidates": 40, **kwargs}
    return Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                       num_threads=1, **settings).fit(interactions, items=items)


def _same(a, b, users):
    for query in (None, "a story of the city"):
        x, y = a.recommend(users, 10, query=query), b.recommend(users, 10, query=query)
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.scores, y.scores)
    x, y = a.search("a story of the city", 10), b.search("a story of the city", 10)
    np.testing.assert_array_equal(x.ids, y.ids)


def test_recommender_request_channel_reads_the_int8_text(data, tmp_path, monkeypatch):
    rec = fresh(data, text_storage="int8")
    channel = rec._items.index.request
    assert isinstance(channel, TextLists)
    memory = rec.memory_per_item()
    assert memory["stage1.request"] == channel.memory_bytes() / 600
    p = channel.partitions  # a 4-byte row per item, the centroids and list starts: no codes
    assert memory["stage1.request"] == 4 + (4 * 64 * p + 8 * (p + 1)) / 600
    # with every list probed, a free-text search is the exact ranking of its int8 score
    channel.probes = channel.partitions
    exact = fresh(data, text_storage="int8", candidates=600)
    got, want = rec.search("a story of the city", 10), exact.search("a story of the city", 10)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-6)
    channel.probes = 3
    added = rec.add_items(data[1].iloc[:4].assign(item_id=data[1]["item_id"].iloc[:4] + 10_000))
    rec.remove_items([added[0], rec._item_map.ids[7]])
    rec.save(tmp_path / "m")
    meta, arrays, version = load_arrays(tmp_path / "m" / "stage1.llmrec", "Stage1", max_kind_version=2)
    assert version == 2 and meta["channels"]["request"]["layout"] == "rows"
    assert not (tmp_path / "m" / "stage1.request.0.llmrec").exists()
    monkeypatch.setattr(scoring.Stage1, "__init__", lambda *a, **k: pytest.fail("stage 1 was rebuilt"))
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert isinstance(back._items.index.request, TextLists)
    _same(rec, back, list(rec._user_map.ids[:30]))
    assert added[0] not in back.search("a story of the city", 600).ids


def _row_ordered(text):
    """A copy of ``text`` stored in item order (no slots)."""
    return Int8Rows(text.codes[text.slots], text.scales[text.slots])


def test_stage_2_reads_each_item_where_e_stores_it(data):
    """The fitted model's E is laid out list by list; every score it gives equals, bit for
    bit, the twin's whose E holds the same codes in item order."""
    rec = fresh(data, text_storage="int8", text_weight=1.0)
    E, channel = rec._items.E, rec._items.index.request
    assert E.slots is not None and channel.lay_out(E) is E
    assert not np.array_equal(E.slots, np.arange(E.n))
    twin = copy.deepcopy(rec)
    snap = twin._publisher.current
    twin._publisher.current = snap._replace(items=snap.items._replace(E=_row_ordered(E)))
    every = rec._item_map.ids
    users = list(rec._user_map.ids[:20])
    for user in users[:5]:
        np.testing.assert_array_equal(rec.predict(user, every), twin.predict(user, every))
    x, y = rec.recommend(users, 10), twin.recommend(users, 10)
    np.testing.assert_array_equal(x.ids, y.ids)
    np.testing.assert_array_equal(x.scores, y.scores)


def _recommender_file(change, version=8):
    def apply(directory):
        path = directory / "recommender.llmrec"
        meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=12)
        arrays = {k: np.array(v) for k, v in arrays.items()}
        change(arrays)
        path.unlink()
        save_arrays(path, "Recommender", version, meta, arrays)
    return apply


def _stored_in(order):
    """Rewrites E's storage so that item row ``order(n)[j]`` is at position j."""
    def change(arrays):
        at = arrays.pop("E_slots")
        codes, scales = arrays["E_codes"], arrays["E_scales"]
        rows = order(len(at))
        arrays["E_codes"], arrays["E_scales"] = codes[at[rows]], scales[at[rows]]
        if not np.array_equal(rows, np.arange(len(at))):
            arrays["E_slots"] = np.argsort(rows).astype(np.int32)
    return change


def test_e_stored_in_item_order_or_another_order_is_laid_out_at_load(data, tmp_path):
    """A version-7 file (E in item order, no slots) and a file whose E is stored in some
    other order both load with E laid out list by list, serving the same lists."""
    rec = fresh(data, text_storage="int8")
    rec.save(tmp_path / "m")
    _, arrays, version = load_arrays(tmp_path / "m" / "recommender.llmrec", "Recommender", max_kind_version=12)
    assert version == 12 and arrays["E_slots"].dtype == np.int32
    np.testing.assert_array_equal(arrays["E_slots"], rec._items.E.slots)
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    np.testing.assert_array_equal(back._items.E.slots, rec._items.E.slots)
    users = list(rec._user_map.ids[:20])
    for name, craft in (("item order, version 7", _recommender_file(_stored_in(np.arange), version=7)),
                        ("shuffled", _recommender_file(_stored_in(np.random.default_rng(3).permutation)))):
        directory = tmp_path / name
        shutil.copytree(tmp_path / "m", directory)
        craft(directory)
        loaded = Recommender.load(directory, encoder=WordEncoder())
        E = loaded._items.E
        assert E.slots is not None and loaded._items.index.request.lay_out(E) is E, name
        np.testing.assert_array_equal(decoded(E), decoded(rec._items.E))
        _same(rec, loaded, users)


E_SLOT_ATTACKS = {
    "slots repeated": lambda a: a["E_slots"].__setitem__(0, a["E_slots"][1]),
    "slots beyond the items": lambda a: a["E_slots"].__setitem__(0, len(a["E_slots"])),
    "slots negative": lambda a: a["E_slots"].__setitem__(0, -1),
    "slots int64": lambda a: a.update({"E_slots": a["E_slots"].astype(np.int64)}),
    "slots short": lambda a: a.update({"E_slots": a["E_slots"][:-1]}),
}


@pytest.mark.parametrize("case", sorted(E_SLOT_ATTACKS))
def test_crafted_e_slots_are_refused(saved_rows, tmp_path, case):
    assert_crafted_copy_refused(saved_rows, tmp_path, _recommender_file(E_SLOT_ATTACKS[case]), match="E_slots")


def test_models_saved_with_a_partitioned_request_channel_convert_at_load(data, tmp_path):
    """Saved before TextLists (manifest version 1, the request channel's own sq8 codes):
    the load keeps its lists and drops the codes; search results are the exact int8
    top k of the same probed lists."""
    original = scoring.Stage1.__init__

    def older(self, *args, **kwargs):
        kwargs["text_codes"] = False
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring.Stage1, "__init__", older)
        old = fresh(data, text_storage="int8")
    bands = old._items.index.request
    assert isinstance(bands, PartitionedChannel)
    old.remove_items([old._item_map.ids[11]])
    old.save(tmp_path / "m")
    path = tmp_path / "m" / "stage1.llmrec"
    meta, arrays, _ = load_arrays(path, "Stage1", max_kind_version=2)
    path.unlink()
    save_arrays(path, "Stage1", 1, meta, arrays)
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    channel = back._items.index.request
    assert isinstance(channel, TextLists) and 11 in channel.removed
    for j, band in enumerate(bands.bands):  # the same lists, item by item
        centroids, ids, lists = band.index.list_of_ids()
        np.testing.assert_array_equal(channel.centroids[:len(centroids)], centroids[:, :-1])
        for lst in np.unique(lists)[:20]:
            mine = channel.order[channel.starts[lst]:channel.starts[lst + 1]]
            assert set(mine.tolist()) >= set(band.rows[ids[lists == lst]].tolist())
    found = back.search("a story of the city", 10).ids
    assert old._item_map.ids[11] not in found and len(found) == 10
    back.save(tmp_path / "again")  # now in layout "rows"
    again = Recommender.load(tmp_path / "again", encoder=WordEncoder())
    _same(back, again, list(back._user_map.ids[:20]))


def _rows_attack(change):
    def apply(directory):
        path = directory / "stage1.llmrec"
        meta, arrays, _ = load_arrays(path, "Stage1", max_kind_version=2)
        change(meta, arrays)
        path.unlink()
        save_arrays(path, "Stage1", 2, meta, {k: np.asarray(v) for k, v in arrays.items()})
    return apply


ATTACKS = {
    "order repeated": _rows_attack(lambda m, a: a["request.order"].__setitem__(0, a["request.order"][1])),
    "order beyond the items": _rows_attack(lambda m, a: a["request.order"].__setitem__(0, 10**6)),
    "order int64": _rows_attack(lambda m, a: a.update({"request.order": a["request.order"].astype(np.int64)})),
    "starts not rising": _rows_attack(lambda m, a: a.update({"request.starts": a["request.starts"][::-1].copy()})),
    "starts short": _rows_attack(lambda m, a: a.update({"request.starts": a["request.starts"][:-1]})),
    "centroids NaN": _rows_attack(lambda m, a: a.update({"request.centroids": a["request.centroids"] * np.nan})),
    "centroids wrong width": _rows_attack(lambda m, a: a.update({"request.centroids": a["request.centroids"][:, :5]})),
    "removed beyond the items": _rows_attack(lambda m, a: a.update({"request.removed": np.array([10**6])})),
    "removed unsorted": _rows_attack(lambda m, a: a.update({"request.removed": np.array([5, 3])})),
    "n_rows": _rows_attack(lambda m, a: m["channels"]["request"].update(n_rows=5)),
    "layout rows in version 1": lambda d: _version_one(d),
}


def _version_one(directory):
    path = directory / "stage1.llmrec"
    meta, arrays, _ = load_arrays(path, "Stage1", max_kind_version=2)
    path.unlink()
    save_arrays(path, "Stage1", 1, meta, arrays)


@pytest.fixture(scope="module")
def saved_rows(data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("rows") / "m"
    fresh(data, text_storage="int8").save(directory)
    return directory


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_crafted_request_lists_are_refused(saved_rows, tmp_path, case):
    assert_crafted_copy_refused(saved_rows, tmp_path, ATTACKS[case])


def test_layout_rows_on_a_float_text_model_is_refused(data, saved_rows, tmp_path):
    """A float32-text model's request channel keeps its own codes: lists without them are refused."""
    rec = fresh(data, text_storage="float32")
    rec.save(tmp_path / "f")
    meta, arrays, _ = load_arrays(tmp_path / "f" / "stage1.llmrec", "Stage1", max_kind_version=2)
    rows_meta, rows_arrays, _ = load_arrays(saved_rows / "stage1.llmrec", "Stage1", max_kind_version=2)
    meta["channels"]["request"] = rows_meta["channels"]["request"]
    arrays.update({k: v for k, v in rows_arrays.items() if k.startswith("request.")})
    (tmp_path / "f" / "stage1.llmrec").unlink()
    save_arrays(tmp_path / "f" / "stage1.llmrec", "Stage1", 2, meta, {k: np.asarray(v) for k, v in arrays.items()})
    with pytest.raises(FormatError, match="layout 'rows'"):
        Recommender.load(tmp_path / "f", encoder=WordEncoder())


def test_an_exact_stage_1_scans_the_int8_text_without_a_float_copy(data, tmp_path):
    rec = fresh(data, text_storage="int8", index="exact")
    channel = rec._items.index.request
    assert isinstance(channel, TextLists) and channel.partitions == 0
    assert rec._items.E.slots is None  # item order is the flat channel's: no row map
    assert rec.memory_per_item()["stage1.request"] == channel.memory_bytes() / 600
    # the free-text search is the exact ranking of the int8 score the items keep
    text, query = rec._items.E, "a story of the city"
    q = rec.encoder.encode([query]).astype(np.float64)[0]
    scores = (text.codes.astype(np.float64) * text.scales.astype(np.float64)[:, None]) @ q
    got = rec.search(query, 10)
    ids = rec._item_map.rows(list(got.ids), "ids")
    bound = 2 * text.codes.shape[1] * np.finfo(np.float32).eps * np.abs(scores).max() + 1e-12
    assert (scores[ids] >= np.sort(scores)[-10] - bound).all()
    rec.add_items(data[1].iloc[:4].assign(item_id=data[1]["item_id"].iloc[:4] + 10_000))
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert isinstance(back._items.index.request, TextLists)
    _same(rec, back, list(rec._user_map.ids[:30]))
