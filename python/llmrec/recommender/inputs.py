"""Checking and converting the Recommender's DataFrame inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from llmrec._checks import plain
from llmrec.text.templates import DEFAULT_ITEM_TEMPLATE, item_text


def interactions_frame(interactions: Any) -> pd.DataFrame:
    """Require a non-empty DataFrame with ``user_id`` and ``item_id`` (and valid extras)."""
    if not isinstance(interactions, pd.DataFrame):
        raise TypeError("interactions must be a pandas DataFrame with user_id and item_id "
                        f"columns, got {type(interactions).__name__}")
    missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lacks column(s) {missing}; it has {list(interactions.columns)}")
    if len(interactions) == 0:
        raise ValueError("interactions is empty: nothing to learn from")
    for column in ("user_id", "item_id"):
        if interactions[column].isna().any():
            raise ValueError(f"interactions.{column} contains missing values")
    if "timestamp" in interactions.columns:
        ts = interactions["timestamp"]
        if not (pd.api.types.is_numeric_dtype(ts) or pd.api.types.is_datetime64_any_dtype(ts)):
            raise TypeError(f"interactions.timestamp must be numeric or datetime, got {ts.dtype}")
        if ts.isna().any():
            raise ValueError("interactions.timestamp contains missing values")
    for column in ("rating", "weight"):
        if column in interactions.columns:
            values = interactions[column]
            if not pd.api.types.is_numeric_dtype(values) or not np.isfinite(
                    values.to_numpy(dtype=np.float64)).all():
                raise ValueError(f"interactions.{column} must hold finite numbers")
    return interactions


def event_order(frame: pd.DataFrame) -> np.ndarray:
    """A sortable time key per row: the timestamp, or the row order when there is none."""
    if "timestamp" in frame.columns:
        ts = frame["timestamp"]
        if pd.api.types.is_datetime64_any_dtype(ts):
            return ts.to_numpy().astype("datetime64[ns]").astype(np.int64)
        return ts.to_numpy(dtype=np.float64)
    return np.arange(len(frame), dtype=np.float64)


def item_texts(items: Any, name: str = "items") -> tuple[np.ndarray, list[str]]:
    """(item ids, texts) from a frame with ``item_id`` and ``text`` (or the fields of
    :data:`llmrec.text.templates.DEFAULT_ITEM_TEMPLATE`). Duplicate ids, missing or
    empty texts raise ValueError naming the item."""
    if not isinstance(items, pd.DataFrame):
        try:
            items = pd.DataFrame(items)
        except Exception as error:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(f"{name} must be a DataFrame with item_id and text columns, got "
                            f"{type(items).__name__}") from error
    if "item_id" not in items.columns:
        raise ValueError(f"{name} lacks an item_id column; it has {list(items.columns)}")
    if len(items) == 0:
        raise ValueError(f"{name} is empty")
    ids = items["item_id"].to_numpy()
    duplicated = pd.Index(ids).duplicated()
    if duplicated.any():
        raise ValueError(f"{name} has duplicate item id {plain(ids[np.flatnonzero(duplicated)[0]])!r}")
    if "text" in items.columns:
        texts = items["text"].tolist()
    else:
        try:
            texts = item_text(items, DEFAULT_ITEM_TEMPLATE)
        except KeyError as error:
            raise ValueError(f"{name} has no text column and cannot be written as text: "
                             f"{error.args[0]}") from None
    for item, text in zip(ids, texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name}: item {plain(item)!r} has no text (got {plain(text)!r})")
    return ids, [str(t) for t in texts]


def user_texts(users: Any) -> tuple[np.ndarray, list[str]] | None:
    """(user ids, texts) of a ``users`` frame with a ``text`` column, or None without one."""
    if users is None:
        return None
    if not isinstance(users, pd.DataFrame):
        raise TypeError(f"users must be a DataFrame with user_id (and text), got {type(users).__name__}")
    if "user_id" not in users.columns:
        raise ValueError(f"users lacks a user_id column; it has {list(users.columns)}")
    if pd.Index(users["user_id"]).duplicated().any():
        raise ValueError("users has duplicate user ids")
    if "text" not in users.columns:
        return None
    texts = users["text"].fillna("").astype(str).tolist()
    return users["user_id"].to_numpy(), texts
