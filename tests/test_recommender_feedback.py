"""What interactions mean: weights, events and ratings read into confidences and
dislikes (recommender/feedback.py), online dislikes, introspection, persistence, and
bad input. The horror-fan case of issue 16: a user who rated one genre 1/5 gets none
of it, and ``explain`` never cites a dislike as a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec import NotFittedError, Recommender, UnknownIdError
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.recommender import feedback as fb
from llmrec.recommender.history import recency_weights

from recommender_helpers import WordEncoder, small_data
from tolerances import UNIT32, UNIT64, assert_within, gamma, normal_equations_tolerance

EVENTS = {"view": 1.0, "cart": 4.0, "purchase": 10.0}


@pytest.fixture(scope="module")
def data():
    return small_data()


def fit(interactions, items, **kwargs):
    kwargs.setdefault("encoder", WordEncoder())
    kwargs.setdefault("random_state", 0)
    kwargs.setdefault("validation", 0.0)
    kwargs.setdefault("regularization", 10.0)
    kwargs.setdefault("num_threads", 2)
    return Recommender(**kwargs).fit(interactions, items=items)


def with_columns(interactions, rng):
    """The interactions with random weights, events and ratings 1-5."""
    n = len(interactions)
    return interactions.assign(weight=rng.uniform(0.2, 3.0, n),
                               event=rng.choice(list(EVENTS), n),
                               rating=rng.integers(1, 6, n).astype(float))


def reference_multiplier(frame: pd.DataFrame) -> np.ndarray:
    """The documented rule, written out independently (float64)."""
    r = frame["rating"].to_numpy(np.float64)
    rating_conf = np.select([r <= 1, r <= 2, r <= 3, r <= 4], [1.0, 0.1, 1.0, 1.5], 2.0)
    return frame["weight"].to_numpy() * frame["event"].map(EVENTS).to_numpy() * rating_conf


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Each (user, item) pair's latest row (time, then row order)."""
    ordered = frame.assign(_row=np.arange(len(frame))).sort_values(["timestamp", "_row"], kind="stable")
    return ordered.drop_duplicates(["user_id", "item_id"], keep="last")


# ------------------------------------------------------------------ confidences
def test_weights_events_ratings_scale_als_confidence(data, rng):
    interactions, items, _ = data
    frame = with_columns(interactions, rng)
    rec = fit(frame, items, event_weights=EVENTS)
    last = latest(frame)
    disliked = last["rating"].to_numpy() <= 1
    m = reference_multiplier(last)
    # the item side: every item taken, a dislike at multiplier 1 (EXPOSURE_WEIGHT)
    values = np.where(disliked, 1.0, m)
    users = rec._user_map.rows(last["user_id"].to_numpy(), "u")
    cols = rec._item_map.rows(last["item_id"].to_numpy(), "i")
    expected = np.zeros((len(rec.user_ids_), len(rec.item_ids_)))
    expected[users, cols] = values
    got = rec._als.user_items_.toarray()
    # m is a product of three factors rounded to float32 (once in float64 each: γ_3 of
    # float64, then one float32 rounding)
    assert_within(got, expected, (UNIT32 + gamma(3, UNIT64)) * np.abs(expected))
    assert np.array_equal(got != 0, expected != 0)
    # the record the model keeps: the same multipliers, dislikes flagged
    user = frame["user_id"].iloc[0]
    mine = last[last["user_id"] == user]
    hist = rec.history(user)
    np.testing.assert_array_equal(hist["item_id"].to_numpy(), mine["item_id"].to_numpy())
    np.testing.assert_array_equal(hist["disliked"].to_numpy(), mine["rating"].to_numpy() <= 1)
    assert_within(hist["weight"].to_numpy(), reference_multiplier(mine),
                  (UNIT32 + gamma(3, UNIT64)) * reference_multiplier(mine))
    assert list(hist["event"]) == list(mine["event"])
    np.testing.assert_array_equal(hist["rating"].to_numpy(), mine["rating"].to_numpy())


