"""Exact top-k search, side by side: llmrec.ExactIndex vs faiss IndexFlatIP vs numpy.

Runs everything in one process on the same data and prints QPS and ratios, plus the
floors: the time to read the item matrix once with the same number of threads (the
memory-bandwidth floor for one query) and numpy matmul's GFLOP/s on the same shapes
(the compute reference for many queries).

    python bench/bench_exact.py                 # 1M x 128 and 100k x 384, 2 threads
    python bench/bench_exact.py --quick         # smaller, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

import llmrec


def best_time(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def read_floor(items: np.ndarray, threads: int, repeats: int) -> float:
    """Time to read every byte of `items` once, each thread summing its share."""
    parts = np.array_split(items, threads)
    with ThreadPoolExecutor(threads) as pool:
        return best_time(lambda: list(pool.map(np.sum, parts)), repeats)


def numpy_topk(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ items.T
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def seen_items(nq: int, n: int, per_query: int, rng: np.random.Generator) -> sp.csr_matrix:
    cols = np.concatenate([rng.choice(n, per_query, replace=False) for _ in range(nq)])
    rows = np.repeat(np.arange(nq), per_query)
    return sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(nq, n))


def run(n: int, d: int, nq: int, k: int, threads: int, repeats: int, seed: int) -> dict:
    import faiss

    faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((n, d), dtype=np.float32)
    queries = rng.standard_normal((nq, d), dtype=np.float32)
    one = queries[:1]
    seen1 = seen_items(1, n, 200, rng)
    seen = seen_items(nq, n, 200, rng)

    index = llmrec.ExactIndex(items, num_threads=threads)
    flat = faiss.IndexFlatIP(d)
    flat.add(items)

    r: dict = {"n": n, "d": d, "nq": nq, "k": k, "threads": threads}
    r["read_floor_s"] = read_floor(items, threads, repeats)
    r["bandwidth_GBps"] = items.nbytes / r["read_floor_s"] / 1e9
    r["llmrec_1q_s"] = best_time(lambda: index.search(one, k), repeats)
    r["llmrec_1q_exclude_s"] = best_time(lambda: index.search(one, k, exclude=seen1), repeats)
    r["faiss_1q_s"] = best_time(lambda: flat.search(one, k), repeats)

    flops = 2.0 * nq * n * d
    r["numpy_matmul_s"] = best_time(lambda: queries @ items.T, max(1, repeats // 2))
    r["numpy_topk_s"] = best_time(lambda: numpy_topk(items, queries, k), max(1, repeats // 2))
    r["llmrec_batch_s"] = best_time(lambda: index.search(queries, k), repeats)
    r["llmrec_batch_exclude_s"] = best_time(lambda: index.search(queries, k, exclude=seen), repeats)
    # The realistic worst case: each query's own 200 best items are the ones excluded.
    top_ids, _ = index.search(queries, 200)
    top = sp.csr_matrix((np.ones(top_ids.size, np.float32), top_ids.ravel(), np.arange(0, top_ids.size + 1, 200)),
                        shape=(nq, n))
    r["llmrec_batch_exclude_top_s"] = best_time(lambda: index.search(queries, k, exclude=top), repeats)
    one_thread = llmrec.ExactIndex(items, num_threads=1)
    r["llmrec_batch_1thread_s"] = best_time(lambda: one_thread.search(queries, k), max(1, repeats // 2))
    r["faiss_batch_s"] = best_time(lambda: flat.search(queries, k), max(1, repeats // 2))
    r["numpy_matmul_GFLOPs"] = flops / r["numpy_matmul_s"] / 1e9
    r["llmrec_batch_GFLOPs"] = flops / r["llmrec_batch_s"] / 1e9

    # Same answers as faiss on this data (scores equal within float tolerance).
    ids_l, sc_l = index.search(queries[:32], k)
    sc_f, ids_f = flat.search(queries[:32], k)
    r["agreement_with_faiss"] = float(np.mean(ids_l == ids_f))
    r["max_score_diff"] = float(np.abs(sc_l - sc_f).max())
    return r


def report(r: dict) -> str:
    nq = r["nq"]
    lines = [
        f"### {r['n']:,} x {r['d']} float32, k={r['k']}, {r['threads']} threads",
        "",
        "| case | llmrec | anchor | ratio (llmrec ÷ anchor time, lower is better) |",
        "|---|---|---|---|",
        f"| 1 query vs read floor (numpy sum) | {r['llmrec_1q_s']*1e3:.2f} ms | "
        f"{r['read_floor_s']*1e3:.2f} ms ({r['bandwidth_GBps']:.1f} GB/s) | "
        f"{r['llmrec_1q_s']/r['read_floor_s']:.2f} x floor |",
        f"| 1 query vs faiss IndexFlatIP | {1/r['llmrec_1q_s']:.1f} QPS | {1/r['faiss_1q_s']:.1f} QPS | "
        f"{r['faiss_1q_s']/r['llmrec_1q_s']:.2f} x faiss QPS |",
        f"| 1 query, exclude 200 seen | {r['llmrec_1q_exclude_s']*1e3:.2f} ms | "
        f"{r['llmrec_1q_s']*1e3:.2f} ms unfiltered | +{(r['llmrec_1q_exclude_s']/r['llmrec_1q_s']-1)*100:.1f} % |",
        f"| {nq} queries vs faiss IndexFlatIP | {nq/r['llmrec_batch_s']:.0f} QPS | {nq/r['faiss_batch_s']:.0f} QPS | "
        f"{r['faiss_batch_s']/r['llmrec_batch_s']:.2f} x faiss QPS |",
        f"| {nq} queries vs numpy matmul + argpartition | {nq/r['llmrec_batch_s']:.0f} QPS | "
        f"{nq/r['numpy_topk_s']:.0f} QPS | {r['numpy_topk_s']/r['llmrec_batch_s']:.2f} x numpy QPS |",
        f"| {nq} queries GFLOP/s vs numpy matmul alone | {r['llmrec_batch_GFLOPs']:.0f} | "
        f"{r['numpy_matmul_GFLOPs']:.0f} | {r['llmrec_batch_GFLOPs']/r['numpy_matmul_GFLOPs']*100:.0f} % of numpy |",
        f"| {nq} queries, {r['threads']} threads vs 1 | {r['llmrec_batch_s']*1e3:.1f} ms | "
        f"{r['llmrec_batch_1thread_s']*1e3:.1f} ms | {r['llmrec_batch_1thread_s']/r['llmrec_batch_s']:.2f} x speed-up |",
        f"| {nq} queries, exclude 200 seen each | {r['llmrec_batch_exclude_s']*1e3:.1f} ms | "
        f"{r['llmrec_batch_s']*1e3:.1f} ms unfiltered | +{(r['llmrec_batch_exclude_s']/r['llmrec_batch_s']-1)*100:.1f} % |",
        f"| {nq} queries, exclude each query's own top 200 | {r['llmrec_batch_exclude_top_s']*1e3:.1f} ms | "
        f"{r['llmrec_batch_s']*1e3:.1f} ms unfiltered | +{(r['llmrec_batch_exclude_top_s']/r['llmrec_batch_s']-1)*100:.1f} % |",
        "",
        f"ids identical to faiss on 32 queries: {r['agreement_with_faiss']*100:.1f} %, "
        f"max score difference {r['max_score_diff']:.2e}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args()
    shapes = [(100_000, 128), (20_000, 384)] if args.quick else [(1_000_000, 128), (100_000, 384)]
    info = llmrec.build_info()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"llmrec {info['version']} simd={info['simd_active']}")
    results = []
    for n, d in shapes:
        r = run(n, d, args.queries, args.k, args.threads, 3 if args.quick else args.repeats, seed=0)
        results.append(r)
        print(report(r), "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build": info, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
