"""The native ALS kernels against float64 numpy, at every supported SIMD level."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec import _core
from tolerances import (als_loss_tolerance, als_row_system, assert_within, dot_tolerance, gamma,
                        normal_equations_tolerance)

FACTOR_SIZES = [1, 7, 16, 33, 64]


def random_csr(rng, n_rows, n_cols, density, *, low=0.5, high=5.0):
    R = sp.random(n_rows, n_cols, density=density, format="csr", dtype=np.float32,
                  random_state=np.random.RandomState(rng.integers(2**31)))
    R.data = (low + (high - low) * R.data).astype(np.float32)
    # one row longer than the prefetch distance and the rank-4 blocks, one empty row
    R = R.tolil()
    R[0, : min(n_cols, 23)] = 2.0
    R[1, :] = 0
    return R.tocsr()


def native(R):
    return R.indptr.astype(np.int64), R.indices.astype(np.int32), R.data.astype(np.float32)


def reference_row(R, Y, u, *, implicit, alpha, reg, exponent=0.0, strength=0.0, prior=None):
    """The float64 solution of row u's normal equations, and the rounding bound of the
    native solver's float32 assembly of them (zero for an empty row: it copies)."""
    Yd = Y.astype(np.float64)
    f = Y.shape[1]
    idx = R.indices[R.indptr[u]:R.indptr[u + 1]]
    r = R.data[R.indptr[u]:R.indptr[u + 1]].astype(np.float64)
    if len(idx) == 0:
        return (np.zeros(f) if prior is None else prior.astype(np.float64)), np.zeros(f)
    lam = reg * len(idx) ** exponent + (strength if prior is not None else 0.0)
    if implicit:
        c = 1 + alpha * r
        A = Yd.T @ Yd + (Yd[idx].T * (c - 1)) @ Yd[idx]
        b = Yd[idx].T @ c
    else:
        A = Yd[idx].T @ Yd[idx]
        b = Yd[idx].T @ r
    A += lam * np.eye(f)
    if prior is not None:
        b = b + strength * prior
    x = np.linalg.solve(A, b)
    _, _, abs_A, abs_b, n_terms = als_row_system(Y, idx, r, implicit=implicit, alpha=alpha,
                                                 reg=lam, prior=prior, strength=strength)
    return x, normal_equations_tolerance(A, x, abs_A, abs_b, n_terms)


@pytest.mark.parametrize("f", FACTOR_SIZES)
def test_gramian_matches_numpy(simd_level, rng, f):
    Y = rng.standard_normal((3000, f)).astype(np.float32)  # more than one chunk
    G = _core.als_gramian(Y, 2)
    ref = Y.astype(np.float64).T @ Y.astype(np.float64)
    assert G.shape == (f, f) and G.dtype == np.float32
    assert_within(G, ref, dot_tolerance(Y.T, Y, extra_terms=1))  # 3000 terms, then float32
    np.testing.assert_array_equal(G, G.T)  # exact by construction: one value fills both


@pytest.mark.parametrize("f", FACTOR_SIZES)
@pytest.mark.parametrize("implicit", [True, False])
def test_cholesky_row_update_equals_normal_equations(simd_level, rng, f, implicit):
    R = random_csr(rng, 40, 30, 0.2)
    Y = rng.standard_normal((30, f)).astype(np.float32)
    X = rng.standard_normal((40, f)).astype(np.float32)
    G = _core.als_gramian(Y) if implicit else None
    exponent = 0.0 if implicit else 1.0
    _core.als_solve(*native(R), Y, X, G, implicit=implicit, cholesky=True, regularization=0.3,
                    alpha=1.7, reg_exponent=exponent, num_threads=2)
    for u in range(40):
        x, bound = reference_row(R, Y, u, implicit=implicit, alpha=1.7, reg=0.3, exponent=exponent)
        assert_within(X[u], x, bound, f"row {u}")


