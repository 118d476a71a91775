"""Where the tests find MovieLens-100K, and the skip marker of the tests that need it.

In order: ``$LLMREC_MOVIELENS_DIR``; where ``llmrec data fetch movielens-100k`` places it
by default (``$LLMREC_DATA/ml-100k``, else ``~/.cache/llmrec/data/ml-100k``); the
repository's ``data/ml-100k``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmrec.datasets import default_movielens_dir

REPO = Path(__file__).resolve().parents[1]
_FILES = ("ml-100k.inter", "u.data", "ratings.csv")


def _has_movielens(directory: Path) -> bool:
    return any((directory / name).exists() for name in _FILES)


def movielens_dir() -> Path:
    """The MovieLens-100K directory the tests use (it may not exist: see needs_movielens)."""
    explicit = os.environ.get("LLMREC_MOVIELENS_DIR")
    if explicit:
        return Path(explicit)
    for candidate in (default_movielens_dir(), REPO / "data" / "ml-100k"):
        if _has_movielens(candidate):
            return candidate
    return default_movielens_dir()


MOVIELENS = movielens_dir()
SKIP_REASON = (f"MovieLens-100K not found in {MOVIELENS}: run `llmrec data fetch movielens-100k` "
               "(or set LLMREC_MOVIELENS_DIR to a directory holding it)")
needs_movielens = pytest.mark.skipif(not _has_movielens(MOVIELENS), reason=SKIP_REASON)
