"""The read endpoints' path (``/recommend``, ``/recommend/history``, ``/search``,
``/similar``): what a server under load spends its time on.

What a request costs beyond the model's own work is kept to the HTTP stack's (about
0.1–0.2 ms of CPU, ``bench/bench_serve.py``'s floor): its body is validated straight
from the bytes by its pydantic model (pydantic-core: the same model documents it in
OpenAPI, and a bad body gets the same 422 naming the field as on every other endpoint),
then the model's work and the answer's JSON (orjson) run on
a :class:`WorkPool`'s fixed set of threads, where the native work releases the GIL. A pool
about the size of the machine, not one thread per waiting request, serves the requests in
the order they came (a steady p99) and leaves the writes and ``/admin`` their own threads,
so an update or a reload never waits behind a queue of reads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError


Body = TypeVar("Body", bound=BaseModel)
Result = TypeVar("Result")


def default_threads() -> int:
    """Reader threads when none are asked for: two per core this process may run on
    (one in Python while the other is in native code)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 2 * cores


class WorkPool:
    """``threads`` threads (named ``name``-0, …) running work, first come first served:
    the reads' pool, and the writes' one thread."""

    def __init__(self, threads: int, name: str = "llmrec-read") -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=name)

    async def run(self, work: Callable[..., Result], *args: Any) -> Result:
        """``work(*args)`` on a reader thread; its result or its exception."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _is_json(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def parse(content_type: str | None, body: bytes, model: type[Body]) -> Body:
    """A request's body as ``model``, or RequestValidationError (answered 422 naming the
    field, as FastAPI answers its own bodies). Like FastAPI, a body is read as JSON only
    when its Content-Type says so."""
    if content_type is None or not _is_json(content_type):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",),
                                       "msg": "not a JSON body", "input": body}])
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in error.errors(include_url=False)]) from None


def ranking(result: Any) -> Response:
    """A ranking's JSON answer (``Recommendations``), without the padding of a result
    shorter than ``k``: made here rather than by FastAPI's response validation."""
    ids, scores = np.asarray(result.ids), np.asarray(result.scores)
    valid = np.isfinite(scores)
    labels = result.labels  # read from the snapshot the ranking saw
    body = {"items": ids[valid].tolist(), "scores": scores[valid].astype(float).tolist(),
            "labels": None if labels is None else labels[valid].tolist()}
    return Response(orjson.dumps(body), media_type="application/json")


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads ``model`` from the body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def add_schemas(schema: dict[str, Any], models: list[type[BaseModel]]) -> dict[str, Any]:
    """``schema`` (the OpenAPI document) with ``models`` among its components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    return schema


__all__ = ["WorkPool", "add_schemas", "default_threads", "documented", "parse", "ranking"]
