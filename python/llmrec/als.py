"""Alternating least squares with native solvers: implicit and explicit feedback,
real-time fold-in of new users and items, and text priors for cold start.

The model factorises a user × item matrix R ≈ U·Vᵀ with float32 factors.

**Implicit feedback** (``feedback="implicit"``, Hu, Koren & Volinsky 2008). Every
(user, item) pair has a preference p = [r > 0] and a confidence c = 1 + alpha·r, and
the model minimises::

    Σ_{u,i} c_ui (p_ui − u_u·v_i)² + λ Σ_u n_u^ν ‖u_u‖² + λ Σ_i n_i^ν ‖v_i‖²

where n_u, n_i count a row's interactions and ν is ``regularization_exponent`` (0 by
default: plain λ; ν = 1 is frequency-scaled regularisation as in ALS-WR / iALS).
Migrating from ``implicit``: its ``AlternatingLeastSquares`` uses the matrix values
scaled by its ``alpha`` directly as the confidence c = alpha·r, where llmrec uses
c = 1 + alpha·r. To reproduce a model of ``implicit`` exactly, give llmrec the values
(alpha_implicit·r − 1) with ``alpha=1``; for counts the usual practice of keeping the
same alpha gives nearly the same model.

**Explicit ratings** (``feedback="explicit"``, ALS-WR, Zhou et al. 2008). Only the
stored entries are ratings; the objective is the squared error over them with λ
scaled by each row's count (ν = 1 by default). Zeros in a scipy matrix or a dense
array mean "missing", never a rating of 0.

**Text priors.** With ``item_features`` F (n_items × m, e.g. text embeddings) item
factors are pulled toward F·W, adding ``prior_strength``·Σ_i ‖v_i − F_i W‖² + λ_W‖W‖²
to the objective; W is refit by ridge regression on the items with interactions
inside every alternation (as in collaborative topic regression). The ridge is
λ_W = λ + ``prior_strength``·τ, with τ = trace(FᵀF)/m the mean eigenvalue of the Gramian
of the fitted rows' features: a shrinkage that does not depend on the features' scale
or count (λ alone, tiny next to FᵀF, let W overfit the warm items; on MovieLens-100K
with MiniLM item embeddings τ lifts the cold-item ndcg@10 by 6–14 % at λ ≤ 1). Items
without any interactions are not fitted: they get exactly F·W, so a new item with a
description is recommendable at once. ``user_features`` work the same way for users.

Solvers: ``solver="cg"`` runs ``cg_steps`` of conjugate gradient per row, warm-started
from the previous iterate; ``solver="cholesky"`` solves each row's f × f system
exactly (in float64). Both use the Gramian trick (YᵀY computed once per half-sweep).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from llmrec import _core
from llmrec._arrays import grow_rows, result_order
from llmrec._checks import (MAX_THREADS, as_float_matrix, as_id_array, check_choice, check_id_range, check_int, check_k,
                            check_real, check_sparse_structure, check_threads)
from llmrec._estimator import Estimator
from llmrec._fileformat import load_arrays, save_arrays
from llmrec._validate import array, check_csr, fail, is_int, meta_int, meta_real, meta_value
from llmrec.exceptions import NotFittedError
from llmrec.index import ExactIndex

log = logging.getLogger(__name__)

_KIND = "ALS"
_KIND_VERSION = 2  # 2: the item priors may be dropped (drop_item_priors); 1 still loads
_PARAM_NAMES = ("factors", "regularization", "alpha", "iterations", "feedback", "solver",
                "cg_steps", "prior_strength", "regularization_exponent", "random_state",
                "num_threads")
_ROW_FORMS = ("per_user", "all_users")
_LEARNED = ("user_factors_", "item_factors_", "user_prior_weights_", "item_prior_weights_", "user_items_")


# --------------------------------------------------------------------------- inputs

# Upper bounds of the real hyperparameters. The confidence 1 + alpha·r is float32 in the
# solvers: beyond 1/eps32 (8.4e6) its 1 (every unobserved item's "no") vanishes, and near
# 1e15 the Gramian sums overflow (all-NaN factors). λ and the prior strength beyond 1e6
# only shrink every factor to zero; an exponent beyond 2 makes λ·n^ν overflow float32.
MAX_ALPHA = 1e6
MAX_REGULARIZATION = 1e6
MAX_PRIOR_STRENGTH = 1e6
MAX_REG_EXPONENT = 2.0
# partial_fit_users/items: ids may leave at most this many unused rows beyond the new ones.
MAX_ID_GAP = 1024


def _as_interactions(matrix: Any, name: str, *, n_cols: int | None = None,
                     n_rows: int | None = None) -> sp.csr_matrix:
    """Convert ``matrix`` to a canonical float32 CSR matrix with int32 indices.

    Accepts any scipy sparse matrix or array (converted to CSR once) and dense 2-D
    arrays (zeros are missing entries). Explicit zeros are dropped, duplicates summed.
    """
    if sp.issparse(matrix):
        if matrix.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got {matrix.ndim}-D")
        check_sparse_structure(matrix, name)
        dtype = matrix.dtype
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
                or dtype == np.bool_):
            raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")
        csr = sp.csr_matrix(matrix, dtype=np.float32, copy=False)
    else:
        array = np.asarray(matrix)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                         or np.issubdtype(array.dtype, np.integer)
                                         or array.dtype == np.bool_):
            raise TypeError(f"{name} must be a scipy sparse matrix or a 2-D array of real "
                            f"numbers, got {type(matrix).__name__} of dtype {array.dtype}")
        if array.ndim != 2:
            raise ValueError(f"{name} must be 2-D (rows × columns), got shape {array.shape}")
        if array.size and not np.isfinite(array.astype(np.float64, copy=False)).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        csr = sp.csr_matrix(array.astype(np.float32, copy=False))
    if n_rows is not None and csr.shape[0] != n_rows:
        raise ValueError(f"{name} must have {n_rows} rows, got shape {csr.shape}")
    if n_cols is not None and csr.shape[1] != n_cols:
        raise ValueError(f"{name} must have {n_cols} columns, got shape {csr.shape}")
    if csr.shape[1] >= 2**31:
        raise ValueError(f"{name} has too many columns ({csr.shape[1]}); at most 2**31 - 1")
    data = csr.data
    if data.size:
        low, high = float(data.min()), float(data.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if low < 0:
            raise ValueError(f"{name} contains negative values (min {low}); expected counts "
                             "or ratings >= 0 (0 means no interaction)")
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    if data.size and not data.all():
        csr = csr.copy()
        csr.eliminate_zeros()
    return csr


def _require_finite_solution(X: np.ndarray, s: dict[str, Any]) -> None:
    """Refuse factors that came out NaN or inf: never return them, never keep them."""
    if X.size and not (np.isfinite(X.min()) and np.isfinite(X.max())):
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise ValueError(f"ALS solve gave NaN or infinite factors for {bad} of {X.shape[0]} rows: "
                         "their least-squares systems are singular or overflow float32 (factors, "
                         f"confidences or regularization too large; regularization="
                         f"{s['regularization']:g}, alpha={s['alpha']:g}).")


def _native(csr: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(csr.indptr, dtype=np.int64),
            np.ascontiguousarray(csr.indices, dtype=np.int32),
            np.ascontiguousarray(csr.data, dtype=np.float32))


def _as_user_ids(values: Any, name: str, n: int) -> tuple[np.ndarray, bool]:
    """Ids in [0, n) (users', or items' with ``name`` saying so), and whether a scalar was given."""
    single = np.ndim(values) == 0
    array = as_id_array(values, name, allow_scalar=True)
    check_id_range(array, name, n, what="id")
    return array, single


def _replace_rows(matrix: sp.csr_matrix, ids: np.ndarray, rows: sp.csr_matrix,
                  n_rows: int) -> sp.csr_matrix:
    """A copy of ``matrix`` grown to n_rows rows with rows ``ids`` replaced by ``rows``."""
    keep = np.ones(n_rows, dtype=np.float32)
    keep[ids] = 0
    old = sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr),
                        shape=(matrix.shape[0], matrix.shape[1]))
    old.resize((n_rows, matrix.shape[1]))
    kept = sp.diags(keep).dot(old)
    placed = sp.csr_matrix((np.ones(len(ids), dtype=np.float32), (ids, np.arange(len(ids)))),
                           shape=(n_rows, len(ids))).dot(rows)
    out = sp.csr_matrix(kept + placed, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


class _Prior:
    """Ridge regression of one side's factors on its features:
    W = argmin s‖X − FW‖² + λ_W‖W‖², λ_W = λ + s·τ, τ = trace(FᵀF)/m (fitted rows)."""

    def __init__(self, features: np.ndarray, fitted: np.ndarray, strength: float,
                 regularization: float) -> None:
        self.features = features
        self.fitted = fitted
        F = features[fitted].astype(np.float64)
        gram = F.T @ F
        tau = float(np.trace(gram)) / max(gram.shape[0], 1)
        self.penalty = regularization + strength * tau  # λ_W
        gram[np.diag_indices_from(gram)] += self.penalty / strength
        jitter = 1e-10 * max(float(np.trace(gram)) / max(gram.shape[0], 1), 1e-30)
        gram[np.diag_indices_from(gram)] += jitter
        self._gram_factor = scipy.linalg.cho_factor(gram, lower=True)
        self._F = F

    def fit(self, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Returns (W float32 (m, f), priors F·W float32 (n, f))."""
        rhs = self._F.T @ factors[self.fitted].astype(np.float64)
        W = scipy.linalg.cho_solve(self._gram_factor, rhs)
        W32 = W.astype(np.float32)
        return W32, np.ascontiguousarray(self.features @ W32, dtype=np.float32)


