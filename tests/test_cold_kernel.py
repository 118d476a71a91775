"""The "cold" signal of items without interactions (llmrec.recommender.cold_kernel):
against a float64 brute-force reference (the regression, its leave-one-out reference
rows, the spread), bad inputs, and in a Recommender: a synthetic catalogue where per-user
text tastes are too many for the factors (the signal must rank new items better than
without it), save/load round trips, damaged files."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest

import llmrec
from llmrec import Recommender
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.evaluation import cold_item_split, ranking_metrics
from llmrec.recommender import cold_kernel
from llmrec.recommender.cold_kernel import HASH_DIMS, MAP_RIDGE, SPREAD_ROWS, ColdRows, make_cold_kernel
from recommender_helpers import WordEncoder, assert_crafted_arrays_refused
from tolerances import EPS32, gamma


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _reference(X, width, ridge, histories, new):
    """float64, by brute force: each landmark regressed without it for the reference
    rows; the scores q·(z_c − z̄)/σ(u), σ² = |q|·v̄, v̄ the reference entries' mean variance."""
    X, new = np.asarray(X, np.float64), np.asarray(new, np.float64)
    m = len(X)
    K = np.exp((X @ X.T - 1.0) / width)
    ref = np.zeros((m, m))
    for l in range(m):
        keep = np.arange(m) != l
        ref[l, keep] = np.linalg.solve(K[np.ix_(keep, keep)] + ridge * np.eye(m - 1), K[keep, l])
    mean = ref.mean(axis=0)
    spread = ((ref - mean) ** 2).mean()
    Z = np.linalg.solve(K + ridge * np.eye(m), np.exp((X @ new.T - 1.0) / width)).T - mean
    Q = np.zeros((len(histories), m))
    for i, h in enumerate(histories):
        Q[i, h] = 1.0
    sigma = np.sqrt(Q.sum(axis=1) * spread)
    return (Q @ Z.T) / sigma[:, None], Z


def _words(texts):
    """[text vector ; β·words] rows, the words hashed as the module documents it."""
    import re
    import zlib

    H = np.zeros((len(texts), HASH_DIMS))
    for i, text in enumerate(texts):
        for word in set(re.findall(r"\w+", text.lower())):
            H[i, zlib.crc32(word.encode()) % HASH_DIMS] = 1.0
    return H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-300)


def _inputs(E, texts, words):
    if not words:
        return np.asarray(E, np.float64)
    X = np.hstack([np.asarray(E, np.float64), words * _words(texts)])
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _learned(X_L, V_L, X_new, factors):
    """The kernel inputs with the learned part, by the primal ridge formula
    W = (X_LᵀX_L + λI)⁻¹X_Lᵀ V̂_L (the module solves the dual): landmarks beside their own
    unit factors, new items beside their text's prediction."""
    if not factors:
        return X_L, X_new
    V_hat = _unit(np.asarray(V_L, np.float64))
    W = np.linalg.solve(X_L.T @ X_L + MAP_RIDGE * np.eye(X_L.shape[1]), X_L.T @ V_hat)
    return (_unit(np.hstack([X_L, factors * V_hat])), _unit(np.hstack([X_new, factors * _unit(X_new @ W)])))


VOCABULARY = ["comedy", "drama", "1995", "1996", "war", "space", "love", "crime"]


@pytest.mark.parametrize("seed, words, factors", [(0, 0.0, 0.0), (1, 0.0, 0.0), (2, 0.5, 0.0), (3, 1.0, 0.0),
                                                   (4, 0.0, 1.0), (5, 1.0, 1.5), (6, 0.5, 0.7)])
