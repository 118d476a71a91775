"""Validation of the towers' inputs: histories, timestamps, texts, requests, profiles."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmrec._checks import as_float_matrix


def _is_sequence(value: Any) -> bool:
    return (isinstance(value, (Sequence, np.ndarray))
            and not isinstance(value, (str, bytes)))


def as_histories(histories: Any, name: str, n_items: int) -> list[np.ndarray]:
    """A list of 1-D int64 arrays of item ids in [0, n_items), one per user."""
    if not _is_sequence(histories):
        raise TypeError(f"{name} must be a sequence of item-id arrays, one per user; got "
                        f"{type(histories).__name__}")
    out = []
    for u, h in enumerate(histories):
        if isinstance(h, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must be a sequence of item-id arrays, one per user, but "
                            f"{name}[{u}] is a single id; for one user pass [history]")
        a = np.asarray(h)
        if a.ndim != 1:
            raise ValueError(f"{name}[{u}] must be a 1-D array of item ids, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name}[{u}] must hold integer item ids, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.int64)
        if a.size:
            low, high = int(a.min()), int(a.max())
            if low < 0 or high >= n_items:
                bad = low if low < 0 else high
                raise ValueError(f"{name}[{u}] holds item id {bad}, outside [0, {n_items}): "
                                 "unknown item (add new items with add_items first)")
        out.append(a)
    return out


def as_timestamps(timestamps: Any, histories: list[np.ndarray], name: str) -> list[np.ndarray] | None:
    """One finite real array per history, of the same length, or None."""
    if timestamps is None:
        return None
    if not _is_sequence(timestamps):
        raise TypeError(f"{name} must be a sequence of arrays parallel to histories, got "
                        f"{type(timestamps).__name__}")
    if len(timestamps) != len(histories):
        raise ValueError(f"{name} must hold one array per history ({len(histories)}), "
                         f"got {len(timestamps)}")
    out = []
    for u, (t, h) in enumerate(zip(timestamps, histories)):
        a = np.asarray(t)
        if a.shape != h.shape:
            raise ValueError(f"{name}[{u}] must have the shape of histories[{u}] {h.shape}, "
                             f"got {a.shape}")
        if a.size and (a.dtype == object or not (np.issubdtype(a.dtype, np.number)
                                                 or np.issubdtype(a.dtype, np.datetime64))):
            raise TypeError(f"{name}[{u}] must hold numbers, got dtype {a.dtype}")
        a = a.astype(np.float64) if not np.issubdtype(a.dtype, np.datetime64) else \
            a.astype("datetime64[s]").astype(np.float64)
        if a.size and not np.isfinite(a).all():
            raise ValueError(f"{name}[{u}] contains NaN or infinite values")
        out.append(a)
    return out


def as_texts(texts: Any, name: str) -> list[str]:
    """A list of str; None, NaN or non-str entries are an error naming their index."""
    if not _is_sequence(texts) and not hasattr(texts, "tolist"):
        raise TypeError(f"{name} must be a sequence of str, got {type(texts).__name__}")
    texts = list(texts.tolist() if hasattr(texts, "tolist") else texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"{name}[{i}] is {t!r}, not a str: every item needs a text "
                             "(use '' for an item without one)")
    return texts


def as_requests(requests: Any, n: int, name: str = "requests") -> tuple[list[int], list[str]]:
    """(rows with a text, their texts) from None, one str for all, or n str-or-None
    (requests, profiles)."""
    if requests is None:
        return [], []
    if isinstance(requests, str):
        return list(range(n)), [requests] * n
    if not _is_sequence(requests):
        raise TypeError(f"{name} must be None, a str or a sequence of str or None (one per "
                        f"history), got {type(requests).__name__}")
    if len(requests) != n:
        raise ValueError(f"{name} must hold one entry per history ({n}), got {len(requests)}")
    rows, texts = [], []
    for i, r in enumerate(requests):
        if r is None:
            continue
        if not isinstance(r, str):
            raise TypeError(f"{name}[{i}] must be a str or None, got {type(r).__name__}")
        rows.append(i)
        texts.append(r)
    return rows, texts


def profile_matrix(profiles: Any, profile_vectors: Any, n: int, text_dim: int,
                   encode: Any) -> np.ndarray:
    """Profile text vectors, float32 (n, text_dim): ``profile_vectors`` checked, or the
    ``profiles`` texts through ``encode`` (a callable list[str] → array); users without
    a profile (None or a blank text) get a zero row."""
    if profile_vectors is not None:
        if profiles is not None:
            raise ValueError("give profiles or profile_vectors, not both")
        return as_text_vectors(profile_vectors, "profile_vectors", dim=text_dim, rows=n)
    rows, texts = as_requests(profiles, n, "profiles")
    kept = [(r, t) for r, t in zip(rows, texts) if t.strip()]
    P = np.zeros((n, text_dim), dtype=np.float32)
    if kept:
        P[[r for r, _ in kept]] = encode([t for _, t in kept])
    return P


def as_text_vectors(values: Any, name: str, *, dim: int | None, rows: int | None = None
                    ) -> np.ndarray:
    """A finite float32 (n, dim) matrix with ``rows`` rows when given."""
    array = as_float_matrix(values, name, dim=dim, allow_empty=True)
    if rows is not None and array.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows, got shape {array.shape}")
    return array