def _reference_fold_in(rec, user):
    """The behaviour vector's normal equations in float64: likes at confidence
    1 + α·m·(1 + recency·p²) target 1, dislikes at 1 + α·m target DISLIKE_TARGET."""
    record = rec._feedback.get(user)
    als, s = rec._als, rec._settings_used
    Y = als.item_factors_.astype(np.float64)
    liked = ~record["disliked"]
    r = np.concatenate((recency_weights(int(liked.sum()), s["recency"]) * record["weight"][liked],
                        record["weight"][~liked].astype(np.float64)))
    idx = np.concatenate((record["items"][liked], record["items"][~liked]))
    target = np.concatenate((np.ones(int(liked.sum())), np.full(int((~liked).sum()), fb.DISLIKE_TARGET)))
    w = als.alpha * r
    A = Y.T @ Y + (Y[idx].T * w) @ Y[idx] + als.regularization * np.eye(Y.shape[1])
    b = ((1 + w) * target) @ Y[idx]
    abs_A = np.abs(Y).T @ np.abs(Y) + (np.abs(Y[idx]).T * w) @ np.abs(Y[idx]) + als.regularization * np.eye(Y.shape[1])
    abs_b = (1 + w) @ np.abs(Y[idx])
    x = np.linalg.solve(A, b)
    return x, normal_equations_tolerance(A, x, abs_A, abs_b, len(Y) + len(idx) + 4)


def test_behaviour_vectors_match_the_weighted_fold_in(data, rng):
    interactions, items, _ = data
    rec = fit(with_columns(interactions, rng), items, event_weights=EVENTS)
    users = rec._users["behaviour"]
    checked_dislikes = 0
    for user in range(0, len(rec.user_ids_), 37):
        x, bound = _reference_fold_in(rec, user)
        assert_within(users[user], x, bound)
        checked_dislikes += int(rec._feedback.get(user)["disliked"].any())
    assert checked_dislikes > 0


def test_ratings_change_the_lists(data):
    interactions, items, _ = data
    used = fit(interactions, items)
    ignored = fit(interactions.drop(columns="rating"), items)
    users = interactions["user_id"].unique()[:100]
    a, b = used.recommend(list(users), 10).ids, ignored.recommend(list(users), 10).ids
    differ = (a != b).any(axis=1).mean()
    assert differ >= 0.5, differ
    # rating_rule="ignore" is the model without the column, exactly
    same = fit(interactions, items, rating_rule="ignore")
    np.testing.assert_array_equal(same.recommend(list(users), 10).ids, b)


def test_event_weights_and_auto(data, rng):
    interactions, items, _ = data
    frame = interactions.drop(columns="rating").assign(event=rng.choice(["view", "purchase"], len(interactions),
                                                                        p=[0.9, 0.1]))
    rec = fit(frame, items, event_weights={"view": 1, "purchase": 10})
    hist = rec.history(frame["user_id"].iloc[0])
    np.testing.assert_array_equal(hist["weight"], np.where(hist["event"] == "purchase", 10.0, 1.0))
    auto = fit(frame, items, event_weights="auto", validation=0.2)
    counts = frame["event"].value_counts()
    options = [{e: float((len(frame) / counts[e]) ** g) for e in counts.index}
               for g in fb.AUTO_EVENT_EXPONENTS]
    assert any(all(np.isclose(auto.event_weights_[e], o[e], rtol=1e-12) for e in o) for o in options)
    assert auto.validation_["event_weights"] == auto.event_weights_
    # unknown events: at fit and at update, named
    with pytest.raises(ValueError, match="interactions.event has event 'cart'"):
        fit(frame.assign(event="cart"), items, event_weights={"view": 1, "purchase": 10})
    with pytest.raises(ValueError, match="event has event 'refund'"):
        rec.update(frame["user_id"].iloc[0], [items["item_id"].iloc[0]], event="refund")


# ---------------------------------------------------------------- the horror fan
def _genre(items, topic):
    return set(items.loc[items["topic"] == topic, "item_id"])


def _top_topic(items):
    return int(items["topic"].value_counts().index[0])


