"""The codecs of :class:`llmrec.QuantizedIndex`, one class each (sq8, fp16, pq4).

A codec knows how its codes are stored: items per block (slots of inverted lists start
on a block), an empty code array, encoding rows into slots, copying codes between slots,
decoding, the parameters it was trained to (its file fields and the native view's
arguments). The layout facts themselves (block sizes, the byte of an empty sq8 slot)
come from ``llmrec._core``, which owns them; QuantizedIndex calls the codec and never
switches on its name. Adding a codec is one class here and one in the native core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from llmrec import _core
from llmrec._checks import plain
from llmrec._validate import array, fail

_PQ4_ITERATIONS = 20
_PQ4_TRAIN_ROWS = 32_768  # rows of the training sample used for the codebooks (2,048 per centroid)
_FP16_MAX = 65504.0


class Codec:
    """What every codec provides; ``block`` items share a block of ``block_bytes``."""

    name = ""
    block = 1

    def __init__(self, d: int) -> None:
        self.d = d

    def code_rows(self, slots: int) -> int:
        """Rows of the code array that hold ``slots`` slots (whole blocks)."""
        return -(-slots // self.block)

    def row_shape(self) -> tuple[int, ...]:
        """Shape of one row of the code array."""
        raise NotImplementedError

    def dtype(self) -> Any:
        return np.uint8

    def row_bytes(self) -> int:
        """Bytes of one row of the code array."""
        return int(np.prod(self.row_shape())) * np.dtype(self.dtype()).itemsize

    def fill(self) -> int:
        """The value of an empty code row's elements."""
        return 0

    def empty(self, slots: int) -> np.ndarray:
        """A code array for ``slots`` slots, every slot empty."""
        return np.full((self.code_rows(slots), *self.row_shape()), self.fill(), self.dtype())

    def check_rows(self, rows: np.ndarray, name: str) -> None:
        """Refuse rows the codec cannot represent (ValueError naming ``name``)."""

    def encode(self, rows: np.ndarray, codes: np.ndarray, slots: np.ndarray | None, first_slot: int,
               num_threads: int, **residual: Any) -> None:
        """Encode ``rows`` into ``slots`` of ``codes`` (or first_slot, first_slot + 1, ...)."""
        raise NotImplementedError

    def copy_slots(self, src: np.ndarray, src_slots: np.ndarray, dst: np.ndarray,
                   dst_slots: np.ndarray) -> None:
        """Copy the codes of ``src_slots`` of ``src`` to ``dst_slots`` of ``dst``."""
        raise NotImplementedError

    def decode(self, codes: np.ndarray, slots: np.ndarray, item_scales: np.ndarray | None) -> np.ndarray:
        """float32 rows (len(slots), d) from the codes of ``slots``."""
        raise NotImplementedError

    def load_codes(self, arrays: Mapping[str, np.ndarray], path: Any, slots: int,
                   check_values: bool) -> np.ndarray:
        """The file's code array for ``slots`` slots, its dtype and shape checked."""
        return array(arrays, "codes", path, dtype=self.dtype(), shape=(self.code_rows(slots), *self.row_shape()))

    def view_args(self) -> dict[str, np.ndarray | None]:
        """The trained parameters, as ``_core.QuantizedView`` takes them."""
        return {}

    def file_arrays(self) -> dict[str, np.ndarray]:
        """The trained parameters, as saved."""
        return {}

    def nbytes(self) -> int:
        """Bytes of the trained parameters."""
        return sum(a.nbytes for a in self.file_arrays().values())


class Sq8(Codec):
    """Per-dimension affine int8 codes in native blocks (``mid``, ``step``; residual codes
    add a scale per slot, kept by the index)."""

    name = "sq8"
    block = int(_core.SQ8_BLOCK)

    def __init__(self, d: int, mid: np.ndarray | None = None, step: np.ndarray | None = None) -> None:
        super().__init__(d)
        self.mid, self.step = mid, step

    def train(self, rows: np.ndarray) -> None:
        self.mid, self.step = _core.sq8_train(rows)

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        """(mid, step), which exist once trained or loaded."""
        if self.mid is None or self.step is None:
            raise RuntimeError("the sq8 codec is used before it was trained")
        return self.mid, self.step

    def row_shape(self) -> tuple[int, ...]:
        return (int(_core.sq8_block_bytes(self.d)),)

    def fill(self) -> int:
        return int(_core.SQ8_ZERO_BYTE)

    def encode(self, rows: np.ndarray, codes: np.ndarray, slots: np.ndarray | None, first_slot: int,
               num_threads: int, **residual: Any) -> None:
        _core.sq8_encode(rows, *self._params(), codes, first_slot, num_threads, slots=slots, **residual)

    def copy_slots(self, src: np.ndarray, src_slots: np.ndarray, dst: np.ndarray,
                   dst_slots: np.ndarray) -> None:
        _core.sq8_copy_slots(src, src_slots, dst, dst_slots, self.d)

    def decode(self, codes: np.ndarray, slots: np.ndarray, item_scales: np.ndarray | None) -> np.ndarray:
        out = np.empty((len(slots), self.d), dtype=np.float32)
        for j, slot in enumerate(slots):
            out[j] = _core.sq8_decode(codes, int(slot), 1, *self._params(), item_scales=item_scales)[0]
        return out

    def view_args(self) -> dict[str, np.ndarray | None]:
        return {"mid": self.mid, "step": self.step}

    def file_arrays(self) -> dict[str, np.ndarray]:
        mid, step = self._params()
        return {"mid": mid, "step": step}

    @classmethod
    def load(cls, arrays: Mapping[str, np.ndarray], path: Any, d: int) -> Sq8:
        mid = array(arrays, "mid", path, dtype=np.float32, shape=(d,), finite=True)
        step = array(arrays, "step", path, dtype=np.float32, shape=(d,), finite=True)
        # 0 (a constant dimension) or a normal float: 1 / step must be finite.
        tiny = (step != 0) & ~(step >= np.finfo(np.float32).tiny)
        if tiny.any():
            raise fail(path, f"array 'step' holds {plain(step[tiny][0])!r}: each step must be 0 or "
                             f"at least {np.finfo(np.float32).tiny} (the smallest normal float32)")
        return cls(d, mid, step)


