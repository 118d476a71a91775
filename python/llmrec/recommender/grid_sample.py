"""A bounded sample for the validation grid, so that its cost does not grow with the
catalogue.

The grid (:func:`.training.fit_blend`) fits ALS and the next-item factors once per λ
and ranks candidates for up to 2,000 validation users. On all the data its cost grows
with the interactions and the items (at 1M items the four grid fits cost four times
the final fit). Above ``GRID_INTERACTIONS`` interactions it runs instead on a sample:
users drawn at random (``random_state``) until their histories hold
``GRID_INTERACTIONS`` interactions, and the sub-catalogue of the items those
histories touch. Every signal is standardised per user over the catalogue it is
scored on, so the weights and λ fitted on the sub-catalogue carry over to the full
one (the calibration too: its scores are on the same standardised scale). The final
fit uses everything.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from llmrec.recommender.history import Histories

GRID_INTERACTIONS = 400_000


class GridSample(NamedTuple):
    histories: Histories
    n_items: int
    E: np.ndarray | None
    profile: np.ndarray | None
    users: np.ndarray   # the sampled users' rows in the full model
    items: np.ndarray   # the sub-catalogue's item rows in the full model (sorted)

    def describe(self, n_users: int, n_items: int, interactions: int) -> str:
        return (f"sampled for the grid: {len(self.users):,} of {n_users:,} users (random), their "
                f"{interactions:,} interactions, {self.n_items:,} of {n_items:,} items "
                f"(at most {GRID_INTERACTIONS:,} interactions, whatever the catalogue)")


def sample_for_grid(histories: Histories, n_items: int, E: np.ndarray | None,
                    profile: np.ndarray | None, random_state: Any,
                    limit: int | None = None) -> tuple[GridSample | None, str]:
    """The sample (None when everything fits under ``limit``, default
    ``GRID_INTERACTIONS``) and a line saying so."""
    limit = GRID_INTERACTIONS if limit is None else limit
    n_users = len(histories)
    lengths = np.array([len(histories.get(u)) for u in range(n_users)], dtype=np.int64)
    total = int(lengths.sum())
    if total <= limit:
        return None, f"all {n_users:,} users and {n_items:,} items ({total:,} interactions)"
    rng = np.random.default_rng(None if random_state is None else [int(random_state), 11])
    order = rng.permutation(n_users)
    take = int(np.searchsorted(np.cumsum(lengths[order]), limit)) + 1
    users = np.sort(order[:take])
    rows = [histories.get(u) for u in users]
    items = np.unique(np.concatenate(rows))
    local = [np.searchsorted(items, h) for h in rows]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum([len(h) for h in local], out=indptr[1:])
    sub = Histories(indptr, np.concatenate(local).astype(np.int64))
    sample = GridSample(sub, len(items), None if E is None else np.ascontiguousarray(E[items]),
                        None if profile is None else profile[users], users, items)
    return sample, sample.describe(n_users, n_items, int(indptr[-1]))


def to_full(keep: dict[str, Any], sample: GridSample | None, n_items: int) -> None:
    """Add the validation data's ids in the full model's rows to ``keep`` (for the
    per-scenario weights and the cold items' shift): "full_users", "full_hist", "full_held",
    "full_candidates", "full_n_items"."""
    if not keep:
        return
    if sample is None:
        keep.update(full_users=keep["users"], full_hist=keep["hist"], full_held=keep["held"],
                    full_candidates=keep["candidates"], full_n_items=n_items)
        return
    candidates = keep["candidates"]
    keep.update(full_users=sample.users[keep["users"]],
                full_hist=[sample.items[h] for h in keep["hist"]],
                full_held=[sample.items[h] for h in keep["held"]],
                full_candidates=np.where(candidates >= 0, sample.items[np.maximum(candidates, 0)], -1),
                full_n_items=n_items)


__all__ = ["GRID_INTERACTIONS", "GridSample", "sample_for_grid", "to_full"]
