"""llmrec: recommendation with language-model embeddings and a SIMD C++ core.

The native ranker (:class:`ExactIndex`) scores item vectors against query vectors and
keeps the best k with filters applied inside the scan; the kernels are picked at run
time for the best instruction set of the CPU (see :func:`build_info`).
:class:`QuantizedIndex` searches compressed vectors, :class:`ALS` factorises
interactions and :class:`TextEncoder` turns text into vectors.
"""

from __future__ import annotations

import logging as _logging
from typing import Any as _Any
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError, version as _version

from llmrec._runtime import build_info
from llmrec.als import ALS
from llmrec.exceptions import FormatError, NotFittedError, UnknownIdError
from llmrec.index import ExactIndex
from llmrec.quantized import QuantizedIndex

# Records go to the application's handlers; llmrec itself adds none (see llmrec._log).
_logging.getLogger("llmrec").addHandler(_logging.NullHandler())

try:
    __version__ = _version("llmrec")
except _PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["ALS", "ExactIndex", "FormatError", "NotFittedError", "QuantizedIndex", "Recommendations", "Recommender",
           "TextEncoder", "UnknownIdError", "build_info", "__version__"]
__all__ += ["datasets", "diversity", "evaluation"]


def __getattr__(name: str) -> _Any:
    # Text encoders load lazily: `import llmrec` never imports torch or transformers.
    if name in ("datasets", "diversity", "evaluation"):  # loaded on first use, not at import
        import importlib

        return importlib.import_module(f"llmrec.{name}")
    if name in ("Recommender", "Recommendations"):  # pandas loads on first use, not at import
        from llmrec import recommender

        return getattr(recommender, name)
    if name == "TextEncoder":
        from llmrec.text import TextEncoder

        return TextEncoder
    raise AttributeError(f"module 'llmrec' has no attribute {name!r}")
