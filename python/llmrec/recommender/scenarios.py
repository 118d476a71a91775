"""Per-scenario blends and the calibration, fitted on the validation slice at ``fit``.

When the interactions carry a ``scenario`` column (where the interaction happened:
"home", "cart", "email", …), each scenario's blend weights are fitted like "home"'s
(coordinate ascent of ndcg@10, :func:`.fusion.fit_weights`) on the same validation
users and candidates, with only the held-out interactions of that scenario counted as
relevant: a scenario whose held-out events follow the user's latest items gets a
larger sequence weight, one that follows long-term taste a larger behaviour share.
The scenario of a (user, item) pair is that of its latest event. A scenario with
fewer than ``MIN_SCENARIO_USERS`` validation users holding one of its events gets the
blend fitted on every scenario's events (said in ``validation_["scenarios"]``). Requests pick a blend with
``scenario=``; a free-text request weighs half the personal weights, as in "home"
("search": the request first, the rest at half, as the default "search" blend).
"similar" (item to item) is not a user blend and is never refitted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from llmrec.recommender.calibration import Calibration, fit_calibration
from llmrec.recommender.fusion import fit_weights

MIN_SCENARIO_USERS = 10
MAX_SCENARIOS = 64


class Extras(NamedTuple):
    scenarios: dict[str, dict[str, float]]
    report: dict[str, Any]
    calibration: Calibration | None


def scenario_lookup(frame: pd.DataFrame, users: np.ndarray, items: np.ndarray, order: np.ndarray,
                    n_items: int) -> pd.Series | None:
    """The scenario of each (user row, item row) pair's latest event, keyed by
    user·n_items + item; None without a ``scenario`` column. Checks the column."""
    if "scenario" not in frame.columns:
        return None
    values = frame["scenario"]
    bad = values.isna() | ~values.map(lambda v: isinstance(v, str) and bool(v.strip()))
    if bad.any():
        where = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"interactions.scenario must hold non-empty strings; row {where} holds "
                         f"{values.iloc[where]!r}")
    names = pd.unique(values)
    if len(names) > MAX_SCENARIOS:
        raise ValueError(f"interactions.scenario has {len(names)} distinct values; at most "
                         f"{MAX_SCENARIOS} scenarios are fitted")
    key = users.astype(np.int64) * n_items + items.astype(np.int64)
    latest = pd.DataFrame({"key": key, "order": order, "row": np.arange(len(key)),
                           "scenario": values.to_numpy()})
    latest = latest.sort_values(["order", "row"], kind="stable").drop_duplicates("key", keep="last")
    return pd.Series(latest["scenario"].to_numpy(), index=latest["key"].to_numpy())


def blend_for(name: str, personal: dict[str, float]) -> dict[str, float]:
    """A served blend from fitted personal weights (the query rule of "home"/"search")."""
    total = sum(v for k, v in personal.items() if k != "query")
    if name == "search":
        return {**{k: 0.5 * v / max(total, 1e-12) for k, v in personal.items()}, "query": 1.0}
    return {**personal, "query": 0.5 * total}


def fit_extras(keep: dict[str, Any], lookup: pd.Series | None, home: dict[str, float],
               random_state: Any) -> Extras:
    """Per-scenario weights (when ``lookup``) and the calibration of the home blend,
    from the validation data ``keep`` left by :func:`.training.fit_blend` (empty when
    the validation was skipped: no calibration, no scenario fitted)."""
    if not keep:
        skipped = {} if lookup is None else {"skipped": "no validation slice (validation=0 or too few users)"}
        return Extras({}, skipped, None)
    def calibrate(blend: dict[str, float]) -> Calibration:  # of the blend predict_proba reads
        return fit_calibration(keep["raw"], blend, keep["hist"], keep["held"], keep["n_items"],
                               keep["cold"], random_state, catalogue=keep["full_n_items"])

    if lookup is None:
        return Extras({}, {}, calibrate(home))
    n_items, users = keep["full_n_items"], keep["full_users"]  # the full model's rows
    held_labels = [lookup.reindex(u * n_items + np.asarray(h, dtype=np.int64)).to_numpy()
                   for u, h in zip(users, keep["full_held"])]
    candidates_relevant = keep["relevant"]
    rows, cols = np.nonzero(candidates_relevant)
    items_at = _candidate_items(keep, rows, cols)
    labels_at = lookup.reindex(users[rows] * n_items + items_at).to_numpy()
    scenarios: dict[str, dict[str, float]] = {}
    report: dict[str, Any] = {}
    personal_home = {k: v for k, v in home.items() if k != "query"}
    for name in sorted(set(lookup.unique())):
        if name == "similar":
            report[name] = "not fitted: 'similar' ranks items by items"
            continue
        counts = np.array([int(np.sum(lab == name)) for lab in held_labels])
        who = np.flatnonzero(counts > 0)
        if len(who) < MIN_SCENARIO_USERS:
            scenarios[name] = blend_for(name, personal_home)
            report[name] = {"users": int(len(who)), "fitted": False,
                            "why": f"fewer than {MIN_SCENARIO_USERS} validation users with its events"}
            continue
        relevant = np.zeros_like(candidates_relevant)
        hit = labels_at == name
        relevant[rows[hit], cols[hit]] = True
        signals = {k: v[who] for k, v in keep["signals"].items()}
        weights, ndcg = fit_weights(signals, relevant[who], counts[who], fixed=keep["fixed"])
        personal = {k: v for k, v in weights.items() if k != "query"}
        scenarios[name] = blend_for(name, personal)
        report[name] = {"users": int(len(who)), "fitted": True, "ndcg": float(ndcg),
                        "weights": dict(scenarios[name])}
    return Extras(scenarios, report, calibrate(scenarios.get("home", home)))


def _candidate_items(keep: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Item rows (the full model's) of (validation user, candidate column) pairs."""
    return np.asarray(keep["full_candidates"][rows, cols], dtype=np.int64)


__all__ = ["Extras", "MIN_SCENARIO_USERS", "blend_for", "fit_extras", "scenario_lookup"]
