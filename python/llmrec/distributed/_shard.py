"""The Ray actor behind ShardedIndex: one contiguous range of item ids in a local index."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp


class Shard:
    """Items ``start .. start + len - 1`` of a sharded index, held in an ExactIndex or a
    QuantizedIndex. Made a Ray actor by :func:`llmrec.distributed._ray.actor_class`; construction does
    nothing, :meth:`load` builds the index so that its errors reach the caller as
    ordinary exceptions (an error in an actor's constructor only kills the actor)."""

    def __init__(self) -> None:
        self._index: Any = None
        self._start = 0
        self._exclusions: sp.csr_matrix | None = None

    def load(self, vectors: np.ndarray, start: int, codec: str | None, metric: str,
             index_options: dict[str, Any], num_threads: int) -> int:
        from llmrec.index import ExactIndex
        from llmrec.quantized import QuantizedIndex

        if codec is None:
            self._index = ExactIndex(vectors, metric=metric, num_threads=num_threads,
                                     **index_options)
        else:
            self._index = QuantizedIndex(vectors, codec=codec, metric=metric,
                                         num_threads=num_threads, **index_options)
        self._start = int(start)
        return len(self._index)

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id) of this shard."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def set_exclusions(self, indptr: np.ndarray, ids: np.ndarray, n_rows: int) -> None:
        """Keep per-row excluded local ids (CSR) for :meth:`search_rows`."""
        data = np.ones(ids.shape[0], dtype=np.uint8)
        self._exclusions = sp.csr_matrix((data, ids, indptr), shape=(n_rows, len(self._index)))

    def search(self, queries: np.ndarray, k: int, exclude: tuple[np.ndarray, np.ndarray] | None,
               allow: np.ndarray | None, search_options: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of this shard with global ids; ``exclude`` a local (indptr, ids) CSR,
        ``allow`` a local bool mask or id array."""
        excluded = None
        if exclude is not None:
            indptr, ids = exclude
            excluded = sp.csr_matrix((np.ones(ids.shape[0], dtype=np.uint8), ids, indptr),
                                     shape=(queries.shape[0], len(self._index)))
        return self._search(queries, k, excluded, allow, search_options)

    def search_rows(self, queries: np.ndarray, k: int, row_start: int, row_stop: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for queries that are rows ``row_start:row_stop`` of the stored exclusions."""
        excluded = None if self._exclusions is None else self._exclusions[row_start:row_stop]
        return self._search(queries, k, excluded, None, {})

    def _search(self, queries: np.ndarray, k: int, exclude: Any, allow: Any,
                search_options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self._index.search(queries, k, exclude=exclude, allow=allow,
                                         **search_options)
        if self._start:
            ids = np.where(ids >= 0, ids + self._start, ids)
        return ids, scores
