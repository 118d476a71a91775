"""Compressed top-k search: half precision or int8 codes, re-ranked exactly on demand."""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

import numpy as np

from llmrec import _core
from llmrec._checks import (allow_to_native, as_float_matrix, as_ids, as_queries, check_choice,
                            check_int, exclude_to_csr)
from llmrec._fileformat import FormatError, load_arrays, save_arrays

_METRICS = ("ip", "cosine")
_CODECS = ("sq8", "fp16")
_KIND = "QuantizedIndex"
_KIND_VERSION = 1
_SQ8_BLOCK = 16
_FP16_MAX = 65504.0


class _State(NamedTuple):
    """One consistent snapshot of the searchable rows; replaced, never mutated, by add."""

    n: int
    codes: np.ndarray          # sq8: (blocks, block_bytes) uint8; fp16: (rows, d) uint16
    vectors: np.ndarray | None  # (rows, d) float32 or None


def _grow(buffer: np.ndarray | None, used: int, needed: int, row_shape: tuple[int, ...],
          dtype: Any, fill: int = 0) -> np.ndarray:
    """Return ``buffer`` if it can take ``needed`` rows in place, else a larger copy.

    Arrays passed in by the user or loaded from files have no spare rows, so only
    storage allocated here (with geometric headroom) is ever written past ``used``.
    """
    if buffer is not None and buffer.flags.writeable and needed <= buffer.shape[0]:
        return buffer
    grown = np.full((max(needed, 2 * used, 16), *row_shape), fill, dtype=dtype)
    if buffer is not None and used:
        grown[:used] = buffer[:used]
    return grown


