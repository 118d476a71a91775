"""The types of the public API's arguments, for annotations (``llmrec._types``).

Caller ids are whatever the caller's data uses: ints (numpy integers too) or strings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
import numpy as np

# Aliases are evaluated at import (X | Y of classes and generic aliases: Python 3.10).
Id = int | str | np.integer
"""One user or item id of the caller's."""

IdList = Sequence[Id] | np.ndarray
"""Several ids (a list, tuple or 1-D array)."""

Ids = Id | IdList
"""One id (results for one row, 1-D) or several (one row each, 2-D)."""

Texts = str | Sequence[str]
"""One text or one per row."""

Numbers = float | Sequence[float] | np.ndarray
"""One number for all, or one per entry."""

PathArg = str | os.PathLike[str]
"""A file or directory path."""

__all__ = ["Id", "IdList", "Ids", "Numbers", "PathArg", "Texts"]
