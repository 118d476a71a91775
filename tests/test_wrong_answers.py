"""No silently wrong answer, no unbounded allocation: singular ALS solves, hyperparameters
that overflow, the two forms of ALS.recommend's user_items, empty histories and queries,
k beyond the catalogue, ids that would grow a model without bound."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec import ALS, ExactIndex, QuantizedIndex, Recommender
from llmrec._checks import MAX_PADDED_K
from llmrec.als import MAX_ALPHA, MAX_ID_GAP, MAX_PRIOR_STRENGTH, MAX_REGULARIZATION
from llmrec.recommender.model import MAX_RECENCY, MAX_TEXT_WEIGHT

from recommender_helpers import WordEncoder, small_data


def _ratings(rng, n_users=40, n_items=30, density=0.3):
    R = sp.random(n_users, n_items, density=density, format="csr", random_state=rng,
                  dtype=np.float32)
    R.data = 1.0 + 4.0 * R.data  # ratings in [1, 5]
    return R


def _top_k_reference(scores: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Best k ids per row in float64, seen items removed, ties by smaller id."""
    scores = np.where(seen, -np.inf, scores.astype(np.float64))
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)
    return order[:, :k]


# ------------------------------------------------------------- singular ALS solves

@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_explicit_without_regularization_is_refused_at_fit(rng, solver):
    # The reported bug: all-NaN factors, no error until recommend. Rows with fewer
    # ratings than factors have singular normal equations at λ = 0 (fold-in solves them
    # by Cholesky whatever the solver), so explicit feedback needs λ > 0.
    model = ALS(feedback="explicit", solver=solver, regularization=0, factors=8, iterations=3,
                random_state=0)
    with pytest.raises(ValueError, match="explicit feedback needs regularization > 0"):
        model.fit(_ratings(rng, density=0.1))
    assert not hasattr(model, "user_factors_")


def test_explicit_with_small_regularization_is_finite_and_fits(rng):
    # A row with one rating and λ > 0 has a unique solution; an exact rank-f matrix is
    # reproduced (the relative error is bounded by λ's pull, tiny at λ = 1e-4).
    f = 3
    A, B = rng.uniform(0.5, 1.5, (25, f)), rng.uniform(0.5, 1.5, (20, f))
    D = (A @ B.T).astype(np.float32)
    model = ALS(feedback="explicit", solver="cholesky", regularization=1e-4, factors=f,
                iterations=40, random_state=0).fit(sp.csr_matrix(D))
    S = model.user_factors_.astype(np.float64) @ model.item_factors_.T.astype(np.float64)
    assert np.linalg.norm(S - D) / np.linalg.norm(D) < 1e-2
    one = sp.csr_matrix(([3.0], ([0], [5])), shape=(1, 20), dtype=np.float32)
    x = model.fold_in(one)[0].astype(np.float64)
    y = model.item_factors_[5].astype(np.float64)
    # λ·n·x + y (y·x) = 3·y  ⇒  x = 3·y / (λ + |y|²): the minimum-norm fit of one rating.
    np.testing.assert_allclose(x, 3.0 * y / (1e-4 + y @ y), rtol=1e-4)


def test_non_finite_solves_raise_and_leave_the_model_unchanged(rng):
    R = _ratings(rng, density=0.5)
    model = ALS(factors=4, iterations=2, random_state=0).fit(R)
    model.item_factors_[:] *= np.float32(1e25)  # finite, but the Gramian overflows float32
    model._touch()
    with pytest.raises(ValueError, match="NaN or infinite factors"):
        model.fold_in(R[[0]])
    before = model.user_factors_.copy()
    with pytest.raises(ValueError, match="NaN or infinite factors"):
        model.partial_fit_users([0], R[[1]])
    np.testing.assert_array_equal(model.user_factors_, before)


# ------------------------------------------------------- hyperparameter ceilings

