"""Hostile input generation: one seeded generator per case, logging what it chose.

Every case is a pure function of (target, seed): the same pair regenerates the same
inputs, which is what makes a crash reproducible from two words.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

HOSTILE_INTS = [-1, 0, 1, 2, 3, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                2**53 + 1, 2**62, 2**63 - 1, 2**64 - 1, 2**64, -2**31, -2**63, -10**9, 10**9]
HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, 1e-45, -1e-45, 1e-40, 1e-38, 1e19, -1e19,
                  3e38, -3e38, 1e30, 65504.0, 65520.0, 0.0, -0.0, 1.0, -1.0, 2.0**31, 1e300]
SCALES = [1e-45, 1e-40, 1e-20, 1e-6, 1e6, 3e18, 1e19, 1e30, 3e38]
AVOID = set(filter(None, os.environ.get("LLMREC_FUZZ_AVOID", "").split(",")))
OTHER_DTYPES = [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64,
                np.uint64, np.int8, ">f4"]


class G:
    """A seeded source of choices, mostly valid with a chance of hostility per argument."""

    def __init__(self, seed: int, hostility: float | None = None) -> None:
        self.seed = seed
        self.r = np.random.default_rng(seed)
        # Per case: some cases stay valid throughout (to reach deep code), most are hostile.
        self.p = float(self.r.choice([0.0, 0.1, 0.3, 0.6])) if hostility is None else hostility
        self.log: list[str] = []

    # ------------------------------------------------------------- basics
    def note(self, text: str) -> None:
        self.log.append(text)

    def chance(self, p: float | None = None) -> bool:
        return bool(self.r.random() < (self.p if p is None else p))

    def choice(self, seq: Any) -> Any:
        return seq[int(self.r.integers(len(seq)))]

    def int_between(self, low: int, high: int) -> int:
        return int(self.r.integers(low, high + 1))

    def hostile_int(self) -> int:
        return self.choice(HOSTILE_INTS)

    def int_(self, valid: int, name: str) -> Any:
        """``valid`` or, with the case's hostility, a hostile integer (or non-integer)."""
        if not self.chance():
            return valid
        pick = self.r.random()
        if pick < 0.7:
            v: Any = self.hostile_int()
        elif pick < 0.8:
            v = valid + self.choice([-1, 1])
        elif pick < 0.9:
            v = self.choice([1.5, math.nan, "3", None, np.int64(max(min(valid, 2**63 - 1), -2**63)),
                             np.uint64(2**63), True, -0.0])
        else:
            v = valid * self.choice([2, 16, 1024])
        self.note(f"{name}={v!r}")
        return v

    def size(self, valid: int, name: str) -> Any:
        """Like int_, for sizes that define the work asked for (factors, iterations, rows):
        invalid values only, never huge valid ones (a huge model is a request, not a bug)."""
        if not self.chance():
            return valid
        v = self.choice([-1, 0, -2**63, 1.5, math.nan, "3", None, True])
        self.note(f"{name}={v!r}")
        return v

    def float_(self, valid: float, name: str) -> Any:
        if not self.chance():
            return valid
        v = self.choice(HOSTILE_FLOATS + ["x", None, np.float32(3e38)])
        self.note(f"{name}={v!r}")
        return v

    def threads(self, name: str = "num_threads") -> Any:
        return self.int_(self.choice([0, 1, 2, 3]), name)

    # ------------------------------------------------------------- arrays
    def values(self, shape: tuple[int, ...], name: str) -> np.ndarray:
        """float32 values, normal or hostile in magnitude/content."""
        kind = self.choice(["normal", "uniform", "clustered", "ones"])
        if kind == "normal":
            a = self.r.standard_normal(shape)
        elif kind == "uniform":
            a = self.r.random(shape)
        elif kind == "clustered":
            c = self.r.standard_normal((4,) + shape[1:]) * 5
            a = c[self.r.integers(0, 4, shape[0])] + 0.01 * self.r.standard_normal(shape) if shape[0] else \
                np.zeros(shape)
        else:
            a = np.ones(shape)
        a = a.astype(np.float32)
        if self.chance():
            a = self.poison_values(a, name)
        return a

    def poison_values(self, a: np.ndarray, name: str) -> np.ndarray:
        a = np.array(a, copy=True)
        what = self.choice(["scale", "scale", "nan", "inf", "zeros", "constant", "denormal", "fp16max"])
        if a.size == 0:
            return a
        if what == "scale":
            s = self.choice(SCALES)
            with np.errstate(all="ignore"):
                a = (a.astype(np.float64) * s).astype(a.dtype)
        elif what in ("nan", "inf"):
            flat = a.reshape(-1)
            idx = self.r.integers(0, flat.size, max(1, flat.size // self.choice([1, 10, 1000])))
            flat[idx] = np.nan if what == "nan" else self.choice([np.inf, -np.inf])
        elif what == "zeros":
            a[...] = 0
        elif what == "constant":
            a[...] = self.choice([1.0, -1.0, 1e19, 3e38, 1e-40])
        elif what == "denormal":
            a[...] = self.choice([1e-45, 1e-40, -1e-42])
        else:
            a[...] = self.choice([65504.0, 65520.0, -65536.0])
        self.note(f"{name}: values {what}")
        return a

    def layout(self, a: np.ndarray, name: str, *, allow_reshape: bool = True) -> Any:
        """The same data in a hostile layout/dtype/shape (or unchanged)."""
        if not self.chance():
            return a
        what = self.choice(["fortran", "strided", "readonly", "dtype", "list", "reshape1d", "reshape3d",
                            "empty", "dropcol", "addcol", "droprow", "transpose", "scalar", "none",
                            "byteswap", "nonaligned"])
        if what in AVOID:
            return a
        if not allow_reshape and what in ("reshape1d", "reshape3d", "dropcol", "addcol", "transpose"):
            what = "fortran"
        self.note(f"{name}: layout {what}")
        try:
            if what == "fortran":
                return np.asfortranarray(a)
            if what == "strided":
                big = np.repeat(a, 2, axis=-1) if a.ndim else a
                return big[..., ::2]
            if what == "readonly":
                b = np.array(a)
                b.flags.writeable = False
                return b
            if what == "dtype":
                dt = self.choice(OTHER_DTYPES)
                self.note(f"{name}: dtype {np.dtype(dt)}")
                with np.errstate(all="ignore"):
                    return a.astype(dt)
            if what == "list":
                return a.tolist()
            if what == "reshape1d":
                return a.reshape(-1)
            if what == "reshape3d":
                return a.reshape((1,) + a.shape)
            if what == "empty":
                return a[:0]
            if what == "dropcol" and a.ndim >= 2:
                return a[..., :-1]
            if what == "addcol" and a.ndim >= 2:
                return np.concatenate([a, a[..., :1]], axis=-1)
            if what == "droprow" and a.ndim >= 1:
                return a[:-1]
            if what == "transpose":
                return a.T
            if what == "scalar":
                return a.reshape(-1)[:1].reshape(()) if a.size else np.float32(1)
            if what == "none":
                return None
            if what == "byteswap":
                return a.astype(a.dtype.newbyteorder(">" if a.dtype.byteorder != ">" else "<"))
            if what == "nonaligned":
                raw = np.zeros(a.nbytes + 1, np.uint8)
                b = raw[1:].view(a.dtype).reshape(a.shape)
                b[...] = a
                return b
        except Exception:  # a layout that does not apply to this array: keep it
            return a
        return a

    def ids(self, n: int, count: int, name: str, *, sort: bool = True) -> np.ndarray:
        """``count`` ids in [0, n), maybe with hostile members or order."""
        ids = self.r.integers(0, max(n, 1), count).astype(np.int64) if n > 0 else np.zeros(count, np.int64)
        if sort:
            ids = np.unique(ids)
        if self.chance() and ids.size:
            what = self.choice(["oob", "neg", "huge", "unsorted", "dup", "minint"])
            self.note(f"{name}: ids {what}")
            ids = ids.copy()
            i = int(self.r.integers(ids.size))
            if what == "oob":
                ids[i] = n
            elif what == "neg":
                ids[i] = -1
            elif what == "huge":
                ids[i] = 2**62
            elif what == "minint":
                ids[i] = -2**63
            elif what == "unsorted":
                ids = ids[::-1].copy()
            else:
                ids = np.concatenate([ids, ids[:1]])
        return ids

    def mutate_array(self, a: np.ndarray, name: str) -> Any:
        """One hostile change to an existing array (values, ids, layout or shape)."""
        if not isinstance(a, np.ndarray):
            return a
        pick = self.r.random()
        if a.size and pick < 0.45:
            b = np.array(a, copy=True)
            flat = b.reshape(-1)
            i = int(self.r.integers(flat.size))
            if b.dtype.kind == "f":
                return self.poison_values(b, name)
            if b.dtype.kind in "iu":
                info = np.iinfo(b.dtype)
                what = self.choice(["-1", "max", "min", "n", "huge", "shuffle", "reverse", "random", "zero"])
                self.note(f"{name}[{i}]: int {what}")
                if what == "-1":
                    flat[i] = -1 if info.min < 0 else info.max
                elif what == "max":
                    flat[i] = info.max
                elif what == "min":
                    flat[i] = info.min
                elif what == "n":
                    flat[i] = int(flat.max()) + 1 if int(flat.max()) < info.max else info.max
                elif what == "huge":
                    flat[i] = min(info.max, 10**9)
                elif what == "shuffle":
                    self.r.shuffle(flat)
                elif what == "reverse":
                    flat[:] = flat[::-1].copy()
                elif what == "random":
                    flat[:] = self.r.integers(info.min, info.max, flat.size, dtype=b.dtype, endpoint=True)
                else:
                    flat[i] = 0
                return b
            if b.dtype.kind == "b":
                flat[:] = self.r.random(flat.size) < 0.5
                return b
            return b
        old_p, self.p = self.p, 1.0
        try:
            return self.layout(a, name)
        finally:
            self.p = old_p
