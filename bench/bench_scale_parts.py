"""Parts of a served scale model (issue 16 §3).

    python bench/bench_recommender.py scale-memory MODEL [--as-served]

loads MODEL in this fresh process and prints its resident memory: the process once
python, numpy, pandas and llmrec are imported (the fixed base, which amortises away at
10M items; ``bench_recommender`` imports them before this runs), its growth with the
load and one request, and the bytes per item of every array the model reaches,
grouped by part (item side, user side), with what the arrays leave unexplained (heap
fragmentation, Python objects, hash tables). ``--as-served`` loads it as ``llmrec
serve`` does (:mod:`llmrec.serve.memory`: every large block a mapping of its own, the
heaps trimmed after the load), as ``scale-one``'s "served model" figure does.

    python bench/bench_recommender.py scale-request MODEL [--queries 200]

Free-text requests at scale, interleaved query by query on the same lists: the request
channel over the items' own int8 text codes (:class:`llmrec.recommender.text_lists.TextLists`)
with E laid out list by list (as served), the same channel reading E in item order (as
it did before the layout: each probed row a scattered read), and, where MODEL was saved
with one (file version ≤ 6), the partitioned channel with its own sq8 codes that
TextLists replaced (converted here from the saved one). Queries: item texts of the
catalogue (the stand-in encoder). Reported: ``search(text, 10)`` p50 / p99 of each, the
overlap of their top 10, each one's recall@10 against the exact ranking of the same
blend (every item scored), and the channel's bytes per item.

    python bench/bench_recommender.py scale-interest MODEL [--queries 300]

times ``recommend(user, 10)`` with the users' text interest in int8 against float32
(see :func:`scale_interest`).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def scale_request(args: argparse.Namespace) -> None:
    import llmrec
    from llmrec.recommender import stage1_files
    from llmrec.recommender.partitioned import PartitionedChannel
    from llmrec.recommender.rows import Int8Rows
    from llmrec.recommender.text_lists import TextLists

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recommender import StandInEncoder

    class ByRow(TextLists):
        """TextLists as it searched before E was laid out (the anchor): the probed lists'
        rows read from E in item order."""

        def search(self, queries: Any, k: int, *, text: Any, exclude: Any = None,
                   allow: Any = None) -> tuple[Any, None]:
            rows = self.candidates(queries, exclude, allow)
            listed = (rows >= 0) & (rows < len(self.order))
            rows[listed] = self.order[rows[listed]]
            k = max(1, min(int(k), rows.shape[1]))
            ids, _ = llmrec._core.rescore_candidates(rows, [text.codes], [queries], [None], [None],
                                                     np.zeros(len(queries), np.float32), k, self._num_threads,
                                                     [text.scales])
            return ids, None

    load = stage1_files.load_stage1

    def keep_saved(*a: Any) -> Any:
        """A partitioned request channel kept as saved (not converted); TextLists as usual."""
        try:
            return load(*a[:7], None)
        except llmrec.FormatError:
            return load(*a)

    stage1_files.load_stage1 = keep_saved
    rec = llmrec.Recommender.load(args.model, encoder=StandInEncoder())
    stage1_files.load_stage1 = load
    publisher = rec._state.publisher
    snap = publisher.current
    items, stage1 = snap.items, snap.items.index
    if not isinstance(items.E, Int8Rows):
        raise SystemExit("scale-request needs a model with int8 text")
    saved = stage1.request
    n = len(items.V)
    lists = saved if isinstance(saved, TextLists) else TextLists.from_channel(saved, np.zeros(0, np.int64), 2, None)
    by_item = items.E if items.E.slots is None else Int8Rows(items.E.codes[items.E.slots], items.E.scales[items.E.slots])
    by_row = ByRow(lists.centroids, lists.order, lists.starts, lists.n_main, lists.n_rows, 2, lists.probes,
                   lists.removed)
    channels = {"TextLists, E list by list (now)": (lists, lists.lay_out(items.E)),
                "TextLists, E in item order (before)": (by_row, by_item)}
    if isinstance(saved, PartitionedChannel):
        channels["sq8 codes (partitioned, before TextLists)"] = (saved, by_item)
    snapshots = {}
    for key, (channel, E) in channels.items():
        index = copy.copy(stage1)
        index.request = channel
        snapshots[key] = snap._replace(items=items._replace(E=E, index=index))
    del items, snap
    rng = np.random.default_rng(4)
    labels = publisher.current.labels
    texts = [max(str(labels[int(i)]).split("."), key=len) for i in rng.integers(0, n, args.queries)]
    times, found = _interleaved(texts, {key: lambda s=snapshot: setattr(publisher, "current", s)
                                        for key, snapshot in snapshots.items()},
                                lambda text: rec.search(text, 10).ids)
    publisher.current = snapshots["TextLists, E list by list (now)"]
    settings = rec._state.settings
    settings["candidates"], kept = n, settings["candidates"]  # every item scored: the exact ranking
    exact = [rec.search(text, 10).ids for text in texts[:args.recall_queries]]
    settings["candidates"] = kept
    for key, (channel, E) in channels.items():
        t = np.array(times[key][5:])
        recall = np.mean([np.isin(e, f).mean() for e, f in zip(exact, found[key])])
        print(f"{key}: search(text, 10) p50 {np.percentile(t, 50):.2f} ms, p99 {np.percentile(t, 99):.2f} ms; "
              f"recall@10 vs exact {recall:.3f} ({len(exact)} queries); channel "
              f"{channel.memory_bytes() / n:.1f} + E's slots {0 if E.slots is None else 4} bytes per item",
              flush=True)
    first = next(iter(found))
    for key in list(found)[1:]:
        print(f"top-10 overlap, {first} vs {key}: {_overlap({k: found[k] for k in (first, key)}):.3f} "
              f"over {len(texts)} queries", flush=True)
    # recommend (no request text: stage 2 reads E through its slots for the text interest)
    users = rec._user_map.ids[rng.integers(0, len(rec._user_map.ids), args.queries)]
    layouts = list(snapshots)[:2]
    times, found = _interleaved(users, {key: lambda s=snapshots[key]: setattr(publisher, "current", s)
                                        for key in layouts}, lambda user: rec.recommend(user, 10).ids)
    for key in layouts:
        t = np.array(times[key][5:])
        print(f"{key}: recommend(user, 10) p50 {np.percentile(t, 50):.2f} ms, p99 {np.percentile(t, 99):.2f} ms",
              flush=True)
    print(f"top-10 overlap of recommend: {_overlap(found):.3f} over {len(users)} users", flush=True)


def scale_interest(args: argparse.Namespace) -> None:
    """``recommend(user, 10)`` with the users' text interest in int8 (as loaded) and in
    float32 (decoded once into a twin snapshot), interleaved user by user in one process:
    p50 / p99 of each, their ratio, and the top-10 overlap."""
    import llmrec
    from llmrec.recommender.rows import Int8Rows

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recommender import StandInEncoder

    rec = llmrec.Recommender.load(args.model, encoder=StandInEncoder())
    publisher = rec._state.publisher
    coded = publisher.current
    if not isinstance(coded.users.get("text"), Int8Rows):
        raise SystemExit("scale-interest needs a model whose users' text interest is int8")
    plain = coded._replace(users={**coded.users, "text": np.asarray(coded.users["text"][:coded.n_users])})
    rng = np.random.default_rng(5)
    users = rec._user_map.ids[rng.integers(0, len(rec._user_map.ids), args.queries)]
    snapshots = {"int8 interest": coded, "float32 interest": plain}
    times, found = _interleaved(users, {key: lambda s=snap: setattr(publisher, "current", s)
                                        for key, snap in snapshots.items()},
                                lambda user: rec.recommend(user, 10).ids)
    publisher.current = coded
    p50 = {}
    for key in times:
        t = np.array(times[key][5:])
        p50[key] = np.percentile(t, 50)
        print(f"{key}: recommend(user, 10) p50 {p50[key]:.2f} ms, p99 {np.percentile(t, 99):.2f} ms", flush=True)
    print(f"p50 ratio int8 / float32 {p50['int8 interest'] / p50['float32 interest']:.2f}; top-10 overlap "
          f"{_overlap(found):.3f} over {len(users)} users", flush=True)


def _interleaved(inputs: Any, variants: dict[str, Any], call: Any) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Each input under each variant in turn (``variants``: name → a function switching
    the model to it), so that both see the same machine load: per variant the times (ms)
    and the results of ``call(input)``."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    found: dict[str, list[Any]] = {name: [] for name in variants}
    for x in inputs:
        for name, switch in variants.items():
            switch()
            start = time.perf_counter()
            found[name].append(call(x))
            times[name].append((time.perf_counter() - start) * 1e3)
    return times, found


def _overlap(found: dict[str, list[Any]]) -> float:
    """Mean share of the first variant's top ids that the second also returned."""
    first, second = found.values()
    return float(np.mean([np.isin(a, b).mean() for a, b in zip(first, second)]))


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _arrays(obj: Any, path: str, seen: set[int], buffers: set[int], out: dict[str, int], depth: int = 0) -> None:
    """Bytes of every numpy buffer reachable from ``obj`` (each once), by attribute path."""
    if depth > 12 or id(obj) in seen or isinstance(obj, (int, float, str, bytes, bool, type(None), type)):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if base.ctypes.data not in buffers:
            buffers.add(base.ctypes.data)
            out[path] = out.get(path, 0) + base.nbytes
        return
    if hasattr(obj, "to_numpy") and hasattr(obj, "_engine"):  # a pandas Index
        _arrays(obj.to_numpy(), path, seen, buffers, out, depth + 1)
        return
    if isinstance(obj, dict):
        children = [(f"[{k}]", v) for k, v in obj.items()]
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        children = [(f".{f}", getattr(obj, f)) for f in obj._fields]
    elif isinstance(obj, (list, tuple, set)):
        children = [("[*]", v) for v in obj]
    else:
        children = [(f".{k}", v) for k, v in getattr(obj, "__dict__", {}).items()]
    for name, child in children:
        _arrays(child, path + name, seen, buffers, out, depth + 1)


