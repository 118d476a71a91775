"""Explanations: which history items and which text evidence make a score."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from llmrec._checks import plain
from llmrec.recommender import scoring

if TYPE_CHECKING:
    from llmrec.recommender.state import Fitted


class Explanation(NamedTuple):
    """``text``: the explanation in words; ``score``: the blended score; ``signals``:
    each signal's weighted contribution relative to the catalogue mean (they add up to
    ``score``); ``history``: a DataFrame of the history items
    (``item_id``, ``behaviour``, ``sequence``, ``text`` contributions), strongest first."""

    text: str
    score: float
    signals: dict[str, float]
    history: pd.DataFrame

    def __str__(self) -> str:
        return self.text


def _name(state: Fitted, labels: Any, row: int) -> str:
    item_id = state.item_map.ids[row]
    return f"{labels[row]!s}" if labels is not None and row < len(labels) else f"item {plain(item_id)!r}"


def explain_score(state: Fitted, weights: dict[str, float], snap: Any, vectors: dict[str, np.ndarray | None],
                  history: np.ndarray, item: int, record: dict[str, np.ndarray] | None = None) -> Explanation:
    """Explain ``item``'s score under the blend ``weights`` for the user whose signal
    ``vectors`` (one row each) and ``history`` (liked items) were taken from the pinned
    snapshot ``snap`` of the model's ``state``; ``record``:
    the user's :class:`.feedback.Feedback` record (multipliers and dislikes). Disliked
    items are never among the history items that make the score; those that weigh
    against it are named as such."""
    s = state.settings
    g = state.geometry
    items = snap.items
    signals = scoring.make_signals(weights, g, **vectors)
    parts = {"behaviour": 0.0, "sequence": 0.0, "transition": 0.0, "text": 0.0}
    if signals.behaviour is not None:
        parts["behaviour"] = float(signals.behaviour[0] @ items.V[item])
    if signals.popularity is not None:  # the catalogue mean for items without interactions
        popularity = items.V[item] if items.warm[item] else g.mean_V
        parts["popularity"] = float(signals.popularity[0].astype(np.float64) @ popularity)
    if signals.sequence is not None:
        parts["sequence"] = float(signals.sequence[0] @ items.Vn[item])
    if signals.transition is not None:
        parts["transition"] = float(signals.transition[0] @ items.Q[item])
    if signals.text is not None and items.E is not None and g.mean_E is not None:
        parts["text"] = float(scoring.interest_scores(items, signals.text, np.array([[item]]),
                                                      g.mean_E)[0, 0])
    if signals.towers is not None and items.G is not None:
        # neutral (the catalogue mean) for items without interactions, as when ranking
        towers = items.G[item] if items.warm[item] else g.mean_G
        parts["towers"] = float(signals.towers[0].astype(np.float64) @ towers)
    if signals.cold is not None and items.Z is not None:  # 0 for items with interactions
        shift = signals.cold_weight * items.Z.shift * float(items.Z.fresh[items.Z.slots[item], 0])
        parts["cold"] = float(signals.cold[0].astype(np.float64) @ items.Z[item]) + shift
    score = sum(parts.values()) - float(signals.offset[0])
    # Each signal relative to its catalogue mean (in units of its spread, weighted):
    # these terms add up to the score.
    relative = dict(parts)
    for key, signal, mean in (("behaviour", signals.behaviour, g.mean_V),
                              ("popularity", signals.popularity, g.mean_V),
                              ("sequence", signals.sequence, g.mean_Vn),
                              ("transition", signals.transition, g.mean_Q),
                              ("text", signals.text, g.mean_E),
                              ("towers", signals.towers, g.mean_G)):
        if signal is not None and mean is not None and key in parts:
            relative[key] -= float(signal[0].astype(np.float64) @ mean)

    n = len(history)
    table = pd.DataFrame({"item_id": state.item_map.to_ids(history), "row": history})
    if n:
        # Behaviour: the fold-in is linear in the history, u = A⁻¹ Σ_j c_j v_j, so the
        # score splits into one term per history item (Hu, Koren & Volinsky, §5).
        contributions, against = _behaviour_terms(s, snap, history, item, record)
        total = contributions.sum() + against[1].sum()
        scale = parts["behaviour"] / total if total else 0.0
        table["behaviour"] = contributions * scale
        decay = s["sequence_decay"] ** np.arange(n)[::-1]
        decay[: max(n - 20, 0)] = 0.0
        seq = decay * (items.Vn[history] @ items.Vn[item]) / max(decay.sum(), 1e-12)
        seq_total = seq.sum()
        table["sequence"] = seq * (parts["sequence"] / seq_total if seq_total else 0.0)
        nxt = decay * (items.P[history] @ items.Q[item]) / max(decay.sum(), 1e-12)
        nxt_total = nxt.sum()
        table["transition"] = nxt * (parts["transition"] / nxt_total if nxt_total else 0.0)
        if items.E is not None:
            table["text_similarity"] = items.E[history] @ items.E[item]
        table["total"] = table["behaviour"] + table["sequence"] + table["transition"]
        table = table.sort_values("total", ascending=False, kind="stable").reset_index(drop=True)

    lines = [f"Score {score:.3f} for {_name(state, snap.labels, item)} (weighted standard deviations above "
             "the catalogue's average, per signal):"]
    labels = {"behaviour": "people with a history like yours chose it",
              "sequence": "it is close to what you interacted with most recently",
              "transition": "people often take it next after your latest items",
              "text": "its description matches the text of your interests",
              "towers": "the sequence model trained on everyone's histories predicts it next",
              "cold": "it is new, and its description is close to items you took",
              "popularity": "many people take it, and your history is still short"}
    for key in sorted(relative, key=lambda k: -abs(relative[k])):
        if parts[key] != 0:
            lines.append(f"  {relative[key]:+.3f} {key}: {labels[key]}")
    if n:
        top = table.head(3)
        names = ", ".join(_name(state, snap.labels, int(r)) for r in top["row"])
        lines.append(f"  history items that weigh most: {names}")
        if "text_similarity" in table:
            best = table.loc[table["text_similarity"].idxmax()]
            lines.append(f"  closest in text: {_name(state, snap.labels, int(best['row']))} "
                         f"(cosine {best['text_similarity']:.2f})")
    else:
        source = "its popularity and " if parts.get("popularity") else ""
        lines.append(f"  no history: the score comes from {source}the text of the request or profile only")
    if n and len(against[0]):
        worst = np.argsort(against[1], kind="stable")[:3]
        worst = worst[against[1][worst] * scale < 0]
        if len(worst):
            names = ", ".join(_name(state, snap.labels, int(against[0][j])) for j in worst)
            lines.append(f"  items you disliked that weigh against it: {names}")
    return Explanation("\n".join(lines), float(score), relative, table.drop(columns="row"))


def _behaviour_terms(s: dict[str, Any], snap: Any, history: np.ndarray, item: int,
                     record: dict[str, np.ndarray] | None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The behaviour score's terms of the liked ``history`` items, and (disliked items,
    their terms) — the fold-in split per item, with the multipliers of ``record``."""
    from llmrec.recommender.feedback import behaviour_terms
    from llmrec.recommender.history import recency_weights

    none = (np.zeros(0, dtype=np.int64), np.zeros(0))
    if record is not None:
        liked = ~record["disliked"]
        weights = record["weight"][liked].astype(np.float64)
        bad, bad_w = record["items"][~liked], record["weight"][~liked]
        if len(weights) == len(history) and (len(bad) or (weights != 1).any()):
            like_r = recency_weights(len(history), s["recency"]) * weights
            terms, against = behaviour_terms(snap.als, history, like_r, bad, bad_w, item)
            return terms, (bad, against)
    return _plain_terms(s, snap, history, item), none


def _plain_terms(s: dict[str, Any], snap: Any, history: np.ndarray, item: int) -> np.ndarray:
    from llmrec.recommender.history import weighted_rows

    row = weighted_rows([history], len(snap.items.V), s["recency"])
    score, ids, contributions = snap.als.explain(0, row, item, k=len(history))
    by_id = dict(zip(ids.tolist(), contributions.tolist()))
    return np.array([by_id.get(int(h), 0.0) for h in history])
