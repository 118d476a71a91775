"""Stage-1 indexes for large catalogues: the partitioned (IVF) QuantizedIndex, and the
choice of index by catalogue size (``index="auto"``).

:class:`PartitionedChannel` wraps a :class:`llmrec.QuantizedIndex` with inverted lists
(sq8 or pq4 codes) and a fixed number of probed lists. Items added after the build go
to a small exact side index ("delta") searched with it, instead of into the lists: the
quantized index rebuilds its lists on every ``add`` (O(n), about a second at 10M
items), while the delta costs O(added) per request until the next fit folds it in.
Both are searched for C candidates and the union is re-scored exactly by stage 2, so
the codes only decide which items are looked at, never their scores.

The lists are built over rows lifted to one common norm: each row x gets the extra
coordinate √(M² − |x|²), M the largest norm, and each query a 0 there, so every inner
product is unchanged (the maximum-inner-product-to-nearest-neighbour reduction of
Bachrach et al., 2014). Without it, ALS factors (whose norms grow with popularity)
were split into very unequal lists: on 100k synthetic items, 892 of 1,265 lists were
empty and the largest 10 held 62 % of the items, so a probe scanned most of the
catalogue.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec.index import ExactIndex

LOG = logging.getLogger("llmrec.recommender")

INDEXES = ("exact", "sq8", "fp16", "ivf-sq8", "ivf-pq4", "auto")
# index="auto": an exact scan reads 4·(f + f/2) bytes per item per request (96 floats at
# f = 64: 38 MB at 100k items, about 3 ms here); above AUTO_FLAT_ITEMS a flat sq8 scan
# (a quarter of that) and above AUTO_IVF_ITEMS inverted lists, which read only the
# probed lists.
AUTO_FLAT_ITEMS = 50_000
AUTO_IVF_ITEMS = 400_000
LISTS_PER_SQRT_N = 4        # partitions ≈ 4·√n (faiss's rule of thumb: 4–16·√n)
MIN_PARTITIONS, MAX_PARTITIONS = 1, 65_536
# probes: a sixteenth of the lists, within [MIN_PROBES, MAX_PROBES]. A top-256 candidate
# set spans many lists: 4,000 synthetic items, 253 lists: 16 probes gave a two-stage
# recall@10 of 0.81, 64 probes 0.99; 100k items, 1,265 lists: 16 probes 0.905, 64 0.992.
MIN_PROBES, MAX_PROBES = 64, 256
TRAIN_ROWS_PER_LIST = 32    # k-means training rows per list (a sample, not the catalogue)


def resolve_index(kind: str, n_items: int) -> str:
    """The stage-1 index for ``kind`` on ``n_items`` items ("auto" picks by size)."""
    if kind != "auto":
        return kind
    if n_items < AUTO_FLAT_ITEMS:
        return "exact"
    return "sq8" if n_items < AUTO_IVF_ITEMS else "ivf-sq8"


def default_partitions(n_items: int) -> int:
    """≈ 4·√n lists, never more than the items (at least 1)."""
    p = int(round(LISTS_PER_SQRT_N * math.sqrt(max(n_items, 1))))
    return max(MIN_PARTITIONS, min(p, MAX_PARTITIONS, max(n_items, 1)))


def default_probes(partitions: int) -> int:
    """Lists probed per search (see MIN_PROBES, MAX_PROBES), at most all."""
    return max(1, min(partitions, max(MIN_PROBES, min(MAX_PROBES, -(-partitions // 16)))))


class PartitionedChannel:
    """A stage-1 channel over inverted lists (see the module docstring).

    Parameters
    ----------
    rows : (n, d) float32, the channel's item vectors.
    codec : "sq8" or "pq4".
    partitions, probes : int or None (None: :func:`default_partitions`,
        :func:`default_probes`); probes ≥ partitions scans every list.
    """

    def __init__(self, rows: np.ndarray, codec: str, num_threads: int, random_state: Any,
                 partitions: int | None = None, probes: int | None = None) -> None:
        from llmrec.quantized import QuantizedIndex

        n = len(rows)
        self.partitions = default_partitions(n) if partitions is None else min(int(partitions), n)
        self.probes = (default_probes(self.partitions) if probes is None
                       else min(int(probes), self.partitions))
        self.codec = codec
        norms = np.linalg.norm(rows.astype(np.float64), axis=1)
        self.lift = float(norms.max()) if n and norms.max() > 0 else 1.0
        lifted = np.empty((n, rows.shape[1] + 1), dtype=np.float32)
        lifted[:, :-1] = rows
        lifted[:, -1] = np.sqrt(np.maximum(self.lift ** 2 - norms ** 2, 0.0))
        self.main = QuantizedIndex(lifted, codec=codec, partitions=self.partitions, keep_vectors=False,
                                   train_size=max(self.partitions * TRAIN_ROWS_PER_LIST, 32_768),
                                   random_state=random_state, num_threads=num_threads)
        self.n_main = n
        self.delta: ExactIndex | None = None
        self._num_threads = num_threads

    @property
    def dim(self) -> int:
        return self.main.dim - 1  # the lifting coordinate is internal

    def __len__(self) -> int:
        return self.n_main + (0 if self.delta is None else len(self.delta))

    def add(self, rows: np.ndarray) -> None:
        """Append rows (in the delta). Call on a fork (:func:`.snapshot.fork`): the delta
        is forked here too, so the original keeps searching what it had."""
        from llmrec.recommender.snapshot import fork

        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if self.delta is None:
            self.delta = ExactIndex(rows, num_threads=self._num_threads)
        else:
            self.delta = fork(self.delta)
            self.delta.add(rows)

    def memory_bytes(self) -> int:
        delta = 0 if self.delta is None else len(self.delta) * self.delta.dim * 4
        return int(self.main.memory_bytes()) + delta

    def search(self, queries: np.ndarray, k: int, *, exclude: Any = None, allow: Any = None
               ) -> tuple[np.ndarray, None]:
        """Candidate rows (nq, ≤ 2k) of the lists and the delta; -1 for none. Scores are
        not returned (stage 2 re-scores)."""
        n0 = self.n_main
        main_allow = None if allow is None else allow[allow < n0]
        lists = []
        if main_allow is None or len(main_allow):
            lifted = np.zeros((len(queries), queries.shape[1] + 1), dtype=np.float32)
            lifted[:, :-1] = queries
            lists.append(self.main.search(lifted, min(k, n0), exclude=_columns(exclude, 0, n0),
                                          allow=main_allow, probes=self.probes)[0])
        if self.delta is not None:
            n1 = len(self.delta)
            delta_allow = None if allow is None else allow[allow >= n0] - n0
            if delta_allow is None or len(delta_allow):
                ids = self.delta.search(queries, min(k, n1), exclude=_columns(exclude, n0, n0 + n1),
                                        allow=delta_allow)[0]
                lists.append(np.where(ids >= 0, ids + n0, -1))
        if not lists:
            return np.full((len(queries), 1), -1, dtype=np.int64), None
        if len(lists) == 1:
            return lists[0], None
        from llmrec.recommender.scoring import union

        return union(lists), None


def _columns(exclude: Any, start: int, stop: int) -> Any:
    """``exclude`` (None, a CSR (nq, ≥ stop) or a list of id arrays) restricted to the
    item rows [start, stop), renumbered from 0."""
    if exclude is None:
        return None
    if isinstance(exclude, list):
        return [np.asarray(ids, dtype=np.int64)[(ids >= start) & (ids < stop)] - start for ids in exclude]
    matrix = sp.csr_matrix(exclude)
    if matrix.shape[1] < stop:
        matrix = sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr),
                               shape=(matrix.shape[0], stop))
    return matrix[:, start:stop]


def describe(kind: str, requested: str, n_items: int, channel: Any) -> str:
    """One line saying what stage 1 uses, for the log and ``Recommender.index_info_``."""
    what = f"stage-1 index {kind!r} for {n_items:,} items"
    if isinstance(channel, PartitionedChannel):
        what += f" ({channel.partitions} lists, {channel.probes} probed)"
    if requested == "auto":
        what += (f" (index='auto': exact below {AUTO_FLAT_ITEMS:,} items, flat sq8 below "
                 f"{AUTO_IVF_ITEMS:,}, inverted lists above)")
    return what


__all__ = ["INDEXES", "PartitionedChannel", "default_partitions", "default_probes", "describe", "log_index",
           "resolve_index"]


def log_index(stage1: Any, n_items: int) -> str:
    """Log (INFO, "llmrec.recommender") and return what stage 1 uses."""
    line = describe(stage1.kind, getattr(stage1, "requested", stage1.kind), n_items, stage1.behaviour)
    LOG.info(line)
    return line
