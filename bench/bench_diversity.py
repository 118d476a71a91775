"""MMR re-ranking, side by side: llmrec.diversity.mmr_rerank vs a vectorised numpy MMR.

Both sides do the same work on the same data: gather and normalise the candidates'
rows, then k greedy steps that each update every remaining candidate's max similarity
with the item just chosen (one matrix-vector product in numpy). Timings are
interleaved (llmrec, numpy, llmrec, …), one call each, and the median and the minimum
of each side are reported, so load from other jobs on a shared machine hits both alike.

    python bench/bench_diversity.py                  # 1 query and a batch, d = 64 and 128
    python bench/bench_diversity.py --repeats 1000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from llmrec import _core
from llmrec.diversity import mmr_rerank


def numpy_mmr(candidates: np.ndarray, relevance: np.ndarray, vectors: np.ndarray, k: int,
              lam: float) -> np.ndarray:
    """Greedy MMR for one query in float32 numpy (the same definition as llmrec's)."""
    valid = candidates >= 0
    ids, rel = candidates[valid], relevance[valid]
    unit = vectors[ids]
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    unit = unit / np.where(norms > 0, norms, 1)
    max_sim = np.full(len(ids), -np.inf, dtype=np.float32)
    taken = np.zeros(len(ids), dtype=bool)
    chosen = []
    for step in range(min(k, len(ids))):
        score = (1 - lam) * rel - (lam * max_sim if step else 0)
        score[taken] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        taken[best] = True
        np.maximum(max_sim, unit @ unit[best], out=max_sim)
    return ids[chosen]


def interleaved(fns: dict, repeats: int) -> dict:
    """(median, min) seconds per call of each function, calls interleaved, after a warm-up.
    The min approximates a quiet machine; the median is what a busy one gives."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def ratio(numpy_side: tuple, llmrec_side: tuple) -> str:
    return f"{numpy_side[0] / llmrec_side[0]:.1f}x median, {numpy_side[1] / llmrec_side[1]:.1f}x min"


def case(n_items: int, d: int, nq: int, c: int, rng: np.random.Generator):
    vectors = rng.standard_normal((n_items, d)).astype(np.float32)
    candidates = np.stack([rng.choice(n_items, c, replace=False) for _ in range(nq)])
    relevance = np.sort(rng.random((nq, c)).astype(np.float32), axis=1)[:, ::-1].copy()
    return candidates, relevance, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--lam", type=float, default=0.3)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"SIMD {_core.active_simd_level()}; C={args.candidates}, k={args.k}, "
          f"lambda={args.lam}, catalogue {args.items:,} items")
    for d in (64, 128):
        cand, rel, vecs = case(args.items, d, args.batch, args.candidates, rng)
        want = numpy_mmr(cand[0], rel[0], vecs, args.k, args.lam)
        got = mmr_rerank(cand[0], rel[0], vecs, args.k, args.lam)[0]
        agree = np.array_equal(want, got)
        one = interleaved({
            "llmrec": lambda: mmr_rerank(cand[0], rel[0], vecs, args.k, args.lam, num_threads=1),
            "llmrec lambda=0": lambda: mmr_rerank(cand[0], rel[0], vecs, args.k, 0.0, num_threads=1),
            "numpy": lambda: numpy_mmr(cand[0], rel[0], vecs, args.k, args.lam),
        }, args.repeats)
        batch = interleaved({
            "llmrec": lambda: mmr_rerank(cand, rel, vecs, args.k, args.lam, num_threads=args.threads),
            "numpy": lambda: [numpy_mmr(cand[q], rel[q], vecs, args.k, args.lam)
                              for q in range(len(cand))],
        }, max(3, args.repeats // 30))
        us = {name: f"{v[0] * 1e6:.1f} / {v[1] * 1e6:.1f} µs" for name, v in one.items()}
        print(f"d={d}: 1 query, 1 thread (median / min): llmrec {us['llmrec']} "
              f"(lambda=0: {us['llmrec lambda=0']}), numpy {us['numpy']}; "
              f"numpy/llmrec {ratio(one['numpy'], one['llmrec'])}; same picks: {agree}")
        qps = {name: f"{args.batch / v[0]:,.0f} / {args.batch / v[1]:,.0f}" for name, v in batch.items()}
        print(f"d={d}: {args.batch} queries, {args.threads} threads (q/s at median / min): "
              f"llmrec {qps['llmrec']}, numpy loop {qps['numpy']}; "
              f"numpy/llmrec {ratio(batch['numpy'], batch['llmrec'])}")

if __name__ == "__main__":
    main()
