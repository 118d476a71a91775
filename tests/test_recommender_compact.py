"""Compact item rows (issue 16, §3): text vectors kept in int8 with one scale per row,
unit factors derived from V and inverse norms, the native re-scorer reading both, and
rankings with and without the compression on a seeded catalogue within a derived bound."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from llmrec import Recommender, _core
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.recommender import scoring
from llmrec.recommender.rows import Int8Rows, UnitRows, inverse_norms

from recommender_helpers import WordEncoder, small_data
from test_recommender import _reference_and_bound
from tolerances import UNIT32, assert_within, gamma


def _unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------- the containers
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_int8_rows_decode_within_half_a_step(seed):
    rng = np.random.default_rng(seed)
    E = _unit(rng, 200, 384)
    E[3] = 0.0  # a zero row stays zero, scale 0
    rows = Int8Rows.encode(E)
    assert rows.codes.dtype == np.int8 and rows.shape == E.shape and rows.nbytes == 200 * (384 + 4)
    decoded = rows[:].astype(np.float64)
    step = rows.scales.astype(np.float64)[:, None]
    # |x − s·c| ≤ s/2 from rounding, plus float32 rounding of x/s and of s·c
    assert_within(decoded, E.astype(np.float64), step / 2 + gamma(3) * np.abs(E))
    assert np.abs(rows.codes).max() == 127 and rows.scales[3] == 0 and not decoded[3].any()
    np.testing.assert_array_equal(rows[[5, 7]], rows[:][[5, 7]])
    np.testing.assert_array_equal(np.asarray(rows), rows[:])


def test_int8_rows_append_leaves_earlier_views_alone():
    rng = np.random.default_rng(3)
    first = Int8Rows.encode(_unit(rng, 10, 16))
    before = first[:].copy()
    grown = first.appended(_unit(rng, 3, 16))
    again = grown.appended(_unit(rng, 2, 16))
    assert len(first) == 10 and len(grown) == 13 and len(again) == 15
    np.testing.assert_array_equal(first[:], before)
    np.testing.assert_array_equal(again[:13], grown[:])


def test_unit_rows_equal_normalised_factors():
    rng = np.random.default_rng(4)
    V = rng.standard_normal((50, 12)).astype(np.float32)
    warm = rng.random(50) < 0.7
    V[0] = 0.0
    warm[0] = True  # a zero row has no direction: stays zero
    unit = UnitRows(V, inverse_norms(V, warm))
    V64 = V.astype(np.float64)
    norms = np.linalg.norm(V64, axis=1, keepdims=True)
    expected = np.where(warm[:, None] & (norms > 0), V64 / np.where(norms > 0, norms, 1), 0.0)
    assert_within(np.asarray(unit, dtype=np.float64), expected, gamma(12 + 4))
    assert unit.nbytes == 50 * 4


@pytest.mark.parametrize("seed, d", [(0, 96), (1, 99)])
def test_native_rescore_reads_int8_rows_and_row_scales(seed, d, simd_level):
    """int8 codes with row scales and float rows with row scales, against numpy float64 of
    the same stored values, at every SIMD level (d = 99: the int8 kernels' partial tail)."""
    rng = np.random.default_rng(seed)
    n, nq, c, k = 300, 7, 40, 9
    E = Int8Rows.encode(_unit(rng, n, d))
    V = rng.standard_normal((n, 24)).astype(np.float32)
    inv = rng.random(n).astype(np.float32)
    qe = rng.standard_normal((nq, d)).astype(np.float32)
    qv = rng.standard_normal((nq, 24)).astype(np.float32)
    offset = rng.standard_normal(nq).astype(np.float32)
    candidates = np.stack([rng.choice(n, c, replace=False) for _ in range(nq)]).astype(np.int64)
    candidates[0, :5] = -1
    ids, scores = _core.rescore_candidates(candidates, [E.codes, V], [qe, qv], [None, None], [None, None],
                                           offset, k, 2, [E.scales, inv])
    Ed = E[:].astype(np.float64)
    full = (Ed @ qe.astype(np.float64).T).T + ((V.astype(np.float64) * inv[:, None]) @ qv.astype(np.float64).T).T
    full -= offset[:, None]
    size = (np.abs(Ed) @ np.abs(qe.astype(np.float64)).T).T + (np.abs(V.astype(np.float64) * inv[:, None])
                                                                @ np.abs(qv.astype(np.float64)).T).T
    bound = gamma(d + 8) * (size + np.abs(offset)[:, None])
    for q in range(nq):
        valid = candidates[q][candidates[q] >= 0]
        order = valid[np.argsort(-full[q, valid], kind="stable")][:k]
        # each returned score is the reference score of that id, and no better id was left out
        assert_within(scores[q], full[q, ids[q]], bound[q, ids[q]])
        assert full[q, ids[q]].min() >= full[q, order].min() - 2 * bound[q].max()


def test_native_rescore_refuses_bad_row_scales():
    x = np.ones((4, 3), np.float32)
    base = (np.array([[0, 1]]), [x], [x[:1]], [None], [None], np.zeros(1, np.float32), 2, 1)
    with pytest.raises(ValueError, match="row_scales"):
        _core.rescore_candidates(*base, [np.ones(3, np.float32)])
    with pytest.raises(ValueError, match="row_scales"):
        _core.rescore_candidates(*base, [np.array([1, np.nan, 1, 1], np.float32)])
    with pytest.raises(ValueError, match="row_scales"):
        _core.rescore_candidates(*base, [None, None])
    # Only the candidates' scales are read (and checked): O(candidates) per request.
    _, scores = _core.rescore_candidates(*base, [np.array([1, 2, 1, np.nan], np.float32)])
    np.testing.assert_array_equal(np.sort(scores[0]), [3, 6])
    with pytest.raises(TypeError, match="matrices"):
        _core.rescore_candidates(base[0], [x.astype(np.float64)], *base[2:])
    with pytest.raises(ValueError, match="same rows"):
        _core.rescore_candidates(base[0], [np.ones((4, 3), np.int8), np.ones((5, 3), np.float32)],
                                 [x[:1], x[:1]], [None, None], [None, None], *base[5:])


# ----------------------------------------------------------------- the Recommender
@pytest.fixture(scope="module")
def data():
    return small_data(300, 800, seed=5)


@pytest.fixture(scope="module")
def pair(data):
    """The same fitted model with float32 text rows, and a twin whose item text rows are
    int8 (users' vectors unchanged): only the item-side storage differs."""
    interactions, items, _ = data
    exact = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, text_storage="float32",
                        text_weight=1.0, validation=0.0, regularization=10.0).fit(interactions, items=items)
    twin = copy.deepcopy(exact)
    snap = twin._publisher.current
    twin._publisher.current = snap._replace(items=snap.items._replace(E=Int8Rows.encode(snap.items.E)))
    return exact, twin


