"""Requests answered together: the reads that can share one call of the model.

``Recommender.recommend`` for n users costs much less than n calls for one user: stage 1
scans the catalogue once for all of them (at 100,000 items, 4 users in one call take
about a third of the CPU per user of 4 calls; ``bench/bench_serve.py``). A
:class:`Batcher` gives the server that saving without adding a wait: a request goes to
the read pool at once when one of the batcher's slots is free (alone, at light load);
while every slot is busy, requests queue, and the next free slot takes every request
waiting with the same key (up to ``max_batch``) in one call. Batches grow with the load
and not otherwise, so latency at light load is that of a single request.

All of its state is touched on the event loop's thread only: no lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from llmrec.serve.reads import WorkPool

MAX_BATCH = 16  # requests per call at most (per-user CPU flattens out by 8–16 at 100k items)


class Batcher:
    """Runs ``answer_all(key, items)`` on ``pool`` for batches of requests submitted with
    the same ``key``; it returns one answer per item, each a value or an exception (that
    request's error). At most ``slots`` batches run at once (the pool's threads).
    ``observe(size)`` is told each batch's size as it starts."""

    def __init__(self, pool: WorkPool, answer_all: Callable[[Hashable, list[Any]], list[Any]],
                 slots: int, max_batch: int = MAX_BATCH,
                 observe: Callable[[int], None] | None = None) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be a positive int, got {slots!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        self._pool, self._answer_all = pool, answer_all
        self._slots, self._max_batch = slots, max_batch
        self._observe = observe
        self._waiting: dict[Hashable, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def submit(self, key: Hashable, item: Any) -> Any:
        """``item``'s answer (raised if it is an exception)."""
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append((item, answer))
        self._start()
        return await answer

    def _start(self) -> None:
        while self._running < self._slots and self._waiting:
            key = next(iter(self._waiting))  # keys take turns, each first come first served
            queue = self._waiting.pop(key)
            batch, rest = queue[:self._max_batch], queue[self._max_batch:]
            if rest:
                self._waiting[key] = rest  # behind the other keys waiting
            self._running += 1
            if self._observe is not None:
                self._observe(len(batch))
            task = asyncio.ensure_future(self._run(key, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            answers = await self._pool.run(self._answer_all, key, [item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for a batch of {len(batch)} requests")
        except BaseException as error:  # noqa: BLE001 - every request of the batch gets it
            answers = [error] * len(batch)
        finally:
            self._running -= 1
        for (_, future), answer in zip(batch, answers):
            if future.done():  # its client went away
                continue
            if isinstance(answer, asyncio.CancelledError):  # the server is shutting down
                future.cancel()
            elif isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        self._start()


def answer_or_error(answer: Callable[..., Any], *args: Any) -> Any:
    """``answer(*args)``, or the exception it raised (a batch's answer for one request)."""
    try:
        return answer(*args)
    except Exception as error:  # noqa: BLE001 - handed to that request, raised there
        return error


__all__ = ["MAX_BATCH", "Batcher", "answer_or_error"]
