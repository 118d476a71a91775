"""The popularity prior of short histories (llmrec.recommender.popularity)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from llmrec import Recommender
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.recommender.popularity import PopularityPrior
from recommender_helpers import WordEncoder, assert_crafted_arrays_refused, assert_crafted_copy_refused

N_POPULAR, N_TOPICS, PER_TOPIC = 30, 10, 27
NEW_ITEMS = list(range(90_000, 90_005))


def mixed_tastes(n_users: int = 600, length: int = 24, fans: float = 0.8, explore: float = 0.4, seed: int = 0):
    """Two kinds of users: fans of the catalogue's hits (a Zipf draw among ``N_POPULAR``),
    who also take items of any topic now and then (a share ``explore``), and users of one
    niche topic alone. Someone known by one niche item is more likely a fan who strayed
    than a user of that topic: the hits are the better guess until more is known.
    Returns (interactions, items)."""
    rng = np.random.default_rng(seed)
    hit_p = 1.0 / np.arange(1, N_POPULAR + 1)
    hit_p /= hit_p.sum()
    rows = []
    for user in range(n_users):
        if rng.random() < fans:
            strays = int(round(length * explore))
            taken = np.concatenate([rng.choice(N_POPULAR, size=length - strays, replace=False, p=hit_p),
                                    N_POPULAR + rng.choice(N_TOPICS * PER_TOPIC, size=strays, replace=False)])
        else:
            topic = rng.integers(N_TOPICS)
            taken = N_POPULAR + topic * PER_TOPIC + rng.choice(PER_TOPIC, size=min(length, PER_TOPIC), replace=False)
        rows += [(user, int(item), t) for t, item in enumerate(rng.permutation(taken))]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    words = [f"blockbuster{i % 5}" for i in range(N_POPULAR)]
    words += [f"topic{i // PER_TOPIC} niche{i % 7}" for i in range(N_TOPICS * PER_TOPIC)]
    return interactions, pd.DataFrame({"item_id": np.arange(len(words)), "text": words})


@pytest.fixture(scope="module")
def fitted():
    interactions, items = mixed_tastes()
    kwargs = dict(encoder=WordEncoder(), random_state=0, factors=16, iterations=8, num_threads=1)
    return (Recommender(**kwargs).fit(interactions, items=items),
            Recommender(**kwargs, popularity_prior=False).fit(interactions, items=items), interactions)


def test_the_table_is_fitted(fitted):
    rec, off, _ = fitted
    lengths, weights = rec.validation_["popularity_lengths"], rec.validation_["popularity_weights"]
    assert lengths == sorted(lengths) and lengths[0] == 1
    assert weights[0] > 0, rec.validation_["popularity"]  # the hits are most of what follows one item
    assert rec._state.popularity is not None
    np.testing.assert_array_equal(rec._state.popularity.weights, weights)
    assert "popularity_lengths" not in off.validation_ and off._state.popularity is None
    report = rec.validation_["popularity"][str(lengths[0])]
    assert report["ndcg_with"] > report["ndcg_without"]


def test_a_user_known_by_one_niche_item_gets_the_hits(fitted):
    rec, off, _ = fitted
    def hits(model: Recommender) -> int:  # in the top 10 of visitors known by one niche item each
        return sum(int(np.sum(model.recommend_for_history([N_POPULAR + t * PER_TOPIC + 3], 10).ids < N_POPULAR))
                   for t in range(N_TOPICS))

    assert hits(off) <= 10 and hits(rec) >= 50


@pytest.fixture(scope="module")
def short_users(fitted, tmp_path_factory):
    """A copy of the fitted model (saved and loaded) with new users known by their first
    1 to 12 items (another user's first items each): {user id: history}."""
    rec, _, interactions = fitted
    directory = tmp_path_factory.mktemp("short") / "m"
    rec.save(directory)
    model = Recommender.load(directory, encoder=WordEncoder())
    # new items worded as the hits: no users, so no popularity (their text-predicted
    # factors lean toward the hits')
    model.add_items(pd.DataFrame({"item_id": NEW_ITEMS, "text": [f"blockbuster{i % 5}" for i in range(5)]}))
    ordered = interactions.sort_values("timestamp", kind="stable")
    histories = {}
    for j, n in enumerate((1, 2, 3, 5, 8, 12)):
        histories[10_000 + j] = list(ordered[ordered.user_id == j].item_id[:n])
        model.update(10_000 + j, histories[10_000 + j])
    return model, histories


def test_the_prior_term_against_a_float64_reference(fitted, short_users):
    """Score with the prior − score without = w(n)·w_b·(ū·v_i − ū·v̄)/σ(ū), ū the mean
    of the fitted users' factors, σ its spread over the catalogue: for users of 1 to 12
    items."""
    rec = fitted[0]
    model, histories = short_users
    without = Recommender.__new__(Recommender)
    without.__dict__.update(model.__dict__)
    without._state = dataclasses.replace(model._state, popularity=None)
    fitted_V = np.asarray(rec._items.V, dtype=np.float64)  # the catalogue at fit: the prior's mean and spread
    u = np.asarray(rec._publisher.current.als.user_factors_, dtype=np.float64).mean(axis=0)
    sigma = np.sqrt(np.mean(((fitted_V - fitted_V.mean(axis=0)) @ u) ** 2))
    V = np.asarray(model._items.V, dtype=np.float64)
    centred = V - fitted_V.mean(axis=0)
    prior = model._state.popularity
    items = [int(i) for i in np.random.default_rng(1).choice(len(fitted_V), size=60, replace=False)]
    items += list(model._item_map.rows(NEW_ITEMS, "new"))
    moved = 0
    for user, history in histories.items():
        w = np.interp(np.log(len(history)), np.log(prior.lengths), prior.weights) * model.weights_["behaviour"]
        expected = w * (centred[items] @ u) / sigma * model._items.warm[items]  # neutral for new items
        ids = list(model._item_map.to_ids(np.array(items)))
        with_prior = model.predict([user] * len(items), ids).astype(np.float64)
        got = with_prior - without.predict([user] * len(items), ids).astype(np.float64)
        scale = np.abs(with_prior).max() + np.abs(expected).max()
        np.testing.assert_allclose(got, expected, atol=64 * np.finfo(np.float32).eps * scale)
        moved += w > 0
    assert moved >= 3  # the reference was checked where the prior weighs


def test_served_scores_predict_and_explain_agree(short_users):
    model, histories = short_users
    user = next(iter(histories))
    top = model.recommend([user], 5)
    np.testing.assert_allclose(model.predict([user] * 5, list(top.ids[0])), top.scores[0], rtol=1e-5, atol=1e-5)
    explanation = model.explain(user, top.ids[0][0])
    assert explanation.score == pytest.approx(float(top.scores[0][0]), rel=1e-4, abs=1e-4)
    assert sum(explanation.signals.values()) == pytest.approx(explanation.score, rel=1e-4, abs=1e-4)
    assert explanation.signals["popularity"] > 0
    assert "popularity" in explanation.text
    assert model.explain(user, NEW_ITEMS[0]).signals["popularity"] == pytest.approx(0.0, abs=1e-6)


def test_a_short_fitted_user_ranks_as_a_visitor_with_the_same_history(short_users):
    model, histories = short_users
    for user, history in histories.items():
        fitted_user = model.recommend([user], 10)
        visitor = model.recommend_for_history(history, 10)
        np.testing.assert_array_equal(fitted_user.ids[0], visitor.ids)
        np.testing.assert_allclose(fitted_user.scores[0], visitor.scores, rtol=1e-5, atol=1e-5)


def test_the_weight_is_linear_in_log_length_and_flat_beyond_the_ends():
    prior = PopularityPrior(np.ones(3, np.float32), np.array([1.0, 2.0, 8.0]), np.array([4.0, 2.0, 0.5]))
    n = np.array([0, 1, 2, 3, 8, 100])
    expected = np.array([4.0, 4.0, 2.0, 2.0 + (0.5 - 2.0) * np.log(3 / 2) / np.log(4), 0.5, 0.5])
    np.testing.assert_allclose(prior.weight(n), expected, rtol=1e-12)
    np.testing.assert_allclose(prior.queries(n), expected[:, None] * np.ones((1, 3)), rtol=1e-6)


def test_save_and_load_keep_the_prior(fitted, tmp_path):
    rec, _, _ = fitted
    rec.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    for a, b in zip(loaded._state.popularity, rec._state.popularity):
        np.testing.assert_array_equal(a, b)
    for history in ([N_POPULAR + 3], [N_POPULAR + 40, 5]):
        a, b = loaded.recommend_for_history(history, 10), rec.recommend_for_history(history, 10)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)


