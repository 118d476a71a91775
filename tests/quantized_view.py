"""Direct calls into the native quantized search for tests of its checks: a view of the
storage (``_core.QuantizedView``, checked when built) searched once."""

from __future__ import annotations

from typing import Any

from llmrec import _core


def search_quantized(codec: str, n: int, d: int, codes: Any, mid: Any = None, step: Any = None,
                     vectors: Any = None, queries: Any = None, k: Any = None, exclude_indptr: Any = None,
                     exclude_ids: Any = None, allow_mask: Any = None, allow_ids: Any = None,
                     rerank: Any = 0, num_threads: Any = 0, centroids: Any = None, list_starts: Any = None,
                     list_sizes: Any = None, slot_ids: Any = None, probes: Any = 1, codebooks: Any = None,
                     item_scales: Any = None, item_bases: Any = None, bases: Any = None,
                     deleted_mask: Any = None) -> tuple[Any, Any]:
    """Build the view of one index's storage, then search it (storage arguments first,
    then the search's, in the order of the former one-call entry point)."""
    view = _core.QuantizedView(codec, n, d, codes, mid, step, vectors, centroids, list_starts, list_sizes,
                               slot_ids, codebooks, item_scales, item_bases, bases)
    return view.search(queries, k, exclude_indptr, exclude_ids, allow_mask, allow_ids, deleted_mask,
                       probes, rerank, num_threads)
