"""Item matrices kept compact and read as float32 rows on access.

* :class:`Int8Rows` — the unit text vectors E (and the users' text interest, see
  :func:`.users.stored_users`) as int8 codes with one scale per row:
  x ≈ s·c with s = max|x|/127 and c = round(x/s) in [−127, 127], 4 + d bytes per row
  (388 at d = 384) instead of 4·d (1,536). Each coordinate is off by at most s/2, so a
  score x·q is off by at most (s/2)·‖q‖₁: the bound the compression test derives its
  tolerance from. Stage 2 re-scores straight from the codes (the native re-scorer takes
  int8 rows and per-row scales), so no float copy is ever made for a request. The rows
  may be stored in another order than the items' (:meth:`Int8Rows.laid_out`: the request
  channel's inverted lists each one contiguous run, :mod:`.text_lists`), with one int32
  per row saying where it is stored.
* :class:`UnitRows` — the unit-length factors Vn = V / ‖V‖, derived from V and one
  inverse norm per item (0 for items without interactions, whose Vn is 0) instead of a
  second f-float matrix: 4 bytes per item instead of 4·f.

Both index like a read-only float32 matrix (``rows[ids]``, ``shape``, ``len``,
``np.asarray``), so code that gathers rows needs no change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec._arrays import appended, grow_rows, row_norms, spare_rows

TEXT_STORAGES = ("auto", "float32", "int8")
INT8_LEVELS = 127.0


class Int8Rows:
    """Rows x_i stored as int8 codes c_i and scales s_i (x_i ≈ s_i·c_i), see the module
    docstring: ``codes`` (n, d) int8 and ``scales`` (n,) float32, row i at position
    ``slots[i]`` of both where ``slots`` ((n,) int32, a permutation) is given, else at i."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray, slots: np.ndarray | None = None) -> None:
        if codes.dtype != np.int8 or codes.ndim != 2 or scales.shape != (len(codes),):
            raise ValueError("Int8Rows needs int8 codes (n, d) and one float32 scale per row")
        if slots is not None and (slots.dtype != np.int32 or slots.shape != (len(codes),)):
            raise ValueError("Int8Rows needs one int32 slot per row")
        self.codes, self.scales = codes, np.asarray(scales, dtype=np.float32)
        self.slots = slots

    @property
    def n(self) -> int:
        return len(self.codes)

    @classmethod
    def encode(cls, rows: np.ndarray) -> Int8Rows:
        """Codes and scales of float rows (n, d); zero rows get scale 0."""
        rows = np.asarray(rows, dtype=np.float32)
        peak = np.abs(rows).max(axis=1) if rows.shape[1] else np.zeros(len(rows), np.float32)
        scales = (peak / INT8_LEVELS).astype(np.float32)
        inverse = np.where(scales > 0, 1.0 / np.where(scales > 0, scales, 1.0), 0.0).astype(np.float32)
        codes = np.rint(rows * inverse[:, None]).clip(-INT8_LEVELS, INT8_LEVELS).astype(np.int8)
        return cls(codes, scales)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.codes.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)  # what indexing returns

    @property
    def nbytes(self) -> int:
        """Bytes of the n rows (codes, scales and slots; spare capacity not counted)."""
        return self.n * (self.codes.shape[1] + 4 + (0 if self.slots is None else 4))

    def __len__(self) -> int:
        return self.n

    def _at(self, rows: Any) -> Any:
        """Where ``rows`` are stored."""
        return rows if self.slots is None else self.slots[rows]

    def __getitem__(self, rows: Any) -> np.ndarray:
        at = self._at(rows)
        return self.codes[at].astype(np.float32) * self.scales[at][..., None]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __setitem__(self, rows: Any, values: Any) -> None:
        """Encode float ``values`` into ``rows`` in place (a user's text interest rewritten
        by ``update``, zeroed by ``forget_user``)."""
        at = self._at(rows)
        shape = self.codes[at].shape
        new = Int8Rows.encode(np.broadcast_to(np.asarray(values, dtype=np.float32), shape).reshape(-1, shape[-1]))
        self.codes[at] = new.codes.reshape(shape)
        self.scales[at] = new.scales.reshape(self.scales[at].shape)

    def copy(self) -> Int8Rows:
        return Int8Rows(self.codes.copy(), self.scales.copy(), None if self.slots is None else self.slots.copy())

    def laid_out(self, order: np.ndarray) -> Int8Rows:
        """These rows stored in ``order`` (a permutation of the rows): row ``order[j]`` at
        position j. A copy; this one stays as it is."""
        order = np.asarray(order)
        at = self._at(order)
        slots = np.empty(self.n, np.int32)
        slots[order] = np.arange(self.n, dtype=np.int32)
        return Int8Rows(self.codes[at], self.scales[at], slots)

    def with_spare_rows(self) -> Int8Rows:
        """These rows in storage with room to append (:func:`llmrec._arrays.spare_rows`)."""
        return Int8Rows(spare_rows(self.codes), spare_rows(self.scales),
                        None if self.slots is None else spare_rows(self.slots))

    def grown(self, n_rows: int) -> Int8Rows:
        """These rows and zero rows up to ``n_rows``, in spare capacity (:func:`grow_rows`)."""
        return Int8Rows(grow_rows(self.codes, n_rows), grow_rows(self.scales, n_rows), self._more_slots(n_rows))

    def appended(self, rows: np.ndarray) -> Int8Rows:
        """These rows and ``rows`` (float, encoded here), the new ones written in spare
        capacity past the rows this object sees (it stays as it is), each stored last."""
        new = Int8Rows.encode(rows)
        return Int8Rows(appended(self.codes[:self.n], new.codes), appended(self.scales[:self.n], new.scales),
                        self._more_slots(self.n + len(new.codes)))

    def _more_slots(self, n_rows: int) -> np.ndarray | None:
        """The slots of rows added up to ``n_rows``: each stored where its row number says."""
        if self.slots is None:
            return None
        return appended(self.slots[:self.n], np.arange(self.n, n_rows, dtype=np.int32))


class UnitRows:
    """V / ‖V‖ row by row (0 where ``inv_norm`` is 0), derived on access; see the module
    docstring."""

    def __init__(self, V: np.ndarray, inv_norm: np.ndarray) -> None:
        self.V, self.inv_norm = V, inv_norm

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.V), self.V.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return self.inv_norm[:len(self.V)].nbytes

    def __len__(self) -> int:
        return len(self.V)

    def __getitem__(self, rows: Any) -> np.ndarray:
        return (self.V[rows] * self.inv_norm[:len(self.V)][rows][..., None]).astype(np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def inverse_norms(V: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """1/‖V_i‖ for warm items with a non-zero row, else 0 (float32, (n,))."""
    norms = row_norms(V)
    keep = (np.asarray(warm) != 0) & (norms > 0)
    return np.where(keep, 1.0 / np.where(keep, norms, 1.0), 0.0).astype(np.float32)


def resolve_text_storage(storage: str, n_items: int, threshold: int) -> str:
    """"int8" or "float32" for ``storage`` ("auto": int8 from ``threshold`` items on)."""
    if storage != "auto":
        return storage
    return "int8" if n_items >= threshold else "float32"


__all__ = ["Int8Rows", "TEXT_STORAGES", "UnitRows", "inverse_norms", "resolve_text_storage"]