def _text_error(model, twin, user):
    """The largest change of each item's score when its text row moves by at most half a
    code step s_i/2 per coordinate (``twin``'s codes): the text term is (w/σ)·x·e_i, so
    (w/σ)·‖x‖₁·s_i/2 for items with interactions (the others take the catalogue mean)."""
    items = model._items
    rows = model._user_map.rows([user], "u")
    vectors = model._user_rows(rows)
    signals = scoring.make_signals(model.scenarios_["home"], model._geometry, **vectors)
    q = np.abs(signals.text[0].astype(np.float64)).sum()
    return 0.5 * q * twin._items.E.scales.astype(np.float64) * (items.warm != 0)


def test_int8_text_moves_each_score_within_its_bound(pair):
    exact, twin = pair
    every = exact._item_map.ids
    assert isinstance(twin._items.E, Int8Rows) and isinstance(exact._items.E, np.ndarray)
    moved = 0.0
    for user in exact._user_map.ids[:20]:
        a = np.asarray(exact.predict(user, every), np.float64)
        b = np.asarray(twin.predict(user, every), np.float64)
        _, bound_a = _reference_and_bound(exact, exact._user_map.rows([user], "u")[0])
        _, bound_b = _reference_and_bound(twin, twin._user_map.rows([user], "u")[0])
        assert_within(b, a, _text_error(exact, twin, user) + bound_a + bound_b)
        moved = max(moved, np.abs(a - b).max())
    assert moved > 0  # the text term is on: the test can fail


def test_int8_text_rankings_within_the_derived_bound(pair):
    """Every item of the compressed top 10 scores, exactly, at least the exact 10th best
    minus twice the largest possible score change (two items can swap only when their
    exact scores are closer than that); most lists are identical."""
    exact, twin = pair
    users = list(exact._user_map.ids[:60])
    a, b = exact.recommend(users, 10), twin.recommend(users, 10)
    same = 0
    for row, user in enumerate(users):
        truth = np.asarray(exact.predict(user, exact._item_map.ids), np.float64)
        u = exact._user_map.rows([user], "u")[0]
        _, bound = _reference_and_bound(exact, u)
        slack = 2 * (_text_error(exact, twin, user).max() + 2 * bound.max())
        got = exact._item_map.rows(list(b.ids[row]), "ids")
        tenth = np.float64(a.scores[row][-1])
        assert truth[got].min() >= tenth - slack
        same += np.array_equal(a.ids[row], b.ids[row])
    assert same >= len(users) // 2


