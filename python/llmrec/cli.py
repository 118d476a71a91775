"""The ``llmrec`` command.

* ``llmrec demo`` — the main job (:mod:`llmrec.demo`): fit, compare, recommend;
* ``llmrec evaluate --data DIR`` — the same comparison on MovieLens files;
* ``llmrec ranker`` — the exact SIMD ranker on generated data, checked against numpy;
* ``llmrec info`` — build information as JSON;
* ``llmrec serve MODEL_DIR`` — a saved Recommender behind HTTP (:mod:`llmrec.serve`).
"""

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


def ranker(n_items: int, dim: int, n_queries: int, k: int, seed: int) -> int:
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


def evaluate(data: str, split: str, k: int, encoder: str, seed: int) -> int:
    """Compare the Recommender with popularity and behaviour-only ALS on MovieLens files."""
    from . import Recommender
    from .comparison import compare, format_table
    from .datasets import load_movielens
    from .demo import default_encoder
    from .evaluation import leave_last_k, random_split, temporal_split

    interactions, items, _ = load_movielens(data)
    if split == "temporal":
        train, test = temporal_split(interactions, 0.2)
    elif split == "random":
        train, test = random_split(interactions, 0.2, random_state=seed)
    else:
        train, test = leave_last_k(interactions, 1)
    text_encoder = None if encoder == "none" else (
        default_encoder() if encoder == "default" else _encoder_at(encoder))
    table = compare(train, test, items, recommender=Recommender(encoder=text_encoder, random_state=seed),
                    k=k, random_state=seed, show_progress=True)
    print(f"{data}: {len(interactions):,} interactions, {split} split, full ranking, @{k}")
    print(format_table(table, k))
    return 0


def _encoder_at(model: str):
    from .text import TextEncoder

    return TextEncoder(model)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llmrec`` command."""
    parser = argparse.ArgumentParser(prog="llmrec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="the main job: fit, compare and recommend on synthetic data")
    p_demo.add_argument("--users", type=int, default=4000)
    p_demo.add_argument("--items", type=int, default=3000)
    p_demo.add_argument("--behaviour-only", action="store_true", help="run without a text encoder")
    p_demo.add_argument("-k", type=int, default=10)
    p_demo.add_argument("--seed", type=int, default=0)
    p_eval = sub.add_parser("evaluate", help="compare the Recommender with baselines on MovieLens files")
    p_eval.add_argument("--data", required=True, help="a MovieLens directory (ml-100k, RecBole, ml-latest)")
    p_eval.add_argument("--split", choices=("temporal", "random", "leave-last"), default="temporal")
    p_eval.add_argument("--encoder", default="default",
                        help='"default" (MiniLM), a local model directory, or "none"')
    p_eval.add_argument("-k", type=int, default=10)
    p_eval.add_argument("--seed", type=int, default=0)
    p_rank = sub.add_parser("ranker", help="run the exact ranker on generated data")
    p_rank.add_argument("--items", type=int, default=200_000)
    p_rank.add_argument("--dim", type=int, default=128)
    p_rank.add_argument("--queries", type=int, default=256)
    p_rank.add_argument("-k", type=int, default=10)
    p_rank.add_argument("--seed", type=int, default=0)
    sub.add_parser("info", help="print build information as JSON")
    p_serve = sub.add_parser("serve", help="serve a saved Recommender over HTTP (extra [serve])")
    p_serve.add_argument("model_dir", metavar="MODEL_DIR", help="a directory written by Recommender.save")
    p_serve.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only)")
    p_serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p_serve.add_argument("--workers", type=int, default=None,
                         help="requests served at once, on threads of one process (default 40)")
    p_serve.add_argument("--api-key-file", default=None,
                         help="file holding the key that writes and /admin need (Authorization: "
                              "Bearer KEY); without it writes are refused")
    args = parser.parse_args(argv)
    if args.command == "info":
        from llmrec import build_info

        print(json.dumps(build_info(), indent=2))
        return 0
    if args.command == "demo":
        from .demo import run

        return run(n_users=args.users, n_items=args.items, k=args.k, seed=args.seed,
                   encoder=None if args.behaviour_only else "default")
    if args.command == "serve":
        from .serve import run as serve

        if args.workers is not None and args.workers < 1:
            parser.error("--workers must be at least 1")
        try:
            return serve(args.model_dir, host=args.host, port=args.port, workers=args.workers,
                         api_key_file=args.api_key_file)
        except (OSError, ValueError) as error:  # no model there, a damaged one, a bad key file
            parser.exit(2, f"llmrec serve: {error}\n")
    if args.command == "evaluate":
        return evaluate(args.data, args.split, args.k, args.encoder, args.seed)
    return ranker(args.items, args.dim, args.queries, args.k, args.seed)


if __name__ == "__main__":
    sys.exit(main())
