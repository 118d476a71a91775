"""Compressed top-k search: half precision, int8 or 4-bit PQ codes, re-ranked exactly on demand."""

from __future__ import annotations

import os
from typing import Any, NamedTuple, overload

import numpy as np
import scipy.sparse as sp

from llmrec import _core
from llmrec._arrays import reserve_rows
from llmrec._checks import (as_float_matrix, as_queries, check_choice, check_int, check_k,
                            check_threads, check_vector_norms)
from llmrec._codecs import Codec, Fp16, Pq4, Sq8
from llmrec._fileformat import load_arrays, save_arrays
from llmrec._index_base import IndexBase
from llmrec._row_ids import RowIds
from llmrec._rwlock import ReadWriteLock
from llmrec._validate import (array, check_list_ranges, check_range, check_unique, fail,
                              meta_choice, meta_int, meta_value)

_METRICS = ("ip", "cosine")
_CODECS = ("sq8", "fp16", "pq4")
_KIND = "QuantizedIndex"
_KIND_VERSION = 3  # 3: caller ids (row_ids), removed rows (deleted); 2: residual sq8 (per-item
                   # scales, coarse bases); 1 (plain sq8) and 2 still load
_SQ8_BASES = 4096  # at most this many coarse centroids for flat residual sq8 ...
_SQ8_ITEMS_PER_BASE = 200  # ... and one per this many items (1,000 at 200k, 4,096 at 1M)
_SQ8_ROWS_PER_BASE = 32  # training rows per coarse centroid
_SQ8_ITERATIONS = 5
_IVF_L2_ITERATIONS = 10  # list k-means: L2 Lloyd iterations, then ...
_IVF_IP_ROUNDS = 10  # ... Lloyd rounds assigning by inner product (see _train_lists)
_SQ8_BLOCK = Sq8.block  # residual sq8's per-slot arrays cover whole blocks


class _Lists(NamedTuple):
    """The inverted file: items grouped by nearest centroid, codes stored list by list."""

    starts: np.ndarray      # (partitions,) int64 first slot of each list
    sizes: np.ndarray       # (partitions,) int64 items in each list
    slot_ids: np.ndarray    # (slots,) int64 item id of each slot, -1 for padding
    assignment: np.ndarray  # (n,) int32 list of each item, in id order

    def slot_of(self, n: int) -> np.ndarray:
        """(n,) int64 the slot of each item."""
        slots = np.empty(n, np.int64)
        used = np.flatnonzero(self.slot_ids >= 0)
        slots[self.slot_ids[used]] = used
        return slots


class _State(NamedTuple):
    """One consistent snapshot of the searchable rows; replaced, never mutated, by add.
    Each one gets its native view (``_core.QuantizedView``), checked once when it is set."""

    n: int
    codes: np.ndarray          # sq8 / pq4: (blocks, block_bytes) uint8; fp16: (rows, d) uint16
    vectors: np.ndarray | None  # (rows, d) float32 or None
    lists: _Lists | None = None
    item_scales: np.ndarray | None = None  # residual sq8: (slots,) float32, whole blocks
    item_bases: np.ndarray | None = None   # flat residual sq8: (slots,) uint16 base of each slot


@overload
def _writeable(array: np.ndarray) -> np.ndarray: ...
@overload
def _writeable(array: None) -> None: ...
def _writeable(array: np.ndarray | None) -> np.ndarray | None:
    """``array`` if it may be written in place, else a copy (None stays None)."""
    return array if array is None or array.flags.writeable else array.copy()


def _int_arg(value: Any, name: str, minimum: int) -> int:
    """check_int with a shortcut for plain ints (its ABC checks cost microseconds per call)."""
    if type(value) is int and value >= minimum:
        return value
    return check_int(value, name, minimum=minimum)


