"""
llmrec's native core: SIMD kernels, thread pool, exact and quantized top-k search, ALS and MMR diversity.
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['MAX_PADDED_K', 'MAX_THREADS', 'PQ4_BLOCK', 'QuantizedView', 'SQ8_BLOCK', 'SQ8_ZERO_BYTE', 'active_simd_level', 'als_gramian', 'als_loss', 'als_solve', 'compiled_simd_levels', 'fp16_decode', 'fp16_encode', 'hardware_threads', 'kmeans_assign', 'kmeans_train', 'mmr_rerank', 'normalize_rows', 'pq4_block_bytes', 'pq4_copy_slots', 'pq4_decode', 'pq4_encode', 'pq4_kernel', 'pq4_tables', 'pq4_train', 'rerank_exact', 'rescore_candidates', 'search_exact', 'set_simd_level', 'set_vnni_enabled', 'sq8_block_bytes', 'sq8_copy_slots', 'sq8_decode', 'sq8_encode', 'sq8_kernel', 'sq8_train', 'supported_simd_levels', 'vnni_supported']
class QuantizedView:
    """
    One quantized index's storage, checked once, searched many times.
    """
    def __init__(self, codec: str, n: typing.SupportsInt | typing.SupportsIndex, d: typing.SupportsInt | typing.SupportsIndex, codes: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], mid: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, step: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, vectors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, centroids: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, list_starts: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, list_sizes: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, slot_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, codebooks: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, item_scales: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, item_bases: typing.Annotated[numpy.typing.ArrayLike, numpy.uint16] | None = None, bases: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None) -> None:
        """
        Checks the storage of n items of dimension d coded by 'sq8', 'fp16' or 'pq4' (with centroids: an inverted file of block-aligned lists whose slots hold each item id once) and keeps it for search; ValueError names what is wrong.
        """
    def search(self, queries: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.SupportsInt | typing.SupportsIndex, exclude_indptr: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, exclude_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, allow_mask: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8] | None = None, allow_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, deleted_mask: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8] | None = None, probes: typing.SupportsInt | typing.SupportsIndex = 1, rerank: typing.SupportsInt | typing.SupportsIndex = 0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
        """
        Top-k by codec scores (over the `probes` best lists), optionally re-ranked exactly from the kept vectors (rerank * k candidates); k at most max(n, 1024). Items whose deleted_mask byte is non-zero are never returned.
        """
    @property
    def codec(self) -> str:
        ...
    @property
    def d(self) -> int:
        ...
    @property
    def n(self) -> int:
        ...
    @property
    def partitions(self) -> int:
        ...
def _parallel_task_sum(n_tasks: typing.SupportsInt | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex, fail_task: typing.SupportsInt | typing.SupportsIndex = -1) -> int:
    ...
def active_simd_level() -> str:
    """
    The SIMD level the kernels use now.
    """
def als_gramian(factors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float32]:
    """
    YᵀY of a float32 (n, f) matrix as a float32 (f, f) matrix (float64 accumulation across chunks).
    """
def als_loss(indptr: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], values: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], X: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], gramian: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, implicit: bool = True, regularization: typing.SupportsFloat | typing.SupportsIndex = 0.009999999776482582, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, reg_exponent: typing.SupportsFloat | typing.SupportsIndex = 0.0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> float:
    """
    Data term plus X's regularisation of the ALS objective, in float64.
    """
def als_solve(indptr: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], indices: typing.Annotated[numpy.typing.ArrayLike, numpy.int32], values: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], Y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], X: typing.Any, gramian: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, implicit: bool = True, cholesky: bool = False, cg_steps: typing.SupportsInt | typing.SupportsIndex = 3, regularization: typing.SupportsFloat | typing.SupportsIndex = 0.009999999776482582, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, reg_exponent: typing.SupportsFloat | typing.SupportsIndex = 0.0, prior_strength: typing.SupportsFloat | typing.SupportsIndex = 0.0, priors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    One ALS half-sweep: updates every row of X in place given Y (see llmrec/als.hpp).
    """
def compiled_simd_levels() -> list[str]:
    """
    SIMD levels whose kernels are compiled into this build, lowest first.
    """
def fp16_decode(h: typing.Annotated[numpy.typing.ArrayLike, numpy.uint16]) -> numpy.typing.NDArray[numpy.float32]:
    """
    IEEE half bits (uint16) -> float32.
    """
def fp16_encode(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.uint16]:
    """
    float32 -> IEEE half bits (uint16), round to nearest even.
    """
def hardware_threads() -> int:
    """
    Threads used when num_threads=0.
    """
def kmeans_assign(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], centroids: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.int32]:
    """
    Nearest centroid (L2) of each row, int32.
    """
