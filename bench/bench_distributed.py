"""Distributed ALS on Ray: its overhead against one process, and what it moves and costs.

Run inside a network namespace that has only loopback (Ray binds to the machine's address):

    unshare -n sh -c 'ip link set lo up && python bench/bench_distributed.py overhead --size large'
    unshare -n sh -c 'ip link set lo up && python bench/bench_distributed.py scaling --size medium'

overhead  ALS seconds per iteration, two actors of one thread each (``llmrec.distributed.ALS``,
          ``ray.init(num_cpus=2)``) against one process with two threads (``llmrec.ALS``),
          side by side on the same data (bench_als.py's power-law sets; ``large`` is
          1M users × 100k items × 50M interactions), 64 factors, CG with 3 steps. Prints
          the ratio (target ≤ 1.3×) and checks that both fits give the same factors.
scaling   1, 2 and 3 actors of one thread: bytes moved per iteration (factor broadcast,
          Gramian partials, returned blocks) and each actor's solve throughput; fits a
          cost model on the 1-actor run, checks its prediction against the 2- and
          3-actor runs, and projects seconds per iteration for 100M users × 10M items ×
          10B interactions on 10 and 100 nodes (the model is written out with the
          figures). Where actors outnumber the machine's cores the model lets them share
          the cores; the check prints measured and predicted time per part.

Per-iteration times exclude starting the actors and shipping the interactions (printed
separately as "start-up"): they are paid once per fit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_als import power_law_matrix  # noqa: E402

import llmrec  # noqa: E402
from llmrec import _core  # noqa: E402

SIZES = {  # users, items, interactions
    "large": (1_000_000, 100_000, 50_000_000),   # bench_als.py large
    "medium": (100_000, 30_000, 4_000_000),      # bench_als.py speed's issue-17 set
    "small": (20_000, 6_000, 500_000),
}
TARGET = {"users": 100_000_000, "items": 10_000_000, "nnz": 10_000_000_000}
# Assumed for the projection (not measured here): cores per node and the network.
NODE_CORES = 16
NETWORK_BYTES_PER_S = 25e9 / 8  # 25 Gbit/s per node


def _timed_fit(model, R) -> tuple[float, float, float]:
    """(seconds before the first iteration ended, seconds per later iteration, total)."""
    marks: list[float] = []
    start = time.perf_counter()
    model.fit(R, callback=lambda i, elapsed: marks.append(time.perf_counter()))
    total = time.perf_counter() - start
    per = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else marks[0] - start
    return marks[0] - start, per, total


def _data(size: str):
    t0 = time.perf_counter()
    R = power_law_matrix(*SIZES[size])
    print(f"data '{size}': {R.shape[0]:,} users × {R.shape[1]:,} items, {R.nnz:,} interactions "
          f"(generated in {time.perf_counter() - t0:.1f} s); simd={_core.active_simd_level()}, "
          f"cpu cores={os.cpu_count()}")
    return R


def run_overhead(args: argparse.Namespace) -> None:
    import ray

    from llmrec import distributed as dist

    R = _data(args.size)
    params = dict(factors=args.factors, iterations=args.iterations, cg_steps=3, random_state=0)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        local = llmrec.ALS(num_threads=2, **params)
        first_l, per_l, _ = _timed_fit(local, R)
        remote = dist.ALS(num_blocks=2, num_threads=1, **params)
        first_d, per_d, total_d = _timed_fit(remote, R)
    finally:
        ray.shutdown()
    same = (np.array_equal(local.user_factors_, remote.user_factors_)
            and np.array_equal(local.item_factors_, remote.item_factors_))
    print(f"factors={args.factors}, iterations={args.iterations}, CG steps=3")
    print(f"  one process, 2 threads : {per_l:7.3f} s/iteration (first {first_l:.3f} s)")
    print(f"  Ray, 2 actors × 1 thread: {per_d:7.3f} s/iteration (first {first_d:.3f} s, "
          f"start-up ≈ {first_d - per_d:.2f} s)")
    print(f"  ratio Ray / one process: {per_d / per_l:.2f}× (target ≤ 1.3×); "
          f"identical factors: {same}")


# ------------------------------------------------------------------------- scaling

def _measure(R, factors: int, actors: int, iterations: int) -> dict:
    from llmrec import distributed as dist

    model = dist.ALS(factors=factors, iterations=iterations, num_blocks=actors, num_threads=1,
                     random_state=0)
    _, per, _ = _timed_fit(model, R)
    stats = model.fit_stats_
    steps = stats["half_steps"][2:]  # the first iteration warms caches; later ones are alike
    per_iteration = {k: sum(h[k] for h in steps) / (len(steps) / 2)
                     for k in ("broadcast_bytes", "gram_bytes", "gram_broadcast_bytes",
                               "block_bytes", "seconds")}
    samples = []  # (interactions, rows, seconds) of one actor's solve
    gram = []     # (rows of partial Gramians, seconds)
    for h in steps:
        side = h["side"]
        other_rows = R.shape[1] if side == "user" else R.shape[0]
        for b, seconds in enumerate(h["solve_seconds"]):
            samples.append((stats[f"{side}_nnz"][b], stats[f"{side}_rows"][b], seconds))
        for seconds in h["gram_seconds"]:
            gram.append((other_rows / len(h["gram_seconds"]), seconds))
        h["driver_seconds"] = h["seconds"] - max(h["solve_seconds"]) - max(h["gram_seconds"] or [0])
    driver = [(h["broadcast_bytes"] + h["block_bytes"], h["driver_seconds"]) for h in steps]
    iterations_measured = len(steps) / 2
    parts = {"solve": sum(max(h["solve_seconds"]) for h in steps) / iterations_measured,
             "gram": sum(max(h["gram_seconds"] or [0]) for h in steps) / iterations_measured,
             "driver": sum(h["driver_seconds"] for h in steps) / iterations_measured}
    return {"actors": actors, "per_iteration": per, "bytes": per_iteration, "solve": samples,
            "gram": gram, "driver": driver, "parts": parts, "stats": stats}


def _fit_costs(run: dict) -> dict:
    """Cost constants from one run: solve seconds = a·interactions + b·rows (least squares
    over every actor's half-steps), Gramian seconds per row, driver seconds per byte."""
    A = np.array([[n, r] for n, r, _ in run["solve"]], dtype=np.float64)
    t = np.array([s for _, _, s in run["solve"]])
    (a, b), *_ = np.linalg.lstsq(A, t, rcond=None)
    if b < 0 or a < 0:  # too few distinct shapes to separate the two: all on interactions
        a, b = float(t.sum() / A[:, 0].sum()), 0.0
    g = sum(s for _, s in run["gram"]) / max(sum(r for r, _ in run["gram"]), 1)
    d = sum(s for _, s in run["driver"]) / max(sum(n for n, _ in run["driver"]), 1)
    return {"a": float(a), "b": float(b), "g": g, "d": d}


def _predict_here(c: dict, stats: dict, n_users: int, n_items: int, cores: int) -> dict:
    """Seconds per iteration on this machine from the constants, by part: per half-step the
    slowest block's solve, the Gramian of the other side spread over the actors, and the
    driver's copies of the two factor matrices. With more actors than ``cores`` the actors
    share the cores, so a half-step's solve takes at least the blocks' total work / cores."""
    parts = {"solve": 0.0, "gram": 0.0, "driver": 0.0}
    actors = len(stats["user_rows"])
    for side, n_side, n_other in (("user", n_users, n_items), ("item", n_items, n_users)):
        blocks = [c["a"] * n + c["b"] * r for n, r in zip(stats[f"{side}_nnz"], stats[f"{side}_rows"])]
        parts["solve"] += max(max(blocks), sum(blocks) / cores)
        parts["gram"] += c["g"] * n_other / min(actors, cores)
        parts["driver"] += c["d"] * 4 * stats["factors"] * (n_side + n_other)
    return parts


def _project(c: dict, f: int, nodes: int) -> dict:
    """Seconds per iteration for TARGET on ``nodes`` nodes of NODE_CORES one-thread actors."""
    U, I, N = TARGET["users"], TARGET["items"], TARGET["nnz"]
    cores = nodes * NODE_CORES
    solve = (c["a"] * 2 * N + c["b"] * (U + I)) / cores  # every interaction in both half-steps
    gram = c["g"] * (U + I) / cores
    S = 4 * f * (U + I)  # both sides' factors, bytes: each is broadcast once and gathered once
    gather = S / NETWORK_BYTES_PER_S  # the blocks into the driver
    spread = S / NETWORK_BYTES_PER_S  # each node receives the broadcast once (copies relayed)
    from_driver = nodes * S / NETWORK_BYTES_PER_S  # every node pulls from the driver alone
    driver = c["d"] * 2 * S  # concatenating and putting (measured here, per byte)
    return {"solve": solve, "gram": gram, "gather": gather, "broadcast_spread": spread,
            "broadcast_from_driver": from_driver, "driver": driver,
            "total_best": solve + gram + gather + spread + driver,
            "total_worst": solve + gram + gather + from_driver + driver}


def run_scaling(args: argparse.Namespace) -> None:
    import ray

    R = _data(args.size)
    f = args.factors
    ray.init(num_cpus=max(args.actors), include_dashboard=False, logging_level="ERROR")
    try:
        runs = [_measure(R, f, a, args.iterations) for a in args.actors]
    finally:
        ray.shutdown()
    print(f"\nfactors={f}, CG steps=3; per iteration (the first left out):")
    print("actors  s/iter  broadcast MB  Gramian partials MB  blocks MB  solve Mnnz/s per actor")
    for run in runs:
        by = run["bytes"]
        rates = [n / s / 1e6 for n, _, s in run["solve"] if s > 0]
        print(f"{run['actors']:6d}  {run['per_iteration']:6.3f}  {by['broadcast_bytes'] / 1e6:12.1f}  "
              f"{by['gram_bytes'] / 1e6:19.2f}  {by['block_bytes'] / 1e6:9.1f}  "
              f"{np.median(rates):6.2f} (median of {len(rates)})")
    costs = _fit_costs(runs[0])
    print(f"\ncost model fitted on the {runs[0]['actors']}-actor run: solve = {costs['a'] * 1e9:.1f} ns × "
          f"interactions + {costs['b'] * 1e9:.1f} ns × rows (per half-step, one core); Gramian "
          f"{costs['g'] * 1e9:.1f} ns per row; driver (concatenate, put, transfer) "
          f"{costs['d'] * 1e9:.3f} ns per byte")
    cores = len(os.sched_getaffinity(0))
    print(f"check against the runs ({cores} cores here; s/iteration, measured / predicted):")
    print("actors  total                  solve            Gramian          driver")
    for run in runs:
        stats = dict(run["stats"], factors=f)
        predicted = _predict_here(costs, stats, *R.shape, cores)
        total = sum(predicted.values())
        cells = "  ".join(f"{run['parts'][k]:6.3f} / {predicted[k]:6.3f}" for k in ("solve", "gram", "driver"))
        print(f"{run['actors']:6d}  {run['per_iteration']:6.3f} / {total:6.3f} ({run['per_iteration'] / total:4.2f})  "
              f"{cells}")
    print(f"\nprojection: {TARGET['users']:,} users × {TARGET['items']:,} items × {TARGET['nnz']:,} "
          f"interactions, f={f}, {NODE_CORES} one-thread actors per node, "
          f"{NETWORK_BYTES_PER_S * 8 / 1e9:.0f} Gbit/s network")
    print("nodes  solve s  Gramian s  gather s  broadcast s (spread / from driver)  driver s  "
          "total s (best / worst)")
    for nodes in (10, 100):
        p = _project(costs, f, nodes)
        print(f"{nodes:5d}  {p['solve']:7.1f}  {p['gram']:9.2f}  {p['gather']:8.1f}  "
              f"{p['broadcast_spread']:11.1f} / {p['broadcast_from_driver']:8.1f}           "
              f"{p['driver']:8.1f}  {p['total_best']:7.1f} / {p['total_worst']:.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overhead", "scaling"])
    parser.add_argument("--size", choices=sorted(SIZES), default="large")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    {"overhead": run_overhead, "scaling": run_scaling}[args.what](args)


if __name__ == "__main__":
    main()
