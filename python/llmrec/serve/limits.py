"""The caps every request is held to (documented in the OpenAPI schema and the README).

A request beyond one of them is refused with a 4xx JSON error naming the field, before
any model work: the body size before the body is even parsed.
"""

from __future__ import annotations

MAX_BODY_BYTES = 1 << 20        # 1 MiB per request body (413 beyond, checked before parsing)
MAX_K = 1000                    # results per request
MAX_IDS = 1000                  # ids in one list (a history, allow, events, removals)
MAX_NEW_ITEMS = 256             # items in one POST /items (each is encoded under the write lock)
MAX_QUERY_CHARS = 1000          # a free-text request
MAX_TEXT_CHARS = 10_000         # one new item's text
MAX_TITLE_CHARS = 500           # one new item's title
MAX_ID_CHARS = 256              # a string id
MAX_SCENARIO_CHARS = 64         # a scenario name
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # integer ids are int64

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_BODY_BYTES", "MAX_ID_CHARS", "MAX_IDS", "MAX_K",
           "MAX_NEW_ITEMS", "MAX_QUERY_CHARS", "MAX_SCENARIO_CHARS", "MAX_TEXT_CHARS",
           "MAX_TITLE_CHARS"]