def test_int8_storage_fit_save_load_and_memory(data, tmp_path):
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, text_storage="int8",
                      validation=0.0, regularization=10.0).fit(interactions, items=items)
    d = rec._items.E.shape[1]
    memory = rec.memory_per_item()
    assert memory["E"] == d + 4 and memory["inv_norm"] == 4 and "Vn" not in memory
    users = list(rec._user_map.ids[:30])
    before = rec.recommend(users, 10, query="word3 word7")
    rec.add_items(items.iloc[:2].assign(item_id=[10**6, 10**6 + 1]))
    assert isinstance(rec._items.E, Int8Rows) and len(rec._items.E) == len(rec._items.V)
    rec.remove_items([10**6, 10**6 + 1])
    rec.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert isinstance(loaded._items.E, Int8Rows) and loaded.get_params()["text_storage"] == "int8"
    np.testing.assert_array_equal(loaded._items.E.codes, rec._items.E.codes)
    after = loaded.recommend(users, 10, query="word3 word7")
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores, rtol=0, atol=1e-5)


def test_item_factors_are_held_once(data, tmp_path):
    """The served factors V are the ALS model's item factors: one array after fit,
    add_items, re-solved late items (in place, and through a copy while a request runs)
    and load; the ALS Gramian follows the re-solved rows; each is counted once."""
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, validation=0.0,
                      regularization=10.0).fit(interactions, items=items)

    def held_once(model):
        snap = model._publisher.current
        assert np.shares_memory(snap.als.item_factors_, snap.items.V)
        np.testing.assert_array_equal(snap.als.item_factors_, snap.items.V)
        assert model.memory_per_item()["als.item_factors"] == 0.0

    held_once(rec)
    added = rec.add_items(items.iloc[:3].assign(item_id=[10**6, 10**6 + 1, 10**6 + 2]))
    held_once(rec)
    rec._als.fold_in(np.zeros((1, len(rec._items.V)), np.float32))  # the Gramian is cached now
    before = rec._items.V[-3:].copy()
    for user in rec._user_map.ids[:4]:  # clicks on the new (late) items: they are re-solved
        rec.update(user, list(added))
    assert not np.array_equal(rec._items.V[-3:], before)
    held_once(rec)
    Y = rec._als.item_factors_.astype(np.float64)
    bound = 8 * len(Y) * np.finfo(np.float32).eps * (np.abs(Y).T @ np.abs(Y))
    assert_within(rec._als._cache["item_gram"], Y.T @ Y, bound)
    served = rec._items.V
    with rec._publisher.pin():  # a running request: the update copies the rows
        rec.update(rec._user_map.ids[5], list(added))
    assert rec._items.V is not served
    held_once(rec)
    rec.save(tmp_path / "m")
    held_once(Recommender.load(tmp_path / "m", encoder=WordEncoder()))


