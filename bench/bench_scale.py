"""The Recommender on synthetic catalogues of 100k, 1M and 10M items (issue 16, §3).

    python bench/bench_recommender.py scale [--items 100000 1000000 10000000] [--index auto]

Each size runs in a fresh process (so peak memory is that size's alone): synthetic
interactions (``llmrec.datasets.synthetic``, ``--per-user`` interactions per user,
users = items / 10, at least 10,000), item text vectors from the hashing stand-in
encoder (384 dims; it has no meaning, but the serving path is the same as with
MiniLM), ``num_threads=2``. Reported:

* fit: wall time and peak resident memory (``ru_maxrss``) of the process;
* what stage 1 picked (``index_info_``) and ``memory_per_item()``;
* ``recommend(user, 10)``: p50 / p99 over ``--repeats`` random users, in steady state:
  after WARM_UP requests of other users. The first requests after a load are reported
  apart (median, slowest): at 10M items on the 2-core VM the first dozen re-scored in
  8–48 ms, falling to ~1 ms, with no page fault the guest could see (bench/RESULTS.md);
* recall@10 of the two-stage top 10 against the exact full ranking of the same
  blended score (:func:`llmrec.recommender.recall.staged_recall`), ``--recall-users``;
* ``update(user, 2 items)`` and ``add_items(1 item)``: p50 / p99 (and the first call apart:
  after a load it grows the item arrays once); ``remove_items``
  when the Recommender has it (else said); ``forget_user`` of a few users (median, slowest);
* served resident memory per item: a second fresh process loads the saved model and
  runs one request; its RSS growth over an import-only baseline, per item.

A size whose estimated peak exceeds the memory available now (``MemAvailable``) is
skipped with a note (``--force`` runs it anyway). ``--model DIR`` saves the fitted model
there, or loads it when DIR exists (the serving figures without refitting: said so in
the output). ``--probes-sweep`` reports latency and recall at other probe counts; the
fit logs its stages (where fit time goes). ``--validation 0 --iterations 3`` makes a
cheaper fit (reported as such).

    python bench/bench_recommender.py scale-stage1 MODEL [--rows 100000 1000000 3000000]

times stage 1 alone (the behaviour channel) on catalogues grown from a saved model's
rows (see :func:`scale_stage1`): the latency trend where a full model does not fit in
memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
BYTES_PER_ITEM_AT_FIT = 12_000  # rough peak of a fit with 384-d text (arrays, copies, ALS)
FORGOTTEN_USERS = 10
WARM_UP = 50     # requests before recommend is timed (steady state)
COLD_START = 20  # of those, the first ones after the load or fit, reported apart
TARGETS = {1_000_000: (2.0, 6.0), 10_000_000: (4.0, 10.0)}  # recommend p50, p99 (ms)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(values: list[float]) -> str:
    v = np.array(values)
    return f"p50 {np.percentile(v, 50):.2f} ms  p99 {np.percentile(v, 99):.2f} ms"


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def scale(args: argparse.Namespace) -> None:
    for n in args.items:
        need = n * BYTES_PER_ITEM_AT_FIT / 2**20
        if need > _available_mb() and not args.force:
            print(f"{n:,} items: skipped, needs about {need / 1024:.1f} GiB, "
                  f"{_available_mb() / 1024:.1f} GiB available (--force to run)", flush=True)
            continue
        command = [sys.executable, str(HERE / "bench_recommender.py"), "scale-one", "--items", str(n),
                   *_shared_arguments(args)]
        subprocess.run(command, check=True)


def _shared_arguments(args: argparse.Namespace) -> list[str]:
    out = ["--index", args.index, "--repeats", str(args.repeats), "--per-user", str(args.per_user),
           "--recall-users", str(args.recall_users), "--candidates", str(args.candidates),
           "--validation", str(args.validation), "--iterations", str(args.iterations),
           "--text-storage", args.text_storage]
    if args.probes:
        out += ["--probes", str(args.probes)]
    if args.probes_sweep:
        out += ["--probes-sweep", *map(str, args.probes_sweep)]
    if args.model:
        out += ["--model", args.model]
    return out


def _set_probes(rec, probes: int) -> None:
    """Probes of every partitioned stage-1 channel (a benchmark knob: ``probes=`` at fit)."""
    for channel in rec._items.index.channels():
        if hasattr(channel, "probes"):
            channel.probes = min(probes, channel.partitions)


def _probes_sweep(rec, users, args) -> None:
    """recommend p50 / p99 and recall@10 at each probe count (same users)."""
    from llmrec.recommender.recall import staged_recall

    for probes in args.probes_sweep:
        _set_probes(rec, probes)
        times = [_timed(lambda: rec.recommend(u, 10)) for u in users][WARM_UP:]
        recall = staged_recall(rec, users[:args.recall_users], 10)
        print(f"  probes {probes}: recommend {_percentiles(times)}, recall@10 {recall:.4f}", flush=True)


def scale_one(args: argparse.Namespace) -> None:
    import llmrec
    from llmrec.datasets import synthetic

    sys.path.insert(0, str(HERE))
    from bench_recommender import StandInEncoder

    n = args.items
    saved = Path(args.model) if args.model else None
    start = time.perf_counter()
    if saved is not None and saved.exists():  # serving figures of a model fitted earlier: no data made
        rec = llmrec.Recommender.load(saved, encoder=StandInEncoder())
        print(f"== {n:,} items, {len(rec._user_map.ids):,} users: loaded {saved} (not fitted here): "
              f"{time.perf_counter() - start:.0f} s; 2 threads; stand-in 384-d text", flush=True)
    else:
        n_users = max(n // 10, 10_000)
        interactions, items, _ = synthetic(n_users, n, density=args.per_user / n, random_state=0)
        items = items[["item_id", "text"]] if "text" in items.columns else items
        print(f"== {n:,} items, {n_users:,} users, {len(interactions):,} interactions "
              f"(data {time.perf_counter() - start:.0f} s); 2 threads; stand-in 384-d text", flush=True)
        rss0 = _rss_mb()
        start = time.perf_counter()
        rec = _fit(args, interactions, items, rss0, start)
        del interactions, items
        if saved is not None:
            rec.save(saved)
    _serve(args, rec, n)
    with tempfile.TemporaryDirectory() as folder:
        if saved is None:
            saved = Path(folder) / "model"
            rec.save(saved)
        del rec
        served = subprocess.run([sys.executable, str(HERE / "bench_recommender.py"), "scale-serve",
                                 str(saved)], check=True, capture_output=True, text=True)
        grown = json.loads(served.stdout.strip().splitlines()[-1])
        print(f"served model: {grown['mb'] / 1024:.2f} GiB resident after load + one request, "
              f"{grown['mb'] * 2**20 / n:.0f} bytes per item (load {grown['load_s']:.0f} s)"
              f"{'  (target ≤ 1024 at 10M)' if n >= 10_000_000 else ''}", flush=True)


def _fit(args: argparse.Namespace, interactions, items, rss0: float, start: float):
    import llmrec

    from bench_recommender import StandInEncoder

    rec = llmrec.Recommender(encoder=StandInEncoder(), random_state=0, num_threads=2, index=args.index,
                             candidates=args.candidates, probes=args.probes or None,
                             validation=args.validation, iterations=args.iterations,
                             text_storage=args.text_storage,
                             **({"regularization": 20.0} if args.validation == 0 else {}))
    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s", stream=sys.stdout)
    logging.getLogger("llmrec").setLevel(logging.INFO)  # where fit time goes, stage by stage
    rec.fit(interactions, items=items)
    logging.getLogger("llmrec").setLevel(logging.WARNING)
    fit_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fit {fit_s:.0f} s, peak RSS {peak / 1024:.2f} GiB (process; {rss0 / 1024:.2f} GiB before fit); "
          f"validation: {rec.validation_.get('users', 0)} users, "
          f"{rec.validation_.get('grid', 'full catalogue')}", flush=True)
    return rec


def _serve(args: argparse.Namespace, rec, n: int) -> None:
    """The serving figures of a fitted (or loaded) model; it is changed by the writes."""
    from llmrec.recommender.recall import staged_recall

    print(f"{rec.index_info_}", flush=True)
    memory = rec.memory_per_item()
    print("memory per item (bytes): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()), flush=True)
    rng = np.random.default_rng(1)
    user_ids = rec._user_map.ids
    users = user_ids[rng.integers(0, len(user_ids), args.repeats + WARM_UP)]
    times = [_timed(lambda: rec.recommend(u, 10)) for u in users]
    first, times = times[:COLD_START], times[WARM_UP:]
    print(f"recommend, the first {COLD_START} requests after the load or fit: median {np.median(first):.2f} ms, "
          f"slowest {max(first):.2f} ms", flush=True)
    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
    target = TARGETS.get(n)
    verdict = "" if target is None else (f"  (target p50 ≤ {target[0]} ms, p99 ≤ {target[1]} ms: "
                                         f"{'met' if p50 <= target[0] and p99 <= target[1] else 'missed'})")
    print(f"recommend(user, 10): {_percentiles(times)}{verdict}", flush=True)
    recall = staged_recall(rec, users[:args.recall_users], 10)
    print(f"recall@10 two-stage vs exact full ranking ({args.recall_users} users): {recall:.4f} "
          f"(target ≥ 0.95)", flush=True)
    if args.probes_sweep:
        default = rec._items.index.behaviour.probes if hasattr(rec._items.index.behaviour, "probes") else None
        _probes_sweep(rec, users, args)
        if default is not None:
            _set_probes(rec, default)
    item_ids = rec._item_map.ids
    updates = [_timed(lambda: rec.update(u, item_ids[rng.integers(0, n, 2)].tolist())) for u in users[:200]]
    print(f"update(user, 2 items): {_percentiles(updates[5:])}; the first after the load or fit "
          f"{updates[0]:.1f} ms", flush=True)
    adds = []
    for step in range(100):
        new = pd.DataFrame({"item_id": [10 * n + step], "text": [f"a new item number {step}"]})
        adds.append(_timed(lambda: rec.add_items(new)))
    # The first call grows every item array into a buffer with spare rows (one copy of the
    # catalogue); the percentiles are of the calls after the 5 first, which then append in place.
    print(f"add_items(1 item): {_percentiles(adds[5:])}; the first {adds[0]:.1f} ms", flush=True)
    if hasattr(rec, "remove_items"):
        removes = [_timed(lambda: rec.remove_items([item_ids[int(i)]]))
                   for i in rng.choice(n, 100, replace=False)]
        print(f"remove_items(1 item): {_percentiles(removes[5:])}", flush=True)
    else:
        print("remove_items: not in this Recommender (the catalogue branch adds it)", flush=True)
    forgets = [_timed(lambda: rec.forget_user(u)) for u in np.unique(users[200:])[:FORGOTTEN_USERS]]
    print(f"forget_user: median {np.median(forgets):.1f} ms, slowest {max(forgets):.1f} ms "
          f"({len(forgets)} users)", flush=True)


def scale_serve(args: argparse.Namespace) -> None:
    """Load a saved model in this fresh process as ``llmrec serve`` does (large blocks
    mapped on their own, the heaps trimmed after the load: :mod:`llmrec.serve.memory`);
    print its RSS growth (JSON)."""
    import llmrec
    from llmrec.serve.memory import map_large_blocks, return_freed_memory

    sys.path.insert(0, str(HERE))
    from bench_recommender import StandInEncoder

    map_large_blocks()
    base = _rss_mb()
    start = time.perf_counter()
    rec = llmrec.Recommender.load(args.model, encoder=StandInEncoder())
    return_freed_memory()
    load_s = time.perf_counter() - start
    rec.recommend(rec._user_map.ids[0], 10)
    print(json.dumps({"mb": _rss_mb() - base, "load_s": load_s}))


def scale_stage1(args: argparse.Namespace) -> None:
    """Stage 1 alone as the catalogue grows (the behaviour channel, ivf-sq8 with norm
    bands), from a saved scale model: its [V ; Q] rows, subsampled below its size and
    repeated with 5 % multiplicative noise per coordinate above it (the same spread of
    norms), searched with the behaviour queries of real requests (k = candidates).
    Reports build time, search p50 / p99 and the recall@10 of the candidates against
    the exact inner-product top 10 over the same rows."""
    import llmrec
    from llmrec.recommender import partitioned, scoring

    sys.path.insert(0, str(HERE))
    from bench_recommender import StandInEncoder

    rec = llmrec.Recommender.load(args.model, encoder=StandInEncoder())
    base = scoring._behaviour_rows(rec._items.V, rec._items.Q)
    queries = []
    search = partitioned.PartitionedChannel.search
    behaviour = rec._items.index.behaviour

    def capture(channel, q, k, **kwargs):
        if channel is behaviour:
            queries.append(np.array(q[0]))
        return search(channel, q, k, **kwargs)

    partitioned.PartitionedChannel.search = capture
    rng = np.random.default_rng(3)
    for user in rec._user_map.ids[rng.integers(0, len(rec._user_map.ids), args.queries)]:
        rec.recommend(user, 10)
    partitioned.PartitionedChannel.search = search
    del rec
    queries = np.array(queries, dtype=np.float32)
    for n in args.rows:
        if n <= len(base):
            rows = base[np.sort(rng.choice(len(base), n, replace=False))]
        else:
            rows = np.empty((n, base.shape[1]), dtype=np.float32)
            for start in range(0, n, len(base)):
                stop = min(n, start + len(base))
                noise = rng.normal(1.0, 0.05, (stop - start, base.shape[1])).astype(np.float32)
                rows[start:stop] = base[:stop - start] * noise
        start = time.perf_counter()
        channel = partitioned.PartitionedChannel(rows, "sq8", 2, 0)
        built = time.perf_counter() - start
        times, hits = [], 0
        for q in queries:
            t = time.perf_counter()
            found, _ = channel.search(q[None, :], args.candidates)
            times.append((time.perf_counter() - t) * 1e3)
            best = np.argpartition(-(rows @ q), 10)[:10]
            hits += np.isin(best, found[0]).sum()
        print(f"{n:>10,} rows: build {built:.0f} s, {channel.partitions} lists in {len(channel.bands)} bands; "
              f"search {_percentiles(times[5:])}; recall@10 of the {args.candidates} candidates "
              f"{hits / (10 * len(queries)):.4f}", flush=True)
        del rows, channel


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("scale", help="100k / 1M / 10M-item catalogues (see bench_scale.py)")
    s.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    s.add_argument("--force", action="store_true")
    one = sub.add_parser("scale-one")
    one.add_argument("--items", type=int, required=True)
    for p in (s, one):
        p.add_argument("--index", default="auto")
        p.add_argument("--repeats", type=int, default=300)
        p.add_argument("--per-user", type=float, default=20.0)
        p.add_argument("--recall-users", type=int, default=100)
        p.add_argument("--candidates", type=int, default=256)
        p.add_argument("--probes", type=int, default=0)
        p.add_argument("--probes-sweep", type=int, nargs="*", default=[])
        p.add_argument("--validation", type=float, default=0.2)
        p.add_argument("--iterations", type=int, default=15)
        p.add_argument("--text-storage", default="auto")
        p.add_argument("--model", default="", help="a directory: load the model there if it exists, "
                       "else fit and save it there (serving runs without refitting)")
    serve = sub.add_parser("scale-serve")
    serve.add_argument("model")
    trend = sub.add_parser("scale-stage1", help="stage 1 alone on 100k..3M+ rows from a saved model")
    trend.add_argument("model")
    trend.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000])
    trend.add_argument("--queries", type=int, default=105)
    trend.add_argument("--candidates", type=int, default=256)


COMMANDS = {"scale": scale, "scale-one": scale_one, "scale-serve": scale_serve, "scale-stage1": scale_stage1}
