"""The kernel text prior of items without interactions (llmrec.recommender.text_prior):
against a float64 reference (the map, the leave-one-out choice of τ and μ), on data
where a linear map cannot follow the text, bad inputs, and in a Recommender: cold items
ranked far above random, save/load, older files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import llmrec
from llmrec import Recommender
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.evaluation import cold_item_split, ranking_metrics
from llmrec.recommender.text_prior import MAX_LANDMARKS, RIDGES, WIDTHS, TextPrior, fit_text_prior
from recommender_helpers import WordEncoder, assert_crafted_arrays_refused, small_data
from tolerances import UNIT32, UNIT64, assert_within, gamma


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _problem(rng, n=40, d=12, f=6, n_users=30):
    texts = _unit(rng.standard_normal((n, d))).astype(np.float32)
    factors = rng.standard_normal((n, f)).astype(np.float32)
    counts = rng.integers(0, 5, n)
    users = rng.standard_normal((n_users, f)).astype(np.float32)
    return texts, factors, counts, users


def _kernel(A, B, width):
    return np.exp((A @ B.T - 1.0) / width)


def _reference(texts, factors, counts, users):
    """Brute force in float64: the landmarks (most interactions first, ties by row), and
    for every (τ, μ) of the grid each landmark refitted without it; the pair with the
    least error in score space, Σ_i (v̂₋ᵢ − vᵢ)ᵀ UᵀU (v̂₋ᵢ − vᵢ), and its coefficients."""
    fitted = np.flatnonzero(counts > 0)
    rows = fitted[np.argsort(-counts[fitted], kind="stable")][:MAX_LANDMARKS]
    X, V, U = (np.asarray(a, dtype=np.float64) for a in (texts[rows], factors[rows], users))
    gram = U.T @ U
    best = None
    for width in WIDTHS:
        K = _kernel(X, X, width)
        for ridge in RIDGES:
            error = 0.0
            for i in range(len(X)):
                keep = np.arange(len(X)) != i
                coef = np.linalg.solve(K[np.ix_(keep, keep)] + ridge * np.eye(len(X) - 1), V[keep])
                D = K[i, keep] @ coef - V[i]
                error += D @ gram @ D
            if best is None or error < best[0]:
                best = (error, width, np.linalg.solve(K + ridge * np.eye(len(X)), V), rows)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_matches_a_brute_force_leave_one_out(seed):
    rng = np.random.default_rng(seed)
    texts, factors, counts, users = _problem(rng)
    prior = fit_text_prior(texts, factors, counts, users)
    _, width, coef, rows = _reference(texts, factors, counts, users)
    assert prior.width == width
    np.testing.assert_array_equal(prior.landmarks, texts[rows])
    # Two float64 solves of (K + μI)c = V (eigendecomposition, LU), κ ≤ (m·e^0 + μ)/μ:
    # each within a few κ·m·u64 of the exact c; then the library rounds to float32.
    m, kappa = len(rows), (len(rows) + min(RIDGES)) / min(RIDGES)
    slack = 4 * kappa * gamma(m, UNIT64) * np.abs(coef).max()
    assert_within(prior.coef, coef, UNIT32 * np.abs(coef) + slack)


def test_factors_match_float64_within_the_arithmetic():
    rng = np.random.default_rng(3)
    texts, factors, counts, users = _problem(rng, n=200, d=48, f=16)
    prior = fit_text_prior(texts, factors, counts, users)
    new = _unit(rng.standard_normal((500, 48))).astype(np.float32)
    L, C = prior.landmarks.astype(np.float64), prior.coef.astype(np.float64)
    argument = (new.astype(np.float64) @ L.T - 1.0) / prior.width
    k = np.exp(argument)
    expected = k @ C
    # The cosine: γ_d of Σ|x||l| ≤ 1 (unit rows); minus 1 and the division: 2u of |arg|
    # more; the float32 exp: ≤ 2u relative; so each kernel value is within
    # δk = (γ_d/τ + 2u·|arg| + 2u)·k, and the sum over m landmarks adds γ_m:
    # |error| ≤ Σ_l (δk_l + γ_m·k_l)|c_l|.
    d, m = new.shape[1], len(L)
    dk = (gamma(d) / prior.width + 2 * UNIT32 * np.abs(argument) + 2 * UNIT32) * k
    bound = (dk + gamma(m) * k) @ np.abs(C)
    assert_within(prior.factors(new), expected, bound)
    # fewer rows (another BLAS kernel): within the same bound
    assert_within(prior.factors(new[:7]), expected[:7], bound[:7])


def test_a_text_map_a_linear_prior_cannot_follow():
    """Twelve topics on a 3-d sphere, each with its own random factors: no linear map of
    three coordinates reaches twelve arbitrary targets, the kernel map does. New items of
    each topic must land nearest their topic's factors."""
    rng = np.random.default_rng(4)
    centres = _unit(rng.standard_normal((12, 3)))
    targets = rng.standard_normal((12, 8))
    topic = np.repeat(np.arange(12), 20)
    texts = _unit(centres[topic] + 0.05 * rng.standard_normal((len(topic), 3))).astype(np.float32)
    factors = (targets[topic] + 0.1 * rng.standard_normal((len(topic), 8))).astype(np.float32)
    users = rng.standard_normal((50, 8)).astype(np.float32)
    prior = fit_text_prior(texts, factors, np.ones(len(topic)), users)
    new_topic = np.arange(12).repeat(5)
    new = _unit(centres[new_topic] + 0.05 * rng.standard_normal((len(new_topic), 3))).astype(np.float32)

    def hits(predicted):
        nearest = np.argmin(((predicted[:, None, :] - targets[None]) ** 2).sum(-1), axis=1)
        return np.mean(nearest == new_topic)

    W = np.linalg.solve(texts.T.astype(np.float64) @ texts + 1e-3 * np.eye(3), texts.T @ factors)
    assert hits(prior.factors(new)) > 0.95
    assert hits(new @ W) < 0.5  # the linear ridge (1/12 would be chance)


