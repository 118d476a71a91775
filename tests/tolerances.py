"""Tolerances derived from the arithmetic, not from what one machine printed.

Every bound here is a worst-case rounding-error bound in the style of Higham, *Accuracy
and Stability of Numerical Algorithms* (except probabilistic_gamma and network_tolerance,
for deep networks, where the worst case says nothing): it holds for any summation order, blocking, SIMD
lane split, FMA or not, and any BLAS kernel (OpenBLAS picks different ones per
``OPENBLAS_CORETYPE``), so a comparison that uses it passes on every machine; and it is a
few float32 ulps of the operands' magnitudes, so a real bug (a missing term, a wrong index,
a stale row) exceeds it by orders of magnitude. See tests/README.md for the rule.
"""

from __future__ import annotations

import os

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23, spacing of float32 at 1
UNIT32 = EPS32 / 2                       # unit roundoff u: |fl(x) - x| <= u |x|
UNIT64 = float(np.finfo(np.float64).eps) / 2


def gamma(n: float, unit: float = UNIT32) -> float:
    """Higham's γ_n = n·u / (1 − n·u): the relative error of n successive roundings."""
    nu = n * unit
    assert nu < 0.5, f"γ_{n} is meaningless at unit roundoff {unit}"
    return nu / (1 - nu)


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def dot_tolerance(a, b, *, extra_terms: int = 0) -> np.ndarray:
    """Elementwise bound on |fl32(a @ b) − a @ b| for float32 operands a (..., n), b (n, ...).

    |fl(xᵀy) − xᵀy| ≤ γ_n |x|ᵀ|y| for any order of the n products (Higham, eq. 3.5).
    ``extra_terms`` adds roundings done after the dot product (an offset added, a scale
    applied, an input rounded to float32: one each). A 1-D a and b give a scalar.
    Comparing two float32 computations with each other (two SIMD levels, a batched and a
    single-row BLAS call) allows the sum of both bounds: ``2 * dot_tolerance(...)``.
    """
    a, b = _f64(a), _f64(b)
    n = a.shape[-1]
    return gamma(n + extra_terms) * (np.abs(a) @ np.abs(b))


def cosine_tolerance(queries, items) -> np.ndarray:
    """Bound on |cos32 − cos| for float32 rows normalised in float32, then dotted.

    ‖x‖² is a sum of d positive terms (relative error γ_d), its square root halves that
    and adds u, the division (or reciprocal and product) adds 2u: every normalised
    component carries a relative error ≤ γ_{d/2+3}. The dot of two such rows adds γ_d,
    so the score's error is ≤ γ_{2d+6} Σ|q_i||x_i| / (‖q‖‖x‖), at most γ_{2d+6}.
    Zero rows score exactly 0 and get a zero bound.
    """
    q, x = np.atleast_2d(_f64(queries)), np.atleast_2d(_f64(items))
    d = q.shape[1]

    def unit(v):
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return np.abs(v) / np.where(norms == 0, 1, norms)

    return gamma(2 * d + 6) * (unit(q) @ unit(x).T)


def score_tolerance(items, queries, metric: str = "ip") -> np.ndarray:
    """Bound (nq, n) on each float32 search score against the float64 reference
    (reference.reference_scores): a dot of d terms, or a cosine of rows normalised in
    float32."""
    if metric == "cosine":
        return cosine_tolerance(queries, items)
    return dot_tolerance(np.atleast_2d(queries), np.asarray(items).T)


def solve_tolerance(A, x, dA, db, *, cholesky_in: str = "float64") -> np.ndarray:
    """Elementwise bound on |x̂ − x| where x = A⁻¹b (A symmetric positive definite, given in
    float64 with its solution x) and x̂ was computed from a float32 A + δA, b + δb with
    |δA| ≤ dA, |δb| ≤ db elementwise (arrays or scalars), then rounded to float32.

    Perturbation theory (Higham, Thm 7.2) in the 2-norm: with ε = ‖A⁻¹‖₂‖δA‖₂ < 1,
    ‖x̂ − x‖₂ ≤ ‖A⁻¹‖₂ (‖δA‖₂‖x‖₂ + ‖δb‖₂) / (1 − ε). ‖δA‖₂ ≤ ‖dA‖_F, and the
    factorisation's own backward error, |E| ≤ γ_{3f+1}|Rᵀ||R| (Higham, Thm 10.4, with
    ‖|Rᵀ||R|‖₂ ≤ f‖A‖₂), joins δA at the unit roundoff of ``cholesky_in``. ‖A⁻¹‖₂ is
    1/λ_min: the bound grows with the conditioning of A, as it must.
    """
    A, x = _f64(A), _f64(x)
    f = A.shape[0]
    unit = UNIT64 if cholesky_in == "float64" else UNIT32
    eigenvalues = np.linalg.eigvalsh(A)
    inverse_norm = 1.0 / eigenvalues[0]
    dA_norm = float(np.linalg.norm(np.broadcast_to(_f64(dA), A.shape)))
    dA_norm += gamma(3 * f + 1, unit) * f * eigenvalues[-1]
    db_norm = float(np.linalg.norm(np.broadcast_to(_f64(db), x.shape)))
    eps = inverse_norm * dA_norm
    assert eps < 0.5, f"the system is too ill-conditioned for a float32 bound (ε = {eps:.2g})"
    error = inverse_norm * (dA_norm * np.linalg.norm(x) + db_norm) / (1 - eps)
    return error + UNIT32 * np.abs(x)  # the final rounding to float32


