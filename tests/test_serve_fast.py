"""The fast path (``llmrec.serve.fast.FastRoutes``) as an ASGI app on its own: a body in
several chunks is handed over whole, a client that goes away gets no answer, errors are
the JSON errors of every endpoint, and other routes go on to the next app."""

from __future__ import annotations

import asyncio
import json

import pytest

from serve_helpers import fit_small  # noqa: F401  first: skips the module without the [serve] extra

from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import Response  # noqa: E402

from llmrec.serve.errors import ApiError  # noqa: E402
from llmrec.serve.fast import FastRoutes  # noqa: E402

pytestmark = pytest.mark.serve


def _call(app, scope, messages):
    """Run ``app`` on ``scope`` with ``messages`` to receive; returns what it sent."""
    sent, pending = [], list(messages)

    async def receive():
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _scope(method="POST", path="/echo", content_type=b"application/json"):
    return {"type": "http", "method": method, "path": path,
            "headers": [(b"content-type", content_type)] if content_type else []}


def _app(handler):
    async def other(scope, receive, send):
        await Response(b"other", status_code=299)(scope, receive, send)

    return FastRoutes(other, routes={("POST", "/echo"): handler})


async def _echo(content_type, body):
    return Response(json.dumps({"content_type": content_type, "body": body.decode()}),
                    media_type="application/json")


def test_a_body_in_chunks_is_handed_over_whole(rng):
    body = "".join(rng.choice(list("abcdef"), 1000).tolist())
    parts = [body[:1], body[1:500], body[500:]]
    sent = _call(_app(_echo), _scope(), [
        {"type": "http.request", "body": p.encode(), "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)])
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"content_type": "application/json", "body": body}
    sent = _call(_app(_echo), _scope(content_type=None), [{"type": "http.request", "body": b""}])
    assert json.loads(sent[1]["body"]) == {"content_type": None, "body": ""}


def test_a_client_gone_before_its_body_ends_gets_nothing():
    called = []

    async def handler(content_type, body):
        called.append(body)
        return Response(b"")

    sent = _call(_app(handler), _scope(), [{"type": "http.request", "body": b"{", "more_body": True}])
    assert sent == [] and called == []


def test_other_routes_and_methods_go_on():
    for scope in (_scope(method="GET"), _scope(path="/echo/x"), _scope(path="/other")):
        sent = _call(_app(_echo), scope, [{"type": "http.request", "body": b"{}"}])
        assert sent[0]["status"] == 299 and sent[1]["body"] == b"other"


@pytest.mark.parametrize("error, status, field", [
    (ApiError(404, "unknown user id 7", "user_id"), 404, "user_id"),
    (RequestValidationError([{"type": "int_type", "loc": ("body", "k"), "msg": "not an int",
                              "input": "x"}]), 422, "k"),
])
def test_errors_are_json_naming_the_field(error, status, field):
    async def handler(content_type, body):
        raise error

    sent = _call(_app(handler), _scope(), [{"type": "http.request", "body": b"{}"}])
    got = json.loads(sent[1]["body"])
    assert sent[0]["status"] == status and got["status"] == status and got["field"] == field


def test_an_unexpected_error_is_a_json_500_and_its_traceback_goes_to_the_log(caplog):
    async def handler(content_type, body):
        raise RuntimeError("boom /secret")

    with caplog.at_level("ERROR", logger="llmrec.serve"):
        sent = _call(_app(handler), _scope(), [{"type": "http.request", "body": b"{}"}])
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"error": "internal server error (see the server log)",
                                           "field": None, "status": 500}
    assert "boom /secret" in caplog.text and "POST /echo" in caplog.text