USER_PARTS = ("users[", "user_factors", "user_items", "feedback", "histories", "user_map")


def scale_memory(args: argparse.Namespace) -> None:
    """See the module docstring."""
    import re

    import llmrec
    from llmrec.serve.memory import map_large_blocks, return_freed_memory

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_recommender import StandInEncoder

    if args.as_served:  # as llmrec serve loads a model (llmrec.serve.memory)
        map_large_blocks()
    base = _rss()
    rec = llmrec.Recommender.load(args.model, encoder=StandInEncoder())
    if args.as_served:
        return_freed_memory()
    rec.recommend(rec._user_map.ids[0], 10)
    grown = _rss() - base
    n = len(rec._items.V)
    parts: dict[str, int] = {}
    _arrays(rec._state, "", set(), set(), parts)
    grouped: dict[str, int] = {}
    for path, size in parts.items():
        name = re.sub(r"\.bands\[\*\]\.index\..*", ".codes and lists", path.replace(".publisher.current", ""))
        grouped[name] = grouped.get(name, 0) + size
    print(f"process after imports {base / 2**20:.0f} MiB (the fixed base); "
          f"load + one request: +{grown / 2**30:.2f} GiB = {grown / n:.0f} bytes per item ({n:,} items, "
          f"{len(rec._user_map):,} users)", flush=True)
    sides = {"item": 0, "user": 0}
    for name, size in sorted(grouped.items(), key=lambda kv: -kv[1]):
        side = "user" if any(part in name for part in USER_PARTS) else "item"
        sides[side] += size
        if size / n >= 0.5:
            print(f"  {size / n:8.1f}  {side:4}  {name.lstrip('.')}", flush=True)
    arrays = sum(sides.values())
    print(f"arrays: item side {sides['item'] / n:.0f}, user side {sides['user'] / n:.0f} bytes per item; "
          f"not in arrays (heap, Python objects, hash tables) {(grown - arrays) / n:.0f}", flush=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale-request", help="free-text search: E laid out list by list vs in item order")
    p.add_argument("model")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--recall-queries", type=int, default=50)


    q = sub.add_parser("scale-interest", help="recommend with the users' text interest int8 vs float32")
    q.add_argument("model")
    q.add_argument("--queries", type=int, default=300)


    m = sub.add_parser("scale-memory", help="resident memory of a served model, part by part")
    m.add_argument("model")
    m.add_argument("--as-served", action="store_true",
                   help="load as llmrec serve does: large blocks mapped on their own, heaps trimmed after")


COMMANDS = {"scale-request": scale_request, "scale-interest": scale_interest, "scale-memory": scale_memory}
