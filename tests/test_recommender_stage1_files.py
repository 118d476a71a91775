"""The stage-1 indexes saved with the Recommender (issue 16 §3): a loaded model searches
the saved lists (not rebuilt) and ranks as the saved one did, after add_items, update and
remove_items too; directories without them (older versions) rebuild; crafted stage-1
files are refused with FormatError."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from llmrec import Recommender
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.recommender import partitioned, scoring

from recommender_helpers import WordEncoder, assert_crafted_copy_refused, small_data


@pytest.fixture(scope="module")
def data():
    return small_data(300, 600)


def fresh(data, **kwargs):
    interactions, items, _ = data
    return Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                       num_threads=1, **kwargs).fit(interactions, items=items)


@pytest.fixture
def no_rebuild(monkeypatch):
    """Fails a test that would build a stage 1 (a load must read the saved one)."""
    def refuse(*args, **kwargs):
        raise AssertionError("stage 1 was rebuilt")
    monkeypatch.setattr(scoring.Stage1, "__init__", refuse)


@pytest.fixture(scope="module")
def banded_model(data):
    """An ivf-sq8 model with several norm bands, items added, re-solved and removed."""
    interactions, items, _ = data
    mp = pytest.MonkeyPatch()
    mp.setattr(partitioned, "MIN_BAND_ROWS", 60)
    try:
        rec = fresh(data, index="ivf-sq8", probes=3, candidates=40)
    finally:
        mp.undo()
    added = rec.add_items(items.iloc[:6].assign(item_id=items["item_id"].iloc[:6] + 10_000))
    for j, user in enumerate(rec._user_map.ids[:12]):  # clicks on the late items: re-solved
        rec.update(user, [added[j % 6], added[(j + 1) % 6]])
    rec.remove_items([added[0], rec._item_map.ids[3], rec._item_map.ids[10]])
    return rec


def _same_rankings(a, b, users):
    for query in (None, "a story"):
        x, y = a.recommend(users, 10, query=query), b.recommend(users, 10, query=query)
        np.testing.assert_array_equal(x.ids, y.ids)
        np.testing.assert_array_equal(x.scores, y.scores)


@pytest.mark.parametrize("index", ["ivf-sq8", "ivf-pq4", "sq8"])
def test_saved_stage1_loads_without_rebuild_and_ranks_the_same(data, tmp_path, monkeypatch, index):
    rec = fresh(data, index=index, probes=3, candidates=40)
    rec.save(tmp_path / "m")
    assert (tmp_path / "m" / "stage1.llmrec").exists()
    monkeypatch.setattr(scoring.Stage1, "__init__", lambda *a, **k: pytest.fail("stage 1 was rebuilt"))
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert back.index_info_ == rec.index_info_
    _same_rankings(rec, back, list(rec._user_map.ids[:40]))


def test_saved_stage1_after_writes(banded_model, tmp_path, no_rebuild):
    """Bands, the delta (added and re-solved items, rebuilt from their current rows)
    and removals survive the round trip; the loaded model keeps taking writes."""
    rec = banded_model
    assert len(rec._items.index.behaviour.bands) >= 2 and rec._items.index.behaviour.delta is not None
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    users = list(rec._user_map.ids[:40])
    _same_rankings(rec, back, users)
    _same_rankings(back, pickle.loads(pickle.dumps(back)), users)  # objects travel
    got = back.recommend(users, 10, exclude_seen=False).ids
    assert not np.isin(got, back._item_map.ids[[3, 10]]).any()
    gone = back._item_map.ids[20]
    back.remove_items([gone])
    back.compact()
    assert gone not in back.recommend(users, 50).ids


def test_flat_stage1_after_removals_and_compact(data, tmp_path, monkeypatch):
    rec = fresh(data, index="sq8", candidates=40)
    rec.add_items(data[1].iloc[:3].assign(item_id=data[1]["item_id"].iloc[:3] + 10_000))
    rec.remove_items(list(rec._item_map.ids[[2, 5, 600]]))
    rec.compact()
    rec.save(tmp_path / "m")
    monkeypatch.setattr(scoring.Stage1, "__init__", lambda *a, **k: pytest.fail("stage 1 was rebuilt"))
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    _same_rankings(rec, back, list(rec._user_map.ids[:40]))


def test_directories_without_saved_stage1_rebuild_it(data, tmp_path):
    """A version-5 file (before stage 1 was saved) and an exact stage 1 (never saved)
    load by building stage 1 from the item rows, as before."""
    rec = fresh(data, index="ivf-sq8", probes=3, candidates=40)
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=99)
    meta.pop("stage1")
    for extra in (tmp_path / "m").glob("stage1*"):
        extra.unlink()
    path.unlink()
    save_arrays(path, "Recommender", 5, meta, {k: np.asarray(v) for k, v in arrays.items()})
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    _same_rankings(rec, back, list(rec._user_map.ids[:30]))  # same seed: the same lists
    exact = fresh(data, index="exact")
    exact.save(tmp_path / "e")
    assert not list((tmp_path / "e").glob("stage1*"))
    _same_rankings(exact, Recommender.load(tmp_path / "e", encoder=WordEncoder()), list(exact._user_map.ids[:10]))


def _rewrite_manifest(path, change):
    meta, arrays, version = load_arrays(path, "Stage1", max_kind_version=2)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    change(meta, arrays)
    path.unlink()
    save_arrays(path, "Stage1", version, meta, arrays)


def _swap(a, b):
    def change(directory):
        x, y = (directory / a).read_bytes(), (directory / b).read_bytes()
        (directory / a).write_bytes(y)
        (directory / b).write_bytes(x)
    return change


def _manifest(change):
    return lambda directory: _rewrite_manifest(directory / "stage1.llmrec", change)


def _truncate(name):
    def change(directory):
        raw = (directory / name).read_bytes()
        (directory / name).write_bytes(raw[:len(raw) // 2])
    return change


def _band_rows(fn):
    def change(meta, arrays):
        arrays["behaviour.rows.0"] = fn(arrays["behaviour.rows.0"])
    return _manifest(change)


ATTACKS = {
    "manifest missing": lambda d: (d / "stage1.llmrec").unlink(),
    "band file missing": lambda d: (d / "stage1.behaviour.1.llmrec").unlink(),
    "band file truncated": _truncate("stage1.behaviour.0.llmrec"),
    "manifest truncated": _truncate("stage1.llmrec"),
    "channels' files swapped": _swap("stage1.behaviour.0.llmrec", "stage1.request.0.llmrec"),
    "bands' files swapped": _swap("stage1.behaviour.0.llmrec", "stage1.behaviour.1.llmrec"),
    "token": _manifest(lambda m, a: m.update(token="0" * 32)),
    "index kind": _manifest(lambda m, a: m.update(kind="ivf-pq4")),
    "channel missing": _manifest(lambda m, a: m["channels"].pop("interest")),
    "layout flat": _manifest(lambda m, a: m["channels"]["behaviour"].update(layout="flat")),
    "band count": _manifest(lambda m, a: m["channels"]["behaviour"].update(bands=1)),
    "band count huge": _manifest(lambda m, a: m["channels"]["behaviour"].update(bands=10**9)),
    "n_main": _manifest(lambda m, a: m["channels"]["behaviour"].update(n_main=5)),
    "band rows beyond the items": _band_rows(lambda r: r + 10**6),
    "band rows negative": _band_rows(lambda r: r - 10**6),
    "band rows repeated": _band_rows(lambda r: np.sort(np.concatenate([r[:-1], r[:1]]))),
    "band rows unsorted": _band_rows(lambda r: r[::-1].copy()),
    "band rows empty": _band_rows(lambda r: r[:0]),
    "band rows float": _band_rows(lambda r: r.astype(np.float64)),
    "lift zero": _manifest(lambda m, a: a.update({"behaviour.lifts": a["behaviour.lifts"] * 0})),
    "lift NaN": _manifest(lambda m, a: a.update({"behaviour.lifts": a["behaviour.lifts"] * np.nan})),
    "delta beyond the items": _manifest(lambda m, a: a.update({"behaviour.delta": a["behaviour.delta"] + 10**6})),
    "token of the model": lambda d: _rewrite_model_token(d),
}


def _rewrite_model_token(directory):
    path = directory / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=99)
    meta["stage1"] = "f" * 32
    path.unlink()
    save_arrays(path, "Recommender", 6, meta, {k: np.asarray(v) for k, v in arrays.items()})


@pytest.fixture(scope="module")
def saved_banded(banded_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("banded") / "m"
    banded_model.save(directory)
    return directory


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_crafted_stage1_files_are_refused(saved_banded, tmp_path, case):
    assert_crafted_copy_refused(saved_banded, tmp_path, ATTACKS[case])


def test_stage1_of_another_model_is_refused(data, saved_banded, tmp_path):
    other = fresh(data, index="ivf-sq8", probes=3, candidates=40)
    other.save(tmp_path / "other")

    def swap_in_the_others(directory):
        for name in [p.name for p in directory.glob("stage1*")]:
            (directory / name).unlink()
        for path in (tmp_path / "other").glob("stage1*"):
            shutil.copy(path, directory / path.name)

    assert_crafted_copy_refused(saved_banded, tmp_path, swap_in_the_others, match="token")


def test_saving_over_a_model_with_stage1_files(banded_model, tmp_path):
    """A model directory holding stage-1 files is an llmrec model (save replaces it),
    and a saved exact model leaves none of the old stage-1 files behind."""
    banded_model.save(tmp_path / "m")
    banded_model.save(tmp_path / "m")
    (tmp_path / "m" / "stage1.stray.llmrec").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        banded_model.save(tmp_path / "m")
