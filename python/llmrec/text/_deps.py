"""Lazy access to the optional ``text`` dependencies (torch, transformers).

``import llmrec`` and ``import llmrec.text`` never import torch; the encoder calls
:func:`require_text_deps` when it is constructed, which imports them or raises an
``ImportError`` that says how to install them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = 'pip install "llmrec[text]"'


def require_text_deps() -> tuple[ModuleType, ModuleType]:
    """Import and return ``(torch, transformers)``, or raise a helpful ``ImportError``."""
    modules = []
    for name in ("torch", "transformers"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            raise ImportError(
                f"llmrec.TextEncoder needs the optional dependency {name!r}, which could not "
                f"be imported ({exc}). Install the text extra: {INSTALL_HINT}"
            ) from exc
    return modules[0], modules[1]
