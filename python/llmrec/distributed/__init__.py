"""llmrec on a Ray cluster (extra ``[ray]``): distributed ALS, batch encoding, sharded search.

Every entry point needs a running Ray (``ray.init()`` locally, or ``ray.init(address=...)``
on a cluster) and raises :class:`RuntimeError` naming what to do when there is none. Every
wait on the cluster has a timeout, and actors started for a call are killed when it fails.

The submodules load on first use, so ``import llmrec.distributed`` never imports Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS = {
    "ALS": "als",
    "encode": "encoding",
    "ShardedIndex": "sharded",
    "recommend_all": "sharded",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmrec.distributed' has no attribute {name!r}")
    return getattr(importlib.import_module(f"llmrec.distributed.{module}"), name)