def kmeans_train(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.SupportsInt | typing.SupportsIndex, iterations: typing.SupportsInt | typing.SupportsIndex = 20, seed: typing.SupportsInt | typing.SupportsIndex = 0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    Seeded Lloyd k-means; returns (centroids float32 (k, d), assignment int32 (n,)).
    """
def mmr_rerank(candidates: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], relevance: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], item_vectors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.SupportsInt | typing.SupportsIndex, lambda_: typing.SupportsFloat | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    Greedy MMR re-ranking with cosine similarity; returns (ids int64 (nq, k), relevance float32 (nq, k)) in selection order. k must be at most max(n_items, 1024).
    """
def normalize_rows(rows: typing.Any, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    Scales each row of a float32 C-contiguous matrix to unit L2 norm, in place.
    """
def pq4_block_bytes(m: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Bytes of one block of 32 pq4 items.
    """
def pq4_copy_slots(src: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], src_slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], dst: typing.Any, dst_slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], m: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Copies pq4 codes between slots.
    """
def pq4_decode(blocks: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], codebooks: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    """
    Reconstructs the rows stored in the given slots.
    """
def pq4_encode(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], codebooks: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], blocks: typing.Any, first_slot: typing.SupportsInt | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None) -> None:
    """
    Encodes rows into pq4 blocks in place.
    """
def pq4_kernel() -> str:
    """
    The pq4 kernel the active SIMD level uses.
    """
def pq4_tables(queries: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], codebooks: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> tuple:
    """
    Per-query uint8 lookup tables (nq, padded m, 16), bias and inverse scale.
    """
def pq4_train(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], m: typing.SupportsInt | typing.SupportsIndex, iterations: typing.SupportsInt | typing.SupportsIndex = 20, seed: typing.SupportsInt | typing.SupportsIndex = 0, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float32]:
    """
    Codebooks (m, 16, d / m) by seeded k-means per subspace.
    """
def rerank_exact(vectors: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], queries: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], candidates: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], k: typing.SupportsInt | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    Exact top-k among each query's candidate ids (-1 = none; a repeated id counts once); k at most max(n_items, 1024).
    """
def rescore_candidates(candidates: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], matrices: collections.abc.Sequence[numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]], queries: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32]], applies: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.uint8] | None], fallbacks: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None], offset: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.SupportsInt | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, row_scales: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None] = [], row_maps: collections.abc.Sequence[typing.Annotated[numpy.typing.ArrayLike, numpy.int32] | None] = []) -> tuple:
    """
    Scores of candidate ids (-1 = none) as a sum of gathered row dot products minus offset, and the best k per row: (ids int64 (nq, k), scores float32 (nq, k)). A matrix is float32 rows or int8 codes; row_scales (optional, one per matrix, each None or one float per item) multiplies each row's dot product; row_maps (optional, one per matrix, each None or one int32 per item) gives the row of the matrix (and of its row scales) that holds each item; a mapped matrix may have any number of rows. An id repeated within a row is returned once; k must be at most max(n_items, 1024).
    """
def search_exact(items: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], queries: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], k: typing.SupportsInt | typing.SupportsIndex, exclude_indptr: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, exclude_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, allow_mask: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8] | None = None, allow_ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, normalize_queries: bool = False, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, batch_invariant: bool = False, deleted_mask: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8] | None = None) -> tuple:
    """
    Exact top-k by inner product; returns (ids int64 (nq, k), scores float32 (nq, k)). Exclusion ids may be in any order; rows whose deleted_mask byte is non-zero are never returned. With batch_invariant, each (query, item) score is the same whatever the number of queries (as the inverted-list probe ranks lists). k must be at most max(n_items, 1024).
    """
def set_simd_level(level: str) -> None:
    """
    Switches every kernel to `level` (for tests and benchmarks).
    """
def set_vnni_enabled(enabled: bool) -> None:
    """
    Allow (default) or forbid the AVX-512 VNNI sq8 kernel.
    """
def sq8_block_bytes(d: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Bytes of one block of 16 sq8 items.
    """
def sq8_copy_slots(src: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], src_slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], dst: typing.Any, dst_slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], d: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Copies sq8 codes between slots.
    """
def sq8_decode(blocks: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], first: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, mid: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], step: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], item_scales: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    Reconstructs rows first .. first + n from sq8 blocks (mid + a * s * step; residual bases not added).
    """
def sq8_encode(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], mid: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], step: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], blocks: typing.Any, first_slot: typing.SupportsInt | typing.SupportsIndex, num_threads: typing.SupportsInt | typing.SupportsIndex = 0, slots: typing.Annotated[numpy.typing.ArrayLike, numpy.int64] | None = None, bases: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None, base_of: typing.Annotated[numpy.typing.ArrayLike, numpy.int32] | None = None, item_scales: typing.Any | None = None) -> None:
    """
    Encodes rows into slots of a blocks array in place (slots first_slot.. or the given slots); with item_scales, residuals from bases[base_of] with a per-item scale written per slot.
    """
def sq8_kernel() -> str:
    """
    The sq8 kernel the active SIMD level uses.
    """
def sq8_train(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> tuple:
    """
    Per-dimension (mid, step) from training rows.
    """
def supported_simd_levels() -> list[str]:
    """
    Compiled SIMD levels that this CPU and OS can run, lowest first.
    """
def vnni_supported() -> bool:
    """
    Whether the VNNI sq8 kernel is compiled and usable.
    """
MAX_PADDED_K: int = 1024
MAX_THREADS: int = 1024
PQ4_BLOCK: int = 32
SQ8_BLOCK: int = 16
SQ8_ZERO_BYTE: int = 128
