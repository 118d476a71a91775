"""Item vectors sharded over Ray actors: exact top-k search across shards, and top-k for
every user of a factorisation model.

Items are cut into contiguous id ranges, one per actor; each actor holds its range in an
:class:`llmrec.ExactIndex` (or a :class:`llmrec.QuantizedIndex` with ``codec``). A search
is sent to every shard that can contribute, each returns its own top-k, and the lists
are merged exactly: the result is what one index over all items returns (same ids,
same order, same padding), because a shard scores its items with the same kernel and
ties break by smaller id within and across shards.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Any

import numpy as np

from llmrec._checks import (allow_to_native, as_float_matrix, as_queries, check_choice, check_int,
                            check_k, check_threads, check_vector_norms, exclude_to_csr)
from llmrec.distributed import _ray
from llmrec.distributed._shard import Shard
from llmrec.distributed.merge import merge_topk, shard_bounds, split_exclusions
from llmrec.exceptions import NotFittedError

_METRICS = ("ip", "cosine")
_CODECS = ("sq8", "fp16", "pq4")
_DEFAULT_ACTOR_OPTIONS = {"scheduling_strategy": "SPREAD"}
_PIPELINE_DEPTH = 2  # recommend_all: batches in flight at once (the next one is queued
#                     while the driver merges the previous one)


class ShardedIndex:
    """Exact (or quantized) top-k search over item vectors held by ``num_shards`` Ray actors.

    Parameters
    ----------
    vectors : array of shape (n, d)
        Item vectors; row i is item id i. Shard s holds a contiguous range of ids.
    num_shards : int
        Actors to spread the items over, 1 to n.
    codec : None, "sq8", "fp16" or "pq4"
        None: each shard is an :class:`llmrec.ExactIndex`, and results equal one
        ExactIndex over all items. A codec: each shard is a :class:`llmrec.QuantizedIndex`
        trained on its own items (so results are those of the shards' indexes merged,
        not of one QuantizedIndex over all items).
    metric : {"ip", "cosine"}
    index_options : dict, optional
        More keyword arguments for each shard's QuantizedIndex (``partitions``,
        ``keep_vectors``, ``random_state``, ...).
    threads_per_shard : int
        ``num_threads`` of each shard's index (default 1: one core per shard).
    actor_options : dict, optional
        Passed to Ray's ``.options()`` for every shard actor (``num_cpus``,
        ``resources``, ``scheduling_strategy``, ...). Default:
        ``{"scheduling_strategy": "SPREAD"}`` (shards spread over the nodes; Ray's default
        resources: a CPU to be placed, none held, so shards may outnumber cores).
    timeout : float or None
        Seconds any one wait on the cluster may take (building the shards, one search);
        None means 600 s. A wait that times out raises ``TimeoutError`` and closes the
        index (its actors are killed).

    Raises
    ------
    RuntimeError
        Ray is not running (call ``ray.init()`` first).
    ValueError, TypeError
        Bad vectors, settings or shard count (also when a shard's index refuses its
        part of the vectors: the actors are killed first).

    The actors live as long as this object (or until :meth:`close`); use it as a context
    manager to close them at the end of a block.

    Examples
    --------
    >>> with ShardedIndex(item_vectors, num_shards=4) as index:
    ...     ids, scores = index.search(user_vectors, k=10, exclude=seen)
    """

    def __init__(self, vectors: Any, *, num_shards: int = 4, codec: str | None = None,
                 metric: str = "ip", index_options: dict[str, Any] | None = None,
                 threads_per_shard: int = 1, actor_options: dict[str, Any] | None = None,
                 timeout: float | None = None) -> None:
        ray = _ray.require_ray()
        self._timeout = _ray.resolve_timeout(timeout)
        self._metric = check_choice(metric, "metric", _METRICS)
        if codec is not None:
            check_choice(codec, "codec", _CODECS)
        self._codec = codec
        if index_options is None:
            index_options = {}
        if not isinstance(index_options, dict):
            raise TypeError(f"index_options must be a dict or None, got {type(index_options).__name__}")
        if codec is None and index_options:
            raise ValueError(f"index_options apply to a QuantizedIndex (codec=...), not to exact "
                             f"shards: got {sorted(index_options)}")
        for name in ("codec", "metric", "num_threads", "vectors"):
            if name in index_options:
                raise ValueError(f"index_options must not set {name!r}: it is an argument of "
                                 "ShardedIndex itself")
        threads = check_threads(threads_per_shard, "threads_per_shard")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"actor_options must be a dict or None, got {type(actor_options).__name__}")
        options = dict(_DEFAULT_ACTOR_OPTIONS if actor_options is None else actor_options)
        items = as_float_matrix(vectors, "vectors")
        if self._metric == "ip":  # checked here so that a bad row is named by its global id
            check_vector_norms(items, "vectors")
        n = items.shape[0]
        num_shards = check_int(num_shards, "num_shards", minimum=1)
        if num_shards > n:
            raise ValueError(f"num_shards must be at most the number of items ({n}), got {num_shards}")
        self._n, self._dim = n, int(items.shape[1])
        self._bounds = shard_bounds(n, num_shards)
        self._actors: list[Any] = []
        actor_class = _ray.actor_class(Shard)
        with _ray.killed_on_error(self._actors):
            loads = []
            for s in range(num_shards):
                start, stop = int(self._bounds[s]), int(self._bounds[s + 1])
                actor = actor_class.options(**options).remote()
                self._actors.append(actor)
                loads.append(actor.load.remote(ray.put(items[start:stop]), start, codec,
                                               self._metric, index_options, threads))
            self._wait(loads, "building the shards")

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self._n

    @property
    def dim(self) -> int:
        """Dimension d of the vectors."""
        return self._dim

    @property
    def metric(self) -> str:
        """"ip" or "cosine", as given."""
        return self._metric

    @property
    def codec(self) -> str | None:
        """The shards' QuantizedIndex codec, or None for exact shards."""
        return self._codec

    @property
    def num_shards(self) -> int:
        """How many shard actors hold the items."""
        return int(self._bounds.shape[0] - 1)

    @property
    def shard_bounds(self) -> np.ndarray:
        """Shard s holds item ids ``shard_bounds[s]`` to ``shard_bounds[s + 1] - 1``."""
        return self._bounds.copy()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has killed the shard actors."""
        return not self._actors

    def __repr__(self) -> str:
        return (f"ShardedIndex(n={self._n}, dim={self._dim}, num_shards={self.num_shards}, "
                f"codec={self._codec!r}, metric={self._metric!r}{', closed' if self.closed else ''})")

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the shard actors (searching afterwards raises ``RuntimeError``)."""
        actors, self._actors = self._actors, []
        if actors:
            with contextlib.suppress(Exception):
                _ray.kill(actors)

    def locations(self) -> list[tuple[str, int]]:
        """(Ray node id, process id) of each shard's actor, in shard order."""
        return self._wait([actor.where.remote() for actor in self._live_actors()], "locating shards")

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int = 10, *, exclude: Any = None, allow: Any = None,
               probes: int | None = None, rerank: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Return the k best items for each query, with :meth:`llmrec.ExactIndex.search`'s
        contract.

        Parameters
        ----------
        queries : array of shape (d,) or (nq, d)
        k : int
            Results per query, at most ``max(len(index), 1024)``; beyond the items that
            qualify, results are padded with id -1 and score -inf.
        exclude : scipy sparse matrix (nq, n) or sequence of nq id arrays, optional
            Items never returned for each query; cut per shard and applied inside it.
        allow : bool mask of length n or array of ids, optional
            Only these items may be returned; shards holding none of them are skipped.
        probes, rerank : int, optional
            Passed to each shard's :meth:`llmrec.QuantizedIndex.search` (codec only).

        Returns
        -------
        ids : int64 array (nq, k), or (k,) for a 1-D query
        scores : float32 array of the same shape, descending, ties by smaller id.

        Raises
        ------
        ValueError, TypeError
            Bad queries, k, exclude, allow, probes or rerank (the index stays usable).
        TimeoutError
            A shard did not answer within ``timeout``; the index is closed.
        RuntimeError
            A shard failed (its actor died or its search raised); the index is closed.
        """
        actors = self._live_actors()
        n = self._n
        k = check_k(k, n)
        matrix, single = as_queries(queries, "queries", self._dim)
        excluded = exclude_to_csr(exclude, matrix.shape[0], n, single_query=single)
        allow_mask, allow_ids = allow_to_native(allow, n)
        search_options = self._search_options(probes, rerank)
        parts = split_exclusions(*excluded, self._bounds) if excluded is not None else None
        ray = _ray.require_ray()
        queries_ref = ray.put(matrix)
        calls = []
        for s, actor in enumerate(actors):
            start, stop = int(self._bounds[s]), int(self._bounds[s + 1])
            local_allow = None
            if allow_mask is not None:
                local_allow = allow_mask[start:stop].view(np.bool_)
                if not local_allow.any():
                    continue
            elif allow_ids is not None:
                lo, hi = np.searchsorted(allow_ids, [start, stop])
                if lo == hi:
                    continue
                local_allow = allow_ids[lo:hi] - start
            calls.append(actor.search.remote(queries_ref, min(k, stop - start),
                                             None if parts is None else parts[s], local_allow,
                                             search_options))
        results = self._wait(calls, "searching", keep_on=(ValueError, TypeError))
        if results:
            ids, scores = merge_topk([r[0] for r in results], [r[1] for r in results], k)
        else:  # no shard holds an allowed item
            ids = np.full((matrix.shape[0], k), -1, dtype=np.int64)
            scores = np.full((matrix.shape[0], k), -np.inf, dtype=np.float32)
        return (ids[0], scores[0]) if single else (ids, scores)

    def _search_options(self, probes: Any, rerank: Any) -> dict[str, Any]:
        options = {name: value for name, value in (("probes", probes), ("rerank", rerank))
                   if value is not None}
        if options and self._codec is None:
            raise ValueError(f"{' and '.join(options)} apply to a quantized index (codec=...), "
                             "not to exact shards")
        return {name: check_int(value, name, minimum=1 if name == "probes" else 0)
                for name, value in options.items()}

    # ------------------------------------------------------------------ helpers
    def _live_actors(self) -> list[Any]:
        if not self._actors:
            raise RuntimeError("this ShardedIndex is closed (close() was called, or a shard "
                               "failed): build a new one")
        return self._actors

    def _wait(self, refs: list[Any], what: str, keep_on: tuple[type[BaseException], ...] = ()) -> list[Any]:
        """All results of ``refs``, within the timeout; on any failure except ``keep_on``
        (errors in the caller's input, which leave the shards as they were) every actor
        is killed and the error re-raised, named."""
        try:
            return _wait_for(refs, self._timeout, what)
        except keep_on:
            raise
        except BaseException:
            self.close()
            raise


def _wait_for(refs: list[Any], timeout: float | None, what: str) -> list[Any]:
    """``_ray.get`` of ``refs``: a ValueError or TypeError raised in a shard is re-raised
    as it is (the caller's input); a timeout as a TimeoutError; a dead actor or any other
    failure as a RuntimeError saying what was being done."""
    ray = _ray.require_ray()
    try:
        return _ray.get(refs, timeout=timeout)
    except (ValueError, TypeError):
        raise
    except TimeoutError as exc:
        raise TimeoutError(f"{what}: a shard did not answer within {timeout} s "
                           "(the shard actors are killed)") from exc
    except ray.exceptions.RayActorError as exc:
        raise RuntimeError(f"{what}: a shard actor died ({_ray.actor_died_message(exc)}); "
                           "the shard actors are killed") from exc
    except Exception as exc:
        raise RuntimeError(f"{what}: a shard failed with {type(exc).__name__}: {exc} "
                           "(the shard actors are killed)") from exc


def recommend_all(als: Any, user_items: Any, k: int = 100, *, num_shards: int = 4,
                  batch_size: int = 8192, threads_per_shard: int = 1,
                  actor_options: dict[str, Any] | None = None,
                  timeout: float | None = None,
                  show_progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for every user of a factorisation model, items sharded over Ray actors.

    The same as ``ExactIndex(als.item_factors_).search(als.user_factors_, k,
    exclude=user_items)`` (and as ``als.recommend(range(n_users), user_items, k)`` for an
    :class:`llmrec.ALS`): scores by inner product, each user's seen items excluded,
    sorted by score descending with ties by smaller id, padded with -1/-inf.

    Parameters
    ----------
    als
        A fitted :class:`llmrec.ALS`, :class:`llmrec.distributed.ALS`, or anything with
        ``user_factors_`` (n_users, f) and ``item_factors_`` (n_items, f).
    user_items : scipy sparse (n_users, n_items), sequence of id arrays, or None
        Items excluded per user (non-zero entries); None excludes nothing. Each shard
        receives its columns once and applies them itself.
    k : int
        Results per user, at most ``max(n_items, 1024)``.
    num_shards : int
        Actors holding the items (1 to n_items).
    batch_size : int
        Users per round of searches; two rounds are in flight at once.
    threads_per_shard, actor_options, timeout
        As in :class:`ShardedIndex` (``timeout`` bounds each wait, not the whole run).
    show_progress : bool
        Show a tqdm bar of users done.

    Returns
    -------
    ids : int64 (n_users, k), scores : float32 (n_users, k)

    Raises
    ------
    RuntimeError
        Ray is not running, or a shard failed (every actor is killed first).
    TimeoutError
        A wait took longer than ``timeout`` (every actor is killed first).
    ValueError, TypeError
        Bad model, shapes, k, num_shards or batch_size.
    """
    ray = _ray.require_ray()
    U, V = _factors(als)
    n_users, n_items = U.shape[0], V.shape[0]
    k = check_k(k, n_items)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    try:
        excluded = exclude_to_csr(user_items, n_users, n_items, single_query=False)
    except (ValueError, TypeError) as exc:  # name the argument as the caller knows it
        raise type(exc)(f"user_items (one row per user, n_users={n_users}, n_items={n_items}): "
                        f"{exc}") from None
    timeout = _ray.resolve_timeout(timeout)
    if not isinstance(show_progress, (bool, np.bool_)):
        raise TypeError(f"show_progress must be a bool, got {type(show_progress).__name__}")
    index = ShardedIndex(V, num_shards=num_shards, threads_per_shard=threads_per_shard,
                         actor_options=actor_options, timeout=timeout)
    try:
        return _score_all(ray, index, U, excluded, k, batch_size, show_progress)
    finally:
        index.close()


def _factors(als: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        U, V = als.user_factors_, als.item_factors_
    except NotFittedError:
        raise
    except AttributeError:
        raise TypeError(f"als must be a fitted model with user_factors_ and item_factors_ "
                        f"(llmrec.ALS, llmrec.distributed.ALS), got {type(als).__name__}") from None
    U = as_float_matrix(U, "als.user_factors_")
    V = as_float_matrix(V, "als.item_factors_")
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"als.user_factors_ {U.shape} and als.item_factors_ {V.shape} must "
                         "have the same number of columns (factors)")
    check_vector_norms(U, "als.user_factors_")
    return U, V


def _score_all(ray: Any, index: ShardedIndex, U: np.ndarray,
               excluded: tuple[np.ndarray, np.ndarray] | None, k: int, batch_size: int,
               show_progress: bool) -> tuple[np.ndarray, np.ndarray]:
    n_users = U.shape[0]
    actors = index._live_actors()
    bounds = index._bounds
    widths = [min(k, int(bounds[s + 1] - bounds[s])) for s in range(len(actors))]
    if excluded is not None:
        parts = split_exclusions(*excluded, bounds)
        index._wait([actor.set_exclusions.remote(indptr, ids, n_users)
                     for actor, (indptr, ids) in zip(actors, parts)], "sending exclusions")
    out_ids = np.empty((n_users, k), dtype=np.int64)
    out_scores = np.empty((n_users, k), dtype=np.float32)
    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=n_users, unit="user", desc="recommend_all")
    pending: collections.deque[Any] = collections.deque()
    try:
        for start in range(0, n_users, batch_size):
            stop = min(start + batch_size, n_users)
            queries = ray.put(U[start:stop])
            pending.append((start, stop, [actor.search_rows.remote(queries, width, start, stop)
                                          for actor, width in zip(actors, widths)]))
            if len(pending) >= _PIPELINE_DEPTH:
                _collect(index, pending.popleft(), k, out_ids, out_scores, progress)
        while pending:
            _collect(index, pending.popleft(), k, out_ids, out_scores, progress)
    finally:
        if progress is not None:
            progress.close()
    return out_ids, out_scores


def _collect(index: ShardedIndex, batch: tuple[int, int, list[Any]], k: int,
             out_ids: np.ndarray, out_scores: np.ndarray, progress: Any) -> None:
    start, stop, refs = batch
    results = index._wait(refs, f"scoring users {start}..{stop - 1}")
    ids, scores = merge_topk([r[0] for r in results], [r[1] for r in results], k)
    out_ids[start:stop] = ids
    out_scores[start:stop] = scores
    if progress is not None:
        progress.update(stop - start)
