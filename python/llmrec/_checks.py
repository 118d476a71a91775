"""Input validation and conversion shared by the public API.

Every public entry point funnels its arrays through these helpers, so that a bad input
raises a ``TypeError`` or ``ValueError`` naming the argument and what was expected, and
a good one reaches the native core as a C-contiguous array of the right dtype with at
most one conversion (none when it already is one).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec import _core


# The largest value an integer argument that reaches numpy as an int64 may take.
INT64_MAX = 2**63 - 1


def plain(value: Any) -> Any:
    """``value`` as it should read in a message: numpy scalars become Python ones (7001,
    not ``np.int64(7001)``; 'a', not ``np.str_('a')``), numpy arrays become lists, and
    lists and tuples are converted element by element. Anything else is returned as is."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def check_int(value: Any, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int, requiring an integer (not bool) >= ``minimum`` and,
    when given, <= ``maximum``."""
    if type(value) is int and value >= minimum and (maximum is None or value <= maximum):
        return value  # the fast path: a plain int needs no ABC checks (microseconds a call)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def check_real(value: Any, name: str, *, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float, requiring a finite real number (not bool) in the
    interval from ``low`` to ``high``, each finite end closed unless ``low_open``/``high_open``.

    TypeError for anything but a real number, ValueError for NaN, inf or a value outside
    the interval; the message names ``name`` and the interval.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):  # NaN fails every comparison
        raise ValueError(f"{name} must be {_interval(low, high, low_open, high_open)}, got {value:g}")
    return value


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    # "in [0, 1]" where both ends are finite, "finite and >= 0" where one is.
    if math.isfinite(low) and math.isfinite(high):
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    bounds = ([f"{'>' if low_open else '>='} {low:g}"] if math.isfinite(low) else []) + \
             ([f"{'<' if high_open else '<='} {high:g}"] if math.isfinite(high) else [])
    return " and ".join(["finite", *bounds])


def as_generator(random_state: Any) -> np.random.Generator:
    """``random_state`` (None, an int or a ``numpy.random.Generator``) as a Generator;
    a Generator is returned as is (its state is shared), anything else is a TypeError."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, numbers.Integral)
                                and not isinstance(random_state, (bool, np.bool_))):
        return np.random.default_rng(None if random_state is None else int(random_state))
    raise TypeError("random_state must be None, an int or a numpy.random.Generator, "
                    f"got {type(random_state).__name__}")


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Require ``value`` to be one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {plain(value)!r}")
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
    """A dense, C-contiguous, aligned float32 copy/view of real numbers (TypeError otherwise)."""
    if sp.issparse(values):
        raise TypeError(f"{name} must be a dense array, got a scipy sparse matrix")
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                     or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers (float32 preferred), got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    # A float32 view at an odd address (a byte buffer's slice) is C-contiguous but not
    # aligned: the native kernels read aligned floats, so such an array is copied once.
    return array if array.flags.aligned else array.copy()


def as_id_array(values: Any, name: str, *, what: str = "ids", allow_scalar: bool = False) -> np.ndarray:
    """``values`` as a C-contiguous 1-D int64 array of ids, not range-checked: a 1-D
    integer sequence (with ``allow_scalar``, one id too); an empty one of any dtype gives
    no ids. ValueError for another shape or a uint64 id beyond int64, TypeError for a
    dtype that is not an integer one (bool included); ``what`` names the ids."""
    array = np.asarray(values)
    if allow_scalar:
        array = np.atleast_1d(array)
    if array.ndim != 1:
        one = "an id or " if allow_scalar else ""
        raise ValueError(f"{name} must be {one}a 1-D sequence of {what}, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer {what}, got dtype {array.dtype}")
    if array.dtype == np.uint64 and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds id {int(array.max())}, beyond int64")
    return np.ascontiguousarray(array, dtype=np.int64)


def as_ids(values: Any, name: str, n: int) -> np.ndarray:
    """Convert ``values`` to a 1-D int64 array of ids in [0, n)."""
    array = as_id_array(values, name, what="item ids")
    check_id_range(array, name, n)
    return array


def check_id_range(array: np.ndarray, name: str, n: int, *, padded: bool = False,
                   what: str = "item id") -> None:
    """Require every entry of an integer array to be in [0, n) — or -1, an empty slot,
    with ``padded`` (ValueError naming ``name`` and the first bad extreme otherwise)."""
    if array.size:
        lowest = -1 if padded else 0
        low, high = int(array.min()), int(array.max())
        if low < lowest or high >= n:
            bad = low if low < lowest else high
            raise ValueError(f"{name} holds {what} {bad}, outside [0, {n})"
                             + (" (-1 marks an empty slot)" if padded else ""))


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
        check_sparse_structure(exclude, "exclude")
        csr = sp.csr_matrix(exclude)
        csr.eliminate_zeros()
        if not csr.has_sorted_indices:
            csr = csr.sorted_indices()
        return csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
    rows = [sorted_unique(as_ids(row, f"exclude[{i}]", n))
            for i, row in enumerate(exclude_lists(exclude, nq, single_query=single_query))]
    indptr = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return indptr, ids.astype(np.int64, copy=False)


