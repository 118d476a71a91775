"""The HTTP application: JSON endpoints over a saved Recommender, its page and metrics.

The reads run on the read pool (:mod:`.reads`: ``threads`` threads; ``/recommend``
requests waiting for one share calls of the model, :mod:`.batching`) and the writes on a
thread of their own, both answered on the fast path (:mod:`.fast`); the other endpoints
are plain (sync) functions that FastAPI runs on its own thread pool. The native
work (candidate search, re-scoring, MMR) runs with the GIL released, so requests run in
parallel on threads in one process, which is what lets writes and reloads stay
consistent for every request.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from llmrec.recommender.results import Recommendations as Ranking
from llmrec.serve import introspect, limits, reads
from llmrec.serve.auth import KeyGuard, bearer
from llmrec.serve.batching import Batcher, answer_or_error
from llmrec.serve.body_limit import BodyLimit
from llmrec.serve.errors import ApiError, install as install_errors, library_errors
from llmrec.serve.fast import FastRoutes, FrontedFastAPI, Handler, fastapi_endpoint
from llmrec.serve.holder import CHECKPOINT_EVERY, ModelHolder
from llmrec.serve.journal import DirectoryReplaced
from llmrec.serve.metrics import Metrics, MetricsMiddleware
from llmrec.serve.schemas import (AddItemsRequest, EventsRequest, ExplainRequest, Explanation,
                                  HistoryRequest, ModelState, RecommendRequest, Recommendations,
                                  RemoveItemsRequest, SearchRequest, SimilarRequest, WriteResult)

log = logging.getLogger("llmrec.serve")
Body = TypeVar("Body", bound=BaseModel)

WRITE_PATHS = frozenset({"/events", "/items"})
ADMIN_PATHS = frozenset({"/admin/reload", "/admin/save"})
PATHS = ("/", "/recommend", "/recommend/history", "/search", "/similar", "/explain", "/events",
         "/items", "/admin/reload", "/admin/save", "/health", "/metrics", "/docs",
         "/openapi.json")
_READ_FIELDS = {"user_ids": "user_id", "user_id": "user_id", "item_ids": "items", "allow": "allow",
                "query": "query", "diversity": "diversity", "scenario": "scenario", "k": "k",
                "profile": "profile"}

DESCRIPTION = f"""
Recommendations from a saved `llmrec.Recommender`. Ids are the model's own (JSON integers
or strings, as it was fitted). Writes (`/events`, `/items`) and `/admin/*` need
`Authorization: Bearer <key>`; each write is applied, logged durably in the model
directory and only then acknowledged.

