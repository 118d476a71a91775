"""Per-user signal vectors from histories: behaviour, sequence and text interest."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.recommender.history import recency_weights, weighted_rows

SEQUENCE_ITEMS = 20  # decay^20 is negligible for the decays that work (≤ 0.8)


def behaviour_vectors(als: Any, histories: list[np.ndarray], n_items: int, recency: float,
                      user_features: np.ndarray | None = None, *,
                      weights: list[np.ndarray] | None = None,
                      dislikes: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """ALS fold-in of each history with confidence 1 + alpha·m·(1 + recency·p²), m the
    interactions' multipliers (``weights``; 1 when None); ``dislikes`` (item rows,
    multipliers) per history push the vector away (:func:`.feedback.fold_in`)."""
    rows = weighted_rows(histories, n_items, recency, weights)
    if dislikes is not None and user_features is None and any(len(d[0]) for d in dislikes):
        from llmrec.recommender.feedback import fold_in

        return fold_in(als, rows, dislikes)
    if user_features is not None:
        return als.fold_in(rows, user_features=user_features)
    return als.fold_in(rows)


def sequence_vectors(Vn: np.ndarray, histories: list[np.ndarray], decay: float) -> np.ndarray:
    """Σ decay^r · vn_j over the latest items (r = 0 for the newest), normalised by Σ decay^r."""
    out = np.zeros((len(histories), Vn.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        recent = history[::-1][:SEQUENCE_ITEMS]
        if len(recent):
            w = decay ** np.arange(len(recent))
            out[row] = (w @ Vn[recent]) / w.sum()
    return out


def text_vectors(E: np.ndarray | None, histories: list[np.ndarray], recency: float,
                 profile: np.ndarray | None = None) -> np.ndarray | None:
    """Recency-weighted mean of the history's unit text vectors (+ the profile text's vector)."""
    if E is None:
        return None
    out = np.zeros((len(histories), E.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        if len(history):
            w = recency_weights(len(history), recency)
            out[row] = (w @ E[history]) / w.sum()
    if profile is not None:
        out += profile
    return out