def exclude_lists(exclude: Any, nq: int, *, single_query: bool) -> Sequence[Any]:
    """``exclude`` given as id arrays: one per query (for a single 1-D query also one id
    array), checked for type and count; the ids themselves are the caller's to check."""
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, (Sequence, np.ndarray)):
        raise TypeError("exclude must be a scipy sparse matrix (n_queries, n_items) or a "
                        f"sequence of id arrays, one per query; got {type(exclude).__name__}")
    if single_query and np.asarray(exclude, dtype=object).ndim == 1 and all(
            isinstance(x, numbers.Integral) for x in exclude):
        exclude = [exclude]
    if len(exclude) != nq:
        raise ValueError(f"exclude must hold one id array per query ({nq}), got {len(exclude)}")
    return exclude


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


# Thread counts are capped so that no product of a thread count (task grids, scratch per
# thread) can wrap: 1024 is far above the core count of any machine this library
# targets, and the native core applies the same cap (llmrec::kMaxThreads) to direct calls.
MAX_THREADS: int = _core.MAX_THREADS


def check_threads(value: Any, name: str = "num_threads") -> int:
    """Return ``value`` as a thread count: 0 (all cores) to ``MAX_THREADS``."""
    value = check_int(value, name, minimum=0)
    if value > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS} (0 means all cores), got {value}")
    return value


def check_sparse_structure(matrix: Any, name: str) -> None:
    """Check the index arrays of a scipy sparse matrix before scipy or the core reads them.

    scipy trusts them: a CSR column index >= n_cols or a decreasing ``indptr`` makes its
    own conversions read and write out of bounds. Compressed formats (CSR, CSC, BSR) need
    ``indptr`` of length n_major + 1, starting at 0, non-decreasing, ending at
    ``len(indices)``, and every index in [0, n_minor); COO needs its rows and columns in
    range. Raises ``ValueError`` naming ``name``.
    """
    fmt = matrix.format
    if fmt in ("csr", "csc", "bsr"):
        rows, cols = matrix.shape
        block_rows, block_cols = matrix.blocksize if fmt == "bsr" else (1, 1)
        n_major, n_minor = ((rows // block_rows, cols // block_cols) if fmt != "csc" else (cols, rows))
        indptr, indices = np.asarray(matrix.indptr), np.asarray(matrix.indices)
        if indptr.ndim != 1 or indptr.shape[0] != n_major + 1:
            raise ValueError(f"{name}: indptr must have {n_major + 1} entries, got shape {indptr.shape}")
        if indices.ndim != 1 or np.asarray(matrix.data).shape[0] != indices.shape[0]:
            raise ValueError(f"{name}: indices and data must be 1-D of the same length")
        if int(indptr[0]) != 0 or int(indptr[-1]) != indices.shape[0]:
            raise ValueError(f"{name}: indptr must start at 0 and end at len(indices) = {indices.shape[0]}, "
                             f"got {int(indptr[0])} .. {int(indptr[-1])}")
        if n_major and not (np.diff(indptr) >= 0).all():
            raise ValueError(f"{name}: indptr must be non-decreasing")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n_minor):
            bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
            raise ValueError(f"{name}: index {bad} out of range: indices must be in [0, {n_minor})")
    elif fmt == "coo":
        for axis, (coords, size) in enumerate(zip((matrix.row, matrix.col), matrix.shape)):
            coords = np.asarray(coords)
            if coords.size and (int(coords.min()) < 0 or int(coords.max()) >= size):
                raise ValueError(f"{name}: coordinate out of range: axis {axis} must be in [0, {size})")


# The largest L2 norm an item vector or query may have in the indexes: 2**63 (~9.2e18).
# Inner products of two such vectors, and every partial sum on the way, stay below
# 2**126, inside float32; larger norms could make a score inf or NaN (1e30 * 1e30 +
# (-1e30) * 1e30) and the item silently vanish from results. The native searches apply
# the same bound to queries (cosine queries are normalised first, so any finite one works).
MAX_VECTOR_NORM = 2.0**63


def check_vector_norms(array: np.ndarray, name: str) -> None:
    """Require every row of a finite float32 matrix to have L2 norm <= ``MAX_VECTOR_NORM``."""
    if array.size == 0:
        return
    largest = max(abs(float(array.min())), abs(float(array.max())))
    if largest * np.sqrt(array.shape[1]) <= MAX_VECTOR_NORM:
        return  # no row can exceed the bound: skip the exact norms
    for start in range(0, array.shape[0], 65536):  # float64 norms, in bounded chunks
        chunk = array[start:start + 65536].astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        if (norms > MAX_VECTOR_NORM).any():
            row = start + int(np.argmax(norms > MAX_VECTOR_NORM))
            raise ValueError(f"{name} row {row} has L2 norm {norms[row - start]:.3g}, above the "
                             f"largest supported 2**63 (~9.2e18): inner products of such vectors "
                             "overflow float32; scale the vectors down (or use metric='cosine')")


# Results are k columns wide, padded with -1/-inf where fewer items qualify; k may exceed
# the catalogue (a caller's fixed k on a small index) but not both it and this, so that a
# careless k (2**27 on 300 items: 1.5 GB of padding) cannot allocate without bound.
MAX_PADDED_K: int = _core.MAX_PADDED_K


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
