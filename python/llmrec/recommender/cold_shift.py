"""Where items without interactions stand against the others in a full ranking.

The cold signal (:mod:`.cold_kernel`) and its weight w are chosen by ranking new items
among themselves, which says nothing of how high they should sit among items that have
interactions: on MovieLens (``temporal_split(0.2)``, seed 0) the weight chosen with the
signal's learned part lifted new items above better ones, ndcg@10 0.2832 → 0.2728.

So the items that have a row of the signal get one more term in every blend, w·δ, with
δ chosen on the fit's own validation slice (:func:`.training.fit_blend`: the latest
interactions of each sampled user, the models refitted without them), where the items
without interactions are those the slice's models never saw: the blend the slice chose,
plus w times the cold signal and w·δ on those items, ranks the held-out interactions at
each δ of the grid and the best is kept (ties: the δ nearest 0). A constant on the new
items changes no ranking among them, so the cold-item ranking that chose w is untouched.
An item leaves the shift, and the signal, at its first click (:mod:`.cold_kernel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.recommender.cold_kernel import ColdKernel
from llmrec.recommender.fusion import HeldOut

# w·δ, in the blend's units (the behaviour signal at weight 1 moves by its spread per
# unit): 0 keeps the signal as fitted among new items; −4 puts them below nearly every
# item with interactions (MovieLens seed 0: −4 and −100 gave the same lists); > 0 where
# new items are taken more than the signal says (fresh news, say).
SHIFTS = (1.0, 0.5, 0.0, -0.25, -0.5, -1.0, -2.0, -4.0)


def fit_shift(kernel: ColdKernel, weight: float, weights: dict[str, float], keep: dict[str, Any],
              E: np.ndarray, texts: list[str] | None) -> tuple[float, dict[str, Any]]:
    """(δ, report): the shift of the items with a cold row, chosen on the validation data
    ``keep`` left by :func:`.training.fit_blend` (after :func:`.grid_sample.to_full`)
    under the blend ``weights`` it chose and the cold signal's ``weight``; ``E`` and
    ``texts``: every item's unit text vector and text in the full model's rows. δ = 0
    where the signal is off, the validation was skipped, or no new item was a candidate."""
    if weight <= 0 or not keep:
        return 0.0, {"cold_candidates": 0}
    candidates = keep["candidates"]
    safe = np.maximum(candidates, 0)
    is_cold = keep["cold"][safe] & (candidates >= 0)
    if not is_cold.any():
        return 0.0, {"cold_candidates": 0}
    full = keep["full_candidates"]
    rows = np.unique(full[is_cold])
    Z = kernel.rows(E[rows], None if texts is None else [texts[i] for i in rows])
    queries = kernel.queries(keep["full_hist"])
    users, _ = np.nonzero(is_cold)
    cold = np.einsum("nm,nm->n", queries[users], Z[np.searchsorted(rows, full[is_cold])], dtype=np.float64)
    base = sum(np.float64(weights.get(name, 0.0)) * np.asarray(signal, dtype=np.float64)
               for name, signal in keep["signals"].items())
    base[is_cold] += weight * cold
    held = HeldOut(keep["relevant"], keep["n_relevant"])
    values = {}
    for shift in SHIFTS:
        scores = base.copy()
        scores[is_cold] += shift
        values[shift] = held.ndcg(scores)
    best = max(SHIFTS, key=lambda shift: (values[shift], -abs(shift)))  # ties: nearest 0
    report = {"cold_candidates": int(len(rows)), "shift": best, "ndcg": round(values[best], 4),
              "ndcg_unshifted": round(values[0.0], 4)}
    return best / weight, report


__all__ = ["SHIFTS", "fit_shift"]