def test_int8_user_text_interest_within_its_bound(data, tmp_path, monkeypatch):
    """With int8 text the users' text interest is int8 too: each coordinate within half
    its row's code step, each score within w·‖e_i − μ‖·‖x̃/σ(x̃) − x/σ(x)‖ of the float
    interest's (Cauchy–Schwarz on the text term (w/σ)·x·(e_i − μ)); update, forget_user,
    save and load keep it, and a float32 one saved before (version 6) is encoded at load."""
    from llmrec.recommender import model as model_module

    interactions, items, _ = data

    def fit():
        return Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, text_storage="int8",
                           text_weight=1.0, validation=0.0, regularization=10.0).fit(interactions, items=items)

    rec = fit()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_module, "stored_users", lambda users, items: users)
        twin = fit()
    stored, exact = rec._users["text"], twin._users["text"]
    assert isinstance(stored, Int8Rows) and isinstance(exact, np.ndarray)
    n = len(exact)
    assert stored.nbytes == n * (exact.shape[1] + 4)
    decoded = np.asarray(stored[:n], np.float64)
    step = stored.scales[:n].astype(np.float64)[:, None]
    assert (np.abs(decoded - exact) <= step / 2 * (1 + 4 * UNIT32) + 1e-30).all()
    w, g = rec.scenarios_["home"]["text"], rec._geometry
    E = np.asarray(rec._items.E, np.float64)
    reach = np.linalg.norm(E - g.mean_E.astype(np.float64), axis=1) * (rec._items.warm != 0)
    every = rec._item_map.ids
    moved = 0.0
    for user in rec._user_map.ids[:20]:
        u = rec._user_map.rows([user], "u")[0]
        x, y = exact[u].astype(np.float64), decoded[u]
        shift = np.linalg.norm(y / np.sqrt(y @ g.cov_E @ y) - x / np.sqrt(x @ g.cov_E @ x))
        a = np.asarray(twin.predict(user, every), np.float64)
        b = np.asarray(rec.predict(user, every), np.float64)
        _, bound_a = _reference_and_bound(twin, u)
        _, bound_b = _reference_and_bound(rec, u)
        assert_within(b, a, w * reach * shift + bound_a + bound_b)
        moved = max(moved, np.abs(a - b).max())
    assert moved > 0  # the interest is compressed: the test can fail
    user = rec._user_map.ids[3]
    rec.update(user, list(rec._item_map.ids[:2]))
    assert isinstance(rec._users["text"], Int8Rows)
    rec.update(10**7, list(rec._item_map.ids[:2]))  # a new user grows the rows
    assert isinstance(rec._users["text"], Int8Rows) and len(rec._users["text"]) > n
    row = rec._user_map.rows([user], "u")[0]
    assert rec._users["text"].scales[row] > 0
    rec.forget_user(user)
    assert rec._users["text"].scales[row] == 0 and not rec._users["text"].codes[row].any()
    rec.save(tmp_path / "m")
    _, arrays, version = load_arrays(tmp_path / "m" / "recommender.llmrec", "Recommender", max_kind_version=12)
    assert version == 12 and "user_text_codes" in arrays and "user_text" not in arrays
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    users = list(rec._user_map.ids[:30])
    np.testing.assert_array_equal(back.recommend(users, 10).ids, rec.recommend(users, 10).ids)
    twin.save(tmp_path / "float")  # float32 interest beside int8 item text, as version 6 kept it
    old = Recommender.load(tmp_path / "float", encoder=WordEncoder())
    np.testing.assert_array_equal(old._users["text"].codes[:n], Int8Rows.encode(exact).codes)


def test_labels_packed_in_utf8():
    from llmrec.recommender.labels import Labels

    texts = ["Kitchen Days", "", "Café – naïve ☕", 42]
    labels = Labels.of(texts)
    assert len(labels) == 4 and labels[0] == "Kitchen Days" and labels[1] == "" and labels[3] == "42"
    assert labels[2] == "Café – naïve ☕" and labels[-1] == "42"
    assert labels.nbytes == len("".join(map(str, texts)).encode()) + 5 * 8
    assert labels[np.array([2, 0])].tolist() == ["Café – naïve ☕", "Kitchen Days"]
    assert labels[1:3].tolist() == ["", "Café – naïve ☕"]
    with pytest.raises(IndexError):
        labels[4]
    grown = labels.appended(["new one"])
    assert len(labels) == 4 and len(grown) == 5 and grown[4] == "new one" and grown[2] == labels[2]
    again = grown.appended(["another"])  # in spare capacity: earlier views unchanged
    assert len(grown) == 5 and again[5] == "another" and again[4] == "new one"
    broken = Labels(np.frombuffer(b"\xff\xfe", np.uint8).copy(), np.array([0, 2]))
    assert broken[0] == "\ufffd\ufffd"  # bytes a crafted file holds decode, never raise
    assert broken.texts(np.array([0, 0])) == ["\ufffd\ufffd"] * 2
    rows = np.array([3, 2, 2, 0, 1])
    assert again.texts(rows) == [again[int(r)] for r in rows] and again.texts(rows[:0]) == []


def test_labels_survive_save_load_and_older_files(data, tmp_path):
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, validation=0.0,
                      regularization=10.0).fit(interactions, items=items)
    rec.add_items(items.iloc[:1].assign(item_id=[10**6], title=["Kitchen Days"]))
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=12)
    assert "labels" not in arrays and len(arrays["label_offsets"]) == len(rec._items.V) + 1
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    every = np.arange(len(rec._items.V))
    assert back._labels[every].tolist() == rec._labels[every].tolist() and back._labels[-1] == "Kitchen Days"
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    arrays["labels"] = np.array(rec._labels[every].tolist())  # a unicode array, as version 6 saved
    del arrays["label_bytes"], arrays["label_offsets"]
    path.unlink()
    save_arrays(path, "Recommender", 6, meta, arrays)
    older = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert older._labels[every].tolist() == rec._labels[every].tolist()


