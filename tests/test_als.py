"""The ALS estimator: known answers, float64 numpy references, priors, files, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import llmrec
from llmrec import ALS, NotFittedError
from tolerances import (UNIT64, als_loss_tolerance, als_row_system, assert_within, dot_tolerance,
                        gamma, normal_equations_tolerance, solve_tolerance)


def checkerboard(n=8):
    i, j = np.indices((n, n))
    return sp.csr_matrix(((i + j) % 2 == 0).astype(np.float32))


def low_rank_counts(rng, n_users=120, n_items=80, rank=4, density=0.15):
    """Implicit data with structure: users and items in `rank` groups."""
    user_group = rng.integers(rank, size=n_users)
    item_group = rng.integers(rank, size=n_items)
    p = np.where(user_group[:, None] == item_group[None, :], 0.5, 0.02)
    mask = rng.random((n_users, n_items)) < p * density / 0.15
    counts = rng.integers(1, 5, size=(n_users, n_items)) * mask
    counts[:, 0] += 1  # no empty rows
    counts[0] += 1
    return sp.csr_matrix(counts.astype(np.float32))


def numpy_objective(model, R, *, implicit=True, alpha=1.0, reg=0.01, exponent=0.0):
    D = R.toarray().astype(np.float64)
    U = model.user_factors_.astype(np.float64)
    V = model.item_factors_.astype(np.float64)
    S = U @ V.T
    if implicit:
        data = ((1 + alpha * D) * ((D > 0) - S) ** 2).sum()
    else:
        data = (((D - S) ** 2) * (D > 0)).sum()
    nu, ni = (D > 0).sum(1), (D > 0).sum(0)
    return data + reg * ((nu ** exponent) @ (U ** 2).sum(1) + (ni ** exponent) @ (V ** 2).sum(1))


# ------------------------------------------------------------------ known answers

@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_checkerboard_known_answer(simd_level, solver):
    R = checkerboard()
    model = ALS(factors=4, regularization=0.01, iterations=30, solver=solver, random_state=0)
    assert model.fit(R) is model
    scores = model.user_factors_ @ model.item_factors_.T
    # model quality, not rounding: λ = 0.01 shrinks the fit by about λ/‖y‖² ≈ 0.3 %
    np.testing.assert_allclose(scores, R.toarray(), atol=0.05)
    ids, _ = model.recommend(0, k=4, exclude_seen=False)
    assert set(ids) <= set(np.flatnonzero(R.toarray()[0]))
    ids, scores = model.similar_items(0, k=3)
    assert np.all(ids % 2 == 0) and 0 not in ids and np.all(scores > 0.9)
    ids, _ = model.similar_users(np.array([1]), k=3)
    assert np.all(ids % 2 == 1)


def test_explicit_toy_reproduces_observed_ratings():
    ratings = np.array([[5, 3, 0, 1], [4, 0, 0, 1], [1, 1, 0, 5]], dtype=np.float32)
    model = ALS(factors=3, feedback="explicit", regularization=0.01, iterations=50,
                random_state=0).fit(ratings)
    predicted = model.user_factors_ @ model.item_factors_.T
    observed = ratings > 0
    # model quality, not rounding: 3 factors fit 8 ratings up to the ridge's shrinkage
    np.testing.assert_allclose(predicted[observed], ratings[observed], atol=0.15)
    # the zeros are missing, not ratings: the empty item column gets zero (no prior)
    np.testing.assert_array_equal(model.item_factors_[2], 0)
    assert predicted[1, 1] > 1.5  # filled in from similar users, not pulled to 0


def test_explicit_recovers_low_rank_matrix_from_30_percent(rng):
    n_users, n_items, rank = 150, 120, 3
    truth = rng.standard_normal((n_users, rank)) @ rng.standard_normal((rank, n_items)) + 15
    assert truth.min() > 0
    observed = rng.random(truth.shape) < 0.3
    train = sp.csr_matrix(np.where(observed, truth, 0).astype(np.float32))
    model = ALS(factors=rank + 1, feedback="explicit", regularization=0.01, iterations=40,
                solver="cholesky", random_state=1).fit(train)
    predicted = model.user_factors_ @ model.item_factors_.T
    rmse = np.sqrt(np.mean((predicted[~observed] - truth[~observed]) ** 2))
    assert rmse < 0.1 * truth.std(), rmse
    U, V = model.user_factors_[:5], model.item_factors_[:5]
    exact = np.einsum("ij,ij->i", U.astype(np.float64), V.astype(np.float64))
    bound = np.array([dot_tolerance(u, v) for u, v in zip(U, V)])
    assert_within(model.predict(np.arange(5), np.arange(5)), exact, bound)


# ----------------------------------------------------------------- objective

@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_cholesky_loss_never_increases_and_matches_numpy(rng, feedback):
    R = low_rank_counts(rng)
    model = ALS(factors=8, regularization=0.1, alpha=2.0, iterations=8, feedback=feedback,
                solver="cholesky", random_state=3).fit(R)
    # fits are deterministic, so refitting with 1, 2, ... iterations replays the sequence
    implicit = feedback == "implicit"
    exponent = 0.0 if implicit else 1.0

    def loss_bound(fitted):
        """Rounding bound of loss(): the native user-side part plus the float64 rest."""
        row_reg = 0.1 * np.diff(R.indptr).astype(np.float64) ** exponent
        return als_loss_tolerance(R, fitted.user_factors_, fitted.item_factors_,
                                  implicit=implicit, alpha=2.0, row_regularization=row_reg)

    fits = [ALS(**{**model.get_params(), "iterations": n}).fit(R) for n in range(1, 9)]
    losses = [fit.loss() for fit in fits]
    bounds = [loss_bound(fit) for fit in fits]
    # exact Cholesky half-steps minimise the objective: it can rise only by rounding
    assert all(losses[i + 1] <= losses[i] + bounds[i] + bounds[i + 1] for i in range(7)), losses
    expected = numpy_objective(model, R, implicit=implicit, alpha=2.0, reg=0.1, exponent=exponent)
    assert abs(model.loss() - expected) <= loss_bound(model)


def test_cg_reaches_cholesky_loss(rng):
    R = low_rank_counts(rng, 200, 150)
    losses = {solver: ALS(factors=16, regularization=0.05, iterations=15, solver=solver,
                          random_state=0).fit(R).loss() for solver in ("cg", "cholesky")}
    # Convergence, not rounding: on a matrix this small three warm-started CG steps land within about 1.0-1.1 % of
    # the exact solve (seen over 30 seeds); the 1 % is checked on MovieLens in bench/.
    assert abs(losses["cg"] - losses["cholesky"]) <= 0.015 * losses["cholesky"], losses


def test_callback_and_progress(rng):
    R = low_rank_counts(rng)
    seen = []
    ALS(factors=4, iterations=3, random_state=0).fit(
        R, show_progress=True, callback=lambda it, elapsed: seen.append((it, elapsed)))
    assert [it for it, _ in seen] == [0, 1, 2] and all(e >= 0 for _, e in seen)


# --------------------------------------------------------------- fold-in etc.

@pytest.mark.parametrize("feedback", ["implicit", "explicit"])
def test_fold_in_equals_numpy_least_squares(rng, feedback):
    R = low_rank_counts(rng)
    model = ALS(factors=10, regularization=0.2, alpha=3.0, iterations=5, feedback=feedback,
                random_state=0).fit(R)
    history = low_rank_counts(rng, 4, R.shape[1])
    vectors = model.fold_in(history)
    Y = model.item_factors_.astype(np.float64)
    n_items, f = Y.shape
    for row in range(4):
        d = history[row].toarray().ravel().astype(np.float64)
        n = np.count_nonzero(d)
        if feedback == "implicit":
            weights, target, lam = 1 + 3.0 * d, (d > 0).astype(float), 0.2
        else:
            keep = d > 0
            weights, target, lam = keep.astype(float), d, 0.2 * n
        # min Σ w (t − Y x)² + λ‖x‖² as an ordinary least-squares problem
        A = np.vstack([np.sqrt(weights)[:, None] * Y, np.sqrt(lam) * np.eye(f)])
        b = np.concatenate([np.sqrt(weights) * target, np.zeros(f)])
        x = np.linalg.lstsq(A, b, rcond=None)[0]
        # the bound of the native float32 assembly of the same normal equations
        idx = np.flatnonzero(d)
        system = als_row_system(Y, idx, d[idx], implicit=feedback == "implicit", alpha=3.0,
                                reg=lam)
        bound = normal_equations_tolerance(system[0], x, *system[2:])
        assert_within(vectors[row], x, bound)


def test_recommend_for_history_and_partial_fit_users(rng):
    R = low_rank_counts(rng)
    model = ALS(factors=8, iterations=5, random_state=0).fit(R)
    history = R[[5, 9]]
    ids, scores = model.recommend_for_history(history, k=7)
    assert ids.shape == (2, 7)
    for row, user_history in zip(ids, history):
        assert not set(row) & set(user_history.indices)
    vectors = model.fold_in(history)
    expected = llmrec.ExactIndex(model.item_factors_).search(vectors, 7, exclude=history)
    np.testing.assert_array_equal(ids, expected[0])
    # a new user grows the model and becomes recommendable
    n = model.n_users_
    model.partial_fit_users([n + 1], R[[5]])
    assert model.n_users_ == n + 2
    # partial_fit_users is fold_in: the same native solve of the same row, bit for bit
    np.testing.assert_array_equal(model.user_factors_[n + 1], vectors[0])
    np.testing.assert_array_equal(model.user_factors_[n], 0)
    got, _ = model.recommend(n + 1, k=7)
    np.testing.assert_array_equal(got, ids[0])
    # replacing an existing user's history
    model.partial_fit_users([3], R[[9]])
    np.testing.assert_array_equal(model.user_factors_[3], vectors[1])
    np.testing.assert_array_equal(model.recommend(3, k=7)[0], ids[1])


def test_explain_contributions_sum_to_the_folded_in_score(rng):
    R = low_rank_counts(rng)
    model = ALS(factors=8, iterations=5, regularization=0.1, random_state=0).fit(R)
    score, items, contributions = model.explain(7, None, 3, k=1000)
    x = model.fold_in(R[[7]])[0]
    # explain solves in float64; fold_in's float32 vector is within its solve bound of that
    Y = model.item_factors_
    row = R[7]
    A, b, abs_A, abs_b, n_terms = als_row_system(Y, row.indices, row.data, implicit=True,
                                                 alpha=1.0, reg=0.1)
    exact = np.linalg.solve(A, b)
    x_bound = normal_equations_tolerance(A, exact, abs_A, abs_b, n_terms)
    y = Y[3].astype(np.float64)
    # explain's own float64 assembly and solve, then the dot with y, all at float64's u
    g64 = gamma(n_terms, UNIT64)
    explain_bound = solve_tolerance(A, exact, g64 * abs_A, g64 * abs_b) @ np.abs(y)
    assert abs(score - exact @ y) <= explain_bound + gamma(len(y), UNIT64) * np.abs(exact) @ np.abs(y)
    assert abs(score - x @ Y[3]) <= x_bound @ np.abs(y) + dot_tolerance(x, Y[3])
    # the contributions are float64 terms rounded to float32, then summed in float32
    assert abs(contributions.sum() - score) <= gamma(len(contributions) + 1) * np.abs(contributions).sum()
    assert set(items) == set(R[7].indices)
    assert np.all(np.diff(contributions) <= 0)


# --------------------------------------------------------------------- priors

def test_text_priors_cold_items_get_exactly_FW(rng):
    R = low_rank_counts(rng).tolil()
    cold = [10, 11, 12]
    R[:, cold] = 0
    R = R.tocsr()
    features = rng.standard_normal((R.shape[1], 6)).astype(np.float32)
    model = ALS(factors=8, iterations=6, prior_strength=2.0, random_state=0).fit(
        R, item_features=features)
    W = model.item_prior_weights_
    assert W.shape == (6, 8) and model.user_prior_weights_ is None
    # rows without interactions are their prior F·W, a float32 product of 6 terms
    assert_within(model.item_factors_[cold], features[cold].astype(np.float64) @ W,
                  dot_tolerance(features[cold], W))
    # W is the ridge regression of the warm items' factors on their features
    warm = np.setdiff1d(np.arange(R.shape[1]), cold)
    F, V = features[warm].astype(np.float64), model.item_factors_[warm].astype(np.float64)
    penalty = 0.01 + 2.0 * np.trace(F.T @ F) / 6  # λ_W = λ + s·trace(FᵀF)/m
    system = F.T @ F + (penalty / 2.0) * np.eye(6)
    ridge = np.linalg.solve(system, F.T @ V)
    # W is solved in float64 (with a jitter of 1e-10 × the mean diagonal) and rounded to
    # float32: the bound is that rounding plus the float64 solve's perturbation bound
    n = len(warm)
    dA = 1e-10 * np.trace(system) / 6 + gamma(n, UNIT64) * np.abs(F).T @ np.abs(F)
    db = gamma(n, UNIT64) * np.abs(F).T @ np.abs(V)
    for j in range(W.shape[1]):
        assert_within(W[:, j], ridge[:, j], solve_tolerance(system, ridge[:, j], dA, db[:, j]))
    # a brand-new item with only a description gets F·W and can be recommended at once
    new_features = rng.standard_normal((1, 6)).astype(np.float32)
    model.partial_fit_items([R.shape[1]], item_features=new_features)
    assert_within(model.item_factors_[-1], new_features[0].astype(np.float64) @ W,
                  dot_tolerance(new_features[0], W))
    ids, _ = model.recommend(0, k=model.n_items_, exclude_seen=False)
    assert R.shape[1] in ids
    assert model.loss() > 0


def test_prior_shrinkage_is_scale_free(rng):
    # λ_W = λ + s·trace(FᵀF)/m: scaling the features scales W inversely, so the priors
    # F·W (and every factor) stay the same; with λ_W = λ alone they would not. A power of
    # two scales every float exactly and commutes with every rounding (λ = 0), so the
    # two fits must agree bit for bit.
    R = low_rank_counts(rng).tolil()
    R[:, [3, 7]] = 0
    R = R.tocsr()
    features = rng.standard_normal((R.shape[1], 5)).astype(np.float32)
    fits = [ALS(factors=6, iterations=5, regularization=0.0, random_state=0, num_threads=1).fit(
        R, item_features=scale * features) for scale in (1.0, 128.0)]
    np.testing.assert_array_equal(fits[1].item_factors_, fits[0].item_factors_)
    np.testing.assert_array_equal(128.0 * fits[1].item_prior_weights_, fits[0].item_prior_weights_)
    # the shrinkage matters: without it (least squares, 5 features) W would differ
    warm = np.setdiff1d(np.arange(R.shape[1]), [3, 7])
    F, V = features[warm].astype(np.float64), fits[0].item_factors_[warm].astype(np.float64)
    least_squares = np.linalg.lstsq(F, V, rcond=None)[0]
    assert np.linalg.norm(fits[0].item_prior_weights_) < 0.9 * np.linalg.norm(least_squares)
    # the W penalty enters the loss, and survives save/load
    assert fits[0].loss() > 0


def test_user_priors(rng):
    R = low_rank_counts(rng).tolil()
    R[4] = 0
    R = R.tocsr()
    features = rng.standard_normal((R.shape[0], 5)).astype(np.float32)
    model = ALS(factors=6, iterations=4, random_state=0).fit(R, user_features=features)
    W = model.user_prior_weights_
    # A user without interactions gets the prior F·W: a float32 BLAS product of 5 terms
    # whose kernel (and so its rounding) depends on the shape, the CPU and
    # OPENBLAS_CORETYPE; both results are within γ_5·|F||W| of the float64 product.
    exact = features[4].astype(np.float64) @ W
    bound = dot_tolerance(features[4], W)
    assert_within(model.user_factors_[4], exact, bound)
    cold = model.fold_in(sp.csr_matrix((1, R.shape[1])), user_features=features[[4]])
    assert_within(cold[0], exact, bound)


def test_partial_fit_items_with_interactions(rng):
    R = low_rank_counts(rng)
    model = ALS(factors=8, iterations=5, random_state=0, solver="cholesky").fit(R)
    column = R[:, [2]].T.tocsr()  # item 2's interactions, as a row over users
    n = model.n_items_
    model.partial_fit_items([n], column)
    # the copy's vector is item 2's exact update given the user factors
    expected = ALS(factors=8, iterations=0).fit(R)  # settings only
    X = model.user_factors_.astype(np.float64)
    c = 1 + column.toarray().ravel()
    A = X.T @ X + (X.T * (c - 1)) @ X + 0.01 * np.eye(8)
    y = np.linalg.solve(A, X.T @ (c * (column.toarray().ravel() > 0)))
    system = als_row_system(model.user_factors_, column.indices, column.data, implicit=True,
                            alpha=1.0, reg=0.01)
    assert_within(model.item_factors_[n], y,
                  normal_equations_tolerance(system[0], y, *system[2:]))
    assert model.user_items_.shape == (R.shape[0], n + 1)
    assert expected is not None


def test_user_items_view_is_read_only_and_forget_user_erases_one_user(rng):
    """``user_items_`` shows the interactions (as fitted) without letting them be written;
    ``forget_user`` zeroes one user's factors, prior and interactions in new arrays, so a
    shallow copy taken before keeps its own; a bad id raises."""
    R = low_rank_counts(rng)
    F = rng.standard_normal((R.shape[0], 3)).astype(np.float32)
    model = ALS(factors=4, iterations=2, random_state=0).fit(R, user_features=F)
    view = model.user_items_
    assert (view != R.astype(np.float32)).nnz == 0
    for part in (view.data, view.indices, view.indptr):
        with pytest.raises(ValueError):
            part[:1] = 0
    before = {key: value for key, value in model.__dict__.items()}
    user = int(np.argmax(np.diff(R.indptr)))
    assert model.forget_user(user) is model
    assert not model.user_factors_[user].any() and not model._user_priors[user].any()
    assert model.user_items_[user].nnz == 0 and model.user_items_.shape == R.shape
    others = np.arange(R.shape[0]) != user
    assert np.array_equal(model.user_factors_[others], before["user_factors_"][others])
    assert (model.user_items_[others] != view[others]).nnz == 0
    assert before["user_factors_"][user].any() and before["_user_items"][user].nnz > 0
    for bad in (-1, R.shape[0]):
        with pytest.raises(ValueError):
            model.forget_user(bad)
    with pytest.raises(NotFittedError):
        ALS().user_items_


def test_forget_user_in_place_equals_the_copy_and_overwrites_the_stored_arrays(rng):
    """``in_place=True``: the same factors and interactions as the copying path, written
    into the arrays the model holds (the user's interactions moved out of them)."""
    R = low_rank_counts(rng)
    F = rng.standard_normal((R.shape[0], 3)).astype(np.float32)
    fitted = ALS(factors=4, iterations=2, random_state=0).fit(R, user_features=F)
    copied, inplace = pickle.loads(pickle.dumps(fitted)), pickle.loads(pickle.dumps(fitted))
    for user in (int(np.argmax(np.diff(R.indptr))), 0, R.shape[0] - 1):
        factors, data = inplace.user_factors_, inplace._user_items.data
        assert inplace.forget_user(user, in_place=True) is inplace
        copied.forget_user(user)
        assert inplace.user_factors_ is factors and np.shares_memory(inplace._user_items.data, data)
        np.testing.assert_array_equal(inplace.user_factors_, copied.user_factors_)
        np.testing.assert_array_equal(inplace._user_priors, copied._user_priors)
        assert inplace.user_items_.shape == copied.user_items_.shape
        assert (inplace.user_items_ != copied.user_items_).nnz == 0
        assert inplace.user_items_.nnz == copied.user_items_.nnz
    # what the model recommends and folds in afterwards is the same too
    np.testing.assert_array_equal(inplace.recommend(np.arange(5), k=5)[0], copied.recommend(np.arange(5), k=5)[0])


def test_fold_in_items_equals_the_item_normal_equations(rng):
    """Item vectors from interactions with users given by their vectors (users added
    after the fit): the implicit item step with the fitted users' Gramian and the text
    pull, against float64 numpy; without ``user_vectors`` the model's users."""
    R = low_rank_counts(rng)
    features = rng.standard_normal((R.shape[1], 6)).astype(np.float32)
    model = ALS(factors=8, iterations=5, regularization=0.1, alpha=2.0, prior_strength=0.5,
                random_state=0).fit(R, item_features=features)
    new_users = rng.standard_normal((5, 8)).astype(np.float32)
    counts = rng.integers(0, 3, (3, 5)).astype(np.float32)
    counts[2] = 0  # an item nobody touched yet: exactly its text prior
    rows = sp.csr_matrix(counts)
    item_text = rng.standard_normal((3, 6)).astype(np.float32)
    got = model.fold_in_items(rows, item_features=item_text, user_vectors=new_users)
    G = model.user_factors_.astype(np.float64).T @ model.user_factors_.astype(np.float64)
    prior = item_text.astype(np.float64) @ model.item_prior_weights_.astype(np.float64)
    Y = new_users.astype(np.float64)
    for i in range(3):
        r = rows[i].toarray().ravel().astype(np.float64)
        prior_bound = dot_tolerance(item_text[i], model.item_prior_weights_)  # F·W in float32
        if not r.any():
            assert_within(got[i], prior[i], prior_bound)
            continue
        c = 1 + 2.0 * r
        A = G + (Y.T * (c - 1)) @ Y + (0.1 + 0.5) * np.eye(8)
        b = Y.T @ (c * (r > 0)) + 0.5 * prior[i]
        x = np.linalg.solve(A, b)
        _, _, abs_A, abs_b, n_terms = als_row_system(
            new_users, np.flatnonzero(r), r[r > 0], implicit=True, alpha=2.0, reg=0.6,
            gram_of=model.user_factors_, prior=prior[i], strength=0.5)
        bound = normal_equations_tolerance(A, x, abs_A, abs_b, n_terms, db_extra=0.5 * prior_bound)
        assert_within(got[i], x, bound)
    column = R[:, [4]].T.tocsr()
    copy = ALS(factors=8, iterations=5, regularization=0.1, alpha=2.0, prior_strength=0.5,
               random_state=0).fit(R, item_features=features)
    copy.partial_fit_items([copy.n_items_], column, item_features=features[[4]])
    # two identical fits, then one shared item half-step (_solve_items): bit for bit
    np.testing.assert_array_equal(model.fold_in_items(column, item_features=features[[4]])[0],
                                  copy.item_factors_[-1])
    with pytest.raises(ValueError, match="user_vectors"):
        model.fold_in_items(rows, user_vectors=new_users[:, :4])
    with pytest.raises(ValueError, match="item_rows"):
        model.fold_in_items(rows, user_vectors=new_users[:4])


def test_growing_one_row_at_a_time_keeps_earlier_views_and_fresh_caches(rng):
    R = low_rank_counts(rng)
    model = ALS(factors=8, iterations=3, random_state=0).fit(R)
    n_items, n_users = model.n_items_, model.n_users_
    model.similar_items(0, k=3)  # fill the caches that growth must invalidate
    model.similar_users(0, k=3)
    model.recommend(0, k=3)
    model.fold_in(R[[0]])  # caches the item Gramian, which growth then updates
    before = model.item_factors_
    snapshot = before.copy()
    for step in range(5):
        model.partial_fit_items([n_items + step])
    np.testing.assert_array_equal(before, snapshot)  # the old view never sees new rows
    assert before.shape[0] == n_items and model.item_factors_.shape[0] == n_items + 5
    np.testing.assert_array_equal(model.item_factors_[:n_items], snapshot)
    np.testing.assert_array_equal(model.item_factors_[n_items:], 0)
    assert model.user_items_.shape == (n_users, n_items + 5)
    # the cached item Gramian (fold-in reads it) followed the new rows
    assert "item_gram64" in model._cache  # updated in place of a recomputation
    Y = model.item_factors_.astype(np.float64)
    # a sum of n_items products per entry, then one rounding to float32
    assert_within(model._item_gram(), Y.T @ Y, dot_tolerance(Y.T, Y, extra_terms=1))
    # a grown item is findable by the similar-items index (rebuilt, not the cached one)
    model.partial_fit_items([n_items + 5], R[:, [4]].T.tocsr())
    ids, _ = model.similar_items(4, k=model.n_items_ - 1)
    assert n_items + 5 in set(ids.tolist())
    # the same for users
    history = sp.hstack([R[[7]], sp.csr_matrix((1, model.n_items_ - R.shape[1]))]).tocsr()
    model.partial_fit_users([n_users], history)
    ids, _ = model.similar_users(7, k=model.n_users_ - 1)
    assert n_users in set(ids.tolist())
    # partial_fit_users is fold_in of the same row: bit for bit
    np.testing.assert_array_equal(model.user_factors_[n_users], model.fold_in(history)[0])


# ------------------------------------------------------------- determinism, threads

def test_thread_count_independence_and_random_state(rng):
    R = low_rank_counts(rng, 400, 200)
    fits = [ALS(factors=16, iterations=4, random_state=7, num_threads=t).fit(R) for t in (1, 2, 0)]
    # Exact by contract: rows are solved independently and the Gramian's chunks have fixed
    # sizes and add up in a fixed order, so threads change who computes, not what.
    for other in fits[1:]:
        np.testing.assert_array_equal(other.user_factors_, fits[0].user_factors_)
        np.testing.assert_array_equal(other.item_factors_, fits[0].item_factors_)
    different = ALS(factors=16, iterations=4, random_state=8).fit(R)
    assert not np.allclose(different.user_factors_, fits[0].user_factors_)


def test_estimator_conventions():
    model = ALS(factors=5, regularization=0.5)
    assert model.get_params()["factors"] == 5
    assert model.set_params(iterations=2, solver="cholesky") is model
    assert model.iterations == 2
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(bogus=1)
    sklearn_base = pytest.importorskip("sklearn.base")
    clone = sklearn_base.clone(model)
    assert clone.get_params() == model.get_params() and clone is not model
    with pytest.raises(TypeError):
        ALS(5)  # keyword-only
    ALS(factors=-1)  # no validation in __init__
    assert not hasattr(model, "user_factors_")


# ------------------------------------------------------------------------ files

def test_save_load_round_trip(tmp_path, rng):
    R = low_rank_counts(rng)
    features = rng.standard_normal((R.shape[1], 4)).astype(np.float32)
    model = ALS(factors=6, iterations=3, random_state=0).fit(R, item_features=features)
    path = tmp_path / "model.llmrec"
    model.save(path)
    loaded = ALS.load(path)
    assert loaded.get_params() == model.get_params()
    for name in ("user_factors_", "item_factors_", "item_prior_weights_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.user_prior_weights_ is None
    np.testing.assert_array_equal(loaded.recommend([0, 1], k=5)[0], model.recommend([0, 1], k=5)[0])
    assert loaded.loss() == model.loss()  # the same arrays through the same code: exact
    np.testing.assert_array_equal(loaded.fold_in(R[:3]), model.fold_in(R[:3]))
    data = bytearray(path.read_bytes())
    offset = data.find(model.item_factors_.tobytes()[:64])  # inside an array, not padding
    assert offset > 0
    data[offset + 5] ^= 0xFF
    (tmp_path / "bad.llmrec").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        ALS.load(tmp_path / "bad.llmrec")
    (tmp_path / "short.llmrec").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError):
        ALS.load(tmp_path / "short.llmrec")


def test_drop_item_priors_keeps_fold_ins_and_partial_fits_and_round_trips(tmp_path, rng):
    R = low_rank_counts(rng)
    features = rng.standard_normal((R.shape[1], 4)).astype(np.float32)
    kept = ALS(factors=6, iterations=3, prior_strength=1.0, random_state=0).fit(R, item_features=features)
    dropped = ALS(factors=6, iterations=3, prior_strength=1.0, random_state=0).fit(
        R, item_features=features).drop_item_priors()
    assert dropped._item_priors is None and dropped.item_prior_weights_ is not None
    np.testing.assert_array_equal(dropped.fold_in(R[:3]), kept.fold_in(R[:3]))
    new = rng.standard_normal((2, 4)).astype(np.float32)
    for model in (kept, dropped):
        model.partial_fit_items([R.shape[1], R.shape[1] + 1], item_features=new)
    np.testing.assert_array_equal(dropped.item_factors_, kept.item_factors_)
    with pytest.raises(ValueError, match="dropped"):
        dropped.loss()
    dropped.save(tmp_path / "dropped.llmrec")
    loaded = ALS.load(tmp_path / "dropped.llmrec")
    assert loaded._item_priors is None
    np.testing.assert_array_equal(loaded.item_prior_weights_, kept.item_prior_weights_)
    kept.save(tmp_path / "kept.llmrec")  # the same arrays through the same code: exact
    grown = sp.hstack([R[:3], sp.csr_matrix((3, 2))]).tocsr()
    np.testing.assert_array_equal(loaded.fold_in(grown), ALS.load(tmp_path / "kept.llmrec").fold_in(grown))
    # a file of version 1 (which always kept the priors beside W) without them is refused
    from llmrec._fileformat import load_arrays, save_arrays

    meta, arrays, version = load_arrays(tmp_path / "dropped.llmrec", "ALS", max_kind_version=2)
    assert version == 2
    save_arrays(tmp_path / "v1.llmrec", "ALS", 1, meta, arrays)
    with pytest.raises(ValueError, match="saved together"):
        ALS.load(tmp_path / "v1.llmrec")
    del meta["item_priors_dropped"]
    save_arrays(tmp_path / "unmarked.llmrec", "ALS", 2, meta, arrays)
    with pytest.raises(ValueError, match="saved together"):
        ALS.load(tmp_path / "unmarked.llmrec")


def test_set_item_rows_keeps_the_gramian_current(rng):
    R = low_rank_counts(rng)
    model = ALS(factors=6, iterations=3, random_state=0).fit(R)
    model.fold_in(R[:2])  # caches the item Gramian
    ids = np.array([3, 17, 40])
    new = rng.standard_normal((3, 6)).astype(np.float32)
    copy = model.item_factors_.copy()
    twin = ALS(factors=6, iterations=3, random_state=0).fit(R)
    twin.set_item_rows(ids, new, into=copy)  # a caller's copy becomes the factors
    assert twin.item_factors_ is copy
    model.set_item_rows(ids, new)  # in place
    np.testing.assert_array_equal(model.item_factors_[ids], new)
    np.testing.assert_array_equal(model.item_factors_, copy)
    Y = model.item_factors_.astype(np.float64)
    # the kept Gramian: the float64 update of a float32 Gramian of n·f² products
    bound = 4 * R.shape[1] * np.finfo(np.float32).eps * (np.abs(Y).T @ np.abs(Y))
    assert_within(model._cache["item_gram"], Y.T @ Y, bound)
    with pytest.raises(ValueError, match="outside"):
        model.set_item_rows([R.shape[1]], new[:1])
    with pytest.raises(ValueError, match="duplicate"):
        model.set_item_rows([3, 3], new[:2])
    with pytest.raises(ValueError, match="one row per"):
        model.set_item_rows([3, 4], new[:1])
    with pytest.raises(ValueError, match="into"):
        model.set_item_rows([3], new[:1], into=np.zeros((2, 6), np.float32))


# -------------------------------------------------------------------- bad input

def test_accepts_dense_and_coo(rng):
    R = low_rank_counts(rng, 30, 20)
    reference = ALS(factors=4, iterations=2, random_state=0).fit(R)
    for variant in (R.toarray(), R.tocoo(), R.tocsc(), R.astype(np.float64), R.astype(np.int64)):
        other = ALS(factors=4, iterations=2, random_state=0).fit(variant)
        # every variant becomes the same float32 CSR (small integer counts convert
        # exactly), so the fit is the same computation: bit for bit
        np.testing.assert_array_equal(other.user_factors_, reference.user_factors_)


def test_bad_inputs(rng):
    R = low_rank_counts(rng, 30, 20)
    for bad, message in ((R * -1, "negative"), (sp.csr_matrix((3, 3)), "no interactions"),
                         (np.array([[1.0, np.nan]]), "NaN"), (np.array([[1.0, np.inf]]), "NaN"),
                         (np.ones(5), "2-D")):
        with pytest.raises(ValueError, match=message):
            ALS(iterations=1).fit(bad)
    nan_sparse = R.copy()
    nan_sparse.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ALS(iterations=1).fit(nan_sparse)
    with pytest.raises(TypeError):
        ALS(iterations=1).fit(np.array([["a", "b"]]))
    for params, error in (({"factors": 0}, ValueError), ({"factors": 2.5}, TypeError),
                          ({"regularization": -1.0}, ValueError), ({"alpha": 0.0}, ValueError),
                          ({"feedback": "both"}, ValueError), ({"solver": "lu"}, ValueError),
                          ({"cg_steps": 0}, ValueError), ({"num_threads": -1}, ValueError),
                          ({"iterations": -1}, ValueError)):
        with pytest.raises(error):
            ALS(**params).fit(R)
    with pytest.raises(ValueError, match="item_features"):
        ALS(iterations=1).fit(R, item_features=np.ones((R.shape[1] + 1, 3)))
    with pytest.raises(ValueError, match="prior_strength"):
        ALS(iterations=1, prior_strength=0.0).fit(R, item_features=np.ones((R.shape[1], 3)))

    model = ALS(factors=4)
    for call in (lambda: model.recommend(0), lambda: model.fold_in(R), lambda: model.loss(),
                 lambda: model.similar_items(0), lambda: model.save("x"), lambda: model.predict(0, 0),
                 lambda: model.user_factors_):
        with pytest.raises(NotFittedError):
            call()
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)

    model = ALS(factors=4, iterations=2, random_state=0).fit(R)
    with pytest.raises(ValueError, match="outside"):
        model.recommend(30)
    with pytest.raises(ValueError, match="outside"):
        model.recommend([-1])
    with pytest.raises(ValueError, match="outside"):
        model.similar_items(20)
    with pytest.raises(ValueError, match="outside"):
        model.predict([0], [99])
    with pytest.raises(ValueError, match="columns"):
        model.fold_in(sp.csr_matrix((2, 21)))
    with pytest.raises(ValueError, match="rows"):
        model.loss(R[:5])
    with pytest.raises(ValueError, match="k must be"):
        model.recommend(0, k=0)
    with pytest.raises(ValueError, match="rows"):
        model.recommend([0, 1], user_items=R[:3])
    with pytest.raises(ValueError, match="duplicate"):
        model.partial_fit_users([1, 1], R[:2])
    with pytest.raises(ValueError, match="rows"):
        model.partial_fit_users([1, 2], R[:1])
    with pytest.raises(ValueError, match="without item_features"):
        model.partial_fit_items([25], item_features=np.ones((1, 3)))
    with pytest.raises(TypeError):
        model.recommend(np.array([0.5]))
