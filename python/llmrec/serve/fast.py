"""The busy endpoints' path: the reads (``/recommend``, …) and the writes (``/events``,
``/items``) answered straight from ASGI.

FastAPI's request path (routing over every route, dependency solving, the request
object, an anyio thread per sync endpoint, response validation) costs more CPU than a
read's own Python and about as much as a write's own work (``bench/bench_serve.py``).
:class:`FastRoutes` sits inside the metrics, key and body-size middlewares (so requests
are counted, writes need the key and bodies are capped as everywhere) and hands a
request for one of its routes, with its whole body, to the route's handler; everything
else goes on to FastAPI. FastAPI still declares these routes, with the same handlers
(:func:`fastapi_endpoint`): their OpenAPI docs, and 405 for another method. Errors are
answered as on every endpoint (:mod:`.errors`); an unexpected one goes on to FastAPI's
outermost handler (a JSON 500, the traceback in the log).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from llmrec.serve.errors import ApiError, api_response, validation_response

# A route's handler: (the request's Content-Type or None, its body) -> the answer.
Handler = Callable[[str | None, bytes], Awaitable[Response]]


class FastRoutes:
    """ASGI middleware answering ``routes[(method, path)]`` itself."""

    def __init__(self, app: Any, *, routes: Mapping[tuple[str, str], Handler]) -> None:
        self.app, self.routes = app, dict(routes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
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
        await response(scope, receive, send)


def fastapi_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a FastAPI endpoint (the route FastAPI declares and documents)."""

    async def endpoint(request: Request) -> Response:
        return await handler(request.headers.get("content-type"), await request.body())

    return endpoint


__all__ = ["FastRoutes", "Handler", "fastapi_endpoint"]
