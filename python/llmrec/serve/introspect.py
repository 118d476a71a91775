"""What the server shows about a Recommender beyond its public methods: catalogue and
user counts, the kind of ids, item labels. Read from the model's current published
snapshot (the one place here that looks inside a Recommender)."""

from __future__ import annotations

from typing import Any

import numpy as np


def sizes(model: Any) -> tuple[int, int]:
    """(items, users) of the model as of now."""
    snap = model._publisher.current
    return int(snap.n_items), int(snap.n_users)


def id_kinds(model: Any) -> tuple[str, str]:
    """("int" or "str", same) for user and item ids ("empty" for a map with no ids)."""
    return model._user_map.kind, model._item_map.kind


def labels(model: Any, item_ids: list[Any]) -> list[str] | None:
    """Each item's label (its title, else its text, as given at fit or add_items), or
    None when the model keeps none; items without one get ""."""
    snap = model._publisher.current
    if snap.labels is None or not item_ids:
        return None if snap.labels is None else []
    rows = model._item_map.rows(list(item_ids), "item_ids")
    known = snap.labels
    return [str(known[r]) if r < len(known) else "" for r in rows.tolist()]


def plain(value: Any) -> Any:
    """JSON-ready Python values for numpy scalars and arrays (non-finite floats: None)."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


__all__ = ["id_kinds", "labels", "plain", "sizes"]