def _assert_explanations_cite_no_dislike(rec, user, disliked, ids):
    for item in ids:
        why = rec.explain(user, item)
        assert not set(why.history["item_id"]) & disliked
        named = [line for line in why.text.splitlines()
                 if line.strip().startswith(("history items that weigh most", "closest in text"))]
        for line in named:
            for title in rec._labels[rec._item_map.rows(list(disliked), "d")]:
                assert title not in line, (title, line)


def test_horror_fan_by_update(data):
    interactions, items, _ = data
    rec = fit(interactions, items)
    topic = _top_topic(items)
    horror = _genre(items, topic)
    films = sorted(horror)[:15]
    rec.update(90_001, films, ratings=1)
    top = rec.recommend(90_001, 10).ids
    assert not set(top) & horror, sorted(set(top) & horror)
    hist = rec.history(90_001)
    assert hist["disliked"].all() and len(hist) == 15
    # a second user who likes a few other films and hates the same genre
    others = items.loc[items["topic"] != topic, "item_id"].to_numpy()[:5]
    rec.update(90_002, others, ratings=5)
    rec.update(90_002, films, ratings=1)
    top = rec.recommend(90_002, 10).ids
    assert not set(top) & horror
    _assert_explanations_cite_no_dislike(rec, 90_002, set(films), top[:5])
    # and never recommended back, whatever exclude_seen says
    everything = rec.recommend(90_002, len(rec.item_ids_), exclude_seen=False).ids
    assert not set(everything) & set(films)


def test_horror_fan_in_the_fit_data(data):
    interactions, items, _ = data
    topic = _top_topic(items)
    horror = _genre(items, topic)
    films = sorted(horror)[:15]
    likes = items.loc[items["topic"] != topic, "item_id"].to_numpy()[:3]
    t0 = int(interactions["timestamp"].max()) + 1
    fan = pd.DataFrame({"user_id": 10_000, "item_id": [*likes, *films],
                        "rating": [5.0] * 3 + [1.0] * 15, "timestamp": t0 + np.arange(18)})
    rec = fit(pd.concat([interactions, fan], ignore_index=True), items)
    top = rec.recommend(10_000, 10).ids
    assert not set(top) & horror
    _assert_explanations_cite_no_dislike(rec, 10_000, set(films), top[:5])
    # the same user with the ratings ignored: the genre fills the list
    plain = fit(pd.concat([interactions, fan], ignore_index=True), items, rating_rule="ignore")
    assert set(plain.recommend(10_000, 10).ids) & horror


# ------------------------------------------------------------------ online dislikes
def test_update_with_ratings_weights_and_dislikes(data):
    interactions, items, _ = data
    rec = fit(interactions, items, event_weights=EVENTS)
    user = interactions["user_id"].iloc[0]
    known = set(rec.history(user)["item_id"])
    new = [i for i in items["item_id"] if i not in known][:4]
    rec.update(user, new, ratings=[1, 5, 4, 2], event=["view", "purchase", "cart", "view"],
               weights=2.0)
    hist = rec.history(user).tail(4)
    np.testing.assert_array_equal(hist["item_id"], new)
    np.testing.assert_array_equal(hist["disliked"], [True, False, False, False])
    expected = np.array([2 * 1 * 1.0, 2 * 10 * 2.0, 2 * 4 * 1.5, 2 * 1 * 0.1])
    assert_within(hist["weight"].to_numpy(), expected, (UNIT32 + gamma(3, UNIT64)) * expected)
    row = int(rec._user_map.rows([user], "u")[0])
    x, bound = _reference_fold_in(rec, row)
    assert_within(rec._users["behaviour"][row], x, bound)
    assert new[0] not in set(rec.recommend(user, 50, exclude_seen=False).ids)
    # a later like replaces the dislike
    rec.update(user, [new[0]], ratings=5)
    last = rec.history(user).iloc[-1]
    assert last["item_id"] == new[0] and not last["disliked"]
    assert new[0] in set(rec._histories.get(row).tolist()) | set(rec.item_ids_[rec._histories.get(row)])


