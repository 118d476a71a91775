"""Text encoders: HuggingFace models that turn items, histories and queries into vectors.

>>> from llmrec.text import TextEncoder, item_text, history_text
>>> enc = TextEncoder()                                   # all-MiniLM-L6-v2, 384-d
>>> E = enc.encode(item_text(items))                      # float32 (n_items, 384)
>>> u = enc.encode([history_text(titles, prefix="watched: ")])
>>> q = enc.encode(["a light comedy for the weekend"], kind="query")

Importing this package needs neither torch nor transformers; constructing a
:class:`TextEncoder` does (``pip install "llmrec[text]"``).
"""

from __future__ import annotations

from llmrec.text.cache import VectorCache
from llmrec.text.encoder import TextEncoder
from llmrec.text.templates import DEFAULT_ITEM_TEMPLATE, history_text, item_text

__all__ = ["TextEncoder", "VectorCache", "item_text", "history_text", "DEFAULT_ITEM_TEMPLATE"]
