"""The request channel over the items' int8 text codes (:mod:`llmrec.recommender.text_lists`,
issue 16 §3): it returns the top k by the exact int8 score among the rows of the probed
lists (a float64 reference over the same codes), honours exclude / allow / removals /
added items, keeps no second copy of the text, and survives save / load — including
models saved with the older partitioned request channel, converted at load."""

from __future__ import annotations


import numpy as np
import pytest

from llmrec import FormatError, Recommender
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.quantized import probed_lists
from llmrec.recommender import scoring
from llmrec.recommender.partitioned import PartitionedChannel
from llmrec.recommender.rows import Int8Rows
from llmrec.recommender.text_lists import TextLists

from recommender_helpers import WordEncoder, assert_crafted_copy_refused, small_data


def clustered_text(rng, n=3000, d=24, clusters=30):
    centres = rng.standard_normal((clusters, d))
    rows = centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, d))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def reference_top(text, queries, rows_per_query, k):
    """Per query, the k best of its rows by the int8 score in float64 (ids, scores)."""
    decoded = text.codes.astype(np.float64) * text.scales.astype(np.float64)[:, None]
    out = []
    for q, rows in zip(queries.astype(np.float64), rows_per_query):
        scores = decoded[rows] @ q
        order = np.lexsort((rows, -scores))[:k]
        out.append((rows[order], scores[order]))
    return out


def check_against_reference(channel, text, queries, k, rows_per_query):
    found, _ = channel.search(queries, k, text=text)
    decoded = text.codes.astype(np.float64) * text.scales.astype(np.float64)[:, None]
    for q, (ids, scores) in enumerate(reference_top(text, queries, rows_per_query, k)):
        got = found[q][found[q] >= 0]
        assert len(got) == len(ids)
        assert len(set(got.tolist())) == len(got)
        assert np.isin(got, rows_per_query[q]).all()
        # each score: a float32 sum of d products of magnitude ≤ |q_j|·s_i·127
        bound = 2 * 24 * np.finfo(np.float32).eps * (np.abs(decoded[got]) @ np.abs(queries[q])) + 1e-12
        mine = decoded[got] @ queries[q].astype(np.float64)
        kth = scores[-1]
        assert (mine >= kth - bound).all()  # nothing returned scores below the reference k-th


def test_search_is_the_exact_int8_top_k_of_the_probed_lists(rng):
    E = clustered_text(rng)
    text = Int8Rows.encode(E)
    channel = TextLists.build(text, 1, 0, probes=4)
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
    text = Int8Rows.encode(E)
    channel = TextLists.build(text, 1, 0)
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