def test_scores_match_a_float64_brute_force(seed, words, factors):
    rng = np.random.default_rng(seed)
    m, d, f = 24, 10, 4  # m < SPREAD_ROWS: every reference row estimates the spread
    assert m < SPREAD_ROWS
    E = _unit(rng.standard_normal((m + 5 + 7, d))).astype(np.float32)
    V = rng.standard_normal((len(E), f)).astype(np.float32)  # the fit's item factors
    texts = [" ".join(rng.choice(VOCABULARY, 3)) for _ in range(len(E))]
    rows = np.sort(rng.choice(m + 5, m, replace=False))
    width, ridge = float(rng.choice([0.3, 0.5])), float(rng.choice([1.0, 3.0]))
    kernel = make_cold_kernel(E, texts, rows, width, ridge, words, factors, V)
    assert (kernel.projection is None) == (factors == 0)
    new, new_texts = E[m + 5:], texts[m + 5:]
    histories = [rows[rng.choice(m, rng.integers(1, 8), replace=False)] for _ in range(6)]
    X_text = _inputs(E[rows], [texts[i] for i in rows], words)
    X, X_new = _learned(X_text, V[rows], _inputs(new, new_texts, words), factors)
    expected, Z = _reference(X, width, ridge, [np.searchsorted(rows, h) for h in histories], X_new)
    Zf = kernel.rows(new, new_texts)
    got = kernel.queries(histories).astype(np.float64) @ Zf.T.astype(np.float64)
    # float32 kernel, products and sums of length m (and the float32 inverse, whose
    # entries carry the conditioning of K + μI; the float32 map's rows, of length
    # d + words, carry that of X_LX_Lᵀ + λI): bound by the absolute terms.
    cond = np.linalg.cond(np.exp((X @ X.T - 1) / width) + ridge * np.eye(m))
    if factors:
        cond *= np.linalg.cond(X_text @ X_text.T + MAP_RIDGE * np.eye(m))
    scale = (np.abs(Z).sum(axis=1).max() + 1) * np.abs(expected).max()
    assert np.abs(got - expected).max() <= 8 * cond * gamma(m + X.shape[1]) * scale + 1e-12
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


def test_items_outside_the_landmarks_and_empty_histories_score_zero():
    rng = np.random.default_rng(3)
    E = _unit(rng.standard_normal((30, 8))).astype(np.float32)
    kernel = make_cold_kernel(E, None, np.arange(0, 30, 2), 0.4, 1.0)
    q = kernel.queries([np.array([1, 3, 5]), np.array([], dtype=np.int64), np.array([0, 1])])
    assert not q[:2].any()  # odd rows are not landmarks
    np.testing.assert_array_equal(q[2] != 0, np.eye(1, 15, 0)[0] != 0)


def test_rows_refuse_bad_texts():
    rng = np.random.default_rng(4)
    E = _unit(rng.standard_normal((20, 6))).astype(np.float32)
    kernel = make_cold_kernel(E, None, np.arange(20), 0.3, 1.0)
    with pytest.raises(ValueError, match="E"):
        kernel.rows(np.ones((2, 5), dtype=np.float32), None)
    with pytest.raises(ValueError, match="E"):
        kernel.rows(np.full((1, 6), np.nan), None)
    with pytest.raises(TypeError, match="E"):
        kernel.rows([["a"] * 6], None)
    assert kernel.rows(np.zeros((0, 6), np.float32), None).shape == (0, 20)
    worded = make_cold_kernel(E, ["drama"] * 20, np.arange(20), 0.3, 1.0, words=0.5)
    with pytest.raises(ValueError, match="texts"):
        worded.rows(E[:2], None)
    with pytest.raises(ValueError, match="texts"):
        worded.rows(E[:2], ["drama"])
    with pytest.raises(ValueError, match="item_factors"):
        make_cold_kernel(E, None, np.arange(20), 0.3, 1.0, factors=1.0)
    learned = make_cold_kernel(E, None, np.arange(20), 0.3, 1.0, factors=1.0,
                               item_factors=rng.standard_normal((20, 3)))
    with pytest.raises(ValueError, match="E"):  # the text's width, not the landmark rows'
        learned.rows(np.ones((2, 9), dtype=np.float32), None)
    assert learned.rows(E[:2], None).shape == (2, 20)


def test_stored_rows_are_within_half_a_code_step():
    rng = np.random.default_rng(5)
    values = rng.standard_normal((9, 13)).astype(np.float32)
    stored = ColdRows.build(20, 13, np.arange(3, 12), values)
    step = np.abs(values).max(axis=1, keepdims=True) / 127
    assert (np.abs(stored[np.arange(3, 12)] - values) <= step / 2 * (1 + 1e-6)).all()
    assert not stored[np.array([0, 1, 2, 12, 19])].any()  # the shared zero row
    grown = stored.appended(values[:2], 2).appended(None, 1)
    assert len(grown.slots) == 23 and not grown[np.array([22])].any()
    np.testing.assert_array_equal(grown.applies, grown.slots > 0)  # the re-scorer skips the others
    np.testing.assert_array_equal(grown[np.array([20, 21])], stored[np.array([3, 4])])
    assert len(stored.slots) == 20  # the earlier rows are left as they were


