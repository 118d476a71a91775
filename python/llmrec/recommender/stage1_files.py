"""The stage-1 indexes saved with a Recommender, so that ``load`` need not rebuild them
(at 1M items the k-means lists of three channels took 226–371 s of a load, and the
float32 text rows they were built from 1.5 GB of its peak).

Files, beside ``recommender.llmrec``::

    stage1.llmrec              kind "Stage1": which index, which channels, and per
                               partitioned channel its norm bands (item rows and lift of
                               each band) and the rows of its exact side index ("delta":
                               items added after the build and rows re-solved since, less
                               removed ones)
    stage1.<channel>.<j>.llmrec  the QuantizedIndex of band j of a partitioned channel,
                               or (j = 0) of a flat sq8 / fp16 channel
                               (:meth:`llmrec.QuantizedIndex.save`, its own checks)

A request channel over the items' int8 text codes (:class:`.text_lists.TextLists`, kind
version 2: layout "rows") has no file of its own: its centroids, list starts, item rows
in list order and removed rows are arrays of the manifest. A model whose manifest (kind
version 1) holds a partitioned request channel while its text is int8 gets its lists
converted at load (:meth:`.text_lists.TextLists.from_channel`; the codes are dropped).

An ``index="exact"`` stage 1 is not saved: it is a copy of the item rows. The delta's
rows are not saved either: they are the items' current rows, taken from the item
matrices at load. Removed items stay marked in the band files; every request also
drops them from the candidates (``Snapshot.removed``), so the two cannot disagree in
what is returned.

The manifest and ``recommender.llmrec`` carry the same random token, so a stage 1 from
another model is refused; everything an index result is used to index with (band rows,
the ids each index returns, dimensions, codec, channels) is checked against the model,
a mismatch raising :class:`llmrec.FormatError`. Codes that are valid but wrong could
only cost recall: stage 2 re-scores every candidate from the item matrices. A model
directory without ``stage1.llmrec`` (saved before this file existed, or with an exact
stage 1) rebuilds stage 1 at load, as before.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from llmrec._fileformat import load_arrays, save_arrays
from llmrec._validate import array, fail, meta_choice, meta_int, meta_value
from llmrec.quantized import QuantizedIndex

MANIFEST = "stage1.llmrec"
_KIND = "Stage1"
_KIND_VERSION = 2  # 2: layout "rows" (TextLists); 1 still loads
CHANNELS = ("behaviour", "interest", "request")
# The band files (and save_arrays' temporaries of them), for the model directory's check.
_NAME = r"stage1(\.(behaviour|interest|request)\.\d{1,3})?\.llmrec"
FILE = re.compile(_NAME)
TEMPORARY = re.compile(r"\." + _NAME + r"\.llmrec-\d+-[0-9a-f]+\.tmp")
_MAX_BANDS = 64


def _band_file(folder: Path, channel: str, j: int) -> Path:
    return folder / f"stage1.{channel}.{j}.llmrec"


def save_stage1(stage1: Any, folder: Path) -> str | None:
    """Write ``stage1``'s indexes into ``folder``; returns the token to keep in the
    model's metadata (None when nothing is saved: an exact stage 1)."""
    from llmrec.recommender.partitioned import PartitionedChannel
    from llmrec.recommender.text_lists import TextLists

    if stage1.kind == "exact":
        return None
    token = secrets.token_hex(16)
    channels: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in CHANNELS:
        channel = getattr(stage1, name)
        if channel is None:
            continue
        if isinstance(channel, TextLists):
            for part in ("centroids", "order", "starts", "removed"):
                arrays[f"{name}.{part}"] = getattr(channel, part)
            channels[name] = {"layout": "rows", "n_main": channel.n_main, "n_rows": channel.n_rows}
        elif isinstance(channel, PartitionedChannel):
            for j, band in enumerate(channel.bands):
                band.index.save(_band_file(folder, name, j))
                arrays[f"{name}.rows.{j}"] = band.rows
            arrays[f"{name}.lifts"] = np.array([band.lift for band in channel.bands], dtype=np.float64)
            arrays[f"{name}.delta"] = np.zeros(0, np.int64) if channel.delta is None else channel.delta.ids
            channels[name] = {"layout": "bands", "bands": len(channel.bands), "n_main": channel.n_main,
                              "n_rows": channel.n_rows}
        else:
            channel.save(_band_file(folder, name, 0))
            channels[name] = {"layout": "flat"}
    meta = {"token": token, "kind": stage1.kind, "requested": stage1.requested, "channels": channels}
    save_arrays(folder / MANIFEST, _KIND, _KIND_VERSION, meta, arrays)
    return token


