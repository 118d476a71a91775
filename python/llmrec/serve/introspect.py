"""What the server shows about a Recommender beyond its public methods: catalogue and
user counts, the kind of ids. Read from the model's current published
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


def plain(value: Any) -> Any:
    """JSON-ready Python values for numpy scalars and arrays (non-finite floats: None)."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


__all__ = ["id_kinds", "plain", "sizes"]
