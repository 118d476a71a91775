"""The Recommender's "towers" signal (SequenceTowers f_u·g_i): fitted weight, scores
against a numpy reference, serving paths (history, update, add_items), persistence,
pickling, and towers=None unchanged."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("torch")

from llmrec import FormatError, Recommender  # noqa: E402

from recommender_helpers import WordEncoder, small_data  # noqa: E402

TINY = {"dim": 16, "layers": 1, "max_history": 10, "epochs": 3, "num_threads": 1}
EPS32 = float(np.finfo(np.float32).eps)
ONLY_TOWERS = {"towers": 1.0}


@pytest.fixture(scope="module")
def data():
    return small_data()


def _fit(data, **kwargs):
    interactions, items, _ = data
    kwargs.setdefault("encoder", WordEncoder())
    kwargs.setdefault("random_state", 0)
    kwargs.setdefault("num_threads", 1)
    kwargs.setdefault("rating_rule", "ignore")  # every row a like, as the references assume
    return Recommender(**kwargs).fit(interactions, items=items)


@pytest.fixture(scope="module")
def model(data):
    """Blend fitted on the validation slice, towers included."""
    return _fit(data, towers=TINY)


@pytest.fixture()
def served(data):
    """A fast model (default blend, fixed λ) whose "home" scenario gives towers weight."""
    rec = _fit(data, towers=TINY, validation=0.0, regularization=10.0)
    rec.set_scenario("only_towers", ONLY_TOWERS)
    return rec


def _reference(rec, user_vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The towers-only blend in float64: (f·g − f·mean(G)) / σ over the catalogue; 0
    (neutral) for items without interactions."""
    G = rec._items.G.astype(np.float64)
    g = rec._geometry
    f = user_vector.astype(np.float64)
    sigma = np.sqrt(f @ g.cov_G @ f)
    scores = (G[rows] @ f - f @ g.mean_G.astype(np.float64)) / sigma
    return np.where(rec._items.warm[rows] != 0, scores, 0.0)


def _tolerance(rec, user_vector) -> float:
    # float32 dot products of length dim over vectors scaled by 1/σ
    G, f = rec._items.G.astype(np.float64), user_vector.astype(np.float64)
    sigma = np.sqrt(f @ rec._geometry.cov_G @ f)
    scale = (np.abs(G) @ np.abs(f)).max() / sigma
    return 8 * G.shape[1] * EPS32 * scale


def test_weight_is_fitted_on_the_validation_slice(model):
    w = model.weights_["towers"]
    assert np.isfinite(w) and w >= 0
    assert model.validation_["weights"]["towers"] == w
    assert "towers_best_epoch" in model.validation_
    assert model.validation_["towers_averaged_epochs"] >= 1
    assert model._items.G.shape == (len(model._item_map), TINY["dim"])
    assert model._users["towers"].shape == (len(model._user_map), TINY["dim"])


def test_validation_towers_do_not_see_the_held_out_items(data, monkeypatch):
    """The towers whose score the weight is fitted on are trained on the validation
    split's training part only; the serving towers on everything."""
    from llmrec.recommender import training

    seen = []
    real = training.fit_towers

    def spy(params, histories, n_items, E, show_progress=False, text=None, profile=None):
        seen.append(sum(len(h) for h in histories))
        return real(params, histories, n_items, E, show_progress, text, profile)

    monkeypatch.setattr(training, "fit_towers", spy)
    rec = _fit(data, towers=TINY, regularization=10.0)
    total = sum(len(rec._histories.get(u)) for u in range(len(rec._user_map)))
    assert len(seen) == 1 and seen[0] < total  # the validation fit, without the held-out items
    assert rec.validation_["users"] > 0


def test_towers_scores_match_numpy_reference(served):
    rec = served
    for user in (0, 7, 42):
        row = int(rec._user_map.rows([user], "u")[0])
        f = rec._users["towers"][row]
        out = rec.recommend(user, 10, scenario="only_towers")
        ref = _reference(rec, f, rec._item_map.rows(list(out.ids), "ids"))
        np.testing.assert_allclose(out.scores, ref, rtol=0, atol=_tolerance(rec, f))
        assert np.all(np.diff(out.scores) <= 0)
        # the stored user vector is the towers' forward of the stored history
        tower = rec._publisher.current.towers
        np.testing.assert_allclose(f, tower.user_vectors([rec._histories.get(row)])[0],
                                   rtol=1e-5, atol=1e-5)


