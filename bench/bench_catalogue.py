"""In-place index maintenance, side by side: llmrec's update / remove / add with ids vs
faiss's IndexIDMap2 on the same data, in one process with the same thread count.

For each index it reports the latency of the first ``update`` (which copies rows the
index does not own, such as the caller's array), the median of one ``update`` of m rows, one
``remove`` of m ids and one ``add`` of m rows with caller ids, and single-query search
latency before and after 5 % of the items were removed (removed rows are skipped inside
the scan, so the search still reads them until ``compact``). faiss has no in-place
update: its anchor is ``remove_ids`` + ``add_with_ids`` (IndexIDMap2 over IndexFlatIP /
IndexScalarQuantizer QT_8bit), whose ``remove_ids`` compacts the storage (O(n)).

    python bench/bench_catalogue.py                 # 200k x 64, 2 threads
    python bench/bench_catalogue.py --quick         # smoke run (20k)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

import llmrec


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_llmrec(name: str, index, X: np.ndarray, queries: np.ndarray, m: int, repeats: int,
                 rng: np.random.Generator, **search) -> dict:
    n, d = X.shape
    out = {"index": name}
    ids = index.ids
    rows = [rng.standard_normal((m, d)).astype(np.float32) for _ in range(repeats)]
    picks = iter([rng.choice(ids, m, replace=False) for _ in range(repeats + 1)])
    # The first update copies storage the index does not own (the caller's array)
    out["first_update_ms"] = timed(lambda: index.update(next(picks), rows[0]), 1)
    out["update_ms"] = timed(lambda: index.update(next(picks), rows[0]), repeats)
    q = iter(queries)
    out["search_ms"] = timed(lambda: index.search(next(q), 10, **search), len(queries) // 2)
    doomed = rng.permutation(ids)[: n // 20]
    batches = iter(np.array_split(doomed, repeats))
    out["remove_ms_per_call"] = timed(lambda: index.remove(next(batches)), repeats)
    q = iter(queries[len(queries) // 2:])
    out["search_after_remove_ms"] = timed(lambda: index.search(next(q), 10, **search), len(queries) // 2)
    start_ids = iter(range(10**12, 10**12 + repeats * m, m))
    out["add_ms"] = timed(lambda: index.add(rows[0], ids=np.arange(s := next(start_ids), s + m)), repeats)
    return out


def bench_faiss(name: str, index, X: np.ndarray, queries: np.ndarray, m: int, repeats: int,
                rng: np.random.Generator) -> dict:
    n, d = X.shape
    out = {"index": name}
    rows = rng.standard_normal((m, d)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)

    def update() -> None:
        picked = rng.choice(ids, m, replace=False)
        index.remove_ids(picked)
        index.add_with_ids(rows, picked)

    out["first_update_ms"] = timed(update, 1)
    out["update_ms"] = timed(update, repeats)
    q = iter(queries)
    out["search_ms"] = timed(lambda: index.search(next(q)[None, :], 10), len(queries) // 2)
    doomed = rng.permutation(ids)[: n // 20]
    batches = iter(np.array_split(doomed, repeats))
    out["remove_ms_per_call"] = timed(lambda: index.remove_ids(next(batches)), repeats)
    q = iter(queries[len(queries) // 2:])
    out["search_after_remove_ms"] = timed(lambda: index.search(next(q)[None, :], 10), len(queries) // 2)
    start_ids = iter(range(10**12, 10**12 + repeats * m, m))
    out["add_ms"] = timed(lambda: index.add_with_ids(rows, np.arange(s := next(start_ids), s + m)), repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--m", type=int, default=16, help="rows per update / add call")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeats = 20_000, 30
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d)).astype(np.float32)
    queries = rng.standard_normal((200, args.d)).astype(np.float32)
    results = [
        bench_llmrec("llmrec ExactIndex", llmrec.ExactIndex(X, num_threads=args.threads), X, queries,
                     args.m, args.repeats, rng),
        bench_llmrec("llmrec QuantizedIndex sq8", llmrec.QuantizedIndex(
            X, codec="sq8", random_state=0, num_threads=args.threads), X, queries, args.m, args.repeats, rng),
        bench_llmrec("llmrec QuantizedIndex ivf-sq8", llmrec.QuantizedIndex(
            X, codec="sq8", partitions=max(16, args.n // 1000), random_state=0, num_threads=args.threads),
            X, queries, args.m, args.repeats, rng, probes=8),
    ]
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(args.d))
        flat.add_with_ids(X, np.arange(args.n, dtype=np.int64))
        results.append(bench_faiss("faiss IndexIDMap2(IndexFlatIP)", flat, X, queries, args.m, args.repeats, rng))
        sq = faiss.IndexScalarQuantizer(args.d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sq.train(X)
        sq8 = faiss.IndexIDMap2(sq)
        sq8.add_with_ids(X, np.arange(args.n, dtype=np.int64))
        results.append(bench_faiss("faiss IndexIDMap2(SQ8)", sq8, X, queries, args.m, args.repeats, rng))
    except ImportError:
        print("faiss not installed: llmrec only")
    print(json.dumps({"n": args.n, "d": args.d, "m": args.m, "threads": args.threads,
                      "machine": platform.processor() or platform.machine()}))
    header = ["index", "first_update_ms", "update_ms", "remove_ms_per_call", "add_ms", "search_ms", "search_after_remove_ms"]
    print(" | ".join(header))
    for r in results:
        print(" | ".join(r["index"] if h == "index" else f"{r[h]:.3f}" for h in header))


if __name__ == "__main__":
    main()