def test_a_file_without_the_prior_loads_without_it(fitted, tmp_path):
    rec, _, _ = fitted
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=12)
    meta["settings"].pop("popularity_prior")
    save_arrays(path, "Recommender", 11, meta, {n: np.array(a) for n, a in arrays.items()
                                                if not n.startswith("popularity_")})
    old = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert old._state.popularity is None and old._state.settings["popularity_prior"] is False
    assert old.recommend_for_history([N_POPULAR + 3], 5).ids.shape == (5,)


@pytest.mark.parametrize("craft, match", [
    (lambda a: a.pop("popularity_weights"), "saved together"),
    (lambda a: a.update(popularity_lengths=a["popularity_lengths"][::-1].copy()), "popularity_lengths"),
    (lambda a: a.update(popularity_lengths=a["popularity_lengths"] - 1), "popularity_lengths"),
    (lambda a: a.update(popularity_lengths=a["popularity_lengths"] + 0.5), "popularity_lengths"),
    (lambda a: a.update(popularity_weights=-a["popularity_weights"] - 1), "popularity_weights"),
    (lambda a: a.update(popularity_weights=a["popularity_weights"][:-1].copy()), "popularity_weights"),
    (lambda a: a.update(popularity_direction=np.full_like(a["popularity_direction"], np.nan)),
     "popularity_direction"),
    (lambda a: a.update(popularity_direction=a["popularity_direction"][:-1].copy()), "popularity_direction"),
])
def test_a_damaged_prior_is_refused(fitted, tmp_path, craft, match):
    rec, _, _ = fitted
    rec.save(tmp_path / "m")
    assert_crafted_arrays_refused(tmp_path / "m", tmp_path, craft, match=match)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_popularity_prior_must_be_a_bool(value):
    interactions, items = mixed_tastes(n_users=40, length=6)
    with pytest.raises(TypeError, match="popularity_prior"):
        Recommender(popularity_prior=value).fit(interactions, items=items)