Caps: body {limits.MAX_BODY_BYTES} bytes (413), `k` ≤ {limits.MAX_K}, id lists ≤
{limits.MAX_IDS}, new items per request ≤ {limits.MAX_NEW_ITEMS}, query ≤
{limits.MAX_QUERY_CHARS} characters, item text ≤ {limits.MAX_TEXT_CHARS}. Errors are JSON
`{{"error", "field", "status"}}`: 422 invalid input, 404 unknown id, 401 missing or wrong key,
403 writes disabled (no key configured), 409 model directory replaced (reload first).
"""


def _protected(method: str, path: str) -> bool:
    return path in ADMIN_PATHS or (path in WRITE_PATHS and method in ("POST", "DELETE", "PUT", "PATCH"))


def create_app(directory: Any = None, *, api_key: str | None = None, encoder: Any = "saved",
               threads: int | None = None, holder: ModelHolder | None = None,
               checkpoint_every: int | None = CHECKPOINT_EVERY) -> FastAPI:
    """The application serving the model saved in ``directory`` (loaded now, its write
    log replayed), or ``holder``'s. ``api_key``: the key writes and admin need (None:
    they are refused). ``threads``: reads served at once, on that many threads (None:
    two per core this process may run on); writes and admin have threads of their own.
    ``checkpoint_every``: log records after which the model is saved into ``directory``
    with an empty log (None: never; see :class:`.holder.ModelHolder`)."""
    pool = reads.WorkPool(reads.default_threads() if threads is None else threads)
    writer = reads.WorkPool(1, "llmrec-write")
    if holder is None:
        holder = ModelHolder(Path(directory), encoder=encoder, checkpoint_every=checkpoint_every)
        holder.reload()
    metrics = Metrics(lambda: (holder.version, *introspect.sizes(holder.model)))
    page = resources.files("llmrec.serve").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()
        writer.close()
        holder.close()

    app = FrontedFastAPI(title="llmrec", description=DESCRIPTION, lifespan=lifespan)
    app.state.holder, app.state.metrics = holder, metrics
    install_errors(app)

    def openapi() -> dict[str, Any]:  # with the fast routes' bodies, which FastAPI does not parse
        if app.openapi_schema is None:
            app.openapi_schema = reads.add_schemas(
                get_openapi(title=app.title, version=app.version, description=app.description,
                            routes=app.routes),
                [RecommendRequest, HistoryRequest, SearchRequest, SimilarRequest, EventsRequest,
                 AddItemsRequest, RemoveItemsRequest])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    routes: dict[tuple[str, str], Handler] = {}
    secured = [Depends(bearer)]

    def route(method: str, path: str, handler: Handler, body_model: type[BaseModel], doc: str | None,
              **declared: Any) -> None:
        """``handler`` answers ``method path`` on the fast path (:mod:`.fast`); FastAPI
        declares it (docs, 405) with ``declared``."""
        routes[(method, path)] = handler
        endpoint = fastapi_endpoint(handler)
        endpoint.__doc__ = doc
        app.add_api_route(path, endpoint, methods=[method], openapi_extra=reads.documented(body_model),
                          **declared)

    def read(path: str, body_model: type[BaseModel], work: Any, fields: dict[str, str],
             batch: tuple[Callable[[Any], Any], Callable[..., list[Any]]] | None = None) -> None:
        """A read endpoint: the body parsed from its bytes, ``work(model, body)`` and the
        answer's JSON on the read pool (:mod:`.reads`). ``batch``: ``(key, work_all)``
        where requests of one ``key(body)`` (None: never) can share calls of the model
        under load (:mod:`.batching`): ``work_all(model, key, bodies)`` gives their
        results; where that fails, each is answered alone, with its own answer or error."""
        def answer(model: Any, body: Any) -> Response:
            with library_errors(fields):
                return reads.ranking(work(model, body))

        def answer_alone(body: Any) -> Response:
            return answer(holder.model, body)  # one model to the end, whatever a reload swaps in

        if batch is None:
            async def handle(content_type: str | None, body: bytes) -> Response:
                return await pool.run(answer_alone, reads.parse(content_type, body, body_model))
        else:
            key, work_all = batch

            def answer_all(batch_key: Any, bodies: list[Any]) -> list[Any]:
                model = holder.model  # one model for the whole batch
                if len(bodies) > 1:
                    try:
                        with library_errors(fields):
                            return [reads.ranking(result) for result in work_all(model, batch_key, bodies)]
                    except Exception:  # noqa: BLE001 - one of them is bad: each answers for itself
                        pass
                return [answer_or_error(answer, model, body) for body in bodies]

            batcher = Batcher(pool, answer_all, slots=pool.threads,
                              observe=metrics.batch_sizes.labels(path).observe)

            async def handle(content_type: str | None, body: bytes) -> Response:
                parsed = reads.parse(content_type, body, body_model)
                batch_key = key(parsed)
                if batch_key is None:
                    return await pool.run(answer_alone, parsed)
                return await batcher.submit(batch_key, parsed)

        route("POST", path, handle, body_model, work.__doc__, response_model=Recommendations,
              tags=["read"], name=work.__name__)

    def recommend(model: Any, body: RecommendRequest) -> Any:
        """Top-k for a known user: `query` shifts the ranking toward a request in words,
        `diversity` re-ranks (MMR), `allow` restricts to given items."""
        return model.recommend(body.user_id, k=body.k, exclude_seen=body.exclude_seen,
                               query=body.query, diversity=body.diversity, allow=body.allow,
                               scenario=body.scenario)

    def recommend_history(model: Any, body: HistoryRequest) -> Any:
        """Top-k for a visitor from their clicks (oldest first) and optional `profile`
        text (read with at least one item); nothing is stored. An empty history is
        ranked by `query`, or without one gives the most popular items."""
        return model.recommend_for_history(body.items, k=body.k, query=body.query,
                                           profile=body.profile, exclude_seen=body.exclude_seen,
                                           diversity=body.diversity, scenario=body.scenario)

    def search(model: Any, body: SearchRequest) -> Any:
        """Items matching a request in words (blended with `user_id`'s taste when given)."""
        return model.search(body.query, k=body.k, user_id=body.user_id)

    def similar(model: Any, body: SimilarRequest) -> Any:
        """Items most like `item_id`."""
        return model.similar_items(body.item_id, k=body.k)

    def recommend_all(model: Any, key: tuple[Any, ...], bodies: list[RecommendRequest]) -> list[Any]:
        k, exclude_seen, diversity, scenario, asked = key
        result = model.recommend([b.user_id for b in bodies], k=k, exclude_seen=exclude_seen,
                                 query=[b.query for b in bodies] if asked else None,
                                 diversity=diversity, scenario=scenario)
        labels = result.labels
        return [Ranking(result.ids[i], result.scores[i], None, None if labels is None else labels[i])
                for i in range(len(bodies))]

    def recommend_key(body: RecommendRequest) -> tuple[Any, ...] | None:
        """Requests that one call answers together: all but ``allow`` (one list per call)."""
        if body.allow is not None:
            return None
        return (body.k, body.exclude_seen, body.diversity, body.scenario, body.query is not None)

    read("/recommend", RecommendRequest, recommend, _READ_FIELDS, batch=(recommend_key, recommend_all))
    read("/recommend/history", HistoryRequest, recommend_history, _READ_FIELDS)
    read("/search", SearchRequest, search, _READ_FIELDS)
    read("/similar", SimilarRequest, similar, {**_READ_FIELDS, "item_ids": "item_id"})

    @app.post("/explain", response_model=Explanation, tags=["read"])
    def explain(body: ExplainRequest) -> dict[str, Any]:
        """Why `item_id` scores as it does for `user_id`: in words (`text`) and numbers."""
        model = holder.model
        with library_errors({**_READ_FIELDS, "item_id": "item_id"}):
            e = model.explain(body.user_id, body.item_id)
        history = [{str(k): introspect.plain(v) for k, v in row.items() if introspect.plain(v) is not None}
                   for row in e.history.head(limits.MAX_K).to_dict(orient="records")]
        return {"text": e.text, "score": float(e.score),
                "signals": {str(k): float(v) for k, v in e.signals.items() if np.isfinite(v)},
                "history": history}

    def write(record: dict[str, Any], fields: dict[str, str]) -> Response:
        try:
            with library_errors(fields):
                count = holder.write(record)
        except DirectoryReplaced as error:
            raise ApiError(409, str(error)) from None
        except NotImplementedError as error:
            raise ApiError(501, str(error)) from None
        except OSError as error:  # the log could not take it: undone by a reload (holder.write)
            raise ApiError(503, f"the write could not be logged ({error.strerror or error}) and is "
                           "being undone; try again later") from None
        metrics.writes.labels(record["op"]).inc()
        result = WriteResult(applied=record["op"], count=count, log_records=holder.journal.records)
        return Response(orjson.dumps(result.model_dump()), media_type="application/json")

    def write_route(method: str, path: str, body_model: type[Body], to_record: Callable[[Body], dict[str, Any]],
                    fields: dict[str, str]) -> None:
        """A write endpoint: the body parsed from its bytes, then ``to_record(body)``
        applied and logged on the writes' thread (one at a time, as the log has them)."""
        async def handle(content_type: str | None, body: bytes) -> Response:
            return await writer.run(write, to_record(reads.parse(content_type, body, body_model)), fields)

        route(method, path, handle, body_model, to_record.__doc__, response_model=WriteResult,
              tags=["write"], name=to_record.__name__, dependencies=secured)

    def events(body: EventsRequest) -> dict[str, Any]:
        """New interactions of `user_id` (a new user if unknown), effective at once;
        `profile` sets the user's profile text."""
        record = {"op": "events", "user_id": body.user_id, "items": body.items}
        return record if body.profile is None else {**record, "profile": body.profile}

    def add_items(body: AddItemsRequest) -> dict[str, Any]:
        """New items (`item_id`, `text`, optional `title`), recommendable at once."""
        return {"op": "add_items", "items": [item.model_dump(exclude_none=True) for item in body.items]}

    def remove_items(body: RemoveItemsRequest) -> dict[str, Any]:
        """Items never recommended again (`Recommender.remove_items`)."""
        return {"op": "remove_items", "items": body.items}

    write_route("POST", "/events", EventsRequest, events,
                {"user_id": "user_id", "item_ids": "items", "profile": "profile"})
    write_route("POST", "/items", AddItemsRequest, add_items,
                {"item id": "items", "item_id": "items", "items": "items"})
    write_route("DELETE", "/items", RemoveItemsRequest, remove_items,
                {"item_ids": "items", "ids": "items", "items": "items"})

    @app.post("/admin/reload", dependencies=secured, tags=["admin"])
    def reload() -> dict[str, Any]:
        """Load the model directory again (with its write log) and swap it in; requests
        in flight finish on the old model. SIGHUP does the same."""
        try:
            report = holder.reload()
        except Exception as error:  # noqa: BLE001 - answered, and the old model stays
            metrics.reloads.labels("failed").inc()
            log.exception("reload failed")
            raise ApiError(500, f"reload failed ({type(error).__name__}: {error}); still serving "
                           f"version {holder.version}") from None
        metrics.reloads.labels("ok").inc()
        return report

    @app.post("/admin/save", dependencies=secured, tags=["admin"])
    def save() -> dict[str, Any]:
        """Save the served model (every write included) into its directory, atomically
        with starting an empty write log."""
        try:
            return holder.save()
        except DirectoryReplaced as error:
            raise ApiError(409, str(error)) from None

    @app.get("/health", response_model=ModelState, tags=["admin"])
    def health() -> dict[str, Any]:
        """The served model: version, items, users, id kinds, whether writes are on."""
        model = holder.model
        n_items, n_users = introspect.sizes(model)
        user_kind, item_kind = introspect.id_kinds(model)
        return {"status": "ok", "version": holder.version, "items": n_items, "users": n_users,
                "user_id_kind": user_kind, "item_id_kind": item_kind,
                "writes": "enabled" if api_key is not None else "disabled (no --api-key-file)",
                "log_records": holder.journal.records}

    @app.get("/metrics", tags=["admin"])
    def prometheus() -> Response:
        """Prometheus text format."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_POLICY,
                                           "X-Content-Type-Options": "nosniff"})

    app.put_in_front(lambda inner: MetricsMiddleware(  # outermost: counts every request
        KeyGuard(BodyLimit(FastRoutes(inner, routes=routes), max_bytes=limits.MAX_BODY_BYTES),
                 key=api_key, protected=_protected),
        metrics=metrics, paths=PATHS))
    return app


# The page calls this server only; no frames, no plugins, nothing from elsewhere.
_PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
                "frame-ancestors 'none'")

__all__ = ["create_app"]
