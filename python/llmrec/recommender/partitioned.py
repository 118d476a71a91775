"""Stage-1 indexes for large catalogues: the partitioned (IVF) QuantizedIndex, and the
choice of index by catalogue size (``index="auto"``).

:class:`PartitionedChannel` holds a channel's rows in :class:`llmrec.QuantizedIndex`
inverted lists (sq8 or pq4 codes) with a fixed number of probed lists, searched for C
candidates that stage 2 re-scores exactly: the codes only decide which items are looked
at, never their scores.

Maximum inner product: each row x gets the extra coordinate √(M² − |x|²), M the largest
norm, and each query a 0 there, so every inner product is unchanged (the MIPS-to-nearest-
neighbour reduction of Bachrach et al., 2014). Lifting all rows to one M failed on ALS
factors, whose norms span four orders of magnitude (200k synthetic items: 1e-4 to 6.6,
median 0.006): every small row lifts to nearly the same direction, and one list held
68 % of the items, so a request scanned most of the catalogue (41 ms at 1M items).
Rows are therefore split into norm bands (norms within a factor BAND_RATIO of the band's
largest), each with its own lists and M, searched from the largest norms down until a
band's bound |q|·M cannot beat the k-th best score found (Cauchy–Schwarz), their
candidates merged by their (approximate) scores. 200k synthetic items, 5 bands: recall@10
0.99, p50 0.87 ms (loaded); one lift: one list held 68 % of the items.

Writes: items added after the build and rows re-solved by ``update`` go to a small exact
side index ("delta", keyed by item row) searched with the bands; a re-solved row's old
codes stay in its band (an extra candidate at worst, re-scored exactly) until
:meth:`compact`, so a running search finds the item by its old row or its new one. The
quantized index would rebuild its lists on every ``add`` (O(n), about a second at 10M
items) and on an ``update`` that moves a row to another list.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from llmrec._arrays import NORM_BLOCK_ROWS, row_norms
from llmrec.index import ExactIndex

LOG = logging.getLogger("llmrec.recommender")

INDEXES = ("exact", "sq8", "fp16", "ivf-sq8", "ivf-pq4", "auto")
# index="auto": an exact scan reads 4·(f + f/2) bytes per item per request (96 floats at
# f = 64: 38 MB at 100k items, about 3 ms here); above AUTO_FLAT_ITEMS a flat sq8 scan
# (a quarter of that) and above AUTO_IVF_ITEMS inverted lists, which read only the
# probed lists.
AUTO_FLAT_ITEMS = 50_000
AUTO_IVF_ITEMS = 400_000
LISTS_PER_SQRT_N = 4        # partitions ≈ 4·√n (faiss's rule of thumb: 4–16·√n)
MIN_PARTITIONS, MAX_PARTITIONS = 1, 65_536
# Probes of the free-text lists (.text_lists): a sixteenth of the lists, within
# [MIN_PROBES, MAX_PROBES]. A top-256 candidate set spans many lists: 4,000 synthetic
# items, 253 lists: 16 probes gave a two-stage recall@10 of 0.81, 64 probes 0.99; 100k
# items, 1,265 lists: 16 probes 0.905, 64 0.992.
MIN_PROBES, MAX_PROBES = 64, 256
# A stage-1 channel only has to bring each user's top 10 into its top-C candidates, which
# the exact re-scoring then orders, so it needs far fewer lists than a search's own top k:
# at 1M fitted items, 64 lists per band in every channel gave the two-stage recall@10 of
# the text lists' rule (0.973; the interest channel probed 250), and at 10M items (26,471
# lists in 8 bands; a catalogue grown from near-copies of the 1M one, bench_scale_grow.py)
# 64 gave 1.000 against 256's 0.988–0.997 at under half the latency (bench/RESULTS.md,
# twelfth session). Lists grow as √n: a fixed share of them reads ever more per request.
CHANNEL_PROBES = 64
TRAIN_ROWS_PER_LIST = 32    # k-means training rows per list (a sample, not the catalogue)


def resolve_index(kind: str, n_items: int) -> str:
    """The stage-1 index for ``kind`` on ``n_items`` items ("auto" picks by size)."""
    if kind != "auto":
        return kind
    if n_items < AUTO_FLAT_ITEMS:
        return "exact"
    return "sq8" if n_items < AUTO_IVF_ITEMS else "ivf-sq8"


def default_partitions(n_items: int) -> int:
    """≈ 4·√n lists, never more than the items (at least 1)."""
    p = int(round(LISTS_PER_SQRT_N * math.sqrt(max(n_items, 1))))
    return max(MIN_PARTITIONS, min(p, MAX_PARTITIONS, max(n_items, 1)))


def default_probes(partitions: int) -> int:
    """Lists probed per search (see MIN_PROBES, MAX_PROBES), at most all."""
    return max(1, min(partitions, max(MIN_PROBES, min(MAX_PROBES, -(-partitions // 16)))))


def channel_probes(partitions: int) -> int:
    """Lists probed per band searched by a stage-1 channel (see CHANNEL_PROBES), at most all."""
    return max(1, min(partitions, CHANNEL_PROBES))


BAND_RATIO = 4.0           # norms within a band: (largest / BAND_RATIO, largest]
MAX_BANDS = 16             # the last band takes every smaller norm (zero rows too)
MIN_BAND_ROWS = 4_096      # a smaller band joins the next one down


def norm_bands(norms: np.ndarray) -> list[np.ndarray]:
    """Item rows (sorted, int64) of each norm band, largest norms first (see the module
    docstring); every row in exactly one band."""
    order = np.argsort(-norms, kind="stable")
    top = float(norms[order[0]]) if len(norms) else 0.0
    bands: list[np.ndarray] = []
    start = 0
    while start < len(order):
        if len(bands) == MAX_BANDS - 1 or top <= 0:
            stop = len(order)
        else:
            floor = float(norms[order[start]]) / BAND_RATIO
            stop = int(np.searchsorted(-norms[order], -floor, side="left"))
            stop = max(stop, start + 1)
            if stop - start < MIN_BAND_ROWS or len(order) - stop < MIN_BAND_ROWS:
                stop = min(len(order), max(stop, start + MIN_BAND_ROWS))
                if len(order) - stop < MIN_BAND_ROWS:
                    stop = len(order)
        bands.append(np.sort(order[start:stop]).astype(np.int64))
        start = stop
    return bands


class _Band(NamedTuple):
    rows: np.ndarray   # the item rows in this band (sorted)
    index: Any         # QuantizedIndex over the lifted rows, in the order of ``rows``
    lift: float        # M of the band

    def local(self, rows: np.ndarray) -> np.ndarray:
        """Positions in this band of those of ``rows`` it holds (others dropped)."""
        at = np.searchsorted(self.rows, rows)
        hit = at < len(self.rows)
        hit[hit] = self.rows[at[hit]] == rows[hit]
        return at[hit]


def _lifted(rows: np.ndarray, picked: np.ndarray, norms: np.ndarray, lift: float) -> np.ndarray:
    """Rows ``picked`` of ``rows`` (norms ``norms`` of all rows) with the lifting
    coordinate √(M² − |x|²) appended, gathered straight into the lifted array."""
    norms = norms[picked]
    out = np.empty((len(picked), rows.shape[1] + 1), dtype=np.float32)
    for start in range(0, len(picked), NORM_BLOCK_ROWS):  # no gathered copy of the band
        out[start:start + NORM_BLOCK_ROWS, :-1] = rows[picked[start:start + NORM_BLOCK_ROWS]]
    out[:, -1] = np.sqrt(np.maximum(lift ** 2 - norms ** 2, 0.0))
    return out


class PartitionedChannel:
    """A stage-1 channel over norm-banded inverted lists (see the module docstring).

    Parameters
    ----------
    rows : (n, d) float32, the channel's item vectors (item row i is row i).
    codec : "sq8" or "pq4".
    partitions, probes : int or None. Lists per band: ``partitions`` split among the
        bands by size (None: :func:`default_partitions` of each band). ``probes``: lists
        scanned in each band searched (None: :func:`channel_probes` of its lists); probes
        ≥ partitions scans every list.
    """

    def __init__(self, rows: np.ndarray, codec: str, num_threads: int, random_state: Any,
                 partitions: int | None = None, probes: int | None = None) -> None:
        from llmrec.quantized import QuantizedIndex

        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n = len(rows)
        norms = row_norms(rows)
        bands = []
        for band_rows in norm_bands(norms):
            lift = float(norms[band_rows].max()) or 1.0
            lists = (default_partitions(len(band_rows)) if partitions is None
                     else max(1, min(len(band_rows), round(int(partitions) * len(band_rows) / max(n, 1)))))
            index = QuantizedIndex(_lifted(rows, band_rows, norms, lift), codec=codec, partitions=lists,
                                   keep_vectors=False,
                                   train_size=max(lists * TRAIN_ROWS_PER_LIST, 32_768),
                                   random_state=random_state, num_threads=num_threads)
            bands.append(_Band(band_rows, index, lift))
        self._set(bands, codec, rows.shape[1], n, n, num_threads, probes)

    def _set(self, bands: list[_Band], codec: str, dim: int, n_main: int, n_rows: int,
             num_threads: int, probes: int | None) -> None:
        self.codec, self._dim, self.bands = codec, dim, bands
        self.partitions = sum(band.index.partitions for band in bands)
        self.probes = probes
        self.n_main, self.n_rows = n_main, n_rows
        self.delta: ExactIndex | None = None
        self._num_threads = num_threads

    @classmethod
    def restored(cls, bands: list[_Band], codec: str, dim: int, n_main: int, n_rows: int,
                 delta_rows: np.ndarray, delta_vectors: np.ndarray, num_threads: int,
                 probes: int | None) -> PartitionedChannel:
        """A channel from saved bands (:mod:`.stage1_files`), its delta rebuilt from the
        items' current rows ``delta_vectors`` of item rows ``delta_rows``."""
        channel = cls.__new__(cls)
        channel._set(bands, codec, dim, n_main, n_rows, num_threads, probes)
        if len(delta_rows):
            channel.delta = ExactIndex(np.ascontiguousarray(delta_vectors, dtype=np.float32),
                                       num_threads=num_threads, ids=np.asarray(delta_rows, dtype=np.int64))
        return channel

    @property
    def probes(self) -> int:
        return self._probes

    @probes.setter
    def probes(self, value: int | None) -> None:
        """Lists probed in each band searched (at most its lists); None: each band's
        :func:`channel_probes`. Bands below the k-th best score are not searched at all
        (see :meth:`search`), so the top bands, which hold the best scores, get full
        probes (proportional shares left them 9 of 283 lists at 200k items: recall 0.83)."""
        if value is None:
            self._band_probes = [channel_probes(b.index.partitions) for b in self.bands]
            self._probes = max(self._band_probes)
        else:
            self._probes = min(int(value), self.partitions)
            self._band_probes = [min(b.index.partitions, int(value)) for b in self.bands]

    @property
    def dim(self) -> int:
        return self._dim  # the lifting coordinate is internal

    def __len__(self) -> int:
        return self.n_rows

    def add(self, rows: np.ndarray) -> None:
        """Append rows (in the delta, keyed by their item rows). Call on a fork
        (:func:`.snapshot.fork`): the delta is forked here too, so the original keeps
        searching what it had."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        ids = np.arange(self.n_rows, self.n_rows + len(rows), dtype=np.int64)
        self._delta_add(rows, ids, forked=True)
        self.n_rows += len(rows)

    def _delta_add(self, rows: np.ndarray, ids: np.ndarray, forked: bool) -> None:
        from llmrec.recommender.snapshot import fork

        if self.delta is None:
            self.delta = ExactIndex(rows, num_threads=self._num_threads, ids=ids)
            return
        if forked:
            self.delta = fork(self.delta)
        self.delta.add(rows, ids=ids)

    def _in_delta(self, rows: np.ndarray) -> np.ndarray:
        if self.delta is None or not len(rows):
            return np.zeros(len(rows), dtype=bool)
        return np.isin(rows, self.delta.ids)

    def update(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Rewrite item rows (re-solved factors): the new rows go to the delta (in place:
        requests searching now see the item by its old codes or its new row)."""
        rows = np.asarray(rows, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        there = self._in_delta(rows)
        if there.any() and self.delta is not None:  # rows found there: it exists
            self.delta.update(rows[there], vectors[there])
        if (~there).any():
            self._delta_add(vectors[~there], rows[~there], forked=False)

    def remove(self, rows: np.ndarray) -> None:
        """Items no search returns any more (skipped inside the scans), in place."""
        rows = np.asarray(rows, dtype=np.int64)
        there = self._in_delta(rows)
        if there.any() and self.delta is not None:
            self.delta.remove(rows[there])
        main = rows[rows < self.n_main]  # a re-solved row is in the delta and in its band
        for band in self.bands:
            local = band.local(main)
            if len(local):
                band.index.remove(local)

    def _search_delta(self, queries: np.ndarray, k: int, exclude: Any, allow: Any,
                      ids: list[np.ndarray], scores: list[np.ndarray]) -> None:
        delta = self.delta
        delta_allow = None if allow is None else np.asarray(allow, dtype=np.int64)
        if delta is not None and (delta_allow is None or len(delta_allow)):
            found, score = delta.search(queries, min(k, len(delta)), exclude=exclude, allow=delta_allow)
            ids.append(found)
            scores.append(score)

    def compact(self) -> None:
        """Reclaim the storage of removed rows (rows keep their ids: the bands' positions)."""
        for band in self.bands:
            band.index.compact()
        if self.delta is not None:
            self.delta.compact()

    def memory_bytes(self) -> int:
        total = sum(int(b.index.memory_bytes()) + b.rows.nbytes for b in self.bands)
        if self.delta is not None:
            total += len(self.delta) * (self.delta.dim * 4 + 8)
        return total

    def search(self, queries: np.ndarray, k: int, *, exclude: Any = None, allow: Any = None
               ) -> tuple[np.ndarray, None]:
        """Candidate item rows (nq, ≤ k) of the bands and the delta by (approximate)
        score, each at most once; -1 for none. Scores are not returned (stage 2
        re-scores)."""
        nq = len(queries)
        exclude = _as_lists(exclude, nq)
        ids: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        lifted = np.zeros((nq, queries.shape[1] + 1), dtype=np.float32)
        lifted[:, :-1] = queries
        # Bands from the largest norms down: a band whose rows cannot beat the k-th best
        # score found so far (|q|·M_b ≤ it, Cauchy–Schwarz) is skipped with every band below.
        reach = np.linalg.norm(queries.astype(np.float64), axis=1)
        if self.delta is not None and len(self.delta):
            self._search_delta(queries, k, exclude, allow, ids, scores)
        for band, probes in zip(self.bands, self._band_probes):
            if ids and bool((_kth(np.hstack(scores), k) >= reach * band.lift).all()):
                break
            band_allow = None if allow is None else band.local(np.asarray(allow, dtype=np.int64))
            if band_allow is not None and not len(band_allow):
                continue
            band_exclude = None if exclude is None else [band.local(e) for e in exclude]
            found, score = band.index.search(lifted, min(k, len(band.rows)), exclude=band_exclude,
                                             allow=band_allow, probes=probes)
            ids.append(np.where(found >= 0, band.rows[np.maximum(found, 0)], -1))
            scores.append(score)
        if not ids:
            return np.full((nq, 1), -1, dtype=np.int64), None
        return _best(np.hstack(ids), np.hstack(scores), k), None


def _kth(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k-th best score (-inf when it has fewer than k)."""
    if scores.shape[1] < k:
        return np.full(len(scores), -np.inf)
    return -np.partition(-np.where(np.isfinite(scores), scores, -np.inf), k - 1, axis=1)[:, k - 1]


def _as_lists(exclude: Any, nq: int) -> list[np.ndarray] | None:
    """``exclude`` (None, a CSR (nq, ≥ n) or a list of id arrays) as sorted row arrays."""
    if exclude is None:
        return None
    if isinstance(exclude, list):
        return [np.sort(np.asarray(e, dtype=np.int64)) for e in exclude]
    matrix = sp.csr_matrix(exclude)
    return [np.sort(matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]].astype(np.int64)) for r in range(nq)]


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the k best ids by score, each id once (an item re-solved since the build
    is in a band by its old row and in the delta by its new one), -1 padding."""
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    ids = np.take_along_axis(ids, order, axis=1)
    ranked = np.sort(ids, axis=1)
    if (ranked[:, 1:] == ranked[:, :-1])[ranked[:, 1:] >= 0].any():  # rare: drop repeats
        for row in ids:
            seen: set[int] = set()
            for j, value in enumerate(row.tolist()):
                if value >= 0 and value in seen:
                    row[j] = -1
                seen.add(value)
        keep = np.argsort(ids < 0, axis=1, kind="stable")
        ids = np.take_along_axis(ids, keep, axis=1)
    return ids[:, :k]


def describe(kind: str, requested: str, n_items: int, channel: Any) -> str:
    """One line saying what stage 1 uses, for the log and ``Recommender.index_info_``."""
    what = f"stage-1 index {kind!r} for {n_items:,} items"
    if isinstance(channel, PartitionedChannel):
        what += (f" ({channel.partitions} lists in {len(channel.bands)} norm bands, up to "
                 f"{channel.probes} probed per band searched)")
    if requested == "auto":
        what += (f" (index='auto': exact below {AUTO_FLAT_ITEMS:,} items, flat sq8 below "
                 f"{AUTO_IVF_ITEMS:,}, inverted lists above)")
    return what


__all__ = ["INDEXES", "PartitionedChannel", "channel_probes", "default_partitions", "default_probes", "describe",
           "log_index", "resolve_index"]


def log_index(stage1: Any, n_items: int) -> str:
    """Log (INFO, "llmrec.recommender") and return what stage 1 uses."""
    line = describe(stage1.kind, getattr(stage1, "requested", stage1.kind), n_items, stage1.behaviour)
    LOG.info(line)
    return line