def test_short_histories_have_their_own_calibration(fitted, tmp_path):
    """New users known by their first n items (n ≤ 2, where the prior weighs most):
    over their latest fifth (the positives, as the validation holds out) and every item
    they did not take, the probabilities add up to about the positives' count with the
    short histories' Platt pairs, and far beyond it with the warm pair alone."""
    rec, _, _ = fitted
    short = rec.calibration_.short
    assert [row[0] for row in short] == sorted(row[0] for row in short)
    assert short[-1] == (float(rec._state.popularity.lengths[-1]), rec.calibration_.a, rec.calibration_.b)
    rec.save(tmp_path / "m")
    model = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert model.calibration_ == rec.calibration_
    newcomers, _ = mixed_tastes(n_users=120, seed=1)
    n_items = N_POPULAR + N_TOPICS * PER_TOPIC
    users, items, labels = [], [], []
    for user, frame in newcomers.groupby("user_id"):
        taken = frame.sort_values("timestamp").item_id.to_numpy()
        model.update(50_000 + user, list(taken[:1 + user % 2]))
        latest = taken[-len(taken) // 5:]
        others = np.setdiff1d(np.arange(n_items), taken)
        users += [50_000 + user] * (len(latest) + len(others))
        items += list(latest) + list(others)
        labels += [1] * len(latest) + [0] * len(others)
    p = model.predict_proba(users, items)
    warm = model.calibration_._replace(short=()).probability(model.predict(users, items))
    positives = float(np.sum(labels))
    assert abs(p.sum() / positives - 1) < 0.5, p.sum() / positives
    assert warm.sum() / positives > 2 * p.sum() / positives
    # one user against many items, and one pair: the same pairs (the length read with the scores)
    one = [i for i, user in enumerate(users) if user == users[0]]
    np.testing.assert_array_equal(model.predict_proba(users[0], [items[i] for i in one]), p[one])
    assert model.predict_proba(users[0], items[one[0]]) == p[one[0]]


@pytest.mark.parametrize("short", [
    [[2.0, 1.0, 0.0], [1.0, 1.0, 0.0]],          # lengths not ascending
    [[1.0, float("nan"), 0.0]],                  # not finite
    [[0.0, 1.0, 0.0]],                           # a length below 1
    [[1.0, 1.0]],                                # a row of two
    {"1": [1.0, 0.0]},                           # not a list
    [[1.0, "a", 0.0]],                           # not a number
])
def test_a_damaged_short_calibration_is_refused(fitted, tmp_path, short):
    rec, _, _ = fitted
    rec.save(tmp_path / "m")

    def craft(directory):
        path = directory / "recommender.llmrec"
        meta, arrays, version = load_arrays(path, "Recommender", max_kind_version=12)
        meta["calibration"]["short"] = short
        save_arrays(path, "Recommender", version, meta, {n: np.array(a) for n, a in arrays.items()})

    assert_crafted_copy_refused(tmp_path / "m", tmp_path, craft, match="calibration")