@pytest.mark.parametrize("f", [5, 12, 70])
@pytest.mark.parametrize("implicit", [True, False])
def test_conjugate_gradient_converges_to_normal_equations(simd_level, rng, implicit, f):
    R = random_csr(rng, 30, 25, 0.3)
    Y = rng.standard_normal((25, f)).astype(np.float32)
    X = np.zeros((30, f), dtype=np.float32)
    G = _core.als_gramian(Y) if implicit else None
    # With f steps CG is exact in exact arithmetic. In float32, each warm restart is a step
    # of iterative refinement: it recomputes the residual b − Ax from the float32 Y and G,
    # so the restarts converge to the accuracy of that residual — the same perturbation
    # bound as the assembled system's (‖A⁻¹‖·(‖δA‖‖x‖ + ‖δb‖)), which the Cholesky path
    # also meets.
    for _ in range(3):
        _core.als_solve(*native(R), Y, X, G, implicit=implicit, cholesky=False, cg_steps=f,
                        regularization=0.5, alpha=2.0)
    for u in range(30):
        x, bound = reference_row(R, Y, u, implicit=implicit, alpha=2.0, reg=0.5)
        assert_within(X[u], x, bound, f"row {u}")


def test_one_cg_step_is_one_steepest_descent_step(simd_level, rng):
    f = 9
    R = random_csr(rng, 10, 20, 0.3)
    Y = rng.standard_normal((20, f)).astype(np.float32)
    X = rng.standard_normal((10, f)).astype(np.float32)
    X0 = X.astype(np.float64)
    G = _core.als_gramian(Y)
    _core.als_solve(*native(R), Y, X, G, implicit=True, cg_steps=1, regularization=0.2, alpha=1.0)
    Yd = Y.astype(np.float64)
    for u in range(10):
        idx = R.indices[R.indptr[u]:R.indptr[u + 1]]
        if len(idx) == 0:
            continue
        c = 1 + R.data[R.indptr[u]:R.indptr[u + 1]].astype(np.float64)
        A = Yd.T @ Yd + (Yd[idx].T * (c - 1)) @ Yd[idx] + 0.2 * np.eye(f)
        res = Yd[idx].T @ c - A @ X0[u]
        step = res @ res / (res @ A @ res)
        _, _, abs_A, abs_b, n_terms = als_row_system(Y, idx, c - 1, implicit=True, alpha=1.0,
                                                     reg=0.2)
        assert_within(X[u], X0[u] + step * res,
                      steepest_descent_bound(A, res, step, X0[u], abs_A, abs_b, n_terms), f"row {u}")


def steepest_descent_bound(A, res, step, x0, abs_A, abs_b, n_terms):
    """Bound on |fl32(x0 + a·r) − (x0 + a·r)|, a = rᵀr / rᵀAr, for a float32 residual r.

    The residual carries |δr| ≤ γ_n(abs_b + abs_A|x0|); a's numerator and denominator
    move by 2‖r‖‖δr‖ and 2‖A‖‖r‖‖δr‖ + ‖δA‖‖r‖² (first order), plus their own float32
    dots and products (γ_{2f+4}); the update adds two roundings of |x0| + |a·r|.
    """
    g = gamma(n_terms)
    dr = g * (abs_b + abs_A @ np.abs(x0))
    r_norm, dr_norm = np.linalg.norm(res), np.linalg.norm(dr)
    curvature = res @ A @ res
    dA_norm = g * np.linalg.norm(abs_A)
    relative = (2 * dr_norm / r_norm
                + (2 * np.linalg.norm(A, 2) * r_norm * dr_norm + dA_norm * r_norm ** 2) / curvature
                + gamma(2 * len(res) + 4))
    return step * dr + step * relative * np.abs(res) + gamma(2) * (np.abs(x0) + step * np.abs(res))


@pytest.mark.parametrize("cholesky", [True, False])
def test_priors_and_empty_rows(simd_level, rng, cholesky):
    f = 10
    R = random_csr(rng, 20, 15, 0.3)
    Y = rng.standard_normal((15, f)).astype(np.float32)
    X = np.zeros((20, f), dtype=np.float32)
    priors = rng.standard_normal((20, f)).astype(np.float32)
    G = _core.als_gramian(Y)
    for _ in range(1 if cholesky else 4):
        _core.als_solve(*native(R), Y, X, G, implicit=True, cholesky=cholesky, cg_steps=f,
                        regularization=0.1, alpha=1.0, prior_strength=2.5, priors=priors)
    np.testing.assert_array_equal(X[1], priors[1])  # no interactions: exactly the prior
    for u in range(20):
        # the CG restarts converge to the residual's accuracy (see the CG test above)
        x, bound = reference_row(R, Y, u, implicit=True, alpha=1.0, reg=0.1, strength=2.5,
                                 prior=priors[u])
        assert_within(X[u], x, bound, f"row {u}")