# ------------------------------------------------------------------- in a Recommender
def _tastes(seed=0, n_users=400, n_items=500, n_words=150):
    """Each user takes the items whose text has their own word (150 tastes, more than
    the 8 factors can hold), a few others at random; texts are two words each."""
    rng = np.random.default_rng(seed)
    words = ["word" + chr(97 + i // 26) + chr(97 + i % 26) for i in range(n_words)]  # WordEncoder: letters
    pairs = np.array([rng.choice(n_words, 2, replace=False) for _ in range(n_items)])
    items = pd.DataFrame({"item_id": np.arange(n_items), "text": [f"{words[a]} {words[b]}" for a, b in pairs]})
    rows = []
    for u in range(n_users):
        word = rng.integers(n_words)
        liked = np.flatnonzero((pairs == word).any(axis=1))
        noise = rng.choice(n_items, 3, replace=False)
        for t, i in enumerate(np.concatenate([liked, noise])):
            rows.append((u, int(i), float(t)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]), items


def _fitted(factors=None):
    """The tastes catalogue's Recommender, the cold items added; ``factors``: the
    learned part's weights to choose from (None: the module's grid)."""
    interactions, items = _tastes()
    train, test = cold_item_split(interactions, 0.2, random_state=0)
    warm = items[items.item_id.isin(train.item_id.unique())]
    cold = items[~items.item_id.isin(warm.item_id)]
    with mock.patch.object(cold_kernel, "FACTORS", cold_kernel.FACTORS if factors is None else factors):
        rec = Recommender(encoder=WordEncoder(), random_state=0, factors=8, regularization=1.0,
                          num_threads=1).fit(train, items=warm)
    rec.add_items(cold)
    return rec, cold, test


@pytest.fixture(scope="module")
def tastes():
    return _fitted()


@pytest.fixture(scope="module")
def learned():
    """The same fit with the learned part on (α = 1 the only choice)."""
    return _fitted((1.0,))


def _cold_ndcg(rec, cold, test, scenario=None):
    users = np.sort(test.user_id.unique())
    cold_index = pd.Index(cold.item_id)
    truth = llmrec.datasets.to_csr(test, user_index=users, item_index=cold_index)[0]
    out = rec.recommend(list(users), 10, allow=list(cold_index), scenario=scenario).ids
    return ranking_metrics(cold_index.get_indexer(out.ravel()).reshape(out.shape), truth, 10)["ndcg"]


def test_new_items_ranked_better_with_the_signal(tastes):
    rec, cold, test = tastes
    assert rec.weights_["cold"] > 0, rec.validation_["cold"]
    rec.set_scenario("without", {**rec.weights_, "cold": 0.0})
    with_it, without = _cold_ndcg(rec, cold, test), _cold_ndcg(rec, cold, test, "without")
    assert with_it > without + 0.1, (with_it, without)
    # items with interactions are untouched by it: a warm ranking is the same without it
    users = list(test.user_id.unique()[:20])
    a, b = rec.recommend(users, 10, allow=list(rec.item_ids_[:300])), rec.recommend(users, 10, allow=list(
        rec.item_ids_[:300]), scenario="without")
    warm = rec._items.warm[rec._item_map.rows(list(rec.item_ids_[:300]), "x")].astype(bool)
    if warm.all():
        np.testing.assert_array_equal(a.ids, b.ids)


def test_visitors_and_predict_read_it(tastes):
    rec, cold, test = tastes
    user = int(test.user_id.iloc[0])
    history = rec.history(user)["item_id"].tolist()
    visitor = rec.recommend_for_history(history, 5, exclude_seen=True)
    known = rec.recommend(user, 5)
    assert set(visitor.ids) & set(known.ids)
    ids = rec.recommend(user, 3, allow=list(cold.item_id)).ids
    np.testing.assert_allclose(rec.predict(user, ids), rec.recommend(user, 3, allow=list(cold.item_id)).scores,
                               rtol=1e-6)


def test_a_clicked_new_item_leaves_the_signal_until_its_clicks_are_forgotten(tastes, tmp_path):
    """From its first click a new item is ranked by its re-solved factors: its cold row
    (and shift) no longer count, in the served score as in explain's parts; forgetting
    its only clicker brings both back; a saved and loaded model agrees."""
    rec, cold, test = tastes
    rec.save(tmp_path / "m")
    rec = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    user = int(test.user_id.iloc[0])
    item = int(rec.recommend(user, 1, allow=list(cold.item_id)).ids[0])  # its best new item
    clicker = int(test.user_id[test.user_id != user].iloc[0])
    Z, row = rec._items.Z, rec._item_map.rows([item], "i")[0]

    def cold_part() -> float:
        why = rec.explain(user, item)
        # explain sums in float64 what the re-scorer sums in float32: a few ulps of the
        # parts' magnitudes (and 1 for the offset, a mean of unit-spread signals)
        tol = 64 * EPS32 * (1 + sum(abs(v) for v in why.signals.values()))
        assert why.score == pytest.approx(float(rec.predict(user, [item])[0]), abs=tol)
        return why.signals["cold"]

    before = cold_part()
    assert before != 0.0 and Z.live_scales[Z.slots[row]] == Z.scales[Z.slots[row]] > 0
    rec.update(clicker, [item])
    Z = rec._items.Z
    assert Z.live_scales[Z.slots[row]] == 0.0 and Z.scales[Z.slots[row]] > 0  # kept for a forget
    assert not Z[np.array([row])].any()
    assert cold_part() == 0.0  # neither its row nor the shift: the score is the other parts'
    rec.save(tmp_path / "clicked")
    back = Recommender.load(tmp_path / "clicked", encoder=WordEncoder())
    assert back._items.Z.live_scales[back._items.Z.slots[row]] == 0.0
    np.testing.assert_array_equal(back.predict(user, [item]), rec.predict(user, [item]))  # one state
    rec.forget_user(clicker)
    Z = rec._items.Z
    assert Z.live_scales[Z.slots[row]] == Z.scales[Z.slots[row]] > 0
    assert cold_part() == before  # the same row and user: the same computation


def test_the_learned_part_is_fitted_and_ranks_new_items(learned):
    rec, cold, test = learned
    kernel, report = rec._state.cold_kernel, rec.validation_["cold"]
    assert kernel.factors == 1.0 and report["factors"] == 1.0 and kernel.projection.shape == (
        kernel.landmarks.shape[1] - 8, 8)  # (text rows, 8 factors)
    assert rec.weights_["cold"] > 0, report
    rec.set_scenario("without", {**rec.weights_, "cold": 0.0})
    assert _cold_ndcg(rec, cold, test) > _cold_ndcg(rec, cold, test, "without") + 0.1
    # a new item's row is the one make_cold_kernel's map gives its text
    row = rec._item_map.rows([int(cold.item_id.iloc[0])], "x")
    E = WordEncoder().encode([cold.text.iloc[0]])
    step = np.abs(rec._items.Z[row]).max() / 127
    np.testing.assert_allclose(rec._items.Z[row], kernel.rows(E, [cold.text.iloc[0]]), atol=step)


@pytest.mark.parametrize("fitted", ["tastes", "learned"])
def test_save_load_round_trip(fitted, request, tmp_path):
    rec, cold, test = request.getfixturevalue(fitted)
    rec.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    users = list(np.sort(test.user_id.unique())[:30])
    a = rec.recommend(users, 10, allow=list(cold.item_id))
    b = loaded.recommend(users, 10, allow=list(cold.item_id))
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert loaded.weights_["cold"] == rec.weights_["cold"]
    assert loaded._state.cold_kernel.factors == rec._state.cold_kernel.factors
    Z, n = loaded._items.Z, len(loaded._items.V)
    assert loaded.memory_per_item()["Z"] == pytest.approx((Z.codes.nbytes + Z.scales.nbytes + Z.live_scales.nbytes
                                                             + Z.fresh.nbytes + 5 * n) / n)
    extra = pd.DataFrame({"item_id": [90_000], "text": [cold.text.iloc[0]]})
    copy = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    for model in (loaded, copy):
        model.add_items(extra)
    row = copy._item_map.rows([90_000], "x")
    np.testing.assert_array_equal(loaded._items.Z[row], copy._items.Z[row])
    assert loaded._items.Z[row].any()


def test_a_version_8_file_loads_without_it(tastes, tmp_path):
    rec, cold, _ = tastes
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=12)
    arrays = {n: np.array(a) for n, a in arrays.items() if not n.startswith(("cold_", "Z_", "popularity_"))}
    meta["scenarios"] = {k: {s: w for s, w in v.items() if s != "cold"} for k, v in meta["scenarios"].items()}
    save_arrays(path, "Recommender", 8, meta, arrays)
    old = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert old._state.cold_kernel is None and old._items.Z is None
    old.add_items(pd.DataFrame({"item_id": [90_001], "text": ["wordaa wordab"]}))
    assert old.recommend(int(cold.index[0] % 50), 5).ids.shape == (5,)


def test_a_version_9_file_loads_without_the_learned_part(tastes, tmp_path):
    rec, cold, test = tastes
    assert rec._state.cold_kernel.factors == 0.0  # this fit chose the text alone: same rankings
    rec.save(tmp_path / "m")
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=12)
    save_arrays(path, "Recommender", 9, meta, {n: np.array(a) for n, a in arrays.items()
                                               if n not in ("cold_factors", "cold_shift")})
    old = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert old._state.cold_kernel.factors == 0.0 and old._state.cold_kernel.projection is None
    users = list(np.sort(test.user_id.unique())[:30])
    np.testing.assert_array_equal(old.recommend(users, 10, allow=list(cold.item_id)).ids,
                                  rec.recommend(users, 10, allow=list(cold.item_id)).ids)