def test_too_few_fitted_items_give_no_prior():
    rng = np.random.default_rng(5)
    texts, factors, _, users = _problem(rng)
    assert fit_text_prior(texts, factors, np.zeros(len(texts)), users) is None
    assert fit_text_prior(texts, factors, np.eye(1, len(texts))[0], users) is None


def test_factors_refuse_bad_texts():
    rng = np.random.default_rng(6)
    prior = fit_text_prior(*_problem(rng))
    with pytest.raises(ValueError, match="texts"):
        prior.factors(np.ones((2, 5), dtype=np.float32))  # d = 12 expected
    with pytest.raises(ValueError, match="texts"):
        prior.factors(np.full((1, 12), np.nan))
    with pytest.raises(ValueError, match="texts"):
        prior.factors(np.ones(12))
    with pytest.raises(TypeError, match="texts"):
        prior.factors([["a"] * 12])


# ------------------------------------------------------------------- in a Recommender
@pytest.fixture(scope="module")
def data():
    return small_data()


@pytest.fixture(scope="module")
def cold_model(data):
    interactions, items, _ = data
    train, test = cold_item_split(interactions, 0.2, random_state=0)
    warm = items[items.item_id.isin(train.item_id.unique())]
    cold = items[~items.item_id.isin(warm.item_id)]
    rec = Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                      num_threads=1).fit(train, items=warm)
    return rec, cold, test


def _cold_ndcg(rec, cold, test):
    users = np.sort(test.user_id.unique())
    cold_index = pd.Index(cold.item_id)
    truth = llmrec.datasets.to_csr(test, user_index=users, item_index=cold_index)[0]
    out = rec.recommend(list(users), 10, allow=list(cold_index)).ids
    found = ranking_metrics(cold_index.get_indexer(out.ravel()).reshape(out.shape), truth, 10)["ndcg"]
    rng = np.random.default_rng(0)
    random = ranking_metrics(np.argsort(rng.random((len(users), len(cold_index))), axis=1)[:, :10],
                             truth, 10)["ndcg"]
    return found, random