@pytest.mark.parametrize("f", [6, 40, 70])
@pytest.mark.parametrize("implicit", [True, False])
def test_loss_matches_dense_numpy(simd_level, rng, implicit, f):
    R = random_csr(rng, 25, 18, 0.3)
    X = rng.standard_normal((25, f)).astype(np.float32)
    Y = rng.standard_normal((18, f)).astype(np.float32)
    G = _core.als_gramian(Y) if implicit else None
    got = _core.als_loss(*native(R), X, Y, G, implicit=implicit, regularization=0.3, alpha=2.0,
                         reg_exponent=0.5)
    D = R.toarray().astype(np.float64)
    S = X.astype(np.float64) @ Y.astype(np.float64).T
    if implicit:
        C = 1 + 2.0 * D
        data = (C * ((D > 0) - S) ** 2).sum()
    else:
        data = (((D - S) ** 2) * (D > 0)).sum()
    counts = np.diff(R.indptr).astype(np.float64)
    reg = 0.3 * (counts ** 0.5 * (X.astype(np.float64) ** 2).sum(1)).sum()
    bound = als_loss_tolerance(R, X, Y, implicit=implicit, alpha=2.0,
                               row_regularization=0.3 * counts ** 0.5)
    assert abs(got - (data + reg)) <= bound, (got, data + reg, bound)


@pytest.mark.parametrize("f", [7, 33, 64])
@pytest.mark.parametrize("implicit", [True, False])
def test_conjugate_gradient_rows_do_not_depend_on_their_neighbours(simd_level, rng, f, implicit):
    # Rows run their CG steps in lockstep groups that share G's products: each row must
    # still get exactly what it gets when solved alone (mixed lengths, empty rows, priors).
    R = random_csr(rng, 40, 60, 0.15)
    R = R.tolil()
    R[5, :] = 0
    R[17, :] = 0
    R[9, :] = 1.5  # a long row: blocks of the gathered-row kernel, prefetching
    R = R.tocsr()
    Y = rng.standard_normal((60, f)).astype(np.float32)
    X0 = rng.standard_normal((40, f)).astype(np.float32)
    priors = rng.standard_normal((40, f)).astype(np.float32)
    G = _core.als_gramian(Y) if implicit else None
    settings = dict(implicit=implicit, cg_steps=4, regularization=0.2, alpha=1.3,
                    prior_strength=0.7, priors=priors)
    X = X0.copy()
    _core.als_solve(*native(R), Y, X, G, **settings)
    for u in range(40):
        alone = X0[u:u + 1].copy()
        _core.als_solve(*native(R[u:u + 1]), Y, alone, G, **dict(settings, priors=priors[u:u + 1]))
        np.testing.assert_array_equal(X[u], alone[0], err_msg=f"row {u}")


def test_results_do_not_depend_on_threads(rng):
    f = 32
    R = random_csr(rng, 3000, 500, 0.02)
    Y = rng.standard_normal((500, f)).astype(np.float32)
    X0 = rng.standard_normal((3000, f)).astype(np.float32)
    out = []
    for threads in (1, 2, 0):
        X = X0.copy()
        G = _core.als_gramian(np.vstack([Y] * 10), threads)
        _core.als_solve(*native(R), Y, X, _core.als_gramian(Y, threads), implicit=True,
                        num_threads=threads)
        out.append((G, X, _core.als_loss(*native(R), X, Y, _core.als_gramian(Y), num_threads=threads)))
    # Exact by contract: fixed-size chunks added in a fixed order, rows independent.
    for G, X, loss in out[1:]:
        np.testing.assert_array_equal(G, out[0][0])
        np.testing.assert_array_equal(X, out[0][1])
        assert loss == out[0][2]


def test_native_rejects_bad_structure(rng):
    R = random_csr(rng, 5, 4, 0.5)
    indptr, indices, data = native(R)
    Y = np.ones((4, 3), dtype=np.float32)
    X = np.zeros((5, 3), dtype=np.float32)
    G = _core.als_gramian(Y)
    bad = indices.copy()
    bad[0] = 4
    with pytest.raises(ValueError, match="out of range"):
        _core.als_solve(indptr, bad, data, Y, X, G)
    with pytest.raises(ValueError, match="indptr"):
        _core.als_solve(indptr[:-1], indices, data, Y, X, G)
    with pytest.raises(ValueError, match="Gramian"):
        _core.als_solve(indptr, indices, data, Y, X, None, implicit=True)
    with pytest.raises(ValueError, match="same number of factors"):
        _core.als_solve(indptr, indices, data, Y, np.zeros((5, 2), dtype=np.float32), G)