def test_recommend_for_history_equals_known_user(served):
    rec = served
    user = 3
    history = rec._item_map.to_ids(rec._histories.get(int(rec._user_map.rows([user], "u")[0])))
    for scenario in (None, "only_towers"):
        a = rec.recommend(user, 10, scenario=scenario)
        b = rec.recommend_for_history(list(history), 10, scenario=scenario)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)


def test_update_recomputes_the_users_tower_vector(served):
    rec = served
    before = rec._users["towers"][0].copy()
    rec.update(0, [11, 12, 13])
    row = int(rec._user_map.rows([0], "u")[0])
    after = rec._users["towers"][row]
    expected = rec._publisher.current.towers.user_vectors([rec._histories.get(row)])[0]
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(before, after)
    assert not {11, 12, 13} & set(rec.recommend(0, 50).ids.tolist())
    rec.update(123_456, [1, 2])  # a new user gets a towers vector at once
    assert np.any(rec._users["towers"][int(rec._user_map.rows([123_456], "u")[0])] != 0)


def test_added_item_with_text_is_ranked_at_once(served, data):
    rec = served
    items = data[1]
    tower_before = rec._publisher.current.towers
    n_before = tower_before.n_items_
    new_ids = [90_000, 90_001, 90_002]
    rec.add_items(items.iloc[:3].assign(item_id=new_ids))
    tower = rec._publisher.current.towers
    assert tower.n_items_ == n_before + 3 and tower_before.n_items_ == n_before  # forked, not changed
    rows = rec._item_map.rows(new_ids, "ids")
    E_new = rec._items.E[rows]
    np.testing.assert_allclose(rec._items.G[rows], tower.item_vectors(text_vectors=E_new),
                               rtol=1e-6, atol=1e-6)
    user = 5
    out = rec.recommend(user, 3, allow=new_ids)  # ranked at once (text prior of the factors)
    assert sorted(out.ids.tolist()) == new_ids and np.isfinite(out.scores).all()
    # Without interactions the towers term is neutral (as the text interest): 0 alone.
    # The neutral value f·mean(G)/σ and the offset are rounded apart (float32): zero up
    # to the rounding of that dot product.
    only = rec.recommend(user, 3, allow=new_ids, scenario="only_towers")
    f_user = rec._users["towers"][int(rec._user_map.rows([user], "u")[0])]
    np.testing.assert_allclose(only.scores, 0.0, rtol=0, atol=_tolerance(rec, f_user))
    # Once clicked (histories may name it at once), its text-only tower vector counts.
    rec.update(user, [90_000])
    other = 6
    f = rec._users["towers"][int(rec._user_map.rows([other], "u")[0])]
    only = rec.recommend(other, 1, allow=[90_000], scenario="only_towers")
    ref = _reference(rec, f, rows[:1])
    assert ref[0] != 0
    np.testing.assert_allclose(only.scores, ref, rtol=0, atol=_tolerance(rec, f))


def test_save_load_and_pickle_identical(served, data, tmp_path):
    rec = served
    rec.update(0, [11, 12])
    rec.add_items(data[1].iloc[:2].assign(item_id=[80_000, 80_001]))
    rec.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "als.llmrec", "recommender.llmrec", "towers.llmrec"]
    loaded = Recommender.load(tmp_path / "m", encoder=rec.encoder)
    copy = pickle.loads(pickle.dumps(rec))
    users = [0, 1, 2, 50]
    for other in (loaded, copy):
        for scenario in (None, "only_towers"):
            a, b = rec.recommend(users, 10, scenario=scenario), other.recommend(users, 10, scenario=scenario)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.scores, b.scores)
        h = rec.recommend_for_history([1, 2, 80_000], 10)
        np.testing.assert_array_equal(h.ids, other.recommend_for_history([1, 2, 80_000], 10).ids)
        other.update(0, [80_001])  # both keep serving and learning
        other.add_items(data[1].iloc[2:3].assign(item_id=[80_002]))
        assert 80_002 in other.recommend(1, 3, allow=[80_002]).ids.tolist()
    assert loaded.towers == TINY and loaded._settings_used["towers"]["dim"] == 16


