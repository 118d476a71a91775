"""The result type of every Recommender query: ``Recommendations(ids, scores)``."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd


class _Pair(NamedTuple):
    ids: np.ndarray
    scores: np.ndarray


class Recommendations(_Pair):
    """Top-k items as a named tuple ``(ids, scores)``.

    ``ids`` holds the caller's item ids (int64 for integer ids, an object array for
    string ids) and ``scores`` float32, both of shape (n_users, k) — or (k,) for one
    user or query — best first. Where fewer than k items qualify the rest is id -1 and
    score -inf (ARCHITECTURE.md's padding). ``user_ids`` (not part of the tuple) holds
    the caller's user ids of the rows, or None when rows are not users (a visitor's
    history, a text search). :attr:`labels` gives the items' labels.
    """

    user_ids: Any
    _labels: Any  # None, (the catalogue's labels, item rows) until first read, then the decoded array

    def __new__(cls, ids: np.ndarray, scores: np.ndarray, user_ids: Any = None,
                labels: Any = None) -> Recommendations:
        self = super().__new__(cls, ids, scores)
        self.user_ids = user_ids
        self._labels = labels
        return self

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (self.ids, self.scores, self.user_ids, self.labels)  # decoded: not the whole store

    @property
    def labels(self) -> np.ndarray | None:
        """Each item's label (its title, else its text, as given to ``fit`` or
        ``add_items``) as an object array shaped like ``ids``, None at the padding; None
        when the model keeps no labels (fitted without item texts). Decoded when first
        read, from the catalogue the query saw."""
        if self._labels is None or isinstance(self._labels, np.ndarray):
            return self._labels
        store, rows = self._labels
        out = np.full(rows.shape, None, dtype=object)
        out[rows >= len(store)] = ""  # not expected: an item without a label
        valid = (rows >= 0) & (rows < len(store))
        out[valid] = store.texts(rows[valid])
        self._labels = out
        return out

    def to_frame(self) -> pd.DataFrame:
        """A long DataFrame with columns ``user_id``, ``rank`` (1 = best), ``item_id``,
        ``score``; padding is left out. ``user_id`` is the row number when the rows are
        not users."""
        ids = np.asarray(self.ids)
        scores = np.asarray(self.scores)
        if ids.ndim == 1:
            ids, scores = ids[None, :], scores[None, :]
        users = self.user_ids
        if users is None:
            users = np.arange(ids.shape[0])
        users = np.atleast_1d(np.asarray(users, dtype=object if not np.isscalar(users) or
                                         isinstance(users, str) else None))
        valid = np.isfinite(scores)
        rows, ranks = np.nonzero(valid)
        user_col = users[rows]
        if user_col.dtype == object and all(isinstance(u, (int, np.integer)) for u in user_col):
            user_col = user_col.astype(np.int64)
        item_col = ids[rows, ranks]
        if item_col.dtype == object and all(isinstance(i, (int, np.integer)) for i in item_col):
            item_col = item_col.astype(np.int64)
        return pd.DataFrame({"user_id": user_col, "rank": (ranks + 1).astype(np.int64),
                             "item_id": item_col, "score": scores[rows, ranks]})


__all__ = ["Recommendations"]