def normal_equations_tolerance(A, x, abs_A, abs_b, n_terms: int, *, db_extra=0.0) -> np.ndarray:
    """Bound on a float32-assembled least-squares solve: A = Σ wᵢ yᵢyᵢᵀ + λI and
    b = Σ cᵢ yᵢ (+ a prior term) are each sums of at most ``n_terms`` float32 roundings per
    entry, so |δA| ≤ γ_n·abs_A and |δb| ≤ γ_n·abs_b, where abs_A, abs_b are the same sums
    over absolute values (Σ|wᵢ||yᵢ||yᵢ|ᵀ + λI, Σ|cᵢ||yᵢ|). ``db_extra``: an error b
    carries in from elsewhere (a prior F·W computed in float32). The solve is float64."""
    g = gamma(n_terms)
    return solve_tolerance(A, x, g * _f64(abs_A), g * _f64(abs_b) + _f64(db_extra))


def als_row_system(Y, idx, r, *, implicit: bool, alpha: float, reg: float, gram_of=None,
                   prior=None, strength: float = 0.0):
    """One row's ALS normal equations in float64, as the native solver assembles them in
    float32, with what :func:`normal_equations_tolerance` needs.

    Implicit: A = GᵀG-Gramian + Σ αrᵢ yᵢyᵢᵀ + λI, b = Σ (1 + αrᵢ) yᵢ, where the Gramian
    is of ``gram_of`` (default Y: every row); explicit: A = Σ yᵢyᵢᵀ + λI, b = Σ rᵢyᵢ.
    ``reg`` is the row's whole λ (prior strength included); a prior adds strength·prior
    to b. Returns (A, b, abs_A, abs_b, n_terms): the Gramian's n rows, the row's own
    terms, and a few roundings for α·r, 1 + α·r, λ and the prior.
    """
    Yd = _f64(Y)
    Yo, r = Yd[np.asarray(idx)], _f64(r)
    f = Yd.shape[1]
    if implicit:
        Z = Yd if gram_of is None else _f64(gram_of)
        w, c = alpha * r, 1 + alpha * r
        A = Z.T @ Z + (Yo.T * w) @ Yo
        abs_A = np.abs(Z).T @ np.abs(Z) + (np.abs(Yo).T * np.abs(w)) @ np.abs(Yo)
        n_terms = Z.shape[0] + len(r) + 4
    else:
        c = r
        A = Yo.T @ Yo
        abs_A = np.abs(Yo).T @ np.abs(Yo)
        n_terms = len(r) + 2
    A = A + reg * np.eye(f)
    abs_A = abs_A + reg * np.eye(f)
    b = Yo.T @ c
    abs_b = np.abs(Yo).T @ np.abs(c)
    if prior is not None:
        b = b + strength * _f64(prior)
        abs_b = abs_b + strength * np.abs(_f64(prior))
        n_terms += 2
    return A, b, abs_A, abs_b, n_terms


def als_loss_tolerance(R, X, Y, *, implicit: bool, alpha: float, row_regularization) -> float:
    """Bound on the rounding error of the native ALS loss (``_core.als_loss``) for CSR R,
    float32 factors X (users), Y (items) and each row's λ_u (array or scalar).

    Each observed score s = x·y is a float32 dot (|δs| ≤ γ_f |x|·|y|); a term
    c(1 − s)² − s² (implicit) or (r − s)² (explicit) then moves by at most
    (2c|1 − s| + 2|s|)|δs| + (c + 1)δs² or 2|r − s||δs| + δs². The implicit Σ_u xᵀGx uses a
    float32 Gramian of all n items (γ_n) through a float32 symv and dot (2f + 2 more
    roundings); λ_u xᵀx is a float32 dot (γ_{f+1}). Rows and chunks add up in float64.
    """
    X, Y = _f64(X), _f64(Y)
    f = X.shape[1]
    ax, ay = np.abs(X), np.abs(Y)
    bound = 0.0
    magnitude = 0.0
    if implicit:
        gram_terms = np.einsum("uf,fg,ug->u", ax, ay.T @ ay, ax)
        bound += gamma(Y.shape[0] + 2 * f + 2) * gram_terms.sum()
        magnitude += gram_terms.sum()
    rows = np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))
    cols = R.indices
    r = _f64(R.data)
    s = np.einsum("ef,ef->e", X[rows], Y[cols])
    ds = gamma(f) * np.einsum("ef,ef->e", ax[rows], ay[cols])
    if implicit:
        c = 1 + alpha * r
        bound += float(((2 * c * np.abs(1 - s) + 2 * np.abs(s)) * ds + (c + 1) * ds ** 2).sum())
        magnitude += float((c * (1 - s) ** 2 + s ** 2).sum())
    else:
        bound += float((2 * np.abs(r - s) * ds + ds ** 2).sum())
        magnitude += float(((r - s) ** 2).sum())
    reg_terms = np.broadcast_to(_f64(row_regularization), (X.shape[0],)) * (X * X).sum(1)
    bound += gamma(f + 1) * float(reg_terms.sum())
    magnitude += float(reg_terms.sum())
    return bound + gamma(R.nnz + 2 * X.shape[0], UNIT64) * magnitude