# -------------------------------------------------------------------------- model

class ALS(Estimator):
    """Matrix factorisation by alternating least squares (see the module docstring).

    Parameters (keyword-only, stored as given and checked by :meth:`fit`)
    ----------
    factors : int
        Dimension f of the user and item vectors.
    regularization : float
        λ in [0, 1e6]; explicit feedback needs λ > 0 (``fit`` raises ``ValueError`` for 0:
        a user or item with fewer ratings than factors would have a singular system and
        no unique solution). Every solve is also checked: factors that come out NaN or
        infinite raise ``ValueError`` in ``fit``, ``fold_in`` and the partial fits, and
        are never stored.
    alpha : float
        Confidence slope for implicit feedback: c = 1 + alpha·r, in (0, 1e6] (larger
        values drown the "1" of unobserved items in float32 and overflow the solvers).
        Ignored for explicit.
    iterations : int
        Full alternations (users then items).
    feedback : {"implicit", "explicit"}
    solver : {"cg", "cholesky"}
    cg_steps : int
        Conjugate gradient steps per row and half-sweep (solver="cg").
    prior_strength : float
        Weight of the pull toward F·W when features are given to :meth:`fit` (> 0,
        at most 1e6).
    regularization_exponent : float or None
        ν in λ·n^ν, in [0, 2]; None means 0 for implicit and 1 (ALS-WR) for explicit
        feedback.
    random_state : int, numpy Generator or None
        Seeds the initial factors; fits are reproducible for a fixed thread count (and
        in fact independent of it).
    num_threads : int
        Threads for the native solvers and searches; 0 means all cores.

    Attributes
    ----------
    user_factors_ : float32 (n_users, f)
    item_factors_ : float32 (n_items, f)
    user_prior_weights_, item_prior_weights_ : float32 (m, f) or None
        W of the text priors, when features were given.
    user_items_ : scipy.sparse.csr_matrix (n_users_, n_items_)
        The interactions the model keeps (a read-only view; used when ``user_items`` is
        not given to :meth:`recommend` and saved by :meth:`save`).
    n_users_, n_items_ : int
    """

    _param_names = _PARAM_NAMES

    def __init__(self, *, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, feedback: str = "implicit", solver: str = "cg",
                 cg_steps: int = 3, prior_strength: float = 1.0,
                 regularization_exponent: float | None = None, random_state: Any = None,
                 num_threads: int = 0) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.feedback = feedback
        self.solver = solver
        self.cg_steps = cg_steps
        self.prior_strength = prior_strength
        self.regularization_exponent = regularization_exponent
        self.random_state = random_state
        self.num_threads = num_threads

    def _settings(self) -> dict[str, Any]:
        feedback = check_choice(self.feedback, "feedback", ("implicit", "explicit"))
        exponent = self.regularization_exponent
        if exponent is None:
            exponent = 0.0 if feedback == "implicit" else 1.0
        if feedback == "explicit" and check_real(self.regularization, "regularization", low=0.0) == 0:
            raise ValueError("explicit feedback needs regularization > 0: with 0, a user or item "
                             "with fewer ratings than factors has a singular least-squares system "
                             "(no unique solution; the solvers would return NaN or huge factors)")
        return {
            "factors": check_int(self.factors, "factors", minimum=1),
            "regularization": check_real(self.regularization, "regularization", low=0.0,
                                         high=MAX_REGULARIZATION),
            "alpha": check_real(self.alpha, "alpha", low=0.0, low_open=feedback == "implicit",
                                high=MAX_ALPHA),
            "iterations": check_int(self.iterations, "iterations", minimum=0),
            "implicit": feedback == "implicit",
            "cholesky": check_choice(self.solver, "solver", ("cg", "cholesky")) == "cholesky",
            "cg_steps": check_int(self.cg_steps, "cg_steps", minimum=1),
            "prior_strength": check_real(self.prior_strength, "prior_strength", low=0.0,
                                         high=MAX_PRIOR_STRENGTH),
            "reg_exponent": check_real(exponent, "regularization_exponent", low=0.0,
                                       high=MAX_REG_EXPONENT),
            "num_threads": check_threads(self.num_threads),
        }

    def __getattr__(self, name: str) -> Any:
        # Only reached for missing attributes: learned ones raise NotFittedError (an
        # AttributeError, so hasattr() keeps working).
        if name in _LEARNED:
            raise NotFittedError(f"ALS.{name} is learned by fit: call fit(user_items) first")
        raise AttributeError(f"'ALS' object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (at any time, fitted or not): the parameters, the learned state
        and the cached Gramians (kept because one grown by added items is rounded unlike
        a recomputed one, and a copy must answer exactly as the original); the search
        indexes are dropped and rebuilt on demand."""
        state = self.__dict__.copy()
        cache = state.pop("_cache", {})
        state["_cache"] = {key: value for key, value in cache.items() if isinstance(value, np.ndarray)}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cache = state.pop("_cache", {})
        self.__dict__.update(state)
        self._touch()
        self._cache.update(cache)

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise NotFittedError("this ALS instance is not fitted yet: call fit(user_items) first")

    # ------------------------------------------------------------------ fitting

    def _solve(self, s: dict[str, Any], rows: sp.csr_matrix, Y: np.ndarray, X: np.ndarray,
               gram: np.ndarray | None, priors: np.ndarray | None, *,
               cholesky: bool | None = None) -> None:
        indptr, indices, data = _native(rows)
        _core.als_solve(indptr, indices, data, Y, X, gram, implicit=s["implicit"],
                        cholesky=s["cholesky"] if cholesky is None else cholesky,
                        cg_steps=s["cg_steps"], regularization=s["regularization"],
                        alpha=s["alpha"], reg_exponent=s["reg_exponent"],
                        prior_strength=s["prior_strength"], priors=priors,
                        num_threads=s["num_threads"])
        _require_finite_solution(X, s)

    def _features(self, features: Any, name: str, n: int, s: dict[str, Any]) -> np.ndarray | None:
        if features is None:
            return None
        F = as_float_matrix(features, name)
        if F.shape[0] != n:
            raise ValueError(f"{name} must have one row per {name.split('_')[0]} ({n}), "
                             f"got shape {F.shape}")
        if s["prior_strength"] <= 0:
            raise ValueError(f"{name} needs prior_strength > 0, got {s['prior_strength']}")
        return F

    def fit(self, user_items: Any, *, item_features: Any = None, user_features: Any = None,
            show_progress: bool = False,
            callback: Callable[[int, float], Any] | None = None) -> ALS:
        """Learn user and item factors from a user × item matrix; returns self.

        Parameters
        ----------
        user_items : scipy sparse matrix (CSR preferred; others converted once) or dense
            2-D array, shape (n_users, n_items), values >= 0: counts or confidences
            (implicit) or ratings (explicit); zeros are missing entries.
        item_features, user_features : array (n_items, m) / (n_users, m), optional
            Features for the text priors (e.g. sentence embeddings).
        show_progress : bool
            A tqdm progress bar over iterations.
        callback : callable(iteration, elapsed_seconds), optional
            Called after every iteration.
        """
        s = self._settings()
        R = _as_interactions(user_items, "user_items")
        n_users, n_items = R.shape
        if R.nnz == 0:
            raise ValueError(f"user_items of shape {R.shape} has no interactions")
        Fi = self._features(item_features, "item_features", n_items, s)
        Fu = self._features(user_features, "user_features", n_users, s)
        f = s["factors"]
        rng = np.random.default_rng(self.random_state)
        # Small positive values: the shared mean direction lets the first half-sweep
        # pick up item popularity, which measurably lowers the loss of early iterations.
        X = (rng.random((n_users, f), dtype=np.float32) * 0.01)
        Y = (rng.random((n_items, f), dtype=np.float32) * 0.01)
        Rt = R.T.tocsr()
        user_prior = _Prior(Fu, np.diff(R.indptr) > 0, s["prior_strength"],
                            s["regularization"]) if Fu is not None else None
        item_prior = _Prior(Fi, np.diff(Rt.indptr) > 0, s["prior_strength"],
                            s["regularization"]) if Fi is not None else None
        Wu = Wi = Pu = Pi = None
        bar = None
        if show_progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=s["iterations"], desc="ALS", unit="it")
        start = time.perf_counter()
        gram = (lambda Z: _core.als_gramian(Z, s["num_threads"])) if s["implicit"] else (lambda _: None)
        try:
            for iteration in range(s["iterations"]):
                if user_prior is not None:
                    Wu, Pu = user_prior.fit(X)
                self._solve(s, R, Y, X, gram(Y), Pu)
                if item_prior is not None:
                    Wi, Pi = item_prior.fit(Y)
                self._solve(s, Rt, X, Y, gram(X), Pi)
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(iteration, time.perf_counter() - start)
        finally:
            if bar is not None:
                bar.close()
        # Final priors from the final factors; rows without interactions get them exactly.
        if user_prior is not None:
            Wu, Pu = user_prior.fit(X)
            X[~user_prior.fitted] = Pu[~user_prior.fitted]
        if item_prior is not None:
            Wi, Pi = item_prior.fit(Y)
            Y[~item_prior.fitted] = Pi[~item_prior.fitted]
        self._set_fitted(dict(s, user_prior_penalty=None if user_prior is None else user_prior.penalty,
                              item_prior_penalty=None if item_prior is None else item_prior.penalty),
                         X, Y, Wu, Wi, Pu, Pi, R)
        log.info("ALS.fit: %d users, %d items, %d interactions, %d factors, %d iterations: %.2f s",
                 R.shape[0], R.shape[1], R.nnz, s["factors"], s["iterations"],
                 time.perf_counter() - start)
        return self

    def _set_fitted(self, settings: dict[str, Any], user_factors: np.ndarray, item_factors: np.ndarray,
                    user_prior_weights: np.ndarray | None, item_prior_weights: np.ndarray | None,
                    user_priors: np.ndarray | None, item_priors: np.ndarray | None,
                    user_items: sp.csr_matrix) -> None:
        """Install the learned state (the one place :meth:`fit`, :meth:`load` and
        :meth:`llmrec.distributed.ALS.to_local` set it), caches forgotten."""
        self._settings_used = settings
        self.user_factors_, self.item_factors_ = user_factors, item_factors
        self.user_prior_weights_, self.item_prior_weights_ = user_prior_weights, item_prior_weights
        self._user_priors, self._item_priors = user_priors, item_priors
        self._user_items = user_items
        self._touch()

    @property
    def user_items_(self) -> sp.csr_matrix:
        """The interactions the model keeps (n_users_, n_items_; the training matrix, as
        changed by the partial fits and :meth:`forget_user`), as a read-only view: a CSR
        over the stored arrays, which cannot be written through it."""
        self._check_fitted()
        R = self._user_items
        parts = []
        for part in (R.data, R.indices, R.indptr):
            view = part.view()
            view.flags.writeable = False
            parts.append(view)
        return sp.csr_matrix(tuple(parts), shape=R.shape, copy=False)

    def drop_item_priors(self) -> ALS:
        """Forget the stored item priors F·W (n_items × f floats, as much as the item
        factors); the weights W stay, so fold-ins and partial fits with ``item_features``
        work as before. Only :meth:`loss` reads the stored priors: it then raises. A
        Recommender keeps none (it serves millions of items; its priors are E·W).
        ``save`` writes the model without them. Returns self."""
        self._check_fitted()
        if self.item_prior_weights_ is not None:
            self._item_priors = None
        return self

    def forget_user(self, user_id: int, *, in_place: bool = False) -> ALS:
        """Erase a user: factors, text prior and interactions become zero (the row stays,
        empty). New arrays are bound, never written in place, so a shallow copy taken
        before keeps what it had (O(users + interactions)). With ``in_place``, the stored
        arrays are overwritten instead: the user's row, and the later interactions moved
        down over theirs (one memory move; for an owner that knows nothing reads them
        meanwhile, such as :meth:`llmrec.Recommender.forget_user`). Returns self."""
        self._check_fitted()
        row = int(_as_user_ids(user_id, "user_id", self.n_users_)[0][0])
        R = self._user_items
        arrays = (self.user_factors_, self._user_priors, R.data, R.indices, R.indptr)
        if in_place and all(a is None or a.flags.writeable for a in arrays):
            self.user_factors_[row] = 0
            if self._user_priors is not None:
                self._user_priors[row] = 0
            start, stop, end = int(R.indptr[row]), int(R.indptr[row + 1]), int(R.indptr[-1])
            if stop > start:
                R.data[start:end - (stop - start)] = R.data[stop:end]  # overlapping: numpy buffers it
                R.indices[start:end - (stop - start)] = R.indices[stop:end]
                R.data, R.indices = R.data[:end - (stop - start)], R.indices[:end - (stop - start)]
                R.indptr[row + 1:] -= stop - start
            for key in ("user_gram", "user_cosine"):
                self._cache.pop(key, None)
            return self
        factors = self.user_factors_.copy()
        factors[row] = 0
        self.user_factors_ = factors
        if self._user_priors is not None:
            priors = self._user_priors.copy()
            priors[row] = 0
            self._user_priors = priors
        R = self._user_items
        self._user_items = _replace_rows(R, np.array([row]), sp.csr_matrix((1, R.shape[1]), dtype=np.float32),
                                         R.shape[0])
        for key in ("user_gram", "user_cosine"):
            self._cache.pop(key, None)
        return self

    @property
    def n_users_(self) -> int:
        """Rows of ``user_factors_`` (users added by partial fits included)."""
        self._check_fitted()
        return int(self.user_factors_.shape[0])

    @property
    def n_items_(self) -> int:
        """Rows of ``item_factors_`` (items added by partial fits included)."""
        self._check_fitted()
        return int(self.item_factors_.shape[0])

    def _touch(self) -> None:
        """Forget everything derived from the factors (Gramians, search indexes)."""
        self._cache: dict[str, Any] = {}

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _item_gram(self) -> np.ndarray | None:
        if not self._settings_used["implicit"]:
            return None
        return self._cached("item_gram", lambda: _core.als_gramian(
            self.item_factors_, self._settings_used["num_threads"]))

    def _user_gram(self) -> np.ndarray | None:
        if not self._settings_used["implicit"]:
            return None
        return self._cached("user_gram", lambda: _core.als_gramian(
            self.user_factors_, self._settings_used["num_threads"]))

    def _priors_for(self, features: Any, weights: np.ndarray | None, name: str,
                    n: int) -> np.ndarray | None:
        if features is None:
            return None
        if weights is None:
            raise ValueError(f"{name} given, but the model was fit without {name}")
        F = as_float_matrix(features, name, dim=weights.shape[0])
        if F.shape[0] != n:
            raise ValueError(f"{name} must have {n} rows, got shape {F.shape}")
        return np.ascontiguousarray(F @ weights, dtype=np.float32)

    # ------------------------------------------------------------- fold-in, updates

    def fold_in(self, history_rows: Any, *, user_features: Any = None) -> np.ndarray:
        """Exact least-squares user vectors for histories of users not in the model.

        ``history_rows`` is a sparse matrix or dense array (n, n_items) of the new users'
        interactions; item factors stay fixed and nothing is stored. Rows without
        interactions get the user prior (``user_features`` · W) or zero. Returns
        float32 (n, f).
        """
        self._check_fitted()
        rows = _as_interactions(history_rows, "history_rows", n_cols=self.n_items_)
        priors = self._priors_for(user_features, self.user_prior_weights_, "user_features",
                                  rows.shape[0])
        X = np.zeros((rows.shape[0], self.item_factors_.shape[1]), dtype=np.float32)
        self._solve(self._settings_used, rows, self.item_factors_, X, self._item_gram(),
                    priors, cholesky=True)
        return X

    def fold_in_items(self, item_rows: Any, *, item_features: Any = None,
                      user_vectors: Any = None) -> np.ndarray:
        """Exact least-squares item vectors from interactions, the item half-step of the
        fit with user vectors fixed; nothing is stored (the item twin of :meth:`fold_in`).

        ``item_rows`` (n, m) holds each item's interactions by user: columns are the
        model's users (m = n_users) or, with ``user_vectors`` (m, f), the users whose
        vectors those are (users added after the fit, say). The implicit confidence
        sums use the Gramian of the fitted users. ``item_features`` pulls each item
        toward F·W as in the fit; rows without interactions get exactly F·W (or zero).
        Returns float32 (n, f).
        """
        self._check_fitted()
        if user_vectors is None:
            Y = self.user_factors_
        else:
            Y = as_float_matrix(user_vectors, "user_vectors", dim=self.item_factors_.shape[1])
        rows = _as_interactions(item_rows, "item_rows", n_cols=Y.shape[0])
        priors = self._priors_for(item_features, self.item_prior_weights_, "item_features",
                                  rows.shape[0])
        return self._solve_items(rows, Y, priors)

    def _solve_items(self, rows: sp.csr_matrix, Y: np.ndarray, priors: np.ndarray | None) -> np.ndarray:
        """The item half-step for ``rows`` against user vectors Y (fitted users' Gramian)."""
        X = np.zeros((rows.shape[0], self.item_factors_.shape[1]), dtype=np.float32)
        self._solve(self._settings_used, rows, Y, X, self._user_gram(), priors, cholesky=True)
        return X

    def partial_fit_users(self, user_ids: Any, history_rows: Any, *,
                          user_features: Any = None) -> ALS:
        """Recompute the vectors of ``user_ids`` from their (full) histories; returns self.

        ``history_rows`` has one row per id (n, n_items) and replaces those users' stored
        interactions. Ids >= n_users grow the model (users in between get zero vectors
        and no interactions), by at most ``len(user_ids) + 1024`` rows per call (a larger
        id raises ``ValueError``). Item factors are not changed.
        """
        self._check_fitted()
        ids = self._new_ids(user_ids, "user_ids", self.n_users_)
        rows = _as_interactions(history_rows, "history_rows", n_cols=self.n_items_,
                                n_rows=len(ids))
        vectors = self.fold_in(rows, user_features=user_features)
        n_new = max(self.n_users_, int(ids.max()) + 1 if len(ids) else 0)
        U = grow_rows(self.user_factors_, n_new)
        if self._user_priors is not None:
            self._user_priors = grow_rows(self._user_priors, n_new)
        U[ids] = vectors
        if self._user_priors is not None:
            priors = self._priors_for(user_features, self.user_prior_weights_, "user_features",
                                      len(ids))
            self._user_priors[ids] = vectors if priors is None else priors
        self.user_factors_ = U
        self._user_items = _replace_rows(self._user_items, ids, rows, n_new)
        for key in ("user_gram", "user_cosine"):
            self._cache.pop(key, None)
        return self

    def partial_fit_items(self, item_ids: Any, item_rows: Any = None, *,
                          item_features: Any = None) -> ALS:
        """Recompute the vectors of ``item_ids`` from their interactions; returns self.

        ``item_rows`` (n, n_users) holds each item's interactions by user (columns are
        users) and replaces the stored ones; None means no interactions. An item with no
        interactions and ``item_features`` gets exactly F·W (a new item with a
        description is recommendable at once); without features, zero. Ids >= n_items
        grow the model, by at most ``len(item_ids) + 1024`` rows per call (a larger id
        raises ``ValueError``). User factors are not changed.
        """
        self._check_fitted()
        ids = self._new_ids(item_ids, "item_ids", self.n_items_)
        if item_rows is None:
            rows = sp.csr_matrix((len(ids), self.n_users_), dtype=np.float32)
        else:
            rows = _as_interactions(item_rows, "item_rows", n_cols=self.n_users_, n_rows=len(ids))
        priors = self._priors_for(item_features, self.item_prior_weights_, "item_features",
                                  len(ids))
        V = self._solve_items(rows, self.user_factors_, priors)
        n_old = self.n_items_
        n_new = max(n_old, int(ids.max()) + 1 if len(ids) else 0)
        Y = grow_rows(self.item_factors_, n_new)
        if self._item_priors is not None:
            self._item_priors = grow_rows(self._item_priors, n_new)
        Y[ids] = V
        if self._item_priors is not None:
            self._item_priors[ids] = V if priors is None else priors
        self.item_factors_ = Y
        R = self._user_items
        if rows.nnz == 0 and (len(ids) == 0 or ids.min() >= R.shape[1]):
            # Only new items, no interactions: new empty columns, no O(nnz) rebuild.
            self._user_items = sp.csr_matrix((R.data, R.indices, R.indptr), shape=(R.shape[0], n_new),
                                             copy=False)
        else:
            Rt = _replace_rows(R.T.tocsr(), ids, rows, n_new)
            self._user_items = Rt.T.tocsr()
        for key in ("item_index", "item_cosine"):
            self._cache.pop(key, None)
        self._grow_item_gram(V if len(ids) == 0 or ids.min() >= n_old else None)
        return self

    def set_item_rows(self, item_ids: Any, vectors: Any, *, into: np.ndarray | None = None) -> ALS:
        """Set the factors of existing items ``item_ids`` to ``vectors`` (m, f), keeping
        the cached Gramian current (+ new·newᵀ − old·oldᵀ in float64, as for added rows:
        no O(n·f²) recomputation). ``into``: an array of the shape of ``item_factors_``
        equal to it outside those rows (a copy the caller made, say), which is written
        and becomes ``item_factors_``; None writes ``item_factors_`` in place (no search
        may be reading it). A Recommender's served factors are this array (one copy of
        the item factors), so its re-solved items are its ALS model's too. Returns self."""
        self._check_fitted()
        ids, _ = _as_user_ids(item_ids, "item_ids", self.n_items_)
        ids = np.atleast_1d(ids)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("item_ids holds duplicate ids")
        f = self.item_factors_.shape[1]
        rows = (as_float_matrix(vectors, "vectors", dim=f) if len(ids)
                else np.asarray(vectors, dtype=np.float32).reshape(0, f))
        if rows.shape[0] != len(ids):
            raise ValueError(f"vectors must have one row per item id ({len(ids)}), got {rows.shape[0]}")
        target = self.item_factors_ if into is None else into
        if target.shape != self.item_factors_.shape or target.dtype != np.float32:
            raise ValueError(f"into must be float32 of shape {self.item_factors_.shape}")
        old = self.item_factors_[ids].astype(np.float64)
        target[ids] = rows
        self.item_factors_ = target
        gram, gram64 = self._cache.get("item_gram"), self._cache.get("item_gram64")
        for key in ("item_index", "item_cosine", "item_gram", "item_gram64"):
            self._cache.pop(key, None)
        if gram is not None:
            new = rows.astype(np.float64)
            exact = (gram.astype(np.float64) if gram64 is None else gram64) + new.T @ new - old.T @ old
            self._cache["item_gram64"], self._cache["item_gram"] = exact, exact.astype(np.float32)
        return self

    def _grow_item_gram(self, new_rows: np.ndarray | None) -> None:
        """Keep the cached item Gramian YᵀY current after items were added: + VᵀV for
        brand-new rows (held in float64, so that many small additions do not drift);
        forgotten (recomputed on demand) when existing rows changed."""
        gram = self._cache.get("item_gram")
        if gram is None or new_rows is None:
            self._cache.pop("item_gram", None)
            self._cache.pop("item_gram64", None)
            return
        new = new_rows.astype(np.float64)
        exact = self._cache.get("item_gram64", gram.astype(np.float64)) + new.T @ new
        self._cache["item_gram64"] = exact
        self._cache["item_gram"] = exact.astype(np.float32)

    def _new_ids(self, values: Any, name: str, n: int) -> np.ndarray:
        """Distinct ids >= 0 for a partial fit of a side that has ``n`` rows. Ids >= n grow
        it, but by at most len(ids) + MAX_ID_GAP rows: a stray id such as 10**9 would
        otherwise allocate its factor rows (15 GiB at f = 4)."""
        array = as_id_array(values, name, allow_scalar=True)
        if array.size and array.min() < 0:
            raise ValueError(f"{name} holds negative id {int(array.min())}")
        if len(np.unique(array)) != len(array):
            raise ValueError(f"{name} holds duplicate ids")
        limit = n + len(array) + MAX_ID_GAP
        if array.size and int(array.max()) >= limit:
            raise ValueError(f"{name} holds id {int(array.max())}, but the model has {n} rows and "
                             f"may grow by at most len({name}) + {MAX_ID_GAP} per call: ids must "
                             f"be < {limit}")
        return array

    # ------------------------------------------------------------------ scoring

    def _history_for(self, ids: np.ndarray, user_items: Any, rows: str | None = None) -> sp.csr_matrix:
        """The interactions of the users ``ids``: from the training data (None), from the
        full matrix ("all_users") or from one row per id ("per_user"); ``rows=None`` infers
        which from the row count and refuses the one ambiguous case."""
        if rows is not None:
            check_choice(rows, "user_items_rows", _ROW_FORMS)
        if user_items is None:
            if rows is not None:
                raise ValueError("user_items_rows applies only when user_items is given")
            return self._user_items[ids]
        R = _as_interactions(user_items, "user_items", n_cols=self.n_items_)
        n_rows, n_users, n_ids = R.shape[0], self.n_users_, len(ids)
        if rows is None:
            if n_rows == n_users and n_rows == n_ids and not np.array_equal(ids, np.arange(n_users)):
                raise ValueError(
                    f"user_items has {n_rows} rows, both the number of users and of user_ids: "
                    "say which it holds with user_items_rows='per_user' (row j is user_ids[j]'s) "
                    "or user_items_rows='all_users' (row u is user u's)")
            rows = "per_user" if n_rows == n_ids else "all_users" if n_rows == n_users else None
        expected = n_ids if rows == "per_user" else n_users
        if rows is None or n_rows != expected:
            wanted = (f"one row per requested user ({n_ids})" if rows == "per_user" else
                      f"n_users ({n_users}) rows" if rows == "all_users" else
                      f"n_users ({n_users}) rows or one row per requested user ({n_ids})")
            raise ValueError(f"user_items must have {wanted}, got shape {R.shape}")
        return R if rows == "per_user" else R[ids]

    def _search_items(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                      allow: Any) -> tuple[np.ndarray, np.ndarray]:
        index = self._cached("item_index", lambda: ExactIndex(
            self.item_factors_, num_threads=self._settings_used["num_threads"]))
        return index.search(queries, k, exclude=exclude, allow=allow)

    def recommend(self, user_ids: Any, user_items: Any = None, k: int = 10, *,
                  exclude_seen: bool = True, allow: Any = None,
                  user_items_rows: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for known users by inner product.

        ``user_ids`` is one id (1-D results) or a sequence (results (n, k)).
        ``user_items``: the interactions whose items are excluded when ``exclude_seen``;
        None uses the training interactions. ``user_items_rows`` says what it holds:
        ``"per_user"``, one row per entry of ``user_ids`` in that order (implicit's
        convention, and what :func:`llmrec.evaluation.evaluate` passes), or
        ``"all_users"``, the full (n_users, n_items) matrix whose rows ``user_ids`` picks.
        Left None, the form follows from the row count; when that count is both
        ``len(user_ids)`` and ``n_users`` and the ids are not 0..n_users-1 in order, the two
        readings differ and a ``ValueError`` asks to name one. ``allow`` restricts the
        candidates (bool mask or ids). ``k`` is at most ``max(n_items, 1024)`` (see
        :func:`llmrec._checks.check_k`). Returns (ids int64, scores float32), best
        first, padded with -1/-inf.
        """
        self._check_fitted()
        ids, single = _as_user_ids(user_ids, "user_ids", self.n_users_)
        k = check_k(k, self.n_items_)
        if exclude_seen:
            exclude = self._history_for(ids, user_items, user_items_rows)
        else:
            exclude = None
            if user_items_rows is not None:
                check_choice(user_items_rows, "user_items_rows", _ROW_FORMS)
        out_ids, scores = self._search_items(self.user_factors_[ids], k, exclude, allow)
        return (out_ids[0], scores[0]) if single else (out_ids, scores)

    def recommend_for_history(self, history_rows: Any, k: int = 10, *, exclude_seen: bool = True,
                              allow: Any = None, user_features: Any = None
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for users not in the model, from their histories (nothing stored)."""
        self._check_fitted()
        rows = _as_interactions(history_rows, "history_rows", n_cols=self.n_items_)
        vectors = self.fold_in(rows, user_features=user_features)
        return self._search_items(vectors, k, rows if exclude_seen else None, allow)

    def _similar(self, key: str, factors: np.ndarray, ids_in: Any, name: str,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        ids, single = _as_user_ids(ids_in, name, factors.shape[0])
        index = self._cached(key, lambda: ExactIndex(
            factors, metric="cosine", num_threads=self._settings_used["num_threads"]))
        exclude = [np.array([i]) for i in ids]
        out_ids, scores = index.search(factors[ids], k, exclude=exclude)
        return (out_ids[0], scores[0]) if single else (out_ids, scores)

    def similar_items(self, item_ids: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items most similar (cosine of factors) to each item, itself excluded."""
        self._check_fitted()
        return self._similar("item_cosine", self.item_factors_, item_ids, "item_ids", k)

    def similar_users(self, user_ids: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k users most similar (cosine of factors) to each user, itself excluded."""
        self._check_fitted()
        return self._similar("user_cosine", self.user_factors_, user_ids, "user_ids", k)

    def predict(self, user_ids: Any, item_ids: Any) -> np.ndarray:
        """Scores u·v of the given (user, item) pairs (explicit: predicted ratings)."""
        self._check_fitted()
        users, _ = _as_user_ids(user_ids, "user_ids", self.n_users_)
        items, _ = _as_user_ids(item_ids, "item_ids", self.n_items_)
        users, items = np.broadcast_arrays(users, items)
        out = np.einsum("ij,ij->i", self.user_factors_[users], self.item_factors_[items])
        return out.astype(np.float32).reshape(np.broadcast_shapes(np.shape(user_ids), np.shape(item_ids)))

    def explain(self, user_id: Any, user_items: Any, item_id: Any, *, k: int = 10
                ) -> tuple[float, np.ndarray, np.ndarray]:
        """Which history items make ``item_id`` score high for ``user_id``.

        The user's vector is the solution of A x = Σ_j c_j y_j (+ the prior), so the
        score x·y_i splits into one term c_j·y_iᵀA⁻¹y_j per history item j (Hu, Koren &
        Volinsky 2008, section 5). ``user_items``: the full matrix or the user's one row
        (None: the training interactions). Returns (score, item_ids, contributions):
        the score recomputed from that history and the k largest contributions.
        """
        self._check_fitted()
        uid, _ = _as_user_ids(user_id, "user_id", self.n_users_)
        iid, _ = _as_user_ids(item_id, "item_id", self.n_items_)
        k = check_int(k, "k", minimum=1)
        row = self._history_for(uid[:1], user_items)
        s = self._settings_used
        Y = self.item_factors_.astype(np.float64)
        f = Y.shape[1]
        idx, r = row.indices, row.data.astype(np.float64)
        n = len(idx)
        reg = s["regularization"] * (float(n) ** s["reg_exponent"])
        prior = None
        if self._user_priors is not None and n:
            prior = self._user_priors[uid[0]].astype(np.float64)
            reg += s["prior_strength"]
        if s["implicit"]:
            weight, coeff = s["alpha"] * r, 1.0 + s["alpha"] * r
            A = Y.T @ Y
        else:
            weight, coeff = np.ones(n), r
            A = np.zeros((f, f))
        A += (Y[idx].T * weight) @ Y[idx] + reg * np.eye(f)
        z = np.linalg.solve(A, Y[iid[0]])  # A⁻¹ y_i (A is symmetric)
        contributions = coeff * (Y[idx] @ z)
        score = float(contributions.sum())
        if prior is not None:
            score += float(s["prior_strength"] * prior @ z)
        order = result_order(idx, contributions)[:k]
        return score, idx[order].astype(np.int64), contributions[order].astype(np.float32)

    def loss(self, user_items: Any = None) -> float:
        """The training objective (module docstring) on ``user_items`` (None: the
        training interactions), priors' terms included."""
        self._check_fitted()
        s = self._settings_used
        R = self._user_items if user_items is None else _as_interactions(
            user_items, "user_items", n_rows=self.n_users_, n_cols=self.n_items_)
        indptr, indices, data = _native(R)
        total = _core.als_loss(indptr, indices, data, self.user_factors_, self.item_factors_,
                               self._item_gram(), implicit=s["implicit"],
                               regularization=s["regularization"], alpha=s["alpha"],
                               reg_exponent=s["reg_exponent"], num_threads=s["num_threads"])
        item_counts = np.bincount(R.indices, minlength=self.n_items_).astype(np.float64)
        Y = self.item_factors_.astype(np.float64)
        total += s["regularization"] * float(
            (np.power(item_counts, s["reg_exponent"]) * np.einsum("ij,ij->i", Y, Y)).sum())
        for priors, W, factors, counts, penalty in (
                (self._user_priors, self.user_prior_weights_, self.user_factors_, np.diff(R.indptr),
                 s.get("user_prior_penalty")),
                (self._item_priors, self.item_prior_weights_, self.item_factors_, item_counts,
                 s.get("item_prior_penalty"))):
            if W is None:
                continue
            if priors is None:
                raise ValueError("loss needs the item priors F·W, which this model dropped "
                                 "(drop_item_priors)")
            fitted = counts > 0
            diff = factors[fitted].astype(np.float64) - priors[fitted]
            total += s["prior_strength"] * float((diff * diff).sum())
            penalty = s["regularization"] if penalty is None else penalty  # files before λ_W
            total += penalty * float((W.astype(np.float64) ** 2).sum())
        return total

    # -------------------------------------------------------------------- files

    def save(self, path: str | os.PathLike[str], *, include_interactions: bool = True) -> None:
        """Write the model (factors, priors and, by default, the training interactions used
        to exclude seen items) to ``path``: llmrec's versioned, checksummed format."""
        self._check_fitted()
        arrays = {"user_factors": self.user_factors_, "item_factors": self.item_factors_}
        optional = {"user_prior_weights": self.user_prior_weights_,
                    "item_prior_weights": self.item_prior_weights_,
                    "user_priors": self._user_priors, "item_priors": self._item_priors}
        arrays.update({k: v for k, v in optional.items() if v is not None})
        if include_interactions:
            R = self._user_items
            arrays.update({"indptr": R.indptr.astype(np.int64), "indices": R.indices.astype(np.int32),
                           "values": R.data.astype(np.float32)})
        params = self.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None
        meta = {"params": params, "settings": self._settings_used,
                "item_priors_dropped": self.item_prior_weights_ is not None and self._item_priors is None}
        save_arrays(path, _KIND, _KIND_VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True) -> ALS:
        """Read a model written by :meth:`save`.

        The structure is checked whatever ``verify`` says (it only skips the checksums):
        parameters and settings of the right types and ranges, float32 finite factors of
        ``factors`` columns, priors of matching shapes, and the interactions as a CSR
        matrix (n_users, n_items) with a monotone row pointer from 0 to nnz, column
        indices in range and finite values >= 0. Raises ``llmrec.FormatError`` (a
        ``ValueError``) for a truncated, corrupted, inconsistent or foreign file.
        """
        meta, arrays, version = load_arrays(path, _KIND, max_kind_version=_KIND_VERSION, verify=verify)
        params = meta_value(meta, "params", path, types=dict)
        unknown = sorted(set(params) - set(_PARAM_NAMES))
        if unknown:
            raise fail(path, f"unknown ALS parameters {unknown}")
        model = cls(**params)
        try:
            model._settings()
            if not (model.random_state is None or is_int(model.random_state)):
                raise TypeError("random_state must be an int or None")
        except (TypeError, ValueError) as error:
            raise fail(path, f"invalid ALS parameters ({error})") from None
        s = _load_settings(meta_value(meta, "settings", path, types=dict), path)
        f = s["factors"]
        U = array(arrays, "user_factors", path, dtype=np.float32, shape=(None, f), finite=True)
        V = array(arrays, "item_factors", path, dtype=np.float32, shape=(None, f), finite=True)
        n_users, n_items = U.shape[0], V.shape[0]
        priors: dict[str, Any] = {}
        for side, n in (("user", n_users), ("item", n_items)):
            W = array(arrays, f"{side}_prior_weights", path, dtype=np.float32, shape=(None, f),
                      required=False, finite=True)
            P = array(arrays, f"{side}_priors", path, dtype=np.float32, shape=(n, f),
                      required=False, finite=True)
            dropped = side == "item" and version >= 2 and meta.get("item_priors_dropped") is True
            if (W is None) != (P is None) and not (dropped and P is None):
                raise fail(path, f"{side} prior weights and {side} priors must be saved together")
            priors[f"{side}_prior_weights"], priors[f"{side}_priors"] = W, P
        model._set_fitted(s, np.ascontiguousarray(U), np.ascontiguousarray(V),
                          user_items=_load_interactions(arrays, path, n_users, n_items), **priors)
        return model


def _load_settings(saved: dict[str, Any], path: Any) -> dict[str, Any]:
    """The settings a file recorded for its fit, checked field by field."""
    if saved.get("implicit") is False and saved.get("regularization") == 0:
        raise fail(path, "explicit feedback with regularization 0 (singular systems)")
    s = {"factors": meta_int(saved, "factors", path, minimum=1, maximum=1 << 16),
         "regularization": meta_real(saved, "regularization", path, minimum=0.0,
                                     maximum=MAX_REGULARIZATION),
         "alpha": meta_real(saved, "alpha", path, minimum=0.0, maximum=MAX_ALPHA),
         "iterations": meta_int(saved, "iterations", path, minimum=0),
         "implicit": meta_value(saved, "implicit", path, types=bool),
         "cholesky": meta_value(saved, "cholesky", path, types=bool),
         "cg_steps": meta_int(saved, "cg_steps", path, minimum=1),
         "prior_strength": meta_real(saved, "prior_strength", path, minimum=0.0,
                                     maximum=MAX_PRIOR_STRENGTH),
         "reg_exponent": meta_real(saved, "reg_exponent", path, minimum=0.0, maximum=MAX_REG_EXPONENT),
         "num_threads": meta_int(saved, "num_threads", path, minimum=0, maximum=MAX_THREADS)}
    for key in ("user_prior_penalty", "item_prior_penalty"):
        if saved.get(key) is not None:
            s[key] = meta_real(saved, key, path, minimum=0.0)
        else:
            s[key] = None
    return s


def _load_interactions(arrays: dict[str, np.ndarray], path: Any, n_users: int,
                       n_items: int) -> sp.csr_matrix:
    """The saved training interactions as a canonical CSR matrix, checked before scipy
    (which trusts its index arrays) sees them; an empty matrix when none were saved."""
    names = ("indptr", "indices", "values")
    present = [name in arrays for name in names]
    if not any(present):
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    if not all(present):
        raise fail(path, "the interactions need all of 'indptr', 'indices' and 'values'")
    indptr = array(arrays, "indptr", path, dtype=np.int64, ndim=1)
    indices = array(arrays, "indices", path, dtype=np.int32, ndim=1)
    values = array(arrays, "values", path, dtype=np.float32, shape=(indices.shape[0],), finite=True)
    check_csr(path, "interactions", indptr, indices, n_users, n_items)
    if values.size and float(values.min()) < 0:
        raise fail(path, "array 'values' holds negative interactions")
    matrix = sp.csr_matrix((values, indices, indptr), shape=(n_users, n_items))
    if not matrix.has_canonical_format:  # sorted, distinct columns per row (what fit stores)
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix


__all__ = ["ALS", "NotFittedError"]
