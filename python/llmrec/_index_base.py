"""What ExactIndex and QuantizedIndex share: their metric, thread count and the
normalisation of rows for cosine."""

from __future__ import annotations

import numpy as np

from llmrec import _core


class IndexBase:
    """Mixin for the native indexes; subclasses set ``_metric`` and ``_num_threads``."""

    _metric: str
    _num_threads: int

    @property
    def metric(self) -> str:
        """"ip" or "cosine"."""
        return self._metric

    @property
    def num_threads(self) -> int:
        """Threads used by search (0 = all cores)."""
        return self._num_threads

    def _normalized_copy(self, rows: np.ndarray) -> np.ndarray:
        """Unit-length copy of ``rows`` (zero rows stay zero), computed natively."""
        rows = rows.copy()
        _core.normalize_rows(rows, self._num_threads)
        return rows
