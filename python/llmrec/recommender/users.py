"""Per-user signal vectors from histories: behaviour, sequence, next-item, text interest, towers."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.recommender.history import recency_weights, weighted_rows
from llmrec.recommender.towers_signal import user_vectors as towers_user_vectors

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
    """Recency-weighted mean of the history's unit text vectors, in which a profile
    text's vector counts as one more item (n items and a profile: n/(n+1) of the mean
    plus 1/(n+1) of the profile; the profile alone without history). A profile says
    less about a user the more they have taken: added whole, it outweighed a long
    history (MovieLens-100K, bench/RESULTS.md, "Sixteenth session")."""
    if E is None:
        return None
    out = np.zeros((len(histories), E.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        if len(history):
            w = recency_weights(len(history), recency)
            out[row] = (w @ E[history]) / w.sum()
    if profile is not None:
        n = np.array([len(h) for h in histories], dtype=np.float32)[:, None]
        out = (n * out + profile) / (n + 1.0)
    return out


def signal_vectors(settings: dict[str, Any], items: Any, als: Any, towers: Any,
                   histories: list[np.ndarray], profile: np.ndarray | None = None,
                   patch: dict[str, np.ndarray] | None = None,
                   weights: list[np.ndarray] | None = None,
                   dislikes: list[tuple[np.ndarray, np.ndarray]] | None = None
                   ) -> dict[str, np.ndarray | None]:
    """Every signal's vectors for users with ``histories`` (liked item rows of
    ``items``, a :class:`.scoring.Items`; their multipliers ``weights``, their
    ``dislikes``) and ``profile`` rows: the users of a fit, of an update, or a visitor.
    With ``patch`` (re-solved item rows not yet published) the history items' unit and
    next-item factors are read from it where it has them."""
    Vn, P, local = items.Vn, items.P, histories
    if patch is not None:
        Vn, P, local = _patched_rows(items, patch, histories)
    out = {"behaviour": behaviour_vectors(als, histories, len(items.V), settings["recency"],
                                          weights=weights, dislikes=dislikes),
           "sequence": sequence_vectors(Vn, local, settings["sequence_decay"]),
           "transition": sequence_vectors(P, local, settings["sequence_decay"]),
           "text": text_vectors(items.E, histories, settings["recency"], profile)}
    if towers is not None:  # one forward per user (numpy for a single history)
        out["towers"] = towers_user_vectors(towers, histories, profile)
    return out


def _patched_rows(items: Any, patch: dict[str, np.ndarray], histories: list[np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The unit and next-item factor rows of the history items, with re-solved rows from
    ``patch``, and the histories renumbered into them."""
    used = np.unique(np.concatenate(histories)) if histories else np.zeros(0, dtype=np.int64)
    Vn, P = items.Vn[used], items.P[used]
    rows = patch["rows"]
    at = np.searchsorted(used, rows)
    hit = at < len(used)
    hit[hit] = used[at[hit]] == rows[hit]
    Vn[at[hit]] = patch["V"][hit] * patch["inv_norm"][hit][:, None]
    P[at[hit]] = patch["P"][hit]
    return Vn, P, [np.searchsorted(used, h) for h in histories]


def stored_users(users: dict[str, Any], items: Any) -> dict[str, Any]:
    """The per-user rows as kept: the text interest in int8 (:class:`.rows.Int8Rows`,
    d + 4 bytes per user instead of 4·d) where the items keep their text in int8, the
    rest as computed. Each coordinate moves by at most half its row's code step, as the
    items' text does (the bound the compression tests derive their tolerance from)."""
    from llmrec.recommender.rows import Int8Rows

    text = users.get("text")
    if isinstance(items.E, Int8Rows) and isinstance(text, np.ndarray):
        return {**users, "text": Int8Rows.encode(text)}
    return users