def test_load_refuses_inconsistent_towers(served, tmp_path):
    served.save(tmp_path / "m")
    (tmp_path / "m" / "towers.llmrec").unlink()
    with pytest.raises(FormatError, match="towers"):
        Recommender.load(tmp_path / "m", encoder=served.encoder)


def test_towers_off_is_unchanged(data):
    """towers=None (the default) has no towers state; a towers-on model whose blend gives
    the towers no weight ranks exactly as the towers-off model."""
    off = _fit(data, validation=0.0, regularization=10.0)
    assert off.towers is None and off._items.G is None and "towers" not in off._users
    assert "towers" not in off.weights_ and "towers" not in off.scenarios_["similar"]
    on = _fit(data, towers=TINY, validation=0.0, regularization=10.0)
    on.set_scenario("home", {**off.weights_, "towers": 0.0})
    users = list(range(30))
    a, b = off.recommend(users, 10), on.recommend(users, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert on.weights_["towers"] == 1.0  # the default blend gives it weight when validation=0


def test_ids_only_towers_without_encoder(data):
    rec = _fit(data, encoder=None, towers=TINY, validation=0.0, regularization=10.0)
    tower = rec._publisher.current.towers
    assert tower.text_dim_ == 0
    rec.add_items(data[1].iloc[:2].assign(item_id=[70_000, 70_001]))
    rows = rec._item_map.rows([70_000, 70_001], "ids")
    assert np.all(rec._items.G[rows] == 0)  # nothing to rank them by in the towers
    rec.update(0, [70_000, 1])  # the towers skip the item they do not know
    assert np.isfinite(rec.recommend(0, 10).scores).all()


def test_towers_fit_options_reach_the_towers(data):
    """``validation`` and ``epochs`` in the towers dict are fit's; the rest the towers'."""
    rec = _fit(data, towers={**TINY, "validation": 0.0, "epochs": 2, "average": 0.9},
               validation=0.0, regularization=10.0)
    tower = rec._publisher.current.towers
    assert len(tower.history_) == 2 and all(np.isnan(r["validation_ndcg"]) for r in tower.history_)
    assert tower.average == 0.9
    from llmrec.recommender.towers_signal import TOWERS_VALIDATION, check_towers

    assert check_towers("auto", 0, 1)["validation"] == TOWERS_VALIDATION == 0.3
    assert check_towers({"validation": 0.2}, 0, 1)["validation"] == 0.2


def test_validation_items_reach_both_towers_fits(data, monkeypatch):
    """``validation_items`` in the towers dict is fit's: the validation towers and the
    serving towers each hold out that many latest items per validation user."""
    from llmrec.towers import estimator

    held = []
    real = estimator._split_validation

    def spy(*args):
        data_ = real(*args)
        held.append(len(data_.val_targets) / max(len({id(p) for p in data_.val_prefixes}), 1))
        return data_

    monkeypatch.setattr(estimator, "_split_validation", spy)
    _fit(data, towers={**TINY, "validation_items": 3}, regularization=10.0)
    assert held == [3.0, 3.0]


@pytest.mark.parametrize("towers, error", [
    ("yes", ValueError), (5, TypeError), ({"dim": 0}, ValueError), ({"bogus": 1}, ValueError),
    ({"epochs": 0}, ValueError), ({"text": "nope"}, ValueError), ({"dim": 15, "heads": 2}, ValueError),
    ({"validation": 1.0}, ValueError), ({"validation": "x"}, TypeError), ({"validation": 0.0}, ValueError),
    ({"average": 1.0}, ValueError), ({"validation_items": 0}, ValueError),
])
def test_bad_towers_parameter(data, towers, error):
    rec = Recommender(encoder=WordEncoder(), towers=towers)
    assert rec.towers is towers  # stored as given
    with pytest.raises(error, match="towers"):
        rec.fit(data[0], items=data[1])


def test_explain_includes_the_towers_term(served):
    rec = served
    top = rec.recommend(4, 1)
    explanation = rec.explain(4, top.ids[0])
    assert "towers" in explanation.signals and explanation.signals["towers"] != 0
    assert "towers" in explanation.text
    assert explanation.score == pytest.approx(float(top.scores[0]), rel=1e-4, abs=1e-4)
    assert sum(explanation.signals.values()) == pytest.approx(explanation.score, rel=1e-4, abs=1e-4)


def test_towers_rescore_stage_one_candidates_exactly(data):
    """Stage 1 has no towers channel; the candidates it finds (few here) carry their
    exact towers term."""
    rec = _fit(data, towers=TINY, validation=0.0, regularization=10.0, candidates=1)
    rec.set_scenario("only_towers", ONLY_TOWERS)
    for user in (0, 9, 77):
        f = rec._users["towers"][int(rec._user_map.rows([user], "u")[0])]
        out = rec.recommend(user, 5, scenario="only_towers")
        ref = _reference(rec, f, rec._item_map.rows(list(out.ids), "ids"))
        np.testing.assert_allclose(out.scores, ref, rtol=0, atol=_tolerance(rec, f))
        assert np.all(np.diff(out.scores) <= 0)


def test_file_kind_versions(served, data, tmp_path):
    from llmrec._fileformat import load_arrays

    served.save(tmp_path / "on")
    # kind version 11 since the new items' shift (10: the learned cold part; 9: the cold signal)
    assert load_arrays(tmp_path / "on" / "recommender.llmrec", "Recommender", max_kind_version=12)[2] == 12
    off = _fit(data, validation=0.0, regularization=10.0)
    off.save(tmp_path / "off")
    assert load_arrays(tmp_path / "off" / "recommender.llmrec", "Recommender", max_kind_version=12)[2] == 12


def test_finetuned_towers_serve_save_and_load(data, tmp_path):
    pytest.importorskip("transformers")
    from llmrec.text import TextEncoder
    from llmrec.text.testing import save_tiny_bert

    encoder = TextEncoder(save_tiny_bert(tmp_path / "bert"))
    towers = {**TINY, "text": "finetune", "epochs": 2}
    rec = _fit(data, encoder=encoder, towers=towers, validation=0.0, regularization=10.0)
    tower = rec._publisher.current.towers
    assert tower.module_.text_head is not None and tower.history_[-1]["tuning"] == 1.0
    new_ids = [90_000, 90_001]
    new_items = data[1].iloc[:2].assign(item_id=new_ids)
    rec.add_items(new_items)
    grown = rec._publisher.current.towers
    rows = rec._item_map.rows(new_ids, "ids")
    np.testing.assert_allclose(rec._items.G[rows], grown.item_vectors(rows), rtol=0, atol=1e-6)
    tower.encoder_ = encoder  # the Recommender lends its encoder to the towers when needed
    np.testing.assert_allclose(rec._items.G[rows], tower.item_vectors(texts=list(new_items["text"])),
                               rtol=0, atol=1e-5)
    rec.save(tmp_path / "m")
    assert rec._publisher.current.towers.encoder_ is None  # lent, not kept: the towers pickle
    pickle.dumps(rec._publisher.current.towers)
    for other in (Recommender.load(tmp_path / "m", encoder=encoder),):
        a, b = rec.recommend([0, 1, 2], 10), other.recommend([0, 1, 2], 10)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
        other.add_items(data[1].iloc[2:3].assign(item_id=[80_002]))
        assert 80_002 in other.recommend(1, 3, allow=[80_002]).ids.tolist()


def test_profiles_reach_the_towers_at_fit_update_and_load(data, tmp_path):
    """With a users frame of profile texts, the towers are fitted with them and every
    stored towers vector is the forward of the history and the user's profile vector."""
    import pandas as pd

    interactions, items, _ = data
    ids = np.sort(interactions["user_id"].unique())
    users = pd.DataFrame({"user_id": ids, "text": [f"user {u} likes {'ab'[u % 2]}" if u % 3 else ""
                                                   for u in ids]})
    users.loc[len(users)] = [900_000, "user 900000 likes a"]  # a profile without interactions
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, towers=TINY,
                      validation=0.0, regularization=10.0, rating_rule="ignore").fit(
        interactions, items=items, users=users)
    tower = rec._publisher.current.towers
    assert tower.uses_profiles_

    def check(model, user):
        row = int(model._user_map.rows([user], "u")[0])
        profile = model._profile[row:row + 1]
        expected = model._publisher.current.towers.user_vectors(
            [model._histories.get(row)], profile_vectors=profile)[0]
        np.testing.assert_allclose(model._users["towers"][row], expected, rtol=1e-5, atol=1e-5)
        return profile

    for user in ids[:6]:  # with and without a profile (every third has none: a zero row)
        profile = check(rec, int(user))
        assert (np.any(profile != 0)) == bool(int(user) % 3)
    check(rec, 900_000)  # the towers' vector of the profile alone
    assert np.any(rec._users["towers"][int(rec._user_map.rows([900_000], "u")[0])] != 0)
    with_profile = int(ids[1])
    row = int(rec._user_map.rows([with_profile], "u")[0])
    bare = tower.user_vectors([rec._histories.get(row)])[0]
    assert not np.allclose(rec._users["towers"][row], bare)  # the profile moved it
    # a visitor with the same history and profile text is ranked as the fitted user
    history = list(rec._item_map.to_ids(rec._histories.get(row)))
    text = users.set_index("user_id").loc[with_profile, "text"]
    a, b = rec.recommend(with_profile, 10), rec.recommend_for_history(history, 10, profile=text)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)
    assert not np.array_equal(rec.recommend_for_history(history, 10).scores, b.scores)
    np.testing.assert_array_equal(rec.recommend_for_history(history, 10, profile="  ").scores,
                                  rec.recommend_for_history(history, 10).scores)
    with pytest.raises(TypeError, match="profile must be a str or None"):
        rec.recommend_for_history(history, 10, profile=3)
    rec.update(with_profile, [11, 12])
    check(rec, with_profile)
    # a new user signing up with a profile is ranked as a visitor with it
    text = "user 5 likes b"
    rec.update(777_777, [3, 4], profile=text)
    check(rec, 777_777)
    a, b = rec.recommend(777_777, 10), rec.recommend_for_history([3, 4], 10, profile=text)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-4)
    with pytest.raises(TypeError, match="profile must be a str or None"):
        rec.update(888_888, [3], profile=["a"])
    assert not rec._user_map.contains([888_888])[0]  # refused before any change
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert again._publisher.current.towers.uses_profiles_
    assert again._publisher.current.towers._numpy_tower is None
    again.warm_up()  # the single-user forward built before the first request
    assert again._publisher.current.towers._numpy_tower is not None
    np.testing.assert_array_equal(again.recommend(with_profile, 10).ids, rec.recommend(with_profile, 10).ids)
    check(again, with_profile)


