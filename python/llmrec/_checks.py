"""Input validation and conversion shared by the public API.

Every public entry point funnels its arrays through these helpers, so that a bad input
raises a ``TypeError`` or ``ValueError`` naming the argument and what was expected, and
a good one reaches the native core as a C-contiguous array of the right dtype with at
most one conversion (none when it already is one).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp


def check_int(value: Any, name: str, *, minimum: int) -> int:
    """Return ``value`` as an int, requiring an integer (not bool) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Require ``value`` to be one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _require_finite(array: np.ndarray, name: str) -> None:
    # min/max propagate NaN and expose +-inf without allocating a mask of the input.
    if array.size and not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise ValueError(f"{name} contains NaN or infinite values")


def as_float_matrix(values: Any, name: str, *, dim: int | None = None,
                    allow_empty: bool = False) -> np.ndarray:
    """Convert ``values`` to a finite float32 C-contiguous (n, d) matrix.

    float32 C-contiguous input is returned as is (no copy). Raises ``TypeError`` for
    non-numeric data and ``ValueError`` for a wrong shape, a dimension other than
    ``dim``, no rows (unless ``allow_empty``) or NaN/inf.
    """
    array = as_float32(values, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, d), got shape {array.shape}")
    return _checked_matrix(array, name, dim, allow_empty)


def as_queries(values: Any, name: str, dim: int) -> tuple[np.ndarray, bool]:
    """Convert one query (d,) or many (nq, d) to a float32 (nq, d) matrix.

    Returns the matrix and whether the input was a single 1-D query.
    """
    array = as_float32(values, name)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape ({dim},) or (nq, {dim}), got shape {array.shape}")
    single = array.ndim == 1
    return _checked_matrix(array[None, :] if single else array, name, dim, False), single


def _checked_matrix(array: np.ndarray, name: str, dim: int | None, allow_empty: bool) -> np.ndarray:
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} must have dimension {dim}, got shape {array.shape}")
    if array.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: expected at least one row")
    _require_finite(array, name)
    return array


def as_float32(values: Any, name: str) -> np.ndarray:
    """A dense, C-contiguous float32 copy/view of real numbers (TypeError otherwise)."""
    if sp.issparse(values):
        raise TypeError(f"{name} must be a dense array, got a scipy sparse matrix")
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                     or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers (float32 preferred), got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def as_ids(values: Any, name: str, n: int) -> np.ndarray:
    """Convert ``values`` to a 1-D int64 array of ids in [0, n)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of item ids, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer item ids, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.int64)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= n:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds item id {bad}, outside [0, {n})")
    return array


def exclude_to_csr(exclude: Any, nq: int, n: int, *, single_query: bool
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Convert ``exclude`` to (indptr, ids) int64 arrays, ids sorted within each query.

    Accepts a scipy sparse matrix of shape (nq, n) whose non-zero entries mark excluded
    items, or a sequence of nq id arrays; for a single 1-D query also one id array.
    """
    if exclude is None:
        return None
    if sp.issparse(exclude):
        if exclude.shape != (nq, n):
            raise ValueError(f"exclude must have shape (n_queries, n_items) = ({nq}, {n}), "
                             f"got {exclude.shape}")
        csr = sp.csr_matrix(exclude)
        csr.eliminate_zeros()
        if not csr.has_sorted_indices:
            csr = csr.sorted_indices()
        return csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, (Sequence, np.ndarray)):
        raise TypeError("exclude must be a scipy sparse matrix (n_queries, n_items) or a "
                        f"sequence of id arrays, one per query; got {type(exclude).__name__}")
    if single_query and np.asarray(exclude, dtype=object).ndim == 1 and all(
            isinstance(x, numbers.Integral) for x in exclude):
        exclude = [exclude]
    if len(exclude) != nq:
        raise ValueError(f"exclude must hold one id array per query ({nq}), got {len(exclude)}")
    rows = [sorted_unique(as_ids(row, f"exclude[{i}]", n)) for i, row in enumerate(exclude)]
    indptr = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return indptr, ids.astype(np.int64, copy=False)


def sorted_unique(ids: np.ndarray) -> np.ndarray:
    """Sorted distinct ids; a plain sort and neighbour test, much cheaper than np.unique
    on large id arrays (and free when they are already sorted and distinct)."""
    if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
        ids = np.sort(ids)
        keep = np.empty(ids.size, dtype=bool)
        keep[0] = True
        np.not_equal(ids[1:], ids[:-1], out=keep[1:])
        ids = ids[keep]
    return ids


def allow_to_native(allow: Any, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Convert ``allow`` to (mask uint8 of length n, None) or (None, sorted unique ids)."""
    if allow is None:
        return None, None
    if sp.issparse(allow):
        raise TypeError("allow must be a boolean mask or an array of item ids, not a sparse matrix")
    array = np.asarray(allow)
    if array.dtype == np.bool_:
        if array.shape != (n,):
            raise ValueError(f"allow as a boolean mask must have shape ({n},), got {array.shape}")
        return np.ascontiguousarray(array).view(np.uint8), None
    ids = sorted_unique(as_ids(array, "allow", n))
    if ids.size * 8 > n:  # dense lists scan faster as a mask than as gathered rows
        mask = np.zeros(n, dtype=np.uint8)
        mask[ids] = 1
        return mask, None
    return None, ids


# Results are k columns wide, padded with -1/-inf where fewer items qualify; k may exceed
# the catalogue (a caller's fixed k on a small index) but not both it and this, so that a
# careless k (2**27 on 300 items: 1.5 GB of padding) cannot allocate without bound.
MAX_PADDED_K = 1024


def check_k(k: Any, n_items: int, name: str = "k") -> int:
    """``k`` as an int in [1, max(n_items, MAX_PADDED_K)] (TypeError/ValueError otherwise).

    The result width stays exactly k (the Results convention); the ceiling only refuses
    a k that is larger than the catalogue and than 1024, which could return nothing but
    padding beyond ``n_items`` columns.
    """
    if type(k) is not int:  # the fast path: a plain int needs no ABC checks
        k = check_int(k, name, minimum=1)
    elif k < 1:
        raise ValueError(f"{name} must be >= 1, got {k}")
    limit = max(n_items, MAX_PADDED_K)
    if k > limit:
        raise ValueError(f"{name} must be at most max(n_items, {MAX_PADDED_K}) = {limit} (the "
                         f"catalogue holds {n_items} items; beyond that a result is padding "
                         f"only), got {k}")
    return k
