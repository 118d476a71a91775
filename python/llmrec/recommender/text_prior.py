"""The text prior of items without interactions: a kernel ridge map from an item's text
vector to ALS factors, trained on the fitted items' factors.

An item with no interactions (in the fit's catalogue without any, added by
``add_items``, or late and re-solved from its first clicks toward its prior) is ranked
by the factors its text predicts. ALS's own prior is linear, F·W; this one is the
kernel ridge regression on the ``MAX_LANDMARKS`` most-interacted fitted items
("landmarks", text vectors X_L, factors V_L):

    v(x) = k(x)ᵀ (K + μI)⁻¹ V_L,   k(x)_l = exp((x·x_l − 1)/τ),   K = k(X_L)

for unit text vectors (a Gaussian kernel of width √τ on the sphere): a title is placed
among the items whose text is close to it, not along one linear direction. On
MovieLens-100K cold items it ranks better than F·W (bench/RESULTS.md, "Issue 14, tenth
session").

τ and μ are chosen at fit from a small grid, without held-out interactions, by the
closed-form leave-one-out error in score space: each landmark's factors predicted
without it, v̂₋ᵢ = vᵢ − (vᵢ − v̂ᵢ)/(1 − Hᵢᵢ) with H = K(K + μI)⁻¹, and the error
Σᵢ (v̂₋ᵢ − vᵢ)ᵀ UᵀU (v̂₋ᵢ − vᵢ), U the users' factors: how far every user's score of an
item moves when the item is ranked from its text alone. One eigendecomposition of K
per τ gives every μ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrec._checks import as_float_matrix

MAX_LANDMARKS = 2048  # the eigendecomposition is O(m³): ≈ 1–3 s per width at 2,048 on one core
WIDTHS = (0.2, 0.3, 0.4, 0.6)  # τ; MovieLens' MiniLM titles chose 0.3–0.4
RIDGES = (0.1, 0.3, 1.0, 3.0)  # μ
# What a loaded prior may hold, so that its factors stay finite in float32 for unit text
# rows: landmarks of norm ≤ 1 + 1e-3 and τ ≥ MIN_WIDTH keep each kernel value ≤ e^0.1,
# and |coef| ≤ MAX_COEF keeps a sum of MAX_LANDMARKS terms far below float32's 3.4e38.
MIN_WIDTH, MAX_WIDTH = 0.01, 100.0
MAX_COEF = 1e30
_BLOCK = 4096  # rows of text per kernel block in factors(): bounded memory


@dataclass(frozen=True)
class TextPrior:
    """The fitted map (see the module docstring); build with :func:`fit_text_prior`."""

    landmarks: np.ndarray  # float32 (m, d): the landmarks' unit text vectors
    coef: np.ndarray       # float32 (m, f): (K + μI)⁻¹ V_L
    width: float           # τ

    def factors(self, texts: Any) -> np.ndarray:
        """Factors (float32, (n, f)) predicted for ``texts``, (n, d) unit text vectors."""
        X = as_float_matrix(texts, "texts", dim=self.landmarks.shape[1])
        out = np.empty((len(X), self.coef.shape[1]), dtype=np.float32)
        for start in range(0, len(X), _BLOCK):
            K = X[start:start + _BLOCK] @ self.landmarks.T
            np.exp((K - 1.0) / np.float32(self.width), out=K)
            out[start:start + _BLOCK] = K @ self.coef
        return out


def fit_text_prior(texts: np.ndarray, factors: np.ndarray, counts: np.ndarray,
                   user_factors: np.ndarray, widths: tuple[float, ...] = WIDTHS) -> TextPrior | None:
    """The map from ``texts`` (n, d unit rows) to ``factors`` (n, f), learned on the
    items with ``counts`` > 0 (interactions per item) and (τ, μ) chosen by leave-one-out
    error in the score space of ``user_factors`` (τ among ``widths``); None with fewer
    than two such items."""
    fitted = np.flatnonzero(np.asarray(counts) > 0)
    if len(fitted) < 2:
        return None
    rows = fitted[np.argsort(-np.asarray(counts)[fitted], kind="stable")][:MAX_LANDMARKS]
    X = np.asarray(texts[rows], dtype=np.float64)
    V = np.asarray(factors[rows], dtype=np.float64)
    U = np.asarray(user_factors, dtype=np.float64)
    gram = U.T @ U
    cosines = X @ X.T
    best: tuple[float, float, np.ndarray] | None = None
    for width in widths:
        eigenvalues, Q = np.linalg.eigh(np.exp((cosines - 1.0) / width))
        eigenvalues = np.maximum(eigenvalues, 0.0)  # K is PSD; round-off may dip below 0
        QV = Q.T @ V
        for ridge in RIDGES:
            shrink = eigenvalues / (eigenvalues + ridge)
            leverage = (Q * Q) @ shrink  # H_ii
            D = (V - Q @ (shrink[:, None] * QV)) / (1.0 - leverage)[:, None]  # v_i − v̂₋ᵢ
            error = float(np.einsum("ij,jk,ik->", D, gram, D))
            if best is None or error < best[0]:
                best = (error, width, Q @ (QV / (eigenvalues + ridge)[:, None]))
    assert best is not None
    _, width, coef = best
    return TextPrior(np.ascontiguousarray(X, dtype=np.float32), np.ascontiguousarray(coef, dtype=np.float32),
                     float(width))