@pytest.mark.parametrize("name, value", [("alpha", 1e30), ("alpha", MAX_ALPHA * 2),
                                         ("regularization", 1e30), ("prior_strength", 1e30),
                                         ("regularization_exponent", 10.0)])
def test_als_refuses_hyperparameters_that_overflow(rng, name, value):
    with pytest.raises(ValueError, match=name):
        ALS(**{name: value}, iterations=1).fit(_ratings(rng))


def test_als_at_its_ceilings_stays_finite(rng):
    R = _ratings(rng)
    R.data = np.round(R.data)  # counts up to 5: confidences up to 5e6 + 1
    model = ALS(alpha=MAX_ALPHA, regularization=MAX_REGULARIZATION, prior_strength=MAX_PRIOR_STRENGTH,
                factors=4, iterations=3, random_state=0).fit(R, item_features=rng.standard_normal((30, 3)))
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()
    model = ALS(alpha=MAX_ALPHA, factors=4, iterations=3, random_state=0).fit(R)
    ids, scores = model.recommend(np.arange(5), k=3)
    assert (ids >= 0).all() and np.isfinite(scores).all()


@pytest.fixture(scope="module")
def data():
    return small_data(80, 120, seed=3)


def _fit(data, **kwargs):
    interactions, items, _ = data
    kwargs = {"encoder": WordEncoder(), "random_state": 0, "validation": 0.0, "factors": 8,
              "iterations": 3, **kwargs}
    return Recommender(**kwargs).fit(interactions, items=items)


@pytest.mark.parametrize("name, value", [("alpha", 1e30), ("alpha", MAX_ALPHA * 10),
                                         ("regularization", 1e30), ("prior_strength", 1e30),
                                         ("recency", MAX_RECENCY * 10), ("text_weight", 1e30),
                                         ("alpha", float("inf"))])
def test_recommender_refuses_hyperparameters_that_overflow(data, name, value):
    with pytest.raises(ValueError, match=name):
        _fit(data, **{name: value})


def test_recommender_at_its_ceilings_still_ranks(data):
    # Recommender(alpha=1e30) used to return only padding; at the documented maxima the
    # rankings are whole and finite.
    model = _fit(data, alpha=MAX_ALPHA, recency=MAX_RECENCY, text_weight=MAX_TEXT_WEIGHT,
                 regularization=MAX_REGULARIZATION, prior_strength=MAX_PRIOR_STRENGTH)
    users = model._user_map.ids[:10]
    result = model.recommend(list(users), 10)
    assert (result.ids != -1).all() and np.isfinite(result.scores).all()
    model = _fit(data, alpha=MAX_ALPHA, recency=MAX_RECENCY)
    result = model.recommend(list(users), 10)
    assert (result.ids != -1).all() and np.isfinite(result.scores).all()


# -------------------------------------------------- ALS.recommend's two forms