def metric_tolerance(n_users: int, k: int) -> float:
    """Bound on a float64 ranking metric (a mean over n_users of per-user values in [0, 1],
    each a sum of at most k terms with a division and a logarithm, both correctly rounded
    to within an ulp): γ_{n_users + 2k + 4} at float64's unit roundoff. Two computations
    that sum in different orders differ by at most twice this."""
    return gamma(n_users + 2 * k + 4, UNIT64)


def probabilistic_gamma(n: int, confidence: float = 10.0, unit: float = UNIT32) -> float:
    """λ·√n·u: the probabilistic counterpart of γ_n (Higham & Mary, SIAM J. Sci. Comput.
    41(5), 2019): with rounding errors modelled as independent, mean-zero and bounded by u,
    n of them add up beyond λ√n·u with probability at most 2·exp(−λ²/2) — 4·10⁻²² at the
    default λ = 10. For long chains (deep networks) where the worst case γ_n ≈ n·u is far
    too pessimistic to test anything."""
    return confidence * np.sqrt(n) * unit


def network_tolerance(model) -> float:
    """Bound on the difference of a float32 transformer encoder's output (unit-scale,
    LayerNorm keeps activations O(1)) between two evaluations of the same text that batch,
    pad or pack it differently. Along the longest dependency chain each layer rounds the
    sums of its Q, K, V and output projections (4 × hidden terms), the attention over the
    sequence (max positions), the feed-forward (intermediate + hidden): n roundings in
    all, each evaluation within probabilistic_gamma(n), the two within twice that."""
    config = model.config
    intermediate = getattr(config, "intermediate_size", None) or config.hidden_dim  # DistilBERT
    per_layer = 5 * config.hidden_size + intermediate + config.max_position_embeddings
    return 2 * probabilistic_gamma(config.num_hidden_layers * per_layer)


def assert_within(actual, desired, bound, err_msg: str = "") -> None:
    """Assert |actual − desired| ≤ bound elementwise (bound an array or a scalar), and
    report the worst element and its error as a multiple of its bound when not."""
    actual, desired = _f64(actual), _f64(desired)
    bound = np.broadcast_to(_f64(bound), np.broadcast_shapes(actual.shape, desired.shape))
    assert actual.shape == desired.shape or actual.size == 1 or desired.size == 1, \
        f"shapes differ: {actual.shape} vs {desired.shape}"
    with np.errstate(invalid="ignore"):  # equal infinities (padding) match exactly
        error = np.where(actual == desired, 0.0, np.abs(actual - desired))
    bad = ~(error <= bound)  # NaN fails too
    if _REPORT:
        _report(error, bound, np.abs(desired), err_msg)
    if bad.any():
        ratio = np.where(bound > 0, error / np.where(bound > 0, bound, 1), np.inf)
        worst = np.unravel_index(int(np.argmax(np.where(bad, ratio, -1))), bad.shape)
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements outside their bound {err_msg}; worst at "
            f"{worst}: actual {np.broadcast_to(actual, bad.shape)[worst]!r}, desired "
            f"{np.broadcast_to(desired, bad.shape)[worst]!r}, error {error[worst]:.3g} = "
            f"{ratio[worst]:.3g} × bound {bound[worst]:.3g}")


_REPORT = os.environ.get("LLMREC_TOLERANCE_REPORT")


def _report(error, bound, magnitude, err_msg: str) -> None:
    """With LLMREC_TOLERANCE_REPORT=FILE, append how much of each bound the errors used
    and how large the bound is next to the values: a bound far above the errors is
    rigorous, one near the values' size would be useless (see tests/README.md)."""
    import inspect

    caller = inspect.stack()[2]
    scale = float(np.max(magnitude)) if np.size(magnitude) else 0.0
    used = float(np.max(np.where(bound > 0, error / np.where(bound > 0, bound, 1), 0)))
    with open(_REPORT, "a") as out:
        out.write(f"{os.path.basename(caller.filename)}:{caller.lineno} {caller.function} "
                  f"used={used:.3g} bound/scale={float(np.max(bound)) / (scale or 1):.3g} {err_msg}\n")