@pytest.mark.parametrize("craft, match", [
    (lambda a: a.pop("cold_projection"), "cold_projection"),
    (lambda a: a.update(cold_projection=a["cold_projection"][:, :3].copy()), "cold_projection"),
    (lambda a: a.update(cold_projection=np.full_like(a["cold_projection"], np.inf)), "cold_projection"),
    (lambda a: a.update(cold_factors=np.array([-1.0])), "cold_factors"),
    (lambda a: a.update(cold_factors=np.array([np.nan])), "cold_factors"),
    (lambda a: a.update(cold_factors=np.array([0.0])), "cold_projection"),
    (lambda a: a.update(cold_landmarks=a["cold_landmarks"][:, :-8].copy()), "cold_landmarks"),
    (lambda a: [a.pop(n) for n in list(a) if n.startswith(("cold_", "Z_")) and n not in ("cold_factors",)],
     "without the cold signal"),
])
def test_a_damaged_learned_part_is_refused(learned, tmp_path, craft, match):
    rec, _, _ = learned
    rec.save(tmp_path / "m")
    assert_crafted_arrays_refused(tmp_path / "m", tmp_path, craft, match=match)


@pytest.mark.parametrize("craft, match", [
    (lambda a: a.pop("cold_inverse"), "saved together"),
    (lambda a: a.update(cold_inverse=a["cold_inverse"][:, :3].copy()), "cold_inverse"),
    (lambda a: a.update(cold_width=np.array([0.0])), "cold_width"),
    (lambda a: a.update(cold_words=np.array([-1.0])), "cold_words"),
    (lambda a: a.update(cold_words=np.array([0.5 if a["cold_words"][0] == 0 else 0.0])), "cold_landmarks"),
    (lambda a: a.update(cold_landmark_rows=a["cold_landmark_rows"][::-1].copy()), "ascending"),
    (lambda a: a.update(cold_landmarks=10 * a["cold_landmarks"]), "unit text vectors"),
    (lambda a: a.update(cold_mean=np.full_like(a["cold_mean"], np.nan)), "cold_mean"),
    (lambda a: a.update(cold_spread=np.array([0.0])), "cold_spread"),
    (lambda a: a.update(Z_slots=a["Z_slots"] + 10_000), "Z_slots"),
    (lambda a: a.update(Z_scales=-a["Z_scales"] - 1), "Z_scales"),
    (lambda a: a.update(Z_codes=a["Z_codes"].astype(np.float32)), "Z_codes"),
])
def test_a_damaged_signal_is_refused(tastes, tmp_path, craft, match):
    rec, _, _ = tastes
    rec.save(tmp_path / "m")
    assert_crafted_arrays_refused(tmp_path / "m", tmp_path, craft, match=match)


def test_off_without_text_or_with_too_many_items_without_interactions(monkeypatch, tmp_path):
    """No text, or more items without interactions at fit than MAX_COLD_ITEMS: no signal
    (no weight, no rows); add_items, recommend and save/load go on without it."""
    from llmrec.recommender import training

    interactions, items = _tastes(n_users=120, n_items=150)
    plain = Recommender(encoder=None, random_state=0, regularization=1.0).fit(interactions, items=items)
    monkeypatch.setattr(training, "MAX_COLD_ITEMS", 0)
    train = interactions[interactions.item_id < 140]
    capped = Recommender(encoder=WordEncoder(), random_state=0, regularization=1.0).fit(train, items=items)
    for rec in (plain, capped):
        assert rec._state.cold_kernel is None and rec._items.Z is None and "cold" not in rec.weights_
        rec.add_items(pd.DataFrame({"item_id": [10_000], "text": ["wordaa wordab"]}))
        rec.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
        np.testing.assert_array_equal(loaded.recommend(3, 5).ids, rec.recommend(3, 5).ids)