def test_never_seen_items_ranked_far_above_random(cold_model, tmp_path):
    """Items added after the fit are ranked from their text by the kernel prior (their
    factors are exactly its prediction), far above random; the saved model keeps the
    prior, and ranks items it adds after loading the same way."""
    rec, cold, test = cold_model
    rec = Recommender.load(_saved(rec, tmp_path / "fitted"), encoder=WordEncoder())  # a copy to add to
    assert isinstance(rec._state.text_prior, TextPrior)
    rows = rec._item_map.rows(rec.add_items(cold), "cold")
    expected = rec._state.text_prior.factors(np.asarray(rec._items.E[rows], dtype=np.float32))
    np.testing.assert_array_equal(rec._items.V[rows], expected)
    found, random = _cold_ndcg(rec, cold, test)
    assert found > 2 * random, (found, random)

    rec.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    for name in ("landmarks", "coef", "width"):
        np.testing.assert_array_equal(getattr(loaded._state.text_prior, name), getattr(rec._state.text_prior, name))
    extra = pd.DataFrame({"item_id": [90_000], "text": [cold.text.iloc[0]]})
    for model in (loaded, rec):
        model.add_items(extra)
    row = rec._item_map.rows([90_000], "x")
    np.testing.assert_array_equal(loaded._items.V[row], rec._items.V[row])


def _saved(rec, directory):
    rec.save(directory)
    return directory


def test_a_version_7_file_keeps_the_linear_prior(cold_model, tmp_path):
    """A model saved before the kernel prior (kind version 7) loads without it: items it
    adds get ALS's linear prior F·W, as the model was fitted."""
    rec, cold, _ = cold_model
    path = _saved(rec, tmp_path / "m") / "recommender.llmrec"
    meta, arrays, _ = load_arrays(path, "Recommender", max_kind_version=99)
    arrays = {name: np.array(a) for name, a in arrays.items() if not name.startswith("prior_")}
    save_arrays(path, "Recommender", 7, meta, arrays)
    old = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert old._state.text_prior is None
    rows = old._item_map.rows(old.add_items(cold.iloc[:5]), "cold")
    W = old._als.item_prior_weights_
    E = np.asarray(old._items.E[rows], dtype=np.float32)
    assert_within(old._items.V[rows], E.astype(np.float64) @ W, 2 * gamma(E.shape[1]) * (np.abs(E) @ np.abs(W)))


@pytest.mark.parametrize("craft, match", [
    (lambda a: a.pop("prior_coef"), "saved together"),
    (lambda a: a.update(prior_coef=a["prior_coef"][:, :3].copy()), "prior_coef"),
    (lambda a: a.update(prior_landmarks=a["prior_landmarks"][:1].copy(), prior_coef=a["prior_coef"][:1].copy()),
     "prior_landmarks"),
    (lambda a: a.update(prior_width=np.array([0.0])), "prior_width"),
    (lambda a: a.update(prior_width=np.array([np.inf])), "prior_width"),
    (lambda a: a.update(prior_width=np.array([1e-4])), "prior_width"),
    (lambda a: a.update(prior_landmarks=10 * a["prior_landmarks"]), "unit text vectors"),
    (lambda a: a.update(prior_coef=np.full_like(a["prior_coef"], 1e35)), "prior_coef"),
    (lambda a: a.update(prior_coef=np.full_like(a["prior_coef"], np.nan)), "prior_coef"),
    (lambda a: a.update(prior_landmarks=a["prior_landmarks"].astype(np.float64)), "prior_landmarks"),
])
def test_a_damaged_prior_is_refused(cold_model, tmp_path, craft, match):
    rec, _, _ = cold_model
    assert_crafted_arrays_refused(_saved(rec, tmp_path / "m"), tmp_path, craft, match=match)


def test_no_prior_without_text_or_without_priors(data):
    interactions, items, _ = data
    plain = Recommender(encoder=None, random_state=0, validation=0.0, regularization=10.0).fit(
        interactions, items=items)
    off = Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                      prior_strength=0.0).fit(interactions, items=items)
    assert plain._state.text_prior is None and off._state.text_prior is None