class Fp16(Codec):
    """IEEE half precision, one row of d halves per slot."""

    name = "fp16"

    def row_shape(self) -> tuple[int, ...]:
        return (self.d,)

    def dtype(self) -> Any:
        return np.uint16

    def check_rows(self, rows: np.ndarray, name: str) -> None:
        if rows.size and float(np.abs(rows).max()) > _FP16_MAX:
            raise ValueError(f"{name} holds values beyond +-{_FP16_MAX:g}, which fp16 cannot "
                             "represent: scale the vectors or use codec='sq8'")

    def encode(self, rows: np.ndarray, codes: np.ndarray, slots: np.ndarray | None, first_slot: int,
               num_threads: int, **residual: Any) -> None:
        at = slice(first_slot, first_slot + rows.shape[0]) if slots is None else slots
        codes[at] = _core.fp16_encode(rows)

    def copy_slots(self, src: np.ndarray, src_slots: np.ndarray, dst: np.ndarray,
                   dst_slots: np.ndarray) -> None:
        dst[dst_slots] = src[src_slots]

    def load_codes(self, arrays: Mapping[str, np.ndarray], path: Any, slots: int,
                   check_values: bool) -> np.ndarray:
        codes = super().load_codes(arrays, path, slots, check_values)
        if check_values and codes.size and ((codes & 0x7C00) == 0x7C00).any():  # exponent all ones: inf/NaN
            raise fail(path, "array 'codes' holds half-precision NaN or infinite values")
        return codes

    def decode(self, codes: np.ndarray, slots: np.ndarray, item_scales: np.ndarray | None) -> np.ndarray:
        return _core.fp16_decode(np.ascontiguousarray(codes[slots]))


class Pq4(Codec):
    """Product quantization, 16 centroids per subspace, 4-bit codes in native blocks."""

    name = "pq4"
    block = int(_core.PQ4_BLOCK)

    def __init__(self, d: int, m: int, codebooks: np.ndarray | None = None) -> None:
        super().__init__(d)
        self.m, self.codebooks = m, codebooks

    def train(self, sample: np.ndarray, rng: np.random.Generator, num_threads: int) -> None:
        if sample.shape[0] < 16:
            raise ValueError(f"codec='pq4' needs at least 16 training vectors (16 centroids "
                             f"per subspace), got {sample.shape[0]}")
        if sample.shape[0] > _PQ4_TRAIN_ROWS:  # 16 centroids per subspace need no more
            sample = sample[np.sort(rng.choice(sample.shape[0], _PQ4_TRAIN_ROWS, replace=False))]
        self.codebooks = _core.pq4_train(sample, self.m, _PQ4_ITERATIONS, int(rng.integers(0, 2**63 - 1)),
                                         num_threads)

    def _books(self) -> np.ndarray:
        """The codebooks, which exist once trained or loaded."""
        if self.codebooks is None:
            raise RuntimeError("the pq4 codec is used before it was trained")
        return self.codebooks

    def row_shape(self) -> tuple[int, ...]:
        return (int(_core.pq4_block_bytes(self.m)),)

    def encode(self, rows: np.ndarray, codes: np.ndarray, slots: np.ndarray | None, first_slot: int,
               num_threads: int, **residual: Any) -> None:
        _core.pq4_encode(rows, self._books(), codes, first_slot, num_threads, slots=slots)

    def copy_slots(self, src: np.ndarray, src_slots: np.ndarray, dst: np.ndarray,
                   dst_slots: np.ndarray) -> None:
        _core.pq4_copy_slots(src, src_slots, dst, dst_slots, self.m)

    def decode(self, codes: np.ndarray, slots: np.ndarray, item_scales: np.ndarray | None) -> np.ndarray:
        return _core.pq4_decode(codes, np.ascontiguousarray(slots, np.int64), self._books())

    def view_args(self) -> dict[str, np.ndarray | None]:
        return {"codebooks": self.codebooks}

    def file_arrays(self) -> dict[str, np.ndarray]:
        return {"codebooks": self._books()}

    @classmethod
    def load(cls, arrays: Mapping[str, np.ndarray], path: Any, d: int, m: int) -> Pq4:
        return cls(d, m, array(arrays, "codebooks", path, dtype=np.float32, shape=(m, 16, d // m), finite=True))
