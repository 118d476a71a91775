"""llmrec.distributed on one machine against the single-process anchors, side by side.

    unshare -n sh -c 'ip link set lo up && python bench/bench_sharded.py \\
        [--items 100000 --users 100000 --dim 64 --k 100 --shards 2 4 --threads 2 \\
         --queries 2000 --texts 4000 --model default]'

* ShardedIndex.search (exact shards, one thread each) against one ExactIndex with
  ``--threads`` threads, on the same item vectors and queries (each user's seen items
  excluded): seconds per batch of ``--queries`` queries, the overhead ratio, and
  whether the results are identical (ids and scores, every row).
* recommend_all (every user, seen items excluded, top ``--k``) against
  ``ExactIndex(item_factors).search(user_factors, k, exclude=user_items)``.
* encode (``--threads`` actors of one torch thread each) against one TextEncoder using
  ``--threads`` torch threads, on ``--texts`` synthetic texts: seconds, ratio, largest
  difference. The distributed time includes starting the actors and loading the model
  (printed apart: an empty call starts one actor).

Ray runs locally (``address="local"``, ``num_cpus=--threads``) and must run inside a
network namespace with only loopback, as above. Item and user vectors are Gaussian
(the scores of ALS factors look alike to the ranker); the seen items are a power-law
matrix from bench_als.py with ``--seen`` interactions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import llmrec  # noqa: E402
from bench_als import power_law_matrix  # noqa: E402


def timed(fn, repeat: int = 1):
    """(best seconds of ``repeat`` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def identical(a, b) -> str:
    same_rows = np.all(a[0] == b[0], axis=1) & np.all(a[1] == b[1], axis=1)
    return ("identical" if same_rows.all() else
            f"DIFFERENT in {int((~same_rows).sum())} of {len(same_rows)} rows")


def run_search(args, dist) -> None:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((args.items, args.dim)).astype(np.float32)
    users = rng.standard_normal((args.users, args.dim)).astype(np.float32)
    seen = power_law_matrix(args.users, args.items, args.seen, seed=1)
    single = llmrec.ExactIndex(items, num_threads=args.threads)
    queries, excluded = users[:args.queries], seen[:args.queries]
    base, want = timed(lambda: single.search(queries, args.k, exclude=excluded), args.repeat)
    print(f"\nsearch: {args.queries:,} queries × {args.items:,} items × d={args.dim}, k={args.k}, "
          f"seen items excluded; ExactIndex ({args.threads} threads): {base:.3f} s")
    for shards in args.shards:
        start = time.perf_counter()
        with dist.ShardedIndex(items, num_shards=shards) as index:
            built = time.perf_counter() - start
            index.search(queries[:10], args.k, exclude=excluded[:10])  # warm the actors
            seconds, got = timed(lambda: index.search(queries, args.k, exclude=excluded),
                                 args.repeat)
        print(f"  ShardedIndex, {shards} shards: {seconds:.3f} s ({seconds / base:.2f}× the single "
              f"index; built in {built:.1f} s), results {identical(got, want)}")

    base, want = timed(lambda: single.search(users, args.k, exclude=seen))
    print(f"\nrecommend_all: {args.users:,} users × {args.items:,} items, k={args.k}, "
          f"{seen.nnz:,} seen items excluded; one ExactIndex.search ({args.threads} threads): "
          f"{base:.2f} s")

    class Factors:
        user_factors_, item_factors_ = users, items

    for shards in args.shards:
        seconds, got = timed(lambda: dist.recommend_all(Factors(), seen, k=args.k, num_shards=shards))
        start = time.perf_counter()  # what recommend_all spends starting its shards
        dist.ShardedIndex(items, num_shards=shards).close()
        startup = time.perf_counter() - start
        print(f"  recommend_all, {shards} shards: {seconds:.2f} s ({seconds / base:.2f}× the single "
              f"index; {(seconds - startup) / base:.2f}× without the {startup:.1f} s of starting "
              f"the shards, measured apart), results {identical(got, want)}")


def run_encode(args, dist) -> None:
    import torch

    from llmrec.text.testing import WORDS

    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 60)))) + f" #{i}"
             for i in range(args.texts)]
    model = args.model
    torch.set_num_threads(args.threads)
    local = llmrec.TextEncoder(model)
    local.encode(texts[:8])
    base, want = timed(lambda: local.encode(texts))
    print(f"\nencode: {len(texts):,} texts, model {local.model_name}; one TextEncoder "
          f"({args.threads} torch threads): {base:.2f} s ({len(texts) / base:.0f} texts/s)")
    startup, _ = timed(lambda: dist.encode([], encoder=model, num_actors=1))
    seconds, got = timed(lambda: dist.encode(texts, encoder=model, num_actors=args.threads,
                                             batch_size=args.batch_size))
    print(f"  dist.encode, {args.threads} actors × 1 thread, batches of {args.batch_size}: "
          f"{seconds:.2f} s ({seconds / base:.2f}× the single encoder; starting one actor and "
          f"loading the model alone: {startup:.1f} s); largest difference "
          f"{float(np.abs(got - want).max()):.2e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seen", type=int, default=2_000_000, help="seen (user, item) pairs")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--texts", type=int, default=4000, help="0 skips the encode part")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", default="default", help="TextEncoder model (default: MiniLM)")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args(argv)

    import ray

    from llmrec import distributed as dist

    print(f"llmrec {llmrec.__version__}, ray {ray.__version__}, cpu cores {os.cpu_count()}, "
          f"threads {args.threads}")
    ray.init(address="local", num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    try:
        if not args.skip_search:
            run_search(args, dist)
        if args.texts:
            run_encode(args, dist)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
