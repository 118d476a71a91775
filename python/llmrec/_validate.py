"""Structural checks of what a loader read from a file: a file is untrusted input.

A checksum only proves that a file is what its writer wrote, and an attacker can write
checksums too. Before any array read from a file reaches the native core (which indexes
memory with it) or scipy, the loaders check its structure with these helpers: dtypes
and shapes against the metadata, CSR layouts, id ranges, list ranges, finite values.
Every failure raises :class:`llmrec.FormatError` (a ``ValueError``) that names the file,
the array and what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import numpy as np

from llmrec._checks import plain
from llmrec.exceptions import FormatError

_ANY = object()  # marks an optional metadata value that may be absent


def fail(where: Any, message: str) -> FormatError:
    """The error to raise for file ``where``: ``raise fail(path, "...")``."""
    return FormatError(f"{where}: {message}")


# ----------------------------------------------------------------------------- arrays

@overload
def array(arrays: Mapping[str, np.ndarray], name: str, where: Any, *, dtype: Any,
          shape: Sequence[int | None] | None = None, ndim: int | None = None,
          required: Literal[True] = True, finite: bool = False) -> np.ndarray: ...


@overload
def array(arrays: Mapping[str, np.ndarray], name: str, where: Any, *, dtype: Any,
          shape: Sequence[int | None] | None = None, ndim: int | None = None,
          required: bool, finite: bool = False) -> np.ndarray | None: ...


def array(arrays: Mapping[str, np.ndarray], name: str, where: Any, *, dtype: Any,
          shape: Sequence[int | None] | None = None, ndim: int | None = None,
          required: bool = True, finite: bool = False) -> np.ndarray | None:
    """``arrays[name]`` checked: dtype exactly ``dtype`` (a string kind such as "U" accepts
    any unicode width; None any dtype), ``shape`` (None entries match any length) or ``ndim``, and, with
    ``finite``, no NaN or inf. Returns None when absent and not ``required``."""
    a = arrays.get(name)
    if a is None:
        if required:
            raise fail(where, f"array {name!r} is missing")
        return None
    kind_only = isinstance(dtype, str) and len(dtype) == 1
    if dtype is not None and ((a.dtype.kind != dtype) if kind_only else (a.dtype != np.dtype(dtype))):
        expected = {"U": "unicode strings"}.get(dtype, dtype) if kind_only else np.dtype(dtype)
        raise fail(where, f"array {name!r} has dtype {a.dtype}, expected {expected}")
    if ndim is None and shape is not None:
        ndim = len(shape)
    if ndim is not None and a.ndim != ndim:
        raise fail(where, f"array {name!r} has shape {a.shape}, expected {ndim} dimensions")
    if shape is not None and any(want is not None and got != want for got, want in zip(a.shape, shape)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise fail(where, f"array {name!r} has shape {a.shape}, expected {expected}")
    if finite:
        check_finite(where, name, a)
    return a


def check_finite(where: Any, name: str, a: np.ndarray) -> None:
    """No NaN or inf in a float array (min/max: no mask of the array is allocated)."""
    if a.size and a.dtype.kind == "f" and not (np.isfinite(a.min()) and np.isfinite(a.max())):
        raise fail(where, f"array {name!r} holds NaN or infinite values")


def check_range(where: Any, name: str, a: np.ndarray, low: int, high: int) -> None:
    """Every value of the integer array ``a`` lies in [low, high)."""
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < low or hi >= high:
            bad = lo if lo < low else hi
            raise fail(where, f"array {name!r} holds {bad}, outside [{low}, {high})")


def check_unique(where: Any, name: str, a: np.ndarray) -> None:
    """No value of ``a`` repeats."""
    if a.size > 1:
        s = np.sort(a, kind="stable")
        if (s[1:] == s[:-1]).any():
            raise fail(where, f"array {name!r} holds a repeated value {plain(s[1:][s[1:] == s[:-1]][0])!r}")


def check_csr(where: Any, name: str, indptr: np.ndarray, indices: np.ndarray,
              n_rows: int, n_cols: int) -> None:
    """A CSR layout that indexes memory safely: ``indptr`` of n_rows + 1 entries starting at
    0, non-decreasing, ending at len(indices); every column index in [0, n_cols)."""
    if indptr.ndim != 1 or indptr.shape[0] != n_rows + 1:
        raise fail(where, f"{name} row pointer has shape {indptr.shape}, expected ({n_rows + 1},)")
    if indices.ndim != 1:
        raise fail(where, f"{name} indices have shape {indices.shape}, expected 1-D")
    if int(indptr[0]) != 0 or int(indptr[-1]) != indices.shape[0]:
        raise fail(where, f"{name} row pointer runs from {int(indptr[0])} to {int(indptr[-1])}, "
                          f"expected 0 to {indices.shape[0]} (the number of entries)")
    if n_rows and (np.diff(indptr) < 0).any():
        raise fail(where, f"{name} row pointer decreases")
    if indices.size:
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= n_cols:
            raise fail(where, f"{name} column index {low if low < 0 else high} lies outside "
                              f"[0, {n_cols})")


def check_list_ranges(where: Any, starts: np.ndarray, sizes: np.ndarray, slots: int,
                      block: int) -> np.ndarray:
    """Inverted-list ranges that a scan may follow: list i holds slots [starts[i],
    starts[i] + sizes[i]) and is scanned in whole blocks of ``block`` slots from a
    block-aligned start; those blocks lie within ``slots`` and no two lists' blocks
    overlap. Returns the slots inside the lists, list by list (the occupied slots)."""
    if (starts < 0).any() or (sizes < 0).any():
        raise fail(where, "inverted lists have a negative start or size")
    if (starts % block).any():
        raise fail(where, f"inverted lists must start on a multiple of {block} slots")
    if (starts > slots).any() or (sizes > slots).any():  # first: start + size could wrap int64
        raise fail(where, f"inverted lists run past the {slots} slots")
    room = -(-sizes // block) * block
    order = np.argsort(starts, kind="stable")
    ends = starts[order] + room[order]
    if len(ends) and int(ends[-1]) > slots or (ends[:-1] > starts[order][1:]).any():
        raise fail(where, f"inverted lists overlap or run past the {slots} slots")
    total = int(sizes.sum())
    first = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
    return first + np.arange(total, dtype=np.int64)


# --------------------------------------------------------------------------- metadata

def meta_value(meta: Mapping[str, Any], key: str, where: Any, *, types: type | tuple[type, ...],
               default: Any = _ANY) -> Any:
    """``meta[key]`` of one of ``types`` (bool is never an int here); ``default`` when
    absent if given."""
    if not isinstance(meta, Mapping):
        raise fail(where, f"metadata must be a JSON object, got {type(meta).__name__}")
    if key not in meta:
        if default is _ANY:
            raise fail(where, f"metadata field {key!r} is missing")
        return default
    value = meta[key]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise fail(where, f"metadata field {key!r} must be {_names(types)}, got a bool")
    if not isinstance(value, types):
        raise fail(where, f"metadata field {key!r} must be {_names(types)}, got {type(value).__name__}")
    return value


@overload
def meta_int(meta: Mapping[str, Any], key: str, where: Any, *, minimum: int,
             maximum: int = 2**48, optional: Literal[False] = False) -> int: ...


@overload
def meta_int(meta: Mapping[str, Any], key: str, where: Any, *, minimum: int,
             maximum: int = 2**48, optional: bool) -> int | None: ...


def meta_int(meta: Mapping[str, Any], key: str, where: Any, *, minimum: int,
             maximum: int = 2**48, optional: bool = False) -> int | None:
    """An integer field in [minimum, maximum]; with ``optional``, None when absent or null."""
    value = meta_value(meta, key, where, types=(int, type(None)) if optional else int,
                       default=None if optional else _ANY)
    if value is None:
        return None
    if not minimum <= value <= maximum:
        raise fail(where, f"metadata field {key!r} must be in [{minimum}, {maximum}], got {value}")
    return value


def meta_real(meta: Mapping[str, Any], key: str, where: Any, *, minimum: float = -math.inf,
              maximum: float = math.inf) -> float:
    """A finite real field in [minimum, maximum]."""
    value = meta_value(meta, key, where, types=(int, float))
    if not (math.isfinite(value) and minimum <= value <= maximum):
        raise fail(where, f"metadata field {key!r} must be finite and in [{minimum}, {maximum}], "
                          f"got {value}")
    return float(value)


def meta_choice(meta: Mapping[str, Any], key: str, where: Any, choices: Sequence[str]) -> str:
    """A string field that is one of ``choices``."""
    value = meta_value(meta, key, where, types=str)
    if value not in choices:
        raise fail(where, f"metadata field {key!r} must be one of {list(choices)}, got {value!r}")
    return value


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string",
                        "bool": "a bool", "dict": "an object", "list": "a list",
                        "NoneType": "null"}.get(t.__name__, t.__name__) for t in types)


__all__ = ["array", "check_csr", "check_finite", "check_list_ranges", "check_range", "check_unique",
           "fail", "is_int", "meta_choice", "meta_int", "meta_real", "meta_value"]
