"""The ``llmrec`` command: ``llmrec demo`` (the main job) and ``llmrec info``."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _clustered_items(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.standard_normal((64, d)).astype(np.float32)
    assignment = rng.integers(0, len(centers), n)
    return centers[assignment] + 0.5 * rng.standard_normal((n, d), dtype=np.float32)


def demo(n_items: int, dim: int, n_queries: int, k: int, seed: int) -> int:
    """Show the exact ranker on generated data and check it against numpy."""
    import scipy.sparse as sp

    from llmrec import ExactIndex, build_info

    print("llmrec build:", json.dumps(build_info()))
    rng = np.random.default_rng(seed)
    items = _clustered_items(n_items, dim, rng)
    queries = rng.standard_normal((n_queries, dim), dtype=np.float32)
    seen = sp.random(n_queries, n_items, density=min(1.0, 200 / n_items), format="csr",
                     random_state=seed, dtype=np.float32)
    index = ExactIndex(items, metric="cosine")
    print(f"index: {len(index):,} items x {index.dim} dims, metric={index.metric}")

    start = time.perf_counter()
    ids, scores = index.search(queries[0], k=k)
    one = time.perf_counter() - start
    start = time.perf_counter()
    ids, scores = index.search(queries, k=k, exclude=seen)
    many = time.perf_counter() - start
    print(f"1 query: {one * 1e3:.2f} ms; {n_queries} queries excluding ~200 seen items each: "
          f"{many * 1e3:.1f} ms ({n_queries / many:,.0f} queries/s)")

    unit = index.vectors
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    reference = q[:8].astype(np.float64) @ unit.T.astype(np.float64)
    reference[seen[:8].nonzero()] = -np.inf
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    agree = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids[:8], expected)])
    print(f"agreement with a float64 numpy reference on 8 queries: {agree:.3f}")
    top = ", ".join(f"{i} ({s:.4f})" for i, s in zip(ids[0][:5], scores[0][:5]))
    print(f"query 0, best 5 items (cosine): {top}")
    return 0 if agree > 0.99 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llmrec`` command."""
    parser = argparse.ArgumentParser(prog="llmrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="run the ranker on generated data")
    p_demo.add_argument("--items", type=int, default=200_000)
    p_demo.add_argument("--dim", type=int, default=128)
    p_demo.add_argument("--queries", type=int, default=256)
    p_demo.add_argument("-k", type=int, default=10)
    p_demo.add_argument("--seed", type=int, default=0)
    sub.add_parser("info", help="print build information as JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        from llmrec import build_info

        print(json.dumps(build_info(), indent=2))
        return 0
    return demo(args.items, args.dim, args.queries, args.k, args.seed)


if __name__ == "__main__":
    sys.exit(main())