class QuantizedIndex(IndexBase):
    """Top-k search over compressed item vectors, with the contract of :class:`ExactIndex`.

    Parameters
    ----------
    vectors : array of shape (n, d)
        Item vectors; row i is item id i.
    codec : {"sq8", "fp16", "pq4"}
        "sq8": each item as int8 codes of its residual from a coarse k-means centroid
        (one per 200 items, at most 4,096)
        (its list's centroid with ``partitions``), per-dimension affine ranges trained on
        the residuals and one scale per item (d bytes per vector, rounded up to a
        multiple of 4, plus a 4-byte scale and, flat, a 2-byte centroid number), scored
        by SIMD integer dot products with the query quantized to int8 as well. "fp16": IEEE half precision (2d bytes), scored
        in float32; values beyond +-65504 are rejected. "pq4": product quantization,
        ``pq_subspaces`` sub-vectors each stored as one of 16 centroids (4 bits; d / 2
        bytes per vector with the default), scanned with per-query uint8 lookup tables
        read by SIMD byte shuffles (fast scan); coarse, so meant for ``rerank``.
    metric : {"ip", "cosine"}
        "cosine" normalises items before encoding and each query per search.
    partitions : int, optional
        Build an inverted file: a seeded k-means (native, multithreaded) over a training
        sample finds ``partitions`` centroids, every item is stored in the list of its
        nearest centroid (L2), and a search scans only the ``probes`` lists whose
        centroids have the largest inner product with the query. Needs at least
        ``partitions`` training rows.
    pq_subspaces : int, optional
        pq4 only: number of subspaces M (d % M == 0, M <= 256); codebooks are trained
        by seeded k-means on each subspace of the training sample (at most 32,768 of
        its rows, drawn with ``random_state``). Default: d / 2 when
        that is at most 256, else the smallest valid M with at most 256 subspaces.
    keep_vectors : bool
        Keep the float32 vectors (4d bytes per item) so that searches can re-rank their
        shortlist exactly. float32 C-contiguous "ip" input is kept without a copy.
    train_size : int
        Rows sampled (with ``random_state``) to train the codec (sq8: one coarse
        centroid per 200 items, at most 4,096, from 32 rows each, 5 k-means iterations,
        then the residual ranges).
    random_state : int, numpy Generator or None
    num_threads : int
        Threads for building and searching; 0 means all cores; at most 1024.
    ids : array of n int64, optional
        Caller ids of the rows (distinct); searches then return them.

    Maintenance, as in :class:`ExactIndex`: :meth:`add`, :meth:`update` (rows re-encoded
    in place; with partitions an item whose nearest list changes moves to it, which
    rebuilds the lists, O(n), as ``add`` does), :meth:`remove` (skipped inside the scan) and
    :meth:`compact`. Searches hold a shared lock for the whole scan, writers an
    exclusive one, so a concurrent search sees each row old or new, never half written.

    As in :class:`ExactIndex`, "ip" vectors and queries must have an L2 norm of at most
    2**63 (~9.2e18), so that every score is finite in float32.

    Examples
    --------
    >>> index = QuantizedIndex(np.random.rand(10_000, 64).astype(np.float32), codec="sq8")
    >>> ids, scores = index.search(np.random.rand(64), k=5)
    """

    _codec: str
    _metric: str
    _d: int
    _pq_m: int | None
    _partitions: int | None
    _keep_vectors: bool
    _residual: bool
    _num_threads: int
    _coder: Codec
    _centroids: np.ndarray | None  # (partitions, d) list centroids, with partitions
    _bases: np.ndarray | None      # flat residual sq8: (n_bases, d) coarse centroids
    _state: _State
    _view: _core.QuantizedView     # the native view of _state
    _rw: ReadWriteLock
    _row_ids: RowIds

    def __init__(self, vectors: Any, *, codec: str = "sq8", metric: str = "ip",
                 partitions: int | None = None, pq_subspaces: int | None = None,
                 keep_vectors: bool = True, train_size: int = 200_000,
                 random_state: Any = None, num_threads: int = 0, ids: Any = None) -> None:
        self._codec = check_choice(codec, "codec", _CODECS + ("pq4",))
        self._metric = check_choice(metric, "metric", _METRICS)
        self._pq_m = None
        if pq_subspaces is not None and codec != "pq4":
            raise ValueError(f"pq_subspaces applies only to codec='pq4', not {codec!r}")
        self._partitions = None if partitions is None else check_int(partitions, "partitions", minimum=1)
        if not isinstance(keep_vectors, (bool, np.bool_)):
            raise TypeError(f"keep_vectors must be a bool, got {type(keep_vectors).__name__}")
        self._keep_vectors = bool(keep_vectors)
        train_size = check_int(train_size, "train_size", minimum=1)
        self._num_threads = check_threads(num_threads)
        items = as_float_matrix(vectors, "vectors")
        if self._metric == "cosine":
            items = self._normalized_copy(items)
        self._d = int(items.shape[1])
        self._centroids = self._bases = None
        self._residual = self._codec == "sq8"
        if self._codec == "pq4":
            self._pq_m = self._subspaces(pq_subspaces)
        self._coder = self._new_coder()
        self._check_range(items, "vectors")
        rng = np.random.default_rng(random_state)
        sample = items
        if items.shape[0] > train_size:
            sample = items[np.sort(rng.choice(items.shape[0], train_size, replace=False))]
        if isinstance(self._coder, Pq4):
            self._coder.train(sample, rng, self._num_threads)
        self._rw = ReadWriteLock()
        self._row_ids = RowIds()
        first_ids = self._row_ids.new_ids(ids, items.shape[0], 0)
        if self._partitions is not None:
            if sample.shape[0] < self._partitions:
                raise ValueError(f"partitions={self._partitions} needs at least as many training "
                                 f"vectors, got {sample.shape[0]} (n={items.shape[0]}, "
                                 f"train_size={train_size})")
            seed = int(rng.integers(0, 2**63 - 1))
            self._train_lists(sample, seed)
            sample_lists = self._nearest_lists(sample)
            if isinstance(self._coder, Sq8):
                self._coder.train(sample - self._list_centroids[sample_lists])
        elif isinstance(self._coder, Sq8):
            self._train_bases(sample, items.shape[0], rng)
        self._set_state(self._empty_state())
        self._append(items, initial=True, ids=first_ids)

    def _empty_state(self) -> _State:
        """No rows yet: empty codes, and empty lists (with partitions) or per-slot scales and
        base numbers (flat residual sq8)."""
        codes = self._coder.empty(0)
        if self._partitions is not None:
            empty_lists = np.zeros(self._partitions, np.int64)
            return _State(0, codes, None, _Lists(empty_lists, empty_lists.copy(), np.zeros(0, np.int64),
                                                 np.zeros(0, np.int32)))
        if self._residual:
            return _State(0, codes, None, item_scales=np.zeros(0, np.float32), item_bases=np.zeros(0, np.uint16))
        return _State(0, codes, None)

    def _n_rows(self) -> int:
        return self._state.n

    @property
    def _n_lists(self) -> int:
        """The number of inverted lists (an index with partitions only)."""
        assert self._partitions is not None, "an index with partitions"
        return self._partitions

    @property
    def _list_centroids(self) -> np.ndarray:
        """The inverted lists' centroids (an index with partitions only)."""
        assert self._centroids is not None, "an index with partitions"
        return self._centroids

    @property
    def _base_rows(self) -> np.ndarray:
        """The coarse centroids of flat residual sq8."""
        assert self._bases is not None, "a flat residual sq8 index"
        return self._bases

    def _set_state(self, state: _State) -> None:
        """Make ``state`` the searchable rows (the write lock held, or during construction):
        its native view checks the storage once here, so searches check only their own
        arguments."""
        view = self._make_view(state)
        self._state, self._view = state, view

    def _make_view(self, state: _State) -> _core.QuantizedView:
        lists = state.lists
        return _core.QuantizedView(
            self._codec, state.n, self._d, state.codes, vectors=state.vectors,
            centroids=None if lists is None else self._centroids,
            list_starts=None if lists is None else lists.starts,
            list_sizes=None if lists is None else lists.sizes,
            slot_ids=None if lists is None else lists.slot_ids, item_scales=state.item_scales,
            item_bases=state.item_bases, bases=self._bases if state.item_bases is not None else None,
            **self._coder.view_args())

    def _new_coder(self) -> Codec:
        """The codec object of this index's codec (untrained)."""
        if self._codec == "sq8":
            return Sq8(self._d)
        if self._codec == "pq4":
            return Pq4(self._d, self._subspace_count)
        return Fp16(self._d)

    # The codec's trained parameters, by their former names (tests read them here).
    @property
    def _subspace_count(self) -> int:
        """pq4's number of subspaces."""
        assert self._pq_m is not None, "a pq4 index"
        return self._pq_m

    @property
    def _mid(self) -> np.ndarray | None:
        return getattr(self._coder, "mid", None)

    @property
    def _step(self) -> np.ndarray | None:
        return getattr(self._coder, "step", None)

    @property
    def _codebooks(self) -> np.ndarray | None:
        return getattr(self._coder, "codebooks", None)

    def _train_bases(self, sample: np.ndarray, n: int, rng: np.random.Generator) -> None:
        """Coarse centroids for flat residual sq8, and the ranges of the residuals."""
        # More bases, smaller residuals: recall@10 on 1M x 128 clustered data went 0.959,
        # 0.967, 0.979 with 1,024, 2,048, 4,096 bases (build 9, 16, 27 s).
        count = int(max(1, min(_SQ8_BASES, n // _SQ8_ITEMS_PER_BASE,
                               sample.shape[0] // _SQ8_ROWS_PER_BASE)))
        rows = sample
        if sample.shape[0] > count * _SQ8_ROWS_PER_BASE:
            rows = sample[np.sort(rng.choice(sample.shape[0], count * _SQ8_ROWS_PER_BASE, replace=False))]
        bases, nearest = _core.kmeans_train(rows, count, _SQ8_ITERATIONS, int(rng.integers(0, 2**63 - 1)),
                                            self._num_threads)
        self._bases = bases
        assert isinstance(self._coder, Sq8)
        self._coder.train(rows - bases[nearest])

    # ---------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Dimension d of the vectors."""
        return self._d

    @property
    def codec(self) -> str:
        """"sq8", "fp16" or "pq4"."""
        return self._codec

    @property
    def pq_subspaces(self) -> int | None:
        """pq4: the number of subspaces M; None for other codecs."""
        return self._pq_m

    @property
    def partitions(self) -> int | None:
        """Number of inverted lists, or None for a flat index."""
        return self._partitions

    @property
    def keeps_vectors(self) -> bool:
        """Whether float32 vectors are kept for exact re-ranking."""
        return self._keep_vectors

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support: everything but the lock, which :meth:`__setstate__` rebuilds."""
        with self._rw.read():
            state = self.__dict__.copy()
        state.pop("_lock", None)
        state.pop("_rw", None)
        state.pop("_view", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        legacy = {key: state.pop(key, None) for key in ("_mid", "_step", "_codebooks")}
        self.__dict__.update(state)
        self._rw = ReadWriteLock()
        if "_coder" not in state:  # pickled before the codec objects: its parameters were fields
            self._coder = self._new_coder()
            for key, value in legacy.items():
                if value is not None:
                    setattr(self._coder, key[1:], value)
        self._set_state(self._state)
        if "_row_ids" not in state:  # pickled before caller ids existed
            self._row_ids = RowIds()
            self._row_ids.append(0, self._state.n, None)

    def __repr__(self) -> str:
        return (f"QuantizedIndex(n={len(self)}, dim={self.dim}, codec={self._codec!r}, "
                f"metric={self._metric!r}, keep_vectors={self._keep_vectors})")

    # ---------------------------------------------------------------- building
    def _check_range(self, rows: np.ndarray, name: str) -> None:
        if self._metric == "ip":  # cosine rows are unit length by now
            check_vector_norms(rows, name)
        self._coder.check_rows(rows, name)

    def _subspaces(self, value: Any) -> int:
        d = self._d
        if value is None:
            choices = [m for m in range(1, min(d, 256) + 1) if d % m == 0]
            preferred = [m for m in choices if 2 * m == d]
            return preferred[0] if preferred else max(choices)
        m = check_int(value, "pq_subspaces", minimum=1)
        if d % m != 0:
            raise ValueError(f"pq_subspaces must divide the dimension {d}, got {m}")
        if m > 256:
            raise ValueError(f"pq_subspaces must be at most 256, got {m}")
        return m

    def _train_lists(self, sample: np.ndarray, seed: int) -> None:
        self._centroids = train_lists(sample, self._n_lists, seed, self._num_threads)

    def _nearest_lists(self, rows: np.ndarray) -> np.ndarray:
        return nearest_lists(self._list_centroids, rows, self._num_threads)

    def _slot_layout(self, assignment: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The block-aligned list layout of items assigned to lists: (list starts, list
        sizes, slot_ids (item per slot, -1 padding), the slot of each item), items of a
        list in their order."""
        n = len(assignment)
        sizes = np.bincount(assignment, minlength=self._n_lists).astype(np.int64)
        block = self._coder.block
        room = -(-sizes // block) * block
        starts = np.zeros(self._n_lists, np.int64)
        np.cumsum(room[:-1], out=starts[1:])
        order = np.argsort(assignment, kind="stable")
        rank = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        slot_of = np.empty(n, np.int64)
        slot_of[order] = starts[assignment[order]] + rank
        slot_ids = np.full(int(room.sum()), -1, np.int64)
        slot_ids[slot_of] = np.arange(n)
        return starts, sizes, slot_ids, slot_of

    def _relayout(self, state: _State, rows: np.ndarray, at: np.ndarray | None = None
                  ) -> tuple[np.ndarray, _Lists, np.ndarray | None]:
        """Codes, lists (and residual sq8 scales) for the old items plus ``rows``, by nearest
        centroid; with ``at``, ``rows`` replace those items instead (each to its new list)."""
        n, lists = state.n, state.lists
        assert lists is not None, "an index with partitions"
        new_assignment = self._nearest_lists(rows)
        if at is None:
            at = np.arange(n, n + rows.shape[0])
            assignment = np.concatenate([lists.assignment, new_assignment])
        else:
            assignment = lists.assignment.copy()
            assignment[at] = new_assignment
        m = len(assignment) - n
        starts, sizes, slot_ids, slot_of = self._slot_layout(assignment)
        total = len(slot_ids)
        old_slots = np.flatnonzero(lists.slot_ids >= 0)
        old_items = lists.slot_ids[old_slots]
        if m == 0:  # an update: the rewritten items are encoded afresh
            kept = ~np.isin(old_items, at)
            old_slots, old_items = old_slots[kept], old_items[kept]
        codes = self._coder.empty(total)
        self._coder.copy_slots(state.codes, old_slots, codes, slot_of[old_items])
        scales = None
        residual = {}
        if self._residual:
            scales = np.zeros(total, np.float32)
            if state.item_scales is not None:
                scales[slot_of[old_items]] = state.item_scales[old_slots]
            residual = dict(bases=self._centroids, base_of=new_assignment, item_scales=scales)
        self._coder.encode(rows, codes, slot_of[at], 0, self._num_threads, **residual)
        return codes, _Lists(starts, sizes, slot_ids, assignment.astype(np.int32)), scales

    def _append(self, rows: np.ndarray, *, initial: bool = False, ids: Any = None) -> np.ndarray:
        with self._rw.write():
            state = self._state
            n, m = state.n, rows.shape[0]
            new_ids = ids if initial else self._row_ids.new_ids(ids, m, n)
            lists = scales = bases = None
            if self._partitions is not None:
                codes, lists, scales = self._relayout(state, rows)
            else:
                coder = self._coder
                codes = reserve_rows(state.codes, state.codes[:coder.code_rows(n)], coder.code_rows(n + m),
                                     fill=coder.fill())
                residual = {}
                if self._residual:
                    # Per-slot arrays cover whole blocks: the kernels read them 16 at a time.
                    assert state.item_scales is not None and state.item_bases is not None, "flat residual sq8"
                    slots = codes.shape[0] * coder.block
                    scales = reserve_rows(state.item_scales, state.item_scales[:n], slots)
                    bases = reserve_rows(state.item_bases, state.item_bases[:n], slots)
                    nearest = _core.kmeans_assign(rows, self._base_rows, self._num_threads)
                    bases[n:n + m] = nearest
                    residual = dict(bases=self._base_rows, base_of=nearest, item_scales=scales)
                coder.encode(rows, codes, None, n, self._num_threads, **residual)
            vectors = None
            if self._keep_vectors:
                if initial:
                    vectors = rows  # float32 C-contiguous input is kept without a copy
                else:
                    assert state.vectors is not None, "kept vectors"
                    vectors = reserve_rows(state.vectors, state.vectors[:n], n + m)
                    vectors[n:n + m] = rows
            self._set_state(_State(n + m, codes, vectors, lists, scales, bases))
            self._row_ids.append(n, m, new_ids)
        return np.arange(n, n + m, dtype=np.int64) if new_ids is None else new_ids

    def add(self, vectors: Any, *, ids: Any = None) -> np.ndarray:
        """Encode and append item vectors of shape (m, d); returns their ids (``ids``:
        caller ids, as in :meth:`ExactIndex.add`).

        The codec keeps the ranges, codebooks (and centroids) it was trained on; values beyond the
        ranges are clamped. With partitions, the lists are rebuilt (O(n) per call).
        Searches running in other threads keep seeing the items that existed when they
        started; storage grows geometrically.
        """
        rows = as_float_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        if self._metric == "cosine":
            rows = self._normalized_copy(rows)
        self._check_range(rows, "vectors")
        return self._append(rows, ids=ids)

    def update(self, ids: Any, vectors: Any) -> None:
        """Re-encode the rows of items already in the index (m ids, (m, d) vectors), with
        the codec's trained ranges, codebooks and centroids, in place. With partitions,
        each item goes to the list of its new nearest centroid: where one changes list,
        the lists are rebuilt (O(n), as for ``add``). Searches see each item old or new, never half written (the write
        lock waits for running searches). Unknown or removed ids raise
        :class:`llmrec.UnknownIdError`, an id given twice ``ValueError``."""
        rows = as_float_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        if self._metric == "cosine":
            rows = self._normalized_copy(rows)
        self._check_range(rows, "vectors")
        with self._rw.write():
            state = self._state
            at = self._row_ids.rows_of(ids, state.n, "ids")
            if len(at) != rows.shape[0]:
                raise ValueError(f"ids ({len(at)}) and vectors ({rows.shape[0]}) must have as many rows")
            if not len(at):
                return
            vectors = state.vectors
            if vectors is not None:
                if not getattr(self, "_owns_vectors", False) or not vectors.flags.writeable:
                    vectors = np.array(vectors[:state.n], dtype=np.float32, order="C")
                    self._owns_vectors = True
                vectors[at] = rows
            if state.lists is not None:
                lists = state.lists
                targets = self._nearest_lists(rows)
                if not (targets == lists.assignment[at]).all():  # a row moves: new lists
                    codes, lists, scales = self._relayout(state, rows, at)
                    self._set_state(_State(state.n, codes, vectors, lists, scales))
                    return
                # Every row stays in its list: re-encode it in its slot, in place.
                slots = np.array([lists.starts[p] + int(np.flatnonzero(
                    lists.slot_ids[lists.starts[p]:lists.starts[p] + lists.sizes[p]] == i)[0])
                    for i, p in zip(at.tolist(), targets.tolist())], dtype=np.int64)
                codes, scales = _writeable(state.codes), _writeable(state.item_scales)
                residual = {}
                if self._residual:
                    residual = dict(bases=self._list_centroids, base_of=targets, item_scales=scales)
                self._encode_in_place(rows, codes, slots, residual)
                self._set_state(_State(state.n, codes, vectors, lists, scales))
                return
            codes, scales, bases = _writeable(state.codes), _writeable(state.item_scales), _writeable(state.item_bases)
            residual = {}
            if self._residual:
                assert bases is not None, "flat residual sq8"
                nearest = _core.kmeans_assign(rows, self._base_rows, self._num_threads)
                bases[at] = nearest
                residual = dict(bases=self._base_rows, base_of=nearest, item_scales=scales)
            self._encode_in_place(rows, codes, at, residual)
            self._set_state(_State(state.n, codes, vectors, None, scales, bases))

    def _encode_in_place(self, rows: np.ndarray, codes: np.ndarray, slots: np.ndarray,
                         residual: dict[str, Any]) -> None:
        """Encode ``rows`` into ``slots`` of ``codes`` (the write lock held). One thread:
        pq4 slots share bytes (two 4-bit codes), which parallel encoders of neighbouring
        slots would both rewrite."""
        self._coder.encode(rows, codes, slots, 0, 1, **residual)

    def compact(self) -> None:
        """Drop the codes (and kept vectors) of removed items. The survivors' codes are
        copied as they are (no item is re-encoded, so no score changes). Removed ids stay
        unknown; the others keep theirs (numbers become caller ids where ids were row
        numbers)."""
        with self._rw.write():
            state = self._state
            n = state.n
            if not self._row_ids.n_removed(n):
                return
            keep = self._row_ids.live_rows(n)
            ids = self._row_ids.live_ids(n)
            next_id = self._row_ids.next_id
            self._set_state(self._compacted(state, keep))
            self._row_ids = RowIds()
            self._row_ids.append(0, len(keep), ids)
            self._row_ids.next_id = max(self._row_ids.next_id, next_id)
            self._owns_vectors = True

    def _compacted(self, state: _State, keep: np.ndarray) -> _State:
        """``state`` holding only the items ``keep`` (renumbered 0 .. len(keep) - 1)."""
        m = len(keep)
        vectors = None if state.vectors is None else np.ascontiguousarray(state.vectors[keep])
        if state.lists is not None:
            lists = state.lists
            assignment = lists.assignment[keep]
            starts, sizes, slot_ids, new_slot = self._slot_layout(assignment)
            src, total = lists.slot_of(state.n)[keep], len(slot_ids)
            new_lists = _Lists(starts, sizes, slot_ids, assignment)
        else:
            src, new_slot = keep, np.arange(m, dtype=np.int64)
            total = m
            new_lists = None
        codes = self._coder.empty(total)
        self._coder.copy_slots(state.codes, src, codes, new_slot)
        scales = bases = None
        if state.item_scales is not None:
            scales = np.zeros(codes.shape[0] * _SQ8_BLOCK, np.float32)
            scales[new_slot] = state.item_scales[src]
        if state.item_bases is not None:
            bases = np.zeros(codes.shape[0] * _SQ8_BLOCK, np.uint16)
            bases[new_slot] = state.item_bases[src]
        return _State(m, codes, vectors, new_lists, scales, bases)

    def list_of_ids(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The inverted lists as they stand, without the codes: (centroids (lists, d)
        float32, the live ids (int64), the list of each (int32)). An index with
        partitions only (``ValueError`` otherwise)."""
        if self._partitions is None:
            raise ValueError("list_of_ids needs an index with partitions")
        with self._rw.read():
            state = self._state
            assert state.lists is not None  # an index with partitions
            rows = self._row_ids.live_rows(state.n)
            return self._list_centroids, self._row_ids.to_ids(rows).astype(np.int64), state.lists.assignment[rows]

    def memory_bytes(self) -> int:
        """Bytes held for the items: codes, codec parameters and any kept vectors."""
        state = self._state
        coder = self._coder
        params = coder.nbytes() + (self._bases.nbytes if self._bases is not None else 0)
        total = coder.code_rows(state.n) * coder.row_bytes() + params
        for per_slot in (state.item_scales, state.item_bases):
            if per_slot is not None and state.lists is None:
                total += coder.code_rows(state.n) * coder.block * per_slot.itemsize
        if state.lists is not None:
            total = state.codes.nbytes + params
            total += self._list_centroids.nbytes + state.lists.slot_ids.nbytes + state.lists.assignment.nbytes
            total += state.lists.starts.nbytes + state.lists.sizes.nbytes
            if state.item_scales is not None:
                total += state.item_scales.nbytes
        if state.vectors is not None:
            total += state.n * self._d * 4
        return int(total)

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Decode the stored codes of the given item ids to float32 rows (m, d)."""
        with self._rw.read():
            return self._reconstruct(self._state, self._row_ids.rows_of(ids, self._state.n, "ids"))

    def _reconstruct(self, state: _State, ids: np.ndarray) -> np.ndarray:
        slots = ids
        if state.lists is not None:
            slots = state.lists.slot_of(state.n)[ids]
        out = self._coder.decode(state.codes, slots, state.item_scales)
        if state.item_bases is not None:
            out += self._base_rows[state.item_bases[slots]]
        elif self._residual and state.lists is not None:
            out += self._list_centroids[state.lists.assignment[ids]]
        return out

    # ---------------------------------------------------------------- search
    def search(self, queries: Any, k: int = 10, *, exclude: Any = None, allow: Any = None,
               probes: int | None = None, rerank: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Return the k best items for each query.

        Parameters
        ----------
        queries, k, exclude, allow
            As in :meth:`ExactIndex.search` (k at most ``max(len(index), 1024)``); filters
            are applied inside the scan.
        probes : int, optional
            Lists scanned per query, for an index with partitions (default
            ``max(1, partitions // 16)``); more probes, higher recall, slower.
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
        with self._rw.read():  # rows are rewritten only under the write lock
            return self._search(self._state, queries, k, exclude, allow, probes, rerank)

    def _search(self, state: _State, queries: Any, k: Any, exclude: Any, allow: Any,
                probes: Any, rerank: Any) -> tuple[np.ndarray, np.ndarray]:
        if state.n == 0:
            raise ValueError("the index is empty: add vectors before searching")
        k = check_k(k, state.n)
        if probes is not None:
            probes = _int_arg(probes, "probes", 1)
            if self._partitions is None:
                raise ValueError("probes applies only to an index built with partitions")
            if probes > self._partitions:
                raise ValueError(f"probes must be <= partitions ({self._partitions}), got {probes}")
        elif self._partitions is not None:
            probes = max(1, self._partitions // 16)
        if rerank is None:
            rerank = 4 if state.vectors is not None else 0
        rerank = _int_arg(rerank, "rerank", 0)
        if rerank and state.vectors is None:
            raise ValueError("rerank needs the float32 vectors: build with keep_vectors=True or "
                             "pass rerank=0")
        matrix, single = self._queries(queries)
        if self._metric == "cosine":
            matrix = self._normalized_copy(matrix)
        excluded, allow_mask, allow_ids = self._filters(exclude, allow, matrix.shape[0], state.n, single)
        view = self._view if self._state is state else self._make_view(state)
        # Positional: matching keyword names costs microseconds of a few-list search.
        ids, scores = view.search(
            matrix, k, None if excluded is None else excluded[0], None if excluded is None else excluded[1],
            allow_mask, allow_ids, self._row_ids.deleted_mask(state.n),
            1 if state.lists is None else probes, rerank, self._num_threads)
        ids, scores = self._caller_results(ids, scores)
        return (ids[0], scores[0]) if single else (ids, scores)

    def _queries(self, queries: Any) -> tuple[np.ndarray, bool]:
        """as_queries, with a shortcut for float32 C-contiguous arrays of the right shape:
        the general checks cost more than a search over a few short lists (NaN and inf
        are then rejected by the native search, with as_queries' message)."""
        if (type(queries) is np.ndarray and queries.dtype == np.float32 and queries.ndim in (1, 2)
                and queries.flags.c_contiguous and queries.size and queries.shape[-1] == self._d):
            return (queries[None, :], True) if queries.ndim == 1 else (queries, False)
        return as_queries(queries, "queries", self.dim)

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` (versioned, checksummed, atomically replaced)."""
        with self._rw.read():
            self._save(path, self._state)

    def _save(self, path: Any, state: _State) -> None:
        arrays: dict[str, np.ndarray] = self._row_ids.arrays(state.n)
        version = _KIND_VERSION if arrays else 2  # 2 where nothing needs 3: earlier llmrec reads it
        if state.lists is not None:
            arrays["codes"] = state.codes
            arrays.update(centroids=self._list_centroids, list_starts=state.lists.starts,
                          list_sizes=state.lists.sizes, slot_ids=state.lists.slot_ids,
                          assignment=state.lists.assignment)
        else:
            arrays["codes"] = np.asarray(state.codes[:self._coder.code_rows(state.n)])
        arrays.update(self._coder.file_arrays())
        if state.item_scales is not None:
            slots = len(state.lists.slot_ids) if state.lists is not None else \
                -(-state.n // _SQ8_BLOCK) * _SQ8_BLOCK
            arrays["item_scales"] = np.asarray(state.item_scales[:slots])
            if state.item_bases is not None:
                arrays["item_bases"] = np.asarray(state.item_bases[:slots])
                arrays["bases"] = self._base_rows
        if state.vectors is not None:
            arrays["vectors"] = np.asarray(state.vectors[:state.n])
        meta = {"codec": self._codec, "metric": self._metric, "n": state.n, "dim": self._d,
                "keep_vectors": self._keep_vectors, "partitions": self._partitions,
                "pq_subspaces": self._pq_m, "residual": self._residual}
        save_arrays(path, _KIND, version, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False, num_threads: int = 0,
             verify: bool = True) -> QuantizedIndex:
        """Read an index written by :meth:`save`.

        With ``mmap=True`` codes and vectors are memory-mapped read-only (``add`` then
        copies them). The structure is checked whatever ``verify`` says (it only skips
        the checksums): the metadata's fields and types, every array's dtype and shape
        against the codec, dimension and item count, finite codec parameters, and for an
        inverted file block-aligned, non-overlapping list ranges that hold each item id
        exactly once, in its assigned list, with only -1 padding elsewhere. The per-item
        values (vectors, scales, fp16 codes) are checked finite too, unless memory-mapped
        without ``verify`` (then they are not read at load). Raises ``llmrec.FormatError`` (a ``ValueError``) for a truncated,
        corrupted, inconsistent or foreign file.
        """
        num_threads = check_int(num_threads, "num_threads", minimum=0)
        meta, arrays, version = load_arrays(path, _KIND, max_kind_version=_KIND_VERSION, mmap=mmap,
                                            verify=verify)
        index = cls.__new__(cls)
        index._codec = meta_choice(meta, "codec", path, _CODECS)
        index._metric = meta_choice(meta, "metric", path, _METRICS)
        n = meta_int(meta, "n", path, minimum=0)
        d = meta_int(meta, "dim", path, minimum=1, maximum=1 << 20)
        index._keep_vectors = meta_value(meta, "keep_vectors", path, types=bool)
        index._partitions = meta_int(meta, "partitions", path, minimum=1, maximum=1 << 24,
                                     optional=True)
        index._pq_m = meta_int(meta, "pq_subspaces", path, minimum=1, maximum=256, optional=True)
        if (index._codec == "pq4") != (index._pq_m is not None) or (
                index._pq_m is not None and d % index._pq_m):
            raise fail(path, "pq_subspaces does not match the codec and dimension")
        # Version 1 files hold plain sq8 codes (no residuals), which still search as before.
        residual = meta_value(meta, "residual", path, types=bool, default=False)
        index._residual = residual if version >= 2 else False
        if index._residual and index._codec != "sq8":
            raise fail(path, "residual codes are an sq8 feature")
        index._num_threads = num_threads
        index._d = d
        index._centroids = index._bases = None
        index._coder = index._new_coder()  # its block size checks the lists; trained below
        lists = None
        slots = n
        if index._partitions is not None:
            lists = index._load_lists(path, arrays, n, d)
            slots = len(lists.slot_ids)
        # The per-item payload (codes, scales, vectors) is value-checked unless it is
        # memory-mapped without verify: then it is not read at load.
        payload = verify or not mmap
        codes = index._load_codec(path, arrays, slots, payload)
        scales = bases = None
        if index._residual:
            room = codes.shape[0] * _SQ8_BLOCK
            scales = array(arrays, "item_scales", path, dtype=np.float32, shape=(room,), finite=payload)
            if index._partitions is None:
                bases = array(arrays, "item_bases", path, dtype=np.uint16, shape=(room,))
                index._bases = array(arrays, "bases", path, dtype=np.float32, shape=(None, d),
                                     finite=True)
                if not 1 <= index._bases.shape[0] <= 65536:
                    raise fail(path, f"array 'bases' has {index._bases.shape[0]} rows, expected 1 to 65536")
                check_range(path, "item_bases", bases, 0, index._bases.shape[0])
        vectors = None
        if index._keep_vectors:
            vectors = array(arrays, "vectors", path, dtype=np.float32, shape=(n, d), finite=payload)
        index._rw = ReadWriteLock()
        try:
            index._set_state(_State(n, codes, vectors, lists, scales, bases))
        except ValueError as e:  # the native view's checks, as a FormatError naming the file
            raise fail(path, str(e)) from None
        row_ids = array(arrays, "row_ids", path, dtype=np.int64, shape=(n,), required=False)
        deleted = array(arrays, "deleted", path, dtype=np.uint8, shape=(n,), required=False)
        index._row_ids = RowIds.from_arrays(row_ids, deleted, n, lambda message: fail(path, message))
        return index

    def _load_codec(self, path: Any, arrays: dict[str, np.ndarray], slots: int,
                    check_values: bool) -> np.ndarray:
        """Read the codec's parameters into ``self._coder``; check and return the codes for
        ``slots`` slots."""
        if self._codec == "sq8":
            self._coder = Sq8.load(arrays, path, self._d)
        elif self._codec == "pq4":
            self._coder = Pq4.load(arrays, path, self._d, self._subspace_count)
        return self._coder.load_codes(arrays, path, slots, check_values)

    def _load_lists(self, path: Any, arrays: dict[str, np.ndarray], n: int, d: int) -> _Lists:
        """Read and check the inverted file's arrays (ids must index memory safely)."""
        p = self._n_lists
        self._centroids = array(arrays, "centroids", path, dtype=np.float32, shape=(p, d), finite=True)
        lists = _Lists(array(arrays, "list_starts", path, dtype=np.int64, shape=(p,)),
                       array(arrays, "list_sizes", path, dtype=np.int64, shape=(p,)),
                       array(arrays, "slot_ids", path, dtype=np.int64, ndim=1),
                       array(arrays, "assignment", path, dtype=np.int32, shape=(n,)))
        slots = len(lists.slot_ids)
        if slots % self._coder.block:
            raise fail(path, f"array 'slot_ids' holds {slots} slots, not whole blocks of {self._coder.block}")
        if int(lists.sizes.sum()) != n:
            raise fail(path, f"the inverted lists hold {int(lists.sizes.sum())} items, expected {n}")
        occupied = check_list_ranges(path, lists.starts, lists.sizes, slots, self._coder.block)
        check_range(path, "slot_ids", lists.slot_ids, -1, n)
        check_range(path, "assignment", lists.assignment, 0, p)
        ids = lists.slot_ids[occupied]
        if (ids < 0).any():
            raise fail(path, "an inverted list holds a padding slot (-1) inside its range")
        if int((lists.slot_ids >= 0).sum()) != n:
            raise fail(path, "array 'slot_ids' holds item ids outside the inverted lists")
        check_unique(path, "slot_ids", ids)  # n distinct ids in [0, n): each item exactly once
        owner = np.repeat(np.arange(p, dtype=np.int32), lists.sizes)
        if not np.array_equal(lists.assignment[ids], owner):
            raise fail(path, "array 'assignment' disagrees with the lists the items are stored in")
        return lists


def train_lists(sample: np.ndarray, lists: int, seed: int, num_threads: int) -> np.ndarray:
    """Inverted-list centroids (lists, d) float32 of ``sample`` (float32 rows): Lloyd
    k-means (L2, native) as the start, then Lloyd rounds that assign by inner product —
    the rule lists are probed and filled by — and move each centroid to the mean of its
    rows. With L2 lists alone, fewer lists than data clusters merged clusters behind
    short centroids that the probe ranks low (200k clustered, 100 lists, sq8, 1 probe:
    recall@10 0.375 L2 lists, 0.808 assigned by inner product, 0.949 after 10
    inner-product rounds)."""
    centroids, _ = _core.kmeans_train(sample, lists, _IVF_L2_ITERATIONS, seed, num_threads)
    for _ in range(_IVF_IP_ROUNDS):
        nearest = nearest_lists(centroids, sample, num_threads)
        counts = np.bincount(nearest, minlength=lists)
        used = np.flatnonzero(counts)
        # Each list's sum in float64, its rows added in row order: a (lists × rows) 0/1
        # matrix times the sample (4× faster than gathering the rows and np.add.reduceat).
        members = sp.csr_matrix((np.ones(len(nearest)), np.argsort(nearest, kind="stable"),
                                 np.concatenate([[0], np.cumsum(counts)])), shape=(lists, len(nearest)))
        sums = (members @ sample)[used]
        centroids[used] = (sums / counts[used, None]).astype(np.float32)  # empty lists stay
    return centroids


def nearest_lists(centroids: np.ndarray, rows: np.ndarray, num_threads: int) -> np.ndarray:
    """Each row's list (int32): the centroid with the largest inner product, the rule
    that ranks lists at search time. (Assigning by L2 distance instead put a query's
    neighbours in the list probed first only 44 % of the time on 1M clustered vectors
    with 1,000 lists for 4,000 clusters: merged clusters have short centroids, which the
    inner-product probe ranks low; recall@10 0.42 – 0.74.)"""
    return probed_lists(centroids, rows, 1, num_threads)[:, 0].astype(np.int32)


def probed_lists(centroids: np.ndarray, queries: np.ndarray, probes: int, num_threads: int) -> np.ndarray:
    """Each query's ``probes`` lists of largest inner product with their centroid (int64
    (nq, probes), best first). batch_invariant: the scores do not depend on how many
    queries are asked together, so an item's own vector always ranks the list it was
    put in first."""
    ids, _ = _core.search_exact(centroids, queries, probes, exclude_indptr=None, exclude_ids=None,
                                allow_mask=None, allow_ids=None, normalize_queries=False,
                                num_threads=num_threads, batch_invariant=True)
    return ids
