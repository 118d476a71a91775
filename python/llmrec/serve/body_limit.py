"""Request bodies are read whole, up to :data:`.limits.MAX_BODY_BYTES`, before the
application sees them: a larger one is answered 413 without being parsed (a declared
``Content-Length`` over the cap before a byte of it is read)."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from llmrec.serve.errors import error_response


class BodyLimit:
    """ASGI middleware capping request bodies at ``max_bytes``."""

    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over {self.max_bytes} bytes"
        length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await error_response(400, "invalid Content-Length", "Content-Length")(scope, receive, send)
                return
            if int(length) > self.max_bytes:
                await error_response(413, too_large, "body")(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await error_response(413, too_large, "body")(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks),
                                        "more_body": False}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``messages`` first, then the connection's own messages (its disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


__all__ = ["BodyLimit"]