class QuantizedIndex:
    """Top-k search over compressed item vectors, with the contract of :class:`ExactIndex`.

    Parameters
    ----------
    vectors : array of shape (n, d)
        Item vectors; row i is item id i.
    codec : {"sq8", "fp16"}
        "sq8": each dimension as an int8 over its trained range (d bytes per vector,
        rounded up to a multiple of 4), scored by SIMD integer dot products with the
        query quantized to int8 as well. "fp16": IEEE half precision (2d bytes), scored
        in float32; values beyond +-65504 are rejected.
    metric : {"ip", "cosine"}
        "cosine" normalises items before encoding and each query per search.
    partitions, pq_subspaces : None
        Reserved for the inverted-file and 4-bit product-quantization modes (not yet
        available; passing a value raises ``NotImplementedError``).
    keep_vectors : bool
        Keep the float32 vectors (4d bytes per item) so that searches can re-rank their
        shortlist exactly. float32 C-contiguous "ip" input is kept without a copy.
    train_size : int
        Rows sampled (with ``random_state``) to train the sq8 ranges.
    random_state : int, numpy Generator or None
    num_threads : int
        Threads for building and searching; 0 means all cores.

    Examples
    --------
    >>> index = QuantizedIndex(np.random.rand(10_000, 64).astype(np.float32), codec="sq8")
    >>> ids, scores = index.search(np.random.rand(64), k=5)
    """

    def __init__(self, vectors: Any, *, codec: str = "sq8", metric: str = "ip",
                 partitions: int | None = None, pq_subspaces: int | None = None,
                 keep_vectors: bool = True, train_size: int = 200_000,
                 random_state: Any = None, num_threads: int = 0) -> None:
        self._codec = check_choice(codec, "codec", _CODECS + ("pq4",))
        self._metric = check_choice(metric, "metric", _METRICS)
        if codec == "pq4" or pq_subspaces is not None:
            raise NotImplementedError("codec='pq4' (4-bit product quantization) is not available yet")
        if partitions is not None:
            raise NotImplementedError("partitions (an inverted file) are not available yet")
        if not isinstance(keep_vectors, (bool, np.bool_)):
            raise TypeError(f"keep_vectors must be a bool, got {type(keep_vectors).__name__}")
        self._keep_vectors = bool(keep_vectors)
        train_size = check_int(train_size, "train_size", minimum=1)
        self._num_threads = check_int(num_threads, "num_threads", minimum=0)
        items = as_float_matrix(vectors, "vectors")
        if self._metric == "cosine":
            items = self._normalized_copy(items)
        self._check_range(items, "vectors")
        self._d = int(items.shape[1])
        self._mid = self._step = None
        if self._codec == "sq8":
            rng = np.random.default_rng(random_state)
            sample = items
            if items.shape[0] > train_size:
                rows = np.sort(rng.choice(items.shape[0], train_size, replace=False))
                sample = items[rows]
            self._mid, self._step = _core.sq8_train(sample)
        self._lock = threading.Lock()
        self._state = _State(0, self._empty_codes(), None)
        self._append(items, initial=True)

    # ---------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Dimension d of the vectors."""
        return self._d

    @property
    def codec(self) -> str:
        """"sq8" or "fp16"."""
        return self._codec

    @property
    def metric(self) -> str:
        """"ip" or "cosine"."""
        return self._metric

    @property
    def num_threads(self) -> int:
        """Threads used by search (0 = all cores)."""
        return self._num_threads

    @property
    def keeps_vectors(self) -> bool:
        """Whether float32 vectors are kept for exact re-ranking."""
        return self._keep_vectors

    def __len__(self) -> int:
        return self._state.n

    def __repr__(self) -> str:
        return (f"QuantizedIndex(n={len(self)}, dim={self.dim}, codec={self._codec!r}, "
                f"metric={self._metric!r}, keep_vectors={self._keep_vectors})")

    # ---------------------------------------------------------------- building
    def _normalized_copy(self, rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        _core.normalize_rows(rows, self._num_threads)
        return rows

    def _check_range(self, rows: np.ndarray, name: str) -> None:
        if self._codec == "fp16" and rows.size and float(np.abs(rows).max()) > _FP16_MAX:
            raise ValueError(f"{name} holds values beyond +-{_FP16_MAX:g}, which fp16 cannot "
                             "represent: scale the vectors or use codec='sq8'")

    def _block_bytes(self) -> int:
        return int(_core.sq8_block_bytes(self._d))

    def _empty_codes(self) -> np.ndarray:
        if self._codec == "sq8":
            return np.zeros((0, self._block_bytes()), dtype=np.uint8)
        return np.zeros((0, self._d), dtype=np.uint16)

    def _append(self, rows: np.ndarray, *, initial: bool = False) -> np.ndarray:
        with self._lock:
            state = self._state
            n, m = state.n, rows.shape[0]
            if self._codec == "sq8":
                used_blocks = -(-n // _SQ8_BLOCK)
                codes = _grow(state.codes, used_blocks, -(-(n + m) // _SQ8_BLOCK),
                              (self._block_bytes(),), np.uint8, fill=0x80)
                _core.sq8_encode(rows, self._mid, self._step, codes, n, self._num_threads)
            else:
                codes = _grow(state.codes, n, n + m, (self._d,), np.uint16)
                codes[n:n + m] = _core.fp16_encode(rows)
            vectors = None
            if self._keep_vectors:
                if initial:
                    vectors = rows  # float32 C-contiguous input is kept without a copy
                else:
                    vectors = _grow(state.vectors, n, n + m, (self._d,), np.float32)
                    vectors[n:n + m] = rows
            self._state = _State(n + m, codes, vectors)
        return np.arange(n, n + m, dtype=np.int64)

    def add(self, vectors: Any) -> np.ndarray:
        """Encode and append item vectors of shape (m, d); returns their new ids.

        The codec keeps the ranges it was trained on; values beyond them are clamped.
        Searches running in other threads keep seeing the items that existed when they
        started; storage grows geometrically.
        """
        rows = as_float_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        if self._metric == "cosine":
            rows = self._normalized_copy(rows)
        self._check_range(rows, "vectors")
        return self._append(rows)

    def memory_bytes(self) -> int:
        """Bytes held for the items: codes, codec parameters and any kept vectors."""
        state = self._state
        if self._codec == "sq8":
            total = -(-state.n // _SQ8_BLOCK) * self._block_bytes() + self._mid.nbytes + self._step.nbytes
        else:
            total = state.n * self._d * 2
        if state.vectors is not None:
            total += state.n * self._d * 4
        return int(total)

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Decode the stored codes of the given item ids to float32 rows (m, d)."""
        state = self._state
        ids = as_ids(ids, "ids", state.n)
        if self._codec == "fp16":
            return _core.fp16_decode(np.ascontiguousarray(state.codes[ids]))
        out = np.empty((len(ids), self._d), dtype=np.float32)
        for j, i in enumerate(ids):
            out[j] = _core.sq8_decode(state.codes, int(i), 1, self._mid, self._step)[0]
        return out

    # ---------------------------------------------------------------- search
    def search(self, queries: Any, k: int = 10, *, exclude: Any = None, allow: Any = None,
               probes: int | None = None, rerank: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Return the k best items for each query.

        Parameters
        ----------
        queries, k, exclude, allow
            As in :meth:`ExactIndex.search`; filters are applied inside the scan.
        probes : None
            Partitions searched per query; only for an index with partitions.
        rerank : int, optional
            Re-score the best ``rerank * k`` codec candidates exactly from the kept
            vectors, so the returned scores are exact; 0 returns codec scores. Defaults
            to 4 when vectors are kept and 0 otherwise.

        Returns
        -------
        ids : int64 array (nq, k), or (k,) for a 1-D query
        scores : float32 array of the same shape, descending, ties by smaller id; -1 and
            -inf where fewer than k items qualify.
        """
        state = self._state
        if state.n == 0:
            raise ValueError("the index is empty: add vectors before searching")
        k = check_int(k, "k", minimum=1)
        if probes is not None:
            check_int(probes, "probes", minimum=1)
            raise ValueError("probes applies only to an index built with partitions")
        if rerank is None:
            rerank = 4 if state.vectors is not None else 0
        rerank = check_int(rerank, "rerank", minimum=0)
        if rerank and state.vectors is None:
            raise ValueError("rerank needs the float32 vectors: build with keep_vectors=True or "
                             "pass rerank=0")
        matrix, single = as_queries(queries, "queries", self.dim)
        if self._metric == "cosine":
            matrix = self._normalized_copy(matrix)
        excluded = exclude_to_csr(exclude, matrix.shape[0], state.n, single_query=single)
        allow_mask, allow_ids = allow_to_native(allow, state.n)
        ids, scores = _core.search_quantized(
            self._codec, state.n, self._d, state.codes, mid=self._mid, step=self._step,
            vectors=state.vectors if rerank else None, queries=matrix, k=k,
            exclude_indptr=None if excluded is None else excluded[0],
            exclude_ids=None if excluded is None else excluded[1],
            allow_mask=allow_mask, allow_ids=allow_ids, rerank=rerank,
            num_threads=self._num_threads)
        return (ids[0], scores[0]) if single else (ids, scores)

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (versioned, checksummed, atomically replaced)."""
        state = self._state
        arrays: dict[str, np.ndarray] = {}
        if self._codec == "sq8":
            arrays["codes"] = np.asarray(state.codes[:-(-state.n // _SQ8_BLOCK)])
            arrays["mid"] = self._mid
            arrays["step"] = self._step
        else:
            arrays["codes"] = np.asarray(state.codes[:state.n])
        if state.vectors is not None:
            arrays["vectors"] = np.asarray(state.vectors[:state.n])
        meta = {"codec": self._codec, "metric": self._metric, "n": state.n, "dim": self._d,
                "keep_vectors": self._keep_vectors}
        save_arrays(path, _KIND, _KIND_VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False, num_threads: int = 0,
             verify: bool = True) -> QuantizedIndex:
        """Read an index written by :meth:`save`.

        With ``mmap=True`` codes and vectors are memory-mapped read-only (``add`` then
        copies them). Raises ``ValueError`` (``llmrec._fileformat.FormatError``) for a
        truncated, corrupted, inconsistent or foreign file.
        """
        meta, arrays, _ = load_arrays(path, _KIND, max_kind_version=_KIND_VERSION, mmap=mmap,
                                      verify=verify)
        index = cls.__new__(cls)
        try:
            index._codec = check_choice(meta.get("codec"), "codec", _CODECS)
            index._metric = check_choice(meta.get("metric"), "metric", _METRICS)
            n, d = int(meta["n"]), int(meta["dim"])
            index._keep_vectors = bool(meta["keep_vectors"])
        except (KeyError, TypeError, ValueError) as error:
            raise FormatError(f"{path}: bad metadata ({error})") from None
        index._num_threads = check_int(num_threads, "num_threads", minimum=0)
        index._d = d
        index._mid = index._step = None
        codes = arrays.get("codes")
        if index._codec == "sq8":
            index._mid, index._step = arrays.get("mid"), arrays.get("step")
            ok = (codes is not None and codes.dtype == np.uint8
                  and codes.shape == (-(-n // _SQ8_BLOCK), int(_core.sq8_block_bytes(d)))
                  and all(a is not None and a.dtype == np.float32 and a.shape == (d,)
                          for a in (index._mid, index._step)))
        else:
            ok = codes is not None and codes.dtype == np.uint16 and codes.shape == (n, d)
        vectors = arrays.get("vectors")
        if index._keep_vectors:
            ok = ok and vectors is not None and vectors.dtype == np.float32 and vectors.shape == (n, d)
        if not ok:
            raise FormatError(f"{path}: arrays do not match the metadata of a {index._codec} index")
        index._lock = threading.Lock()
        index._state = _State(n, codes, vectors if index._keep_vectors else None)
        return index
