"""The API key that guards writes and admin: ``Authorization: Bearer <key>``.

Checked by :class:`KeyGuard` before the request body is read (a missing or wrong key is
401 and nothing runs); compared with :func:`hmac.compare_digest` (constant time).
Without a key file the server refuses every write (403, saying so) rather than take
them unauthenticated.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path
from typing import Any

from fastapi.security import HTTPBearer
from starlette.types import Receive, Scope, Send

from llmrec.serve.errors import error_response

MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 4096

# For the OpenAPI docs ("Authorize" in /docs); the check itself is KeyGuard's.
bearer = HTTPBearer(auto_error=False, description="the key in the file given by --api-key-file")


def load_api_key(path: Any) -> str:
    """The key in ``path`` (surrounding whitespace stripped). Raises ValueError for an
    empty, short or over-long key, or one with spaces or control characters."""
    path = Path(path)
    if path.stat().st_size > MAX_KEY_CHARS * 4:
        raise ValueError(f"api key file {path} is too large to hold a key")
    key: str = path.read_text(encoding="utf-8").strip()
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS:
        raise ValueError(f"the api key in {path} must be {MIN_KEY_CHARS} to {MAX_KEY_CHARS} "
                         f"characters, got {len(key)}")
    if any(c.isspace() or not c.isprintable() for c in key):
        raise ValueError(f"the api key in {path} must not contain spaces or control characters")
    return key


def readable_by_others(path: Any) -> bool:
    """Whether the key file can be read by group or others (the server warns)."""
    return os.name == "posix" and bool(Path(path).stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def key_matches(header: bytes | None, key: str) -> bool:
    """Whether an Authorization header value carries ``key`` as a bearer token."""
    if header is None:
        return False
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(token.strip(), key.encode())


class KeyGuard:
    """ASGI middleware: requests for ``protected(method, path)`` need the key."""

    def __init__(self, app: Any, *, key: str | None, protected: Any) -> None:
        self.app, self.key, self.protected = app, key, protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.protected(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.key is None:
            response = error_response(403, "writes and admin are disabled: this server was started "
                                      "without --api-key-file")
        else:
            header = dict(scope["headers"]).get(b"authorization")
            if key_matches(header, self.key):
                await self.app(scope, receive, send)
                return
            response = error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                      "Authorization", {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


__all__ = ["KeyGuard", "bearer", "key_matches", "load_api_key", "readable_by_others"]
