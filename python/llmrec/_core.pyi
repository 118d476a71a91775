"""Type stubs for the native module llmrec._core."""

import numpy as np
import numpy.typing as npt

def compiled_simd_levels() -> list[str]: ...
def supported_simd_levels() -> list[str]: ...
def active_simd_level() -> str: ...
def set_simd_level(level: str) -> None: ...
def hardware_threads() -> int: ...
def search_exact(
    items: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    k: int,
    exclude_indptr: npt.NDArray[np.int64] | None = None,
    exclude_ids: npt.NDArray[np.int64] | None = None,
    allow_mask: npt.NDArray[np.uint8] | None = None,
    allow_ids: npt.NDArray[np.int64] | None = None,
    normalize_queries: bool = False,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def normalize_rows(rows: npt.NDArray[np.float32], num_threads: int = 0) -> None: ...
def _parallel_task_sum(n_tasks: int, num_threads: int, fail_task: int = -1) -> int: ...
def als_gramian(factors: npt.NDArray[np.float32], num_threads: int = 0) -> npt.NDArray[np.float32]: ...
def als_solve(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    Y: npt.NDArray[np.float32],
    X: npt.NDArray[np.float32],
    gramian: npt.NDArray[np.float32] | None = None,
    implicit: bool = True,
    cholesky: bool = False,
    cg_steps: int = 3,
    regularization: float = 0.01,
    alpha: float = 1.0,
    reg_exponent: float = 0.0,
    prior_strength: float = 0.0,
    priors: npt.NDArray[np.float32] | None = None,
    num_threads: int = 0,
) -> None: ...
def als_loss(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    values: npt.NDArray[np.float32],
    X: npt.NDArray[np.float32],
    Y: npt.NDArray[np.float32],
    gramian: npt.NDArray[np.float32] | None = None,
    implicit: bool = True,
    regularization: float = 0.01,
    alpha: float = 1.0,
    reg_exponent: float = 0.0,
    num_threads: int = 0,
) -> float: ...

# Quantized search (cpp/bindings/quant.cpp)
def sq8_block_bytes(d: int) -> int: ...
def sq8_train(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...
def sq8_encode(
    x: npt.NDArray[np.float32],
    mid: npt.NDArray[np.float32],
    step: npt.NDArray[np.float32],
    blocks: npt.NDArray[np.uint8],
    first_slot: int,
    num_threads: int = 0,
) -> None: ...
def sq8_decode(
    blocks: npt.NDArray[np.uint8], first: int, n: int,
    mid: npt.NDArray[np.float32], step: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]: ...
def fp16_encode(x: npt.NDArray[np.float32]) -> npt.NDArray[np.uint16]: ...
def fp16_decode(h: npt.NDArray[np.uint16]) -> npt.NDArray[np.float32]: ...
SQ8_BLOCK: int
PQ4_BLOCK: int
SQ8_ZERO_BYTE: int

class QuantizedView:
    """One quantized index's storage, checked once, searched many times."""

    def __init__(
        self,
        codec: str,
        n: int,
        d: int,
        codes: npt.NDArray[np.generic],
        mid: npt.NDArray[np.float32] | None = None,
        step: npt.NDArray[np.float32] | None = None,
        vectors: npt.NDArray[np.float32] | None = None,
        centroids: npt.NDArray[np.float32] | None = None,
        list_starts: npt.NDArray[np.int64] | None = None,
        list_sizes: npt.NDArray[np.int64] | None = None,
        slot_ids: npt.NDArray[np.int64] | None = None,
        codebooks: npt.NDArray[np.float32] | None = None,
        item_scales: npt.NDArray[np.float32] | None = None,
        item_bases: npt.NDArray[np.uint16] | None = None,
        bases: npt.NDArray[np.float32] | None = None,
    ) -> None: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude_indptr: npt.NDArray[np.int64] | None = None,
        exclude_ids: npt.NDArray[np.int64] | None = None,
        allow_mask: npt.NDArray[np.uint8] | None = None,
        allow_ids: npt.NDArray[np.int64] | None = None,
        deleted_mask: npt.NDArray[np.uint8] | None = None,
        probes: int = 1,
        rerank: int = 0,
        num_threads: int = 0,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
    @property
    def codec(self) -> str: ...
    @property
    def n(self) -> int: ...
    @property
    def d(self) -> int: ...
    @property
    def partitions(self) -> int: ...

def rerank_exact(
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    candidates: npt.NDArray[np.int64],
    k: int,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
def sq8_kernel() -> str: ...
def set_vnni_enabled(enabled: bool) -> None: ...
def vnni_supported() -> bool: ...

# Diversity re-ranking (cpp/bindings/diversity.cpp)
def mmr_rerank(
    candidates: npt.NDArray[np.int64],
    relevance: npt.NDArray[np.float32],
    item_vectors: npt.NDArray[np.float32],
    k: int,
    lambda_: float,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]: ...