def test_results_carry_the_items_labels(data):
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, validation=0.0,
                      regularization=10.0).fit(interactions, items=items)
    rec.add_items(items.iloc[:1].assign(item_id=[10**6], title=["Kitchen Days"]))
    title = dict(zip(items["item_id"], items["title"] if "title" in items else items["text"]))
    title[10**6] = "Kitchen Days"
    users = list(rec.user_ids_[:5])
    many = rec.recommend(users, 1000)  # wider than the catalogue: padded
    assert many.labels.shape == many.ids.shape
    assert all(many.labels[i, j] is None if many.ids[i, j] == -1 else many.labels[i, j] == title[many.ids[i, j]]
               for i in range(len(users)) for j in range(many.ids.shape[1]))
    for result in (rec.recommend(users[0], 5), rec.search("a story", 5), rec.similar_items(10**6, 5),
                   rec.recommend_for_history([10**6], 5), rec.recommend_for_history([], 5)):
        assert result.labels.tolist() == [title[i] for i in result.ids.tolist()]
    copied = pickle.loads(pickle.dumps(many))  # the decoded labels travel, not the catalogue's
    assert copied.labels.tolist() == many.labels.tolist() and len(pickle.dumps(many)) < 10 * many.ids.nbytes + 10_000
    bare = Recommender(random_state=0, num_threads=1, validation=0.0).fit(interactions)
    assert bare.recommend(users[0], 5).labels is None


def test_text_storage_auto_and_bad_values(data):
    interactions, items, _ = data
    small = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, validation=0.0,
                        regularization=10.0).fit(interactions, items=items)
    assert isinstance(small._items.E, np.ndarray)  # "auto": float32 below 50,000 items
    for bad, error in (("int4", ValueError), (8, ValueError)):
        with pytest.raises(error, match="text_storage"):
            Recommender(encoder=WordEncoder(), text_storage=bad).fit(interactions, items=items)


def test_a_version_4_file_still_loads(data, tmp_path):
    """A model saved before the compact rows (unit factors ``Vn``, float32 ``E``, no
    ``text_storage`` setting, kind version 4) loads and ranks as the model it was."""
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, validation=0.0,
                      regularization=10.0).fit(interactions, items=items)
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=12)
    arrays = {name: np.array(a) for name, a in arrays.items()}
    arrays["Vn"] = np.asarray(rec._items.Vn, dtype=np.float32)
    del arrays["inv_norm"]
    meta["settings"].pop("text_storage")
    meta["params"].pop("text_storage")
    save_arrays(path, "Recommender", 4, meta, arrays)
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert loaded.get_params()["text_storage"] == "float32"
    users = list(rec._user_map.ids[:30])
    np.testing.assert_array_equal(loaded.recommend(users, 10).ids, rec.recommend(users, 10).ids)
    assert_within(loaded._items.inv_norm, rec._items.inv_norm, 4 * UNIT32 * rec._items.inv_norm)


def test_the_first_add_after_fit_or_load_appends_in_place(data, tmp_path):
    """The item arrays live in storage with spare rows from the fit or the load on: the
    first add_items writes past the rows of the arrays it had (no copy of the catalogue),
    V stays the ALS model's own array, and what is served is what a copy would give."""
    interactions, items, _ = data
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, validation=0.0,
                      regularization=10.0, text_storage="int8").fit(interactions, items=items)
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    new = items.iloc[:2].assign(item_id=items["item_id"].iloc[:2] + 10**6)
    users = list(rec.user_ids_[:20])
    for model in (rec, back):
        before = model._items
        arrays = {"V": before.V, "P": before.P, "Q": before.Q, "inv_norm": before.inv_norm,
                  "codes": before.E.codes, "scales": before.E.scales, "labels": model._labels.data}
        model.add_items(new)
        after = model._items
        assert model._state.publisher.current.als.item_factors_ is after.V
        grown = {"V": after.V, "P": after.P, "Q": after.Q, "inv_norm": after.inv_norm,
                 "codes": after.E.codes, "scales": after.E.scales, "labels": model._labels.data}
        for name, old in arrays.items():
            assert np.shares_memory(grown[name], old), f"{name} was copied"
            assert len(grown[name]) > len(old) and np.array_equal(grown[name][:len(old)], old)
    np.testing.assert_array_equal(rec.recommend(users, 10).ids, back.recommend(users, 10).ids)
    assert rec.recommend_for_history(list(new["item_id"][:1]), 5).labels.tolist() == \
        back.recommend_for_history(list(new["item_id"][:1]), 5).labels.tolist()