def load_stage1(folder: Path, token: Any, kind: str, rows: dict[str, Any], n_items: int,
                num_threads: int, probes: int | None, removed: np.ndarray | None = None) -> Any:
    """The saved stage 1 of the model in ``folder`` (None when none was saved).

    ``token``: the model metadata's; ``kind``: the stage-1 index the model's settings
    resolve to; ``rows``: per channel present, a function giving the channel's current
    float32 rows for item rows (the delta is rebuilt from them) and the channel's width.
    ``removed``: uint8 per item row, 1 = removed, when the items keep their text in int8
    (the request channel then reads those codes: :mod:`.text_lists`), else None.
    Raises FormatError for a stage 1 that does not belong to this model."""
    from llmrec.recommender.partitioned import PartitionedChannel, _Band
    from llmrec.recommender.scoring import Stage1
    from llmrec.recommender.text_lists import TextLists

    path = folder / MANIFEST
    if not path.exists():
        if token is not None:
            raise fail(folder, f"the model names a saved stage 1 but {MANIFEST} is missing")
        return None
    meta, arrays, version = load_arrays(path, _KIND, max_kind_version=_KIND_VERSION)
    if token is None or meta_value(meta, "token", path, types=str) != token:
        raise fail(path, "this stage 1 was saved with another model (token mismatch)")
    saved_kind = meta_choice(meta, "kind", path, ("sq8", "fp16", "ivf-sq8", "ivf-pq4"))
    if saved_kind != kind:
        raise fail(path, f"stage-1 index {saved_kind!r} does not match the model's {kind!r}")
    requested = meta_value(meta, "requested", path, types=str)
    channels = meta_value(meta, "channels", path, types=dict)
    if set(channels) != set(rows):
        raise fail(path, f"stage-1 channels {sorted(channels)} do not match the model's {sorted(rows)}")
    built: dict[str, Any] = {}
    for name, (vectors, width) in rows.items():
        spec = meta_value(channels, name, path, types=dict)
        by_codes = name == "request" and removed is not None and kind.startswith("ivf-")
        layout = meta_choice(spec, "layout", path, ("bands", "flat", "rows") if version >= 2 else ("bands", "flat"))
        if layout == "rows" and not by_codes:
            raise fail(path, f"channel {name!r}: layout 'rows' needs an ivf index over int8 text")
        if layout == "rows":
            built[name] = _text_lists(path, arrays, spec, width, n_items, num_threads, probes)
            continue
        if (layout == "bands") != kind.startswith("ivf-"):
            raise fail(path, f"channel {name!r}: layout {layout!r} does not match index {kind!r}")
        if layout == "flat":  # its ids are item rows (compact() keeps them)
            index = _index(_band_file(folder, name, 0), kind, width, n_items, num_threads)
            built[name] = index
            continue
        n_bands = meta_int(spec, "bands", path, minimum=1, maximum=_MAX_BANDS)
        n_main = meta_int(spec, "n_main", path, minimum=0, maximum=n_items)
        n_rows = meta_int(spec, "n_rows", path, minimum=n_main, maximum=n_items)
        lifts = array(arrays, f"{name}.lifts", path, dtype=np.float64, shape=(n_bands,), finite=True)
        if len(lifts) and lifts.min() <= 0:
            raise fail(path, f"array '{name}.lifts' must hold norms > 0")
        bands, seen = [], []
        for j in range(n_bands):
            band_rows = np.ascontiguousarray(array(arrays, f"{name}.rows.{j}", path, dtype=np.int64, ndim=1))
            if len(band_rows) == 0 or np.any(np.diff(band_rows) <= 0):
                raise fail(path, f"array '{name}.rows.{j}' must hold increasing item rows")
            index = _index(_band_file(folder, name, j), kind, width + 1, len(band_rows), num_threads)
            bands.append(_Band(band_rows, index, float(lifts[j])))
            seen.append(band_rows)
        every = np.sort(np.concatenate(seen))
        if not np.array_equal(every, np.arange(n_main)):
            raise fail(path, f"the bands of channel {name!r} must hold each of the {n_main} first item "
                       "rows exactly once")
        delta = array(arrays, f"{name}.delta", path, dtype=np.int64, ndim=1)
        if len(delta) and (delta.min() < 0 or delta.max() >= n_rows or np.any(np.diff(np.sort(delta)) == 0)):
            raise fail(path, f"array '{name}.delta' must hold distinct item rows below {n_rows}")
        if n_rows != n_items:
            raise fail(path, f"channel {name!r} holds {n_rows} items, the model {n_items}")
        built[name] = PartitionedChannel.restored(bands, kind[4:], width, n_main, n_rows,
                                                  delta, vectors(delta), num_threads, probes)
        if by_codes:  # saved before TextLists: keep the lists, drop the codes
            assert removed is not None
            built[name] = TextLists.from_channel(built[name], np.flatnonzero(removed[:n_items]),
                                                 num_threads, probes)
    return Stage1.restored(kind, requested, built.get("behaviour"), built.get("interest"),
                           built.get("request"))


