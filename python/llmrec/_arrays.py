"""Arrays that grow by rows in amortised O(1): the factor, item and id arrays that
``partial_fit_*``, ``add_items`` and ``update`` extend one call at a time."""

from __future__ import annotations

import numpy as np


def grow_rows(array: np.ndarray, n_rows: int) -> np.ndarray:
    """``array`` with zero rows appended up to ``n_rows`` (itself when already that tall).

    The result is the first rows of a buffer with spare capacity (growth doubles it), so
    adding rows one call at a time costs amortised O(1) per row rather than a full copy.
    An earlier result stays a view of its own rows only: it never sees later rows. Only
    the newest result may be grown again (an older one would hand out the same spare rows).
    """
    n = array.shape[0]
    if n_rows <= n:
        return array
    base = array.base
    if (isinstance(base, np.ndarray) and base.dtype == array.dtype and base.shape[1:] == array.shape[1:]
            and base.shape[0] >= n_rows and base.flags.c_contiguous and base.flags.writeable
            and array.ctypes.data == base.ctypes.data):
        grown = base[:n_rows]
        grown[n:] = 0
        return grown
    buffer = np.zeros((max(n_rows, 2 * n),) + array.shape[1:], dtype=array.dtype)
    buffer[:n] = array
    return buffer[:n_rows]


def marked(mask: np.ndarray | None, n: int, rows: np.ndarray) -> np.ndarray:
    """A new uint8 mask of length ``n``: ``mask``'s flags (None: none), plus 1 at ``rows``.
    A copy, so readers holding ``mask`` keep it unchanged."""
    out = np.zeros(n, dtype=np.uint8)
    if mask is not None:
        out[:min(len(mask), n)] = mask[:n]
    out[rows] = 1
    return out