# ------------------------------------------------------------------ introspection
def test_item_and_user_ids_and_history(data):
    interactions, items, _ = data
    with pytest.raises(NotFittedError):
        Recommender().item_ids_
    rec = fit(interactions, items)
    np.testing.assert_array_equal(rec.item_ids_, items["item_id"].to_numpy())
    np.testing.assert_array_equal(rec.user_ids_, interactions["user_id"].drop_duplicates().to_numpy())
    with pytest.raises(ValueError):
        rec.item_ids_[0] = 5
    rec.update(90_003, [items["item_id"].iloc[3]])
    assert rec.user_ids_[-1] == 90_003
    with pytest.raises(UnknownIdError):
        rec.history(123_456_789)
    rec.add_items(pd.DataFrame({"item_id": [99_999], "text": ["a brand new film"]}))
    assert rec.item_ids_[-1] == 99_999


# ------------------------------------------------------------------ persistence
def test_save_load_keeps_what_interactions_meant(data, rng, tmp_path):
    interactions, items, _ = data
    rec = fit(with_columns(interactions, rng), items, event_weights=EVENTS)
    user = interactions["user_id"].iloc[1]
    rec.update(user, items["item_id"].to_numpy()[:3], ratings=1, event="view")
    rec.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    pd.testing.assert_frame_equal(loaded.history(user), rec.history(user))
    assert loaded.event_weights_ == rec.event_weights_
    users = list(interactions["user_id"].unique()[:20])
    np.testing.assert_array_equal(loaded.recommend(users, 10).ids, rec.recommend(users, 10).ids)
    loaded.update(user, items["item_id"].to_numpy()[3:4], ratings=1, event="cart")
    assert loaded.history(user)["disliked"].iloc[-1]


def test_plain_clicks_keep_one_copy_of_the_interactions(data, rng, tmp_path):
    """Without ratings, weights, events or dislikes, the columns that say nothing hold one
    value each and the histories are the feedback's own item rows (fit and load); with
    them, every value is kept."""
    interactions, items, _ = data
    clicks = interactions.drop(columns="rating")
    for rec in (fit(clicks, items), None):
        if rec is None:
            fit(clicks, items).save(tmp_path / "plain")
            rec = Recommender.load(tmp_path / "plain", encoder=WordEncoder())
        columns = rec._state.feedback._columns
        assert all(columns[name].strides == (0,) for name in ("weight", "disliked", "rating", "event"))
        assert np.shares_memory(rec._state.histories.arrays()[1], columns["items"])
    rich = fit(with_columns(interactions, rng), items, event_weights=EVENTS)
    columns = rich._state.feedback._columns
    assert all(columns[name].strides != (0,) for name in ("weight", "disliked", "rating", "event"))
    assert not np.shares_memory(rich._state.histories.arrays()[1], columns["items"])
    user = interactions["user_id"].iloc[1]  # a dislike added online to a plain-click model
    rec.update(user, items["item_id"].to_numpy()[:2], ratings=1)
    assert rec.history(user)["disliked"].iloc[-1] and not rec.history(user)["disliked"].iloc[0]


def test_old_files_still_load(data, tmp_path):
    """A version-2 file (no feedback arrays, no rating settings) loads as every
    interaction a like of weight 1, ratings unread."""
    interactions, items, _ = data
    rec = fit(interactions, items, rating_rule="ignore")
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=99)
    arrays = dict(arrays)
    for key in [k for k in arrays if k.startswith("fb_")]:
        del arrays[key]
    del arrays["inv_norm"]  # version 2 kept the unit factors (kind version 5: inverse norms)
    arrays["Vn"] = np.asarray(rec._items.Vn, dtype=np.float32)
    for key in ("rating_rule", "rating_scale", "dislike_threshold", "like_threshold", "event_weights",
                "text_storage"):
        meta["settings"].pop(key)
        meta["params"].pop(key)
    meta.pop("event_names")
    meta.pop("event_weights_fitted")
    path.unlink()
    save_arrays(path, "Recommender", 2, meta, {k: np.asarray(v) for k, v in arrays.items()})
    old = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert old._settings_used["rating_rule"] == "ignore"
    user = interactions["user_id"].iloc[0]
    hist = old.history(user)
    assert (hist["weight"] == 1).all() and not hist["disliked"].any()
    np.testing.assert_array_equal(old.recommend(user, 10).ids, rec.recommend(user, 10).ids)