def test_a_profile_needs_a_model_with_text(data):
    rec = _fit(data, encoder=None, towers=None, validation=0.0, regularization=10.0)
    with pytest.raises(ValueError, match="cannot read a profile text"):
        rec.recommend_for_history([1, 2], 5, profile="A 30-year-old nurse.")
    with pytest.raises(ValueError, match="cannot read a profile text"):
        rec.update(5, [1], profile="A 30-year-old nurse.")


def test_update_gives_a_profile_to_a_model_fitted_without_any(data, tmp_path):
    rec = _fit(data, towers=None, validation=0.0, regularization=10.0)
    assert rec._profile is None
    text = "cooking chef recipes"
    rec.update(0, [], profile=text)
    row = int(rec._user_map.rows([0], "u")[0])
    np.testing.assert_allclose(rec._profile[row], rec._encode([text])[0], rtol=0, atol=0)
    assert not rec._profile[:row].any() and not rec._profile[row + 1:].any()
    history = list(rec._item_map.to_ids(rec._histories.get(row)))
    np.testing.assert_array_equal(rec.recommend(0, 10).ids,
                                  rec.recommend_for_history(history, 10, profile=text).ids)
    rec.save(tmp_path / "m")
    again = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    np.testing.assert_array_equal(again._profile, rec._profile)
    rec.update(0, [], profile=" ")  # a blank profile removes it
    assert not rec._profile[row].any()