@pytest.fixture
def als_and_data(rng):
    R = sp.random(30, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    model = ALS(factors=6, iterations=4, random_state=0).fit(R)
    return model, R


def test_permuted_users_with_per_user_rows(als_and_data, rng):
    """The reported bug: ids a permutation of all users and one row per id were read as
    the full matrix (a user got items they had already seen)."""
    model, R = als_and_data
    perm = rng.permutation(R.shape[0])
    scores = model.user_factors_[perm] @ model.item_factors_.T
    expected = _top_k_reference(scores, R[perm].toarray() > 0, 5)
    with pytest.raises(ValueError, match="user_items_rows"):
        model.recommend(perm, R[perm], k=5)  # ambiguous: refused, never guessed
    per_user, _ = model.recommend(perm, R[perm], k=5, user_items_rows="per_user")
    all_users, _ = model.recommend(perm, R, k=5, user_items_rows="all_users")
    np.testing.assert_array_equal(per_user, expected)
    np.testing.assert_array_equal(all_users, expected)
    for row, user in zip(per_user, perm):
        assert not set(row) & set(R[user].indices)


def test_unambiguous_forms_are_inferred(als_and_data):
    model, R = als_and_data
    users = np.array([7, 3, 11])
    scores = model.user_factors_[users] @ model.item_factors_.T
    expected = _top_k_reference(scores, R[users].toarray() > 0, 4)
    np.testing.assert_array_equal(model.recommend(users, R[users], k=4)[0], expected)  # per user
    np.testing.assert_array_equal(model.recommend(users, R, k=4)[0], expected)  # all users
    everyone = np.arange(R.shape[0])  # ids 0..n-1 in order: both readings agree
    scores = model.user_factors_ @ model.item_factors_.T
    np.testing.assert_array_equal(model.recommend(everyone, R, k=4)[0],
                                  _top_k_reference(scores, R.toarray() > 0, 4))


def test_declared_form_must_match_the_rows(als_and_data):
    model, R = als_and_data
    with pytest.raises(ValueError, match="one row per requested user"):
        model.recommend([1, 2], R, k=3, user_items_rows="per_user")
    with pytest.raises(ValueError, match=r"n_users \(30\) rows"):
        model.recommend([1, 2], R[[1, 2]], k=3, user_items_rows="all_users")
    with pytest.raises(ValueError, match="user_items_rows must be one of"):
        model.recommend([1, 2], R, k=3, user_items_rows="rows")
    with pytest.raises(ValueError, match="only when user_items is given"):
        model.recommend([1, 2], k=3, user_items_rows="per_user")


# ---------------------------------------------------- empty histories and queries

@pytest.fixture(scope="module")
def fitted(data):
    return _fit(data)


def _popular_reference(interactions, catalogue, k):
    """Items by distinct users who took them (desc; dislikes, rated 1/5 under the default
    rating rule, do not count), ties in catalogue order: ids and counts."""
    if "rating" in interactions.columns:
        interactions = interactions[interactions.rating > 1]
    users = interactions.drop_duplicates(["user_id", "item_id"]).groupby("item_id").size()
    counts = np.array([users.get(i, 0) for i in catalogue], dtype=np.int64)
    order = np.argsort(-counts, kind="stable")[:k]
    return np.asarray(catalogue)[order], counts[order]


def test_empty_history_without_a_query_gives_popular_items(data):
    interactions, _, _ = data
    model = _fit(data)  # its own: updated below
    catalogue = list(model._item_map.ids)
    ids, counts = _popular_reference(interactions, catalogue, 8)
    for empty in ([], np.zeros(0, dtype=np.int64)):
        got = model.recommend_for_history(empty, 8)
        np.testing.assert_array_equal(got.ids, ids)
        np.testing.assert_array_equal(got.scores, counts.astype(np.float32))
    # updates count at once; a user's repeat click does not count twice
    target = ids[-1]
    known_user = interactions.loc[interactions.item_id == target, "user_id"].iloc[0]
    model.update(known_user, [target])
    assert model.recommend_for_history([], 8).scores[-1] == counts[-1]
    for n in range(int(counts[0] - counts[-1]) + 1):
        model.update(f"visitor {n}" if isinstance(known_user, str) else 10**9 + n, [target])
    top = model.recommend_for_history([], 8)
    assert top.ids[0] == target and top.scores[0] == counts[0] + 1
    # beyond the catalogue: padded, as every ranking
    wide = model.recommend_for_history([], len(catalogue) + 5)
    assert (wide.ids[-5:] == -1).all() and np.isneginf(wide.scores[-5:]).all()
    assert (wide.ids[:-5] >= 0).all() and len(set(wide.ids[:-5])) == len(catalogue)


def test_empty_history_with_a_query_ranks_by_the_query(fitted, data):
    _, items, _ = data
    request = " ".join(items["text"].iloc[0].split()[:6])
    got = fitted.recommend_for_history([], 10, query=request)
    want = fitted.search(request, 10)
    np.testing.assert_array_equal(got.ids, want.ids)  # the request's ranking, nothing else
    assert (got.ids != -1).all() and np.isfinite(got.scores).all()
    with pytest.raises(ValueError, match="no weight"):
        fitted.recommend_for_history([], query=request, scenario="similar")


@pytest.mark.parametrize("query", ["", " ", "\t\n  "])
def test_empty_queries_are_refused(fitted, query):
    user = fitted._user_map.ids[0]
    with pytest.raises(ValueError, match="query is empty"):
        fitted.search(query)
    with pytest.raises(ValueError, match="query is empty"):
        fitted.search(query, user_id=user)
    with pytest.raises(ValueError, match="query is empty"):
        fitted.recommend(user, query=query)
    with pytest.raises(ValueError, match=r"query\[1\] is empty"):
        fitted.recommend(list(fitted._user_map.ids[:2]), query=["good films", query])
    with pytest.raises(ValueError, match="query is empty"):
        fitted.recommend_for_history([fitted._item_map.ids[0]], query=query)


# ---------------------------------------------------------------------- k caps

@pytest.mark.parametrize("n", [300, 2000])
def test_index_k_is_capped_by_the_catalogue(rng, n):
    x = rng.standard_normal((n, 8)).astype(np.float32)
    limit = max(n, MAX_PADDED_K)
    for index in (ExactIndex(x), QuantizedIndex(x, codec="sq8", random_state=0)):
        ids, scores = index.search(x[0], k=limit)
        assert ids.shape == (limit,) and (ids[:n] >= 0).all() and (ids[n:] == -1).all()
        assert np.isneginf(scores[n:]).all()
        for k in (limit + 1, 2**27, 2**62):
            with pytest.raises(ValueError, match="k must be at most"):
                index.search(x[:2], k=k)


def test_als_and_recommender_k_are_capped(als_and_data, fitted):
    model, R = als_and_data
    assert model.recommend(0, k=MAX_PADDED_K)[0].shape == (MAX_PADDED_K,)
    for call in (lambda k: model.recommend([0, 1], k=k), lambda k: model.similar_items(0, k=k),
                 lambda k: model.similar_users(0, k=k),
                 lambda k: model.recommend_for_history(R[[0]], k=k)):
        with pytest.raises(ValueError, match="k must be at most"):
            call(2**27)
    user, item = fitted._user_map.ids[0], fitted._item_map.ids[0]
    assert fitted.recommend(user, MAX_PADDED_K).ids.shape == (MAX_PADDED_K,)
    for call in (lambda k: fitted.recommend(user, k), lambda k: fitted.similar_items(item, k),
                 lambda k: fitted.recommend_for_history([item], k),
                 lambda k: fitted.search("a film", k)):
        with pytest.raises(ValueError, match="k must be at most"):
            call(2**27)


# --------------------------------------------------------- growth caps

def test_partial_fit_refuses_ids_far_beyond_the_model(als_and_data):
    model, R = als_and_data
    n_users, n_items = model.n_users_, model.n_items_
    with pytest.raises(ValueError, match="may grow by at most"):
        model.partial_fit_users([10**9], R[[0]])
    with pytest.raises(ValueError, match="may grow by at most"):
        model.partial_fit_items([10**9])
    with pytest.raises(ValueError, match="may grow by at most"):
        model.partial_fit_users([n_users + MAX_ID_GAP + 1], R[[0]])
    assert (model.n_users_, model.n_items_) == (n_users, n_items)
    # The largest gap allowed: one new id, MAX_ID_GAP empty rows before it.
    model.partial_fit_users([n_users + MAX_ID_GAP], R[[0]])
    assert model.n_users_ == n_users + MAX_ID_GAP + 1
    np.testing.assert_array_equal(model.user_factors_[n_users:-1], 0)
    np.testing.assert_allclose(model.user_factors_[-1], model.fold_in(R[[0]])[0], rtol=1e-6)