def test_damaged_feedback_arrays_raise_format_error(data, tmp_path):
    from llmrec import FormatError

    interactions, items, _ = data
    rec = fit(interactions, items)
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=99)
    for name, change in (("fb_weight", lambda a: a * 0), ("fb_disliked", lambda a: a + 2),
                         ("fb_event", lambda a: a + 5)):
        bad = {k: np.array(v) for k, v in arrays.items()}
        bad[name] = change(bad[name]).astype(bad[name].dtype)
        path.unlink()
        save_arrays(path, "Recommender", 3, meta, bad)
        with pytest.raises(FormatError):
            Recommender.load(tmp_path / "m", encoder=WordEncoder())


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("column, value, message", [
    ("weight", 0.0, r"interactions.weight holds 0"),
    ("weight", -2.0, r"interactions.weight holds -2"),
    ("rating", 6.0, r"interactions.rating holds 6, outside rating_scale \[1, 5\]"),
    ("rating", 0.0, r"interactions.rating holds 0"),
    ("event", 3, r"interactions.event must hold event names"),
])
def test_bad_columns_name_column_and_value(data, column, value, message):
    interactions, items, _ = data
    if column == "event":
        values = ["view"] * len(interactions)
        values[7] = value
        frame = interactions.assign(event=pd.Series(values, index=interactions.index, dtype=object))
    else:
        frame = interactions.assign(**{column: interactions["rating"] if column == "rating" else 1.0})
        frame.loc[frame.index[7], column] = value
    with pytest.raises(ValueError, match=message):
        fit(frame, items, event_weights={"view": 1.0} if column == "event" else None)


@pytest.mark.parametrize("kwargs, error", [
    ({"rating_rule": "mean"}, ValueError), ({"rating_scale": (5, 1)}, ValueError),
    ({"rating_scale": 5}, TypeError), ({"dislike_threshold": 5.0}, ValueError),
    ({"like_threshold": 1.0}, ValueError), ({"like_threshold": 6.0}, ValueError),
    ({"event_weights": {"view": 0}}, ValueError), ({"event_weights": {"view": -1}}, ValueError),
    ({"event_weights": {"view": float("nan")}}, ValueError), ({"event_weights": ["view"]}, TypeError),
    ({"event_weights": {3: 1.0}}, TypeError), ({"event_weights": "sometimes"}, TypeError),
])
def test_bad_parameters(data, kwargs, error):
    interactions, items, _ = data
    with pytest.raises(error):
        fit(interactions.iloc[:500], items, **kwargs)


def test_bad_update_arguments(data):
    interactions, items, _ = data
    rec = fit(interactions, items)
    user, item = interactions["user_id"].iloc[0], items["item_id"].iloc[0]
    before = rec.history(user)
    for kwargs, message in (({"ratings": 7}, "ratings holds 7"), ({"weights": 0}, "weights holds 0"),
                            ({"weights": [1, 2]}, "one per item"), ({"ratings": "bad"}, "ratings must hold"),
                            ({"weights": float("inf")}, "weights must hold finite")):
        with pytest.raises(ValueError, match=message):
            rec.update(user, [item], **kwargs)
    pd.testing.assert_frame_equal(rec.history(user), before)  # nothing recorded


@pytest.mark.parametrize("n", [1, 3])
def test_plain_clicks_of_an_update_read_as_an_empty_frame(n):
    """update() without weights, events or ratings skips building a frame: the same
    multipliers, flags, ratings and events as interaction_feedback on no columns."""
    settings = {"rating_rule": "centred", "like_threshold": 4.0}
    fast = fb.update_feedback(n, settings, EVENTS, None, None, None)
    reference = fb.interaction_feedback(pd.DataFrame(index=np.arange(n)), settings, EVENTS)
    for got, expected in zip(fast, reference, strict=True):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
