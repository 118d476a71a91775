"""Grouping tokenized texts into padded batches with as little padding as possible.

Texts are sorted by token count (longest first, so an out-of-memory error shows up on
the first batch) and cut into consecutive batches; each batch is padded only to its
own longest member. The caller writes each batch's vectors back at the original
positions, which restores the caller's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def token_lengths(token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Token count of each tokenized text, as int64."""
    return np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))


def plan_batches(lengths: np.ndarray, batch_size: int,
                 max_tokens: int | None = None) -> Iterator[np.ndarray]:
    """Yield index arrays of at most ``batch_size`` texts, longest texts first.

    With ``max_tokens``, a batch also holds at most ``max_tokens`` padded tokens (but
    always at least one text): long texts go in smaller batches, whose activations
    stay in the CPU caches. Together the batches cover ``range(len(lengths))`` exactly
    once; within a batch the indices are in descending length order, so
    ``lengths[batch[0]]`` is the length to pad to.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < order.size:
        size = batch_size
        if max_tokens is not None:
            size = min(size, max(1, max_tokens // max(1, int(lengths[order[start]]))))
        yield order[start:start + size]
        start += size


def pad_batch(token_ids: Sequence[Sequence[int]], lengths: np.ndarray, batch: np.ndarray,
              pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad the texts ``batch`` selects to their longest length.

    Returns ``(input_ids, attention_mask)``, both int64 of shape (len(batch), longest).
    """
    batch_lengths = lengths[batch]
    width = int(batch_lengths.max()) if batch.size else 0
    input_ids = np.full((batch.size, width), pad_id, dtype=np.int64)
    for row, index in enumerate(batch):
        input_ids[row, :batch_lengths[row]] = token_ids[index]
    attention_mask = (np.arange(width)[None, :] < batch_lengths[:, None]).astype(np.int64)
    return input_ids, attention_mask
