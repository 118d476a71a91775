"""Errors as JSON: ``{"error": message, "field": name or null, "status": code}``.

Bad input is a 4xx naming the field: the body's schema (422), the library's own checks
(``ValueError``/``TypeError``: 422; an unknown id: 404), a body too large (413), a
missing or wrong key (401). Anything unexpected is a 500 with a generic message; the
traceback goes to the server's log, never to the client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmrec.exceptions import UnknownIdError

log = logging.getLogger("llmrec.serve")


class ApiError(Exception):
    """An error answered as it is (status, message, field)."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers


def error_response(status: int, message: str, field: str | None = None,
                   headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "field": field, "status": status, **extra},
                        status_code=status, headers=dict(headers or {}))


@contextmanager
def library_errors(fields: Mapping[str, str]) -> Iterator[None]:
    """Turn the library's input errors into 4xx :class:`ApiError`; ``fields`` maps the
    library's argument names (which its messages name) to the request's field names."""
    try:
        yield
    except UnknownIdError as error:
        raise ApiError(404, str(error), _field(str(error), fields)) from None
    except (ValueError, TypeError, OverflowError) as error:
        raise ApiError(422, str(error), _field(str(error), fields)) from None


def _field(message: str, fields: Mapping[str, str]) -> str | None:
    found = [(m.start(), field) for name, field in fields.items()
             for m in [re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message)] if m]
    return min(found)[1] if found else None


def _location(loc: tuple[Any, ...]) -> str | None:
    """"items.3.text" for ("body", "items", 3, "text"); union branch tags left out."""
    parts = [str(p) for p in loc[1:] if isinstance(p, int) or (isinstance(p, str) and re.fullmatch(r"\w+", p))]
    parts = [p for p in parts if p not in ("int", "str", "float", "bool")]
    return ".".join(parts) or ("body" if loc and loc[0] == "body" else None)


def api_response(error: ApiError) -> JSONResponse:
    """The answer to an :class:`ApiError`."""
    return error_response(error.status, error.message, error.field, error.headers)


def validation_response(error: RequestValidationError) -> JSONResponse:
    """The 422 answer to a body that does not fit its schema: the first field named in
    ``error`` and ``message``, every problem (up to 20) in ``errors``."""
    problems = [{"field": _location(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
                for e in error.errors()]
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    if any(e.get("type") == "json_invalid" for e in error.errors()):
        first = {"field": "body", "message": "the body is not valid JSON"}
    elif any(tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), (bytes, str))
             for e in error.errors()):
        first = {"field": "body", "message": "send a JSON object with Content-Type: application/json"}
    return error_response(422, f"{first['field']}: {first['message']}", first["field"],
                          errors=problems[:20])


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(ApiError)
    async def _api(_request: Request, error: ApiError) -> JSONResponse:
        return api_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return validation_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), None, error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal server error (see the server log)")


__all__ = ["ApiError", "api_response", "error_response", "install", "library_errors",
           "validation_response"]
