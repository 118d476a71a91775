"""The request channel of stage 1 over the items' own int8 text codes (no second copy).

With ``text_storage="int8"`` the items keep their unit text vectors E as int8 codes and
one scale per row (:class:`.rows.Int8Rows`, d + 4 bytes per item). A partitioned request
channel (:class:`.partitioned.PartitionedChannel`) kept its own sq8 codes of the same
vectors besides: 430 more bytes per item at d = 384 (1M items: the codes, the list slot
ids, the band rows). :class:`TextLists` keeps only the inverted lists — k-means
centroids and the item rows of each list, 4 bytes per item — and scores the rows of the
probed lists straight from E's codes (the native re-scorer): each candidate gets its
exact int8 score, the one stage 2 gives it, so stage 1 ranks the probed items as the
final blend's request term does.

E is stored list by list (:meth:`TextLists.lay_out`, 4 more bytes per item: where each
item's row is), so a probed list is one contiguous run of E: at 1M items a request
scores ~65k rows, 12.2 ms scattered over E against 3.8 ms in runs (every random row
a cache and TLB miss that prefetching did not hide). Stage 2 finds an item's row
through the same map (``row_maps`` of the native re-scorer).

Items added after the build (rows ``n_main`` and up) are in no list: every search
scores them all (as the partitioned channel's exact "delta" does); E stores them last,
in row order. Removed items are kept in a sorted array and skipped. The lists are fixed
at build: a text vector never changes (``update`` re-solves factors only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec import _core
from llmrec.quantized import nearest_lists, probed_lists, train_lists
from llmrec.recommender.partitioned import (TRAIN_ROWS_PER_LIST, _as_lists, default_partitions,
                                            default_probes)

BUILD_ROWS = 65_536  # rows decoded to float32 at a time while building


class TextLists:
    """Inverted lists of item rows over the int8 text codes (see the module docstring).

    ``centroids`` (lists, d) float32; ``order`` (n_main,) int32: the item rows of list j
    at ``order[starts[j]:starts[j + 1]]``; ``starts`` (lists + 1,) int64; items
    ``n_main`` … ``n_rows`` − 1 are in no list; ``removed``: sorted item rows skipped.
    """

    def __init__(self, centroids: np.ndarray, order: np.ndarray, starts: np.ndarray, n_main: int,
                 n_rows: int, num_threads: int, probes: int | None,
                 removed: np.ndarray | None = None) -> None:
        self.centroids, self.order, self.starts = centroids, order, starts
        self.n_main, self.n_rows = n_main, n_rows
        self.removed = np.zeros(0, np.int64) if removed is None else removed
        self._num_threads = num_threads
        self.probes = probes

    @classmethod
    def build(cls, rows: Any, num_threads: int, random_state: Any,
              probes: int | None = None) -> TextLists:
        """Lists of ``rows`` (n, d): float32 or an :class:`.rows.Int8Rows`, read in blocks
        of BUILD_ROWS (no float copy of all the text). ≈ 4·√n centroids trained on a
        sample (as a partitioned channel's), each row in the list of largest inner product."""
        n = len(rows)
        lists = default_partitions(n)
        rng = np.random.default_rng(random_state)
        size = min(n, max(lists * TRAIN_ROWS_PER_LIST, 32_768))
        picked = np.arange(n) if size == n else np.sort(rng.choice(n, size, replace=False))
        sample = np.ascontiguousarray(rows[picked], dtype=np.float32)
        centroids = train_lists(sample, lists, int(rng.integers(0, 2**63 - 1)), num_threads)
        nearest = np.concatenate([
            nearest_lists(centroids, np.ascontiguousarray(rows[start:start + BUILD_ROWS], dtype=np.float32),
                          num_threads) for start in range(0, n, BUILD_ROWS)] or [np.zeros(0, np.int32)])
        return cls.from_assignment(centroids, np.arange(n), nearest, n, n, num_threads, probes)

    @classmethod
    def flat(cls, n_rows: int, dim: int, num_threads: int) -> TextLists:
        """No lists: every search scores all ``n_rows`` items from their codes (the
        request channel of ``index="exact"``, exact on the int8 text stage 2 scores
        with, reading d + 4 bytes per item instead of a float32 copy's 4·d)."""
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.int32), np.zeros(1, np.int64), 0, n_rows,
                   num_threads, None)

    @classmethod
    def from_assignment(cls, centroids: np.ndarray, rows: np.ndarray, lists: np.ndarray, n_main: int,
                        n_rows: int, num_threads: int, probes: int | None,
                        removed: np.ndarray | None = None) -> TextLists:
        """Lists holding item ``rows`` (each below ``n_main``), row ``rows[i]`` in list
        ``lists[i]``; items ``n_main`` … ``n_rows`` − 1 are in no list."""
        order = np.asarray(rows)[np.argsort(lists, kind="stable")].astype(np.int32)
        starts = np.zeros(len(centroids) + 1, np.int64)
        np.cumsum(np.bincount(lists, minlength=len(centroids)), out=starts[1:])
        return cls(np.ascontiguousarray(centroids, dtype=np.float32), order, starts, n_main, n_rows,
                   num_threads, probes, removed)

    @classmethod
    def from_channel(cls, channel: Any, removed: np.ndarray, num_threads: int,
                     probes: int | None) -> TextLists:
        """The lists of a partitioned request channel (:class:`.partitioned.PartitionedChannel`,
        as saved by models before :mod:`.text_lists`), its codes left behind: each band's
        lists (centroids less the lifting coordinate) become lists here. ``removed``:
        the item rows removed from the model."""
        centroids, rows, lists, offset = [], [], [], 0
        for band in channel.bands:
            band_centroids, ids, band_lists = band.index.list_of_ids()
            centroids.append(band_centroids[:, :channel.dim])
            rows.append(band.rows[ids])
            lists.append(band_lists.astype(np.int64) + offset)
            offset += len(band_centroids)
        return cls.from_assignment(np.concatenate(centroids), np.concatenate(rows), np.concatenate(lists),
                                   channel.n_main, channel.n_rows, num_threads, probes,
                                   np.unique(np.asarray(removed, dtype=np.int64)))

    @property
    def partitions(self) -> int:
        return len(self.centroids)

    @property
    def probes(self) -> int:
        return self._probes

    @probes.setter
    def probes(self, value: int | None) -> None:
        """Lists scored per search (None: :func:`.partitioned.default_probes`)."""
        if not self.partitions:  # flat: nothing to probe
            self._probes = 0
            return
        self._probes = default_probes(self.partitions) if value is None else max(1, min(int(value), self.partitions))

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def __len__(self) -> int:
        return self.n_rows

    def add(self, rows: np.ndarray) -> None:
        """Items appended (their codes are E's; call on a fork, see
        :func:`.snapshot.fork`): searched exactly until the next build."""
        self.n_rows += len(rows)

    def remove(self, rows: np.ndarray) -> None:
        """Items no search returns any more (a new array: a running search sees the old
        one or this one)."""
        self.removed = np.union1d(self.removed, np.asarray(rows, dtype=np.int64))

    def compact(self) -> None:
        """Nothing to reclaim: a removed item costs its 4-byte place in its list."""

    def memory_bytes(self) -> int:
        return int(self.centroids.nbytes + self.order.nbytes + self.starts.nbytes + self.removed.nbytes)

    def slot_rows(self, n: int) -> np.ndarray:
        """The item row stored at each of E's n positions when E is laid out list by list
        (:meth:`lay_out`): the lists' rows in order, the rows below ``n_main`` in no list
        (items removed before a conversion, :meth:`from_channel`), then the rows from
        ``n_main`` on, each at its own position."""
        unlisted = np.ones(self.n_main, bool)
        unlisted[self.order] = False
        return np.concatenate([self.order.astype(np.int64), np.flatnonzero(unlisted), np.arange(self.n_main, n)])

    def lay_out(self, text: Any) -> Any:
        """``text`` (:class:`.rows.Int8Rows`, the items' E) stored list by list, as
        :meth:`search` reads it: itself where it already is, else a re-ordered copy."""
        if not self.partitions and text.slots is None:  # no lists (flat): item order is list order
            return text
        order = self.slot_rows(text.n)
        if text.slots is not None and np.array_equal(text.slots[order], np.arange(text.n)):
            return text
        return text.laid_out(order)

    def candidates(self, queries: np.ndarray, exclude: Any = None, allow: Any = None) -> np.ndarray:
        """Where E (laid out by :meth:`lay_out`) stores the rows each query scores (nq, m),
        -1 padding: the probed lists' runs and the rows from ``n_main`` on, less removed
        and excluded items, within ``allow`` (those three are item rows)."""
        nq = len(queries)
        lists = (probed_lists(self.centroids, queries, self.probes, self._num_threads) if self.partitions
                 else np.zeros((nq, 0), np.int64))
        exclude = _as_lists(exclude, nq)
        later = np.arange(self.n_main, self.n_rows, dtype=np.int64)
        allowed = None if allow is None else np.unique(np.asarray(allow, dtype=np.int64))
        found = []
        for q in range(nq):
            probed = np.sort(lists[q][lists[q] >= 0])  # runs in storage order
            first, sizes = self.starts[probed], self.starts[probed + 1] - self.starts[probed]
            listed = np.arange(sizes.sum()) + np.repeat(first - (np.cumsum(sizes) - sizes), sizes)
            slots = np.concatenate([listed, later])
            drop = self.removed if exclude is None else np.union1d(self.removed, exclude[q])
            if len(drop) or allowed is not None:
                rows = np.concatenate([self.order[listed], later])
                keep = np.ones(len(rows), bool) if not len(drop) else ~np.isin(rows, drop)
                if allowed is not None:
                    keep &= np.isin(rows, allowed)
                slots = slots[keep]
            found.append(slots)
        width = max(1, max(len(f) for f in found) if found else 1)
        out = np.full((nq, width), -1, dtype=np.int64)
        for q, slots in enumerate(found):
            out[q, :len(slots)] = slots
        return out

    def search(self, queries: np.ndarray, k: int, *, text: Any, exclude: Any = None,
               allow: Any = None) -> tuple[np.ndarray, None]:
        """The k item rows of best int8 score q·(s_i c_i) among the candidates (nq, ≤ k),
        -1 for none (exact ties broken by E's order); ``text``: the items'
        :class:`.rows.Int8Rows`, laid out by :meth:`lay_out` (codes read in place).
        Scores are not returned (stage 2 re-scores)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if text.n < self.n_rows:
            raise ValueError(f"TextLists.search: text holds {text.n} rows, the channel {self.n_rows}")
        if text.slots is None and self.partitions:
            raise ValueError("TextLists.search: text must be laid out list by list (TextLists.lay_out)")
        candidates = self.candidates(queries, exclude, allow)
        k = max(1, min(int(k), candidates.shape[1], max(text.n, 1)))
        slots, _ = _core.rescore_candidates(candidates, [text.codes], [queries], [None], [None],
                                            np.zeros(len(queries), np.float32), k, self._num_threads,
                                            [text.scales])
        found = slots >= 0
        rows = slots.copy()
        listed = found & (slots < len(self.order))
        rows[listed] = self.order[slots[listed]]
        # the layout is this channel's: checked where it matters, on the rows returned
        if text.slots is not None and not np.array_equal(text.slots[rows[found]], slots[found]):
            raise ValueError("TextLists.search: text is laid out for other lists (TextLists.lay_out)")
        return rows, None


__all__ = ["TextLists"]
