"""Per-call cost of quantized search: one query and a batch, natively and through
``QuantizedIndex.search``, on a fixed clustered set (the same data for every build).

    python bench/bench_quantized_calls.py                 # 100k x 64, 256 lists, 2 threads
    python bench/bench_quantized_calls.py --json out.json

The native entry point is whichever the build has: the bound ``_core.QuantizedView``
(checked once per storage change) or the former one-call ``_core.search_quantized``
(checked on every call). ``--against PATH`` loads another build's ``_core`` extension
(e.g. the commit before a change) next to this one and times its native search on the
same storage, interleaved with this build's, best of the repeats: a side-by-side ratio
that survives a loaded machine better than separate runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_quantized import clustered  # noqa: E402

import llmrec  # noqa: E402
from llmrec import _core, quantized  # noqa: E402


def load_core(path: str) -> Any:
    """Another build's _core extension, loaded under a private name."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("against._core", path)
    spec = importlib.util.spec_from_file_location("against._core", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def view_of(index: llmrec.QuantizedIndex, core: Any) -> Any:
    """The index's storage as a QuantizedView of another build's ``core``."""
    saved = quantized._core
    quantized._core = core  # _make_view builds the view of the module's _core
    try:
        return index._make_view(index._state)
    finally:
        quantized._core = saved


def native_search(index: llmrec.QuantizedIndex, core: Any = _core):
    """search(queries, k, probes, rerank) straight into the native module ``core``."""
    state = index._state
    lists = state.lists
    if hasattr(core, "QuantizedView"):
        view = index._view if core is _core else view_of(index, core)
        return lambda q, k, probes, rerank: view.search(q, k, None, None, None, None, None,
                                                       probes, rerank, index.num_threads)
    bases = index._bases if state.item_bases is not None else None
    return lambda q, k, probes, rerank: core.search_quantized(
        index.codec, state.n, index.dim, state.codes, index._mid, index._step,
        state.vectors if rerank else None, q, k, None, None, None, None, rerank, index.num_threads,
        None if lists is None else index._centroids, None if lists is None else lists.starts,
        None if lists is None else lists.sizes, None if lists is None else lists.slot_ids,
        probes, index._codebooks, state.item_scales, state.item_bases, bases)


def side_by_side_us(fns: list, calls: int, repeats: int, clock: Any = time.perf_counter) -> list[float]:
    """Best over repeats of the mean time of `calls` calls of each fn, interleaved."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            for _ in range(calls):
                fn()
            best[i] = min(best[i], (clock() - start) / calls * 1e6)
    return best


def per_call_us(fn, calls: int, repeats: int) -> float:
    """Median over repeats of the mean time of `calls` calls, in microseconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=256)
    parser.add_argument("--probes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--against", help="another build's _core extension file: timed side by side, natively")
    parser.add_argument("--cpu-time", action="store_true",
                        help="with --against and --threads 1: time the calling thread's CPU time (the native "
                             "search runs on it), which a loaded machine's waits do not inflate")
    args = parser.parse_args()
    if args.against:
        against(args)
        return
    items, queries = clustered(args.n, args.d, 256, max(1, args.n // 250), 0)
    ivf = llmrec.QuantizedIndex(items, codec="sq8", partitions=args.partitions, random_state=0,
                                num_threads=args.threads)
    flat = llmrec.QuantizedIndex(items, codec="sq8", random_state=0, num_threads=args.threads)
    one, batch = queries[:1], queries
    rows = {}
    for name, index in (("ivf", ivf), ("flat", flat)):
        native = native_search(index)
        probe_sets = args.probes if name == "ivf" else (1,)
        for probes in probe_sets:
            for rerank in (0, 4):
                label = f"{name} sq8 probes={probes} rerank={rerank}" if name == "ivf" else \
                    f"{name} sq8 rerank={rerank}"
                calls = 2000 if name == "ivf" else 50
                kwargs = {"probes": probes} if name == "ivf" else {}
                rows[f"{label}, 1 query native"] = per_call_us(
                    lambda: native(one, 10, probes, rerank), calls, args.repeats)
                rows[f"{label}, 1 query QuantizedIndex.search"] = per_call_us(
                    lambda: index.search(one[0], k=10, rerank=rerank, **kwargs), calls, args.repeats)
                rows[f"{label}, 256 queries QuantizedIndex.search"] = per_call_us(
                    lambda: index.search(batch, k=10, rerank=rerank, **kwargs), max(2, calls // 100),
                    args.repeats)
    width = max(map(len, rows))
    print(f"llmrec from {os.path.dirname(llmrec.__file__)}; native entry: "
          f"{'QuantizedView' if hasattr(_core, 'QuantizedView') else 'search_quantized'}; "
          f"simd {_core.active_simd_level()}; {args.n} x {args.d}, {args.partitions} lists, "
          f"{args.threads} threads")
    for label, us in rows.items():
        print(f"{label:<{width}}  {us:10.1f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def against(args: argparse.Namespace) -> None:
    """Native one-query and 256-query searches of this build and another, side by side."""
    other = load_core(args.against)
    items, queries = clustered(args.n, args.d, 256, max(1, args.n // 250), 0)
    ivf = llmrec.QuantizedIndex(items, codec="sq8", partitions=args.partitions, random_state=0,
                                num_threads=args.threads)
    flat = llmrec.QuantizedIndex(items, codec="sq8", random_state=0, num_threads=args.threads)
    if args.cpu_time and args.threads != 1:
        raise SystemExit("--cpu-time needs --threads 1 (other threads' work is not on the caller's clock)")
    clock = time.thread_time if args.cpu_time else time.perf_counter
    print(f"this build: {os.path.dirname(llmrec.__file__)}; against: {args.against}; simd "
          f"{_core.active_simd_level()}; {args.n} x {args.d}, {args.partitions} lists, {args.threads} threads; "
          f"best of {args.repeats}, interleaved, {'thread CPU time' if args.cpu_time else 'wall time'}")
    rows = {}
    for name, index, probe_sets in (("ivf", ivf, args.probes), ("flat", flat, (1,))):
        mine, theirs = native_search(index), native_search(index, other)
        for probes in probe_sets:
            for rerank in (0, 4):
                for nq in (1, 256):
                    q = queries[:nq]
                    calls = (2000 if nq == 1 else 20) if name == "ivf" else (50 if nq == 1 else 2)
                    a, b = side_by_side_us([lambda: theirs(q, 10, probes, rerank),
                                            lambda: mine(q, 10, probes, rerank)], calls, args.repeats, clock)
                    label = f"{name} sq8 probes={probes} rerank={rerank} nq={nq}"
                    rows[label] = {"against_us": a, "this_us": b, "ratio": b / a}
                    print(f"{label:<40} against {a:10.1f} us   this {b:10.1f} us   x{b / a:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
