"""Array primitives shared by the indexes and models: rows that grow in amortised O(1)
(the factor, item and id arrays that ``partial_fit_*``, ``add``, ``add_items`` and
``update`` extend one call at a time), and the order of results."""

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
    own = _buffer(array)
    buffer = reserve_rows(own, array, n_rows)
    grown = buffer[:n_rows]
    if buffer is own:
        grown[n:] = 0  # spare rows an older result may have written
    return grown


def appended(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array`` with ``rows`` after its rows, grown as :func:`grow_rows` grows it (in spare
    capacity when there is some: ``array`` itself keeps seeing its own rows only)."""
    n = len(array)
    grown = grow_rows(array, n + len(rows))
    grown[n:] = rows
    return grown


def _buffer(array: np.ndarray) -> np.ndarray | None:
    """The buffer whose first rows ``array`` is (its spare rows past them), or None."""
    base = array.base
    return base if (isinstance(base, np.ndarray) and base.dtype == array.dtype
                    and base.shape[1:] == array.shape[1:] and base.flags.c_contiguous
                    and array.ctypes.data == base.ctypes.data) else None


def spare_rows(array: np.ndarray) -> np.ndarray:
    """``array`` (its rows) in storage with room for as many rows again (see
    :func:`reserve_rows`), so that the next rows :func:`grow_rows` appends go in place
    instead of a copy of every row: itself where it already has that room (as
    ``llmrec._fileformat.load_arrays`` reads the arrays it is told to), else a copy. The
    spare rows are zero pages that the system maps only once written (large blocks):
    address space, not memory."""
    buffer = _buffer(array)
    if buffer is not None and buffer.shape[0] >= 2 * len(array):
        return array
    return reserve_rows(None, array, len(array))[:len(array)]


def reserve_rows(buffer: np.ndarray | None, rows: np.ndarray, needed: int, *, fill: int = 0
                 ) -> np.ndarray:
    """Storage for ``needed`` rows that starts with ``rows``: ``buffer`` itself when it is
    writeable and tall enough, else a new buffer with geometric headroom (at least
    twice ``len(rows)``, at least 16 rows) holding a copy of ``rows``, the rest ``fill``.

    ``buffer`` must be storage its caller allocated here (or None), whose first
    ``len(rows)`` rows are ``rows``: arrays passed in by a user or loaded from a file
    have no spare rows of theirs to hand out, so they are never written past their end.
    """
    if buffer is not None and buffer.flags.writeable and needed <= buffer.shape[0]:
        return buffer
    shape = (max(needed, 2 * len(rows), 16), *rows.shape[1:])
    grown = np.zeros(shape, dtype=rows.dtype) if fill == 0 else np.full(shape, fill, dtype=rows.dtype)
    grown[:len(rows)] = rows
    return grown


def marked(mask: np.ndarray | None, n: int, rows: np.ndarray) -> np.ndarray:
    """A new uint8 mask of length ``n``: ``mask``'s flags (None: none), plus 1 at ``rows``.
    A copy, so readers holding ``mask`` keep it unchanged."""
    out = np.zeros(n, dtype=np.uint8)
    if mask is not None:
        out[:min(len(mask), n)] = mask[:n]
    out[rows] = 1
    return out


def constant_view(values: np.ndarray) -> np.ndarray:
    """``values`` (1-D) as one stored entry repeated (a read-only view with stride 0: no
    memory per entry) where every entry equals the first (NaN equal to NaN), else
    ``values`` itself. For columns that carry no information (every interaction's rating
    NaN, weight 1, no event, none disliked), which would otherwise cost a value each."""
    if values.ndim != 1 or len(values) < 2:
        return values
    first = values[:1].copy()  # not a view: the full array can then be freed
    same = values == first[0] if values.dtype.kind != "f" or not np.isnan(first[0]) else np.isnan(values)
    return np.broadcast_to(first, values.shape) if bool(same.all()) else values


NORM_BLOCK_ROWS = 65_536  # rows converted to float64 at a time by row_norms


def row_norms(rows: np.ndarray) -> np.ndarray:
    """L2 norm of each row in float64, ``np.linalg.norm(rows.astype(float64), axis=1)``
    to the bit, converted a block of rows at a time: a float64 copy of all the rows
    (768 bytes per 96-d row) would double a large catalogue's peak memory."""
    out = np.empty(len(rows), dtype=np.float64)
    for start in range(0, len(rows), NORM_BLOCK_ROWS):
        block = np.asarray(rows[start:start + NORM_BLOCK_ROWS], dtype=np.float64)
        out[start:start + len(block)] = np.linalg.norm(block, axis=1)
    return out


def result_order(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices that sort each row (last axis) as results are sorted: score descending,
    ties broken by the smaller id (ARCHITECTURE.md's Results convention).

    Padding (score -inf) sorts after every finite score. Scores are compared in float64,
    where negation is exact and -0.0 equals 0.0, so ties stay ties. The native searches
    order their own results; this is the one Python copy of the rule, for results whose
    ids were mapped or merged after the native call.
    """
    return np.lexsort((ids, -np.asarray(scores, dtype=np.float64)), axis=-1)
