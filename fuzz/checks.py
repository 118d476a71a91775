"""Cheap checks for silent garbage in results, and the outcome classification."""

from __future__ import annotations

import numpy as np


class Garbage(AssertionError):
    """A call returned, but what it returned breaks the documented contract."""


def allowed_exception(exc: BaseException, *, files: bool = False) -> bool:
    """The exception types a hostile input may raise (see fuzz/README.md)."""
    from llmrec.exceptions import UnknownIdError

    if isinstance(exc, (ValueError, TypeError, UnknownIdError)):  # FormatError, NotFittedError are ValueErrors
        return True
    if files and isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return True
    return False


def topk(ids, scores, *, n: int | None = None, k: int | None = None, finite_input: bool = False,
         sorted_scores: bool = True, where: str = "") -> None:
    """(ids, scores) follows the search contract: ids in [0, n) or -1 (padding at the end,
    score -inf), no duplicate id in a row, scores descending, no NaN for finite input."""
    ids = np.asarray(ids)
    scores = np.asarray(scores)
    if ids.shape != scores.shape:
        raise Garbage(f"{where}: ids shape {ids.shape} != scores shape {scores.shape}")
    if ids.dtype != np.int64:
        raise Garbage(f"{where}: ids dtype {ids.dtype}")
    if ids.ndim == 1:
        ids, scores = ids[None], scores[None]
    if k is not None and ids.shape[1] != k and (n is None or ids.shape[1] > k):
        raise Garbage(f"{where}: {ids.shape[1]} columns for k={k}")
    if n is not None and ((ids < -1) | (ids >= n)).any():
        bad = ids[(ids < -1) | (ids >= n)]
        raise Garbage(f"{where}: ids out of range [-1, {n}): {bad[:5].tolist()}")
    pad = ids == -1
    if (pad & ~np.isneginf(scores)).any():
        raise Garbage(f"{where}: padding id -1 with a score other than -inf")
    # padding only at the end of each row
    if (pad[:, :-1] & ~pad[:, 1:]).any():
        raise Garbage(f"{where}: a real id after padding")
    for row_ids in ids:
        real = row_ids[row_ids >= 0]
        if np.unique(real).size != real.size:
            raise Garbage(f"{where}: duplicate ids in a row: {row_ids.tolist()[:20]}")
    real_scores = np.where(pad, np.nan, scores)
    if finite_input and np.isnan(real_scores[~pad]).any():
        raise Garbage(f"{where}: NaN score for finite input")
    if sorted_scores:
        with np.errstate(invalid="ignore"):
            s = np.where(pad, -np.inf, scores).astype(np.float64)
            bad = s[:, 1:] > s[:, :-1]
        if bad.any():
            r = int(np.argwhere(bad)[0][0])
            raise Garbage(f"{where}: scores not descending: {scores[r].tolist()[:20]}")


def excluded_absent(ids, excluded_rows, where: str = "") -> None:
    """No returned id of row i is in excluded_rows[i]."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[None]
    for i, (row, ex) in enumerate(zip(ids, excluded_rows)):
        hit = np.intersect1d(row[row >= 0], np.asarray(ex, np.int64))
        if hit.size:
            raise Garbage(f"{where}: query {i} returned excluded ids {hit[:5].tolist()}")


def allowed_only(ids, allowed, where: str = "") -> None:
    ids = np.asarray(ids)
    real = ids[ids >= 0]
    bad = np.setdiff1d(real, np.asarray(allowed, np.int64))
    if bad.size:
        raise Garbage(f"{where}: returned ids outside allow: {bad[:5].tolist()}")


def finite(a, where: str = "") -> bool:
    try:
        return bool(np.isfinite(np.asarray(a, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return False