def _text_lists(path: Path, arrays: dict[str, np.ndarray], spec: dict[str, Any], width: int,
                n_items: int, num_threads: int, probes: int | None) -> Any:
    """A request channel of layout "rows" (:class:`.text_lists.TextLists`), checked: item
    rows below ``n_main`` in at most one list each (a list can only index E's rows),
    removed rows increasing and in range."""
    from llmrec.recommender.text_lists import TextLists

    n_main = meta_int(spec, "n_main", path, minimum=0, maximum=n_items)
    n_rows = meta_int(spec, "n_rows", path, minimum=n_main, maximum=n_items)
    if n_rows != n_items:
        raise fail(path, f"channel 'request' holds {n_rows} items, the model {n_items}")
    centroids = array(arrays, "request.centroids", path, dtype=np.float32, shape=(None, width), finite=True)
    lists = len(centroids)
    if lists == 0:
        raise fail(path, "array 'request.centroids' must hold at least one list")
    order = array(arrays, "request.order", path, dtype=np.int32, ndim=1)
    if len(order) and (order.min() < 0 or order.max() >= n_main or np.any(np.bincount(order) > 1)):
        raise fail(path, f"array 'request.order' must hold distinct item rows below {n_main}")
    starts = array(arrays, "request.starts", path, dtype=np.int64, shape=(lists + 1,))
    if starts[0] != 0 or starts[-1] != len(order) or np.any(np.diff(starts) < 0):
        raise fail(path, f"array 'request.starts' must rise from 0 to {len(order)}")
    removed = array(arrays, "request.removed", path, dtype=np.int64, ndim=1)
    if len(removed) and (removed.min() < 0 or removed.max() >= n_rows or np.any(np.diff(removed) <= 0)):
        raise fail(path, f"array 'request.removed' must hold increasing item rows below {n_rows}")
    return TextLists(np.ascontiguousarray(centroids), np.ascontiguousarray(order), np.ascontiguousarray(starts),
                     n_main, n_rows, num_threads, probes, np.ascontiguousarray(removed))


def _index(path: Path, kind: str, dim: int, n_ids: int, num_threads: int) -> QuantizedIndex:
    """A saved QuantizedIndex of the codec ``kind`` names, ``dim`` wide, whose live ids
    (what its searches return) all lie in [0, n_ids)."""
    if not path.exists():
        raise fail(path, "stage-1 index file missing")
    index = QuantizedIndex.load(path, num_threads=num_threads)
    codec = kind[4:] if kind.startswith("ivf-") else kind
    if index.codec != codec or index.dim != dim or (kind.startswith("ivf-") != (index.partitions is not None)):
        raise fail(path, f"expected a {kind} index of dimension {dim}, got {index.codec} of dimension "
                   f"{index.dim} ({index.partitions or 'no'} lists)")
    ids = index.ids
    if len(ids) and (ids.min() < 0 or ids.max() >= n_ids):
        raise fail(path, f"the index returns ids outside [0, {n_ids})")
    return index


__all__ = ["FILE", "MANIFEST", "TEMPORARY", "load_stage1", "save_stage1"]
