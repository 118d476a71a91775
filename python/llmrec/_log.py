"""Logging of llmrec's long stages (fit, encode, load) under the logger ``llmrec``.

Each module logs to its own child (``llmrec.als``, ``llmrec.text.encoder``, …); the
library adds no handler but a ``NullHandler`` on ``llmrec``, so nothing shows until the
application configures logging, e.g. ``logging.basicConfig(level=logging.INFO)``. A
stage is one INFO record when it ends: what ran, its sizes, the seconds it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def stage(logger: logging.Logger, what: str, level: int = logging.INFO, **sizes: Any) -> Iterator[None]:
    """Log ``what: size=value, …, N.NN s`` at ``level`` when the block ends without error."""
    if not logger.isEnabledFor(level):
        yield
        return
    start = time.perf_counter()
    yield
    details = ", ".join(f"{name.replace('_', ' ')} {value:,}" if isinstance(value, int)
                        else f"{name.replace('_', ' ')} {value}" for name, value in sizes.items())
    logger.log(level, "%s: %s%.2f s", what, f"{details}, " if details else "",
               time.perf_counter() - start)


__all__ = ["stage"]
