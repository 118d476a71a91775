"""The busy endpoints' path: the reads (``/recommend``, …) and the writes (``/events``,
``/items``) answered straight from ASGI, in front of FastAPI.

FastAPI's request path (its error and telemetry layers, routing over every route,
dependency solving, the request object, an anyio thread per sync endpoint, response
validation) costs more CPU than a read's own Python and about as much as a write's own
work (``bench/bench_serve.py``). :class:`FrontedFastAPI` runs a stack of ASGI middleware
in front of the whole FastAPI application: the metrics, key and body-size middlewares
(so every request is counted, writes need the key and bodies are capped), then
:class:`FastRoutes`, which hands a request for one of its routes, with its whole body,
to the route's handler; everything else goes on to FastAPI. FastAPI still declares
these routes, with the same handlers (:func:`fastapi_endpoint`): their OpenAPI docs, and
405 for another method. Errors are answered as on every endpoint (:mod:`.errors`); an
unexpected one is a JSON 500, its traceback in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmrec.serve.errors import ApiError, api_response, error_response, validation_response

log = logging.getLogger("llmrec.serve")

# A route's handler: (the request's Content-Type or None, its body) -> the answer.
Handler = Callable[[str | None, bytes], Awaitable[Response]]


class FastRoutes:
    """ASGI middleware answering ``routes[(method, path)]`` itself."""

    def __init__(self, app: Any, *, routes: Mapping[tuple[str, str], Handler]) -> None:
        self.app, self.routes = app, dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: no one to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        content_type = next((value.decode("latin-1") for name, value in scope["headers"]
                             if name == b"content-type"), None)
        try:
            response = await handler(content_type, b"".join(chunks))
        except ApiError as error:
            response = api_response(error)
        except RequestValidationError as error:
            response = validation_response(error)
        except Exception:  # noqa: BLE001 - answered; the traceback goes to the log only
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            response = error_response(500, "internal server error (see the server log)")
        await response(scope, receive, send)


class FrontedFastAPI(FastAPI):
    """A FastAPI application with ASGI middleware in front of all of it (not inside its
    stack, as ``add_middleware`` puts them): :meth:`put_in_front` builds that stack
    around the application's own, and every request goes through it."""

    _front: ASGIApp | None = None

    def put_in_front(self, build: Callable[[ASGIApp], ASGIApp]) -> None:
        """``build(inner)`` (the front stack, given FastAPI's own as ``inner``) answers
        every request from now on."""
        self._front = build(self._fastapi)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self._front or self._fastapi)(scope, receive, send)

    async def _fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def fastapi_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a FastAPI endpoint (the route FastAPI declares and documents)."""

    async def endpoint(request: Request) -> Response:
        return await handler(request.headers.get("content-type"), await request.body())

    return endpoint


__all__ = ["FastRoutes", "FrontedFastAPI", "Handler", "fastapi_endpoint"]
