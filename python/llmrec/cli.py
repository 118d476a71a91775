"""The ``llmrec`` command.

* ``llmrec demo`` — the main job (:mod:`llmrec.demo`): fit, compare, recommend;
* ``llmrec evaluate --data DIR [--report FILE.html]`` — the same comparison on
  MovieLens files, optionally as an HTML report with charts;
* ``llmrec data fetch movielens-100k [--dir DIR]`` — place MovieLens-100K where
  ``llmrec.datasets.load_movielens()`` finds it;
* ``llmrec ranker`` — the exact SIMD ranker on generated data, checked against numpy;
* ``llmrec info`` — build information as JSON;
* ``llmrec serve MODEL_DIR`` — a saved Recommender behind HTTP (:mod:`llmrec.serve`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

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


def evaluate(data: str | None, split: str, k: int, encoder: str, seed: int,
             report: str | None = None, diversities: tuple[float, ...] | None = None) -> int:
    """Compare the Recommender with popularity and behaviour-only ALS on MovieLens files;
    with ``report``, also write an HTML report (:mod:`llmrec.report`)."""
    from . import Recommender
    from .comparison import compare_lists, format_table
    from .datasets import load_movielens
    from .demo import default_encoder
    from .evaluation import leave_last_k, random_split, temporal_split

    if report is not None:
        from .report import check_report_path, require_matplotlib

        require_matplotlib()  # before minutes of fitting, not after
        check_report_path(report)
    interactions, items, _ = load_movielens(data)
    data = data if data is not None else "MovieLens-100K (default place)"
    if split == "temporal":
        train, test = temporal_split(interactions, 0.2)
    elif split == "random":
        train, test = random_split(interactions, 0.2, random_state=seed)
    else:
        train, test = leave_last_k(interactions, 1)
    text_encoder = None if encoder == "none" else (
        default_encoder() if encoder == "default" else _encoder_at(encoder))
    recommender = Recommender(encoder=text_encoder, random_state=seed)
    comparison = compare_lists(train, test, items, recommender=recommender,
                               k=k, random_state=seed, show_progress=True)
    print(f"{data}: {len(interactions):,} interactions, {split} split, full ranking, @{k}")
    print(format_table(comparison.table, k))
    if report is not None:
        from . import __version__
        from .report import build_report, write_report

        settings = {"data": data, "interactions": len(interactions), "items": len(items),
                    "split": split, "held out": "latest 20%" if split == "temporal" else
                    "random 20%" if split == "random" else "last one per user",
                    "k": k, "encoder": encoder, "seed": seed, "llmrec": __version__}
        content = build_report(comparison, recommender, items, k=k, settings=settings,
                               diversities=diversities)
        write_report(report, content.html)
        print(f"report written to {report}")
    return 0


def fetch_data(dataset: str, directory: str | None, timeout: float) -> int:
    """``llmrec data fetch``: place a data set, say where and from where."""
    from ._fetch import DataUnavailableError, fetch

    try:
        placed = fetch(directory, timeout=timeout)
    except (DataUnavailableError, FileExistsError, NotADirectoryError) as error:
        print(f"llmrec data fetch {dataset}: {error}", file=sys.stderr)
        return 1
    if placed.source == "already there":
        print(f"{dataset}: already in {placed.path} (checksums match); nothing to do")
    else:
        print(f"{dataset}: placed in {placed.path} (from {placed.source}, checksums match)")
    return 0


def _encoder_at(model: str) -> Any:
    from .text import TextEncoder

    return TextEncoder(model)


_DESCRIPTION = """\
llmrec: recommendation with language-model embeddings and a SIMD C++ core.

  llmrec demo                                fit, compare and recommend on generated data
  llmrec evaluate [--data DIR] [--report F]  the same comparison on MovieLens files
  llmrec data fetch movielens-100k           place MovieLens-100K where llmrec finds it
  llmrec ranker                              the exact ranker, checked against numpy
  llmrec info                                build information as JSON
  llmrec serve MODEL_DIR                     a saved Recommender behind HTTP, with a page

Run "llmrec COMMAND --help" for a command's options."""


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def _version() -> str:
    from llmrec import __version__

    return f"llmrec {__version__}"


def build_parser() -> argparse.ArgumentParser:
    """The ``llmrec`` command's parser (every option has help text; tests walk it)."""
    parser = argparse.ArgumentParser(prog="llmrec", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the installed llmrec version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_demo = sub.add_parser("demo", help="the main job: fit, compare and recommend on synthetic data",
                            description="Fit, compare and recommend on generated data (offline).")
    p_demo.add_argument("--users", type=int, default=4000, help="users to generate (default: 4000)")
    p_demo.add_argument("--items", type=int, default=3000, help="items to generate (default: 3000)")
    p_demo.add_argument("--behaviour-only", action="store_true", help="run without a text encoder")
    p_demo.add_argument("-k", type=int, default=10, help="length of each list (default: 10)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p_eval = sub.add_parser("evaluate", help="compare the Recommender with baselines on MovieLens files",
                            description="Compare the Recommender with popularity and behaviour-only "
                                        "ALS on MovieLens files; optionally write an HTML report.")
    p_eval.add_argument("--data", default=None,
                        help="a MovieLens directory (ml-100k, RecBole, ml-latest); default: where "
                             "`llmrec data fetch movielens-100k` places it")
    p_eval.add_argument("--split", choices=("temporal", "random", "leave-last"), default="temporal",
                        help="how test interactions are held out: each user's latest 20%% (temporal), "
                             "a random 20%% (random) or the last one (leave-last); default: temporal")
    p_eval.add_argument("--encoder", default="default",
                        help='"default" (MiniLM), a local model directory, or "none"')
    p_eval.add_argument("-k", type=int, default=10, help="cut-off of the metrics (default: 10)")
    p_eval.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p_eval.add_argument("--report", metavar="FILE.html", default=None,
                        help="also write one self-contained HTML report with charts (needs "
                             "matplotlib: pip install \"llmrec[report]\")")
    p_eval.add_argument("--diversity", metavar="L", type=_unit_interval, nargs="+", default=None,
                        help="diversity values of the report's accuracy-diversity curve "
                             "(default: 0 0.1 0.2 0.3 0.5 0.7)")
    p_data = sub.add_parser("data", help="data sets: fetch MovieLens-100K",
                            description="Place data sets where llmrec's loaders find them.")
    data_sub = p_data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p_fetch = data_sub.add_parser("fetch", help="download a data set (checksummed, cached)",
                                  description="Download a data set from its publisher (else a "
                                              "mirror), check its SHA-256 and place it atomically; "
                                              "does nothing if it is already there.")
    p_fetch.add_argument("dataset", choices=("movielens-100k",), help="the data set to fetch")
    p_fetch.add_argument("--dir", default=None,
                         help="directory to place it in (default: $LLMREC_DATA/ml-100k, else "
                              "~/.cache/llmrec/data/ml-100k, where load_movielens() looks)")
    p_fetch.add_argument("--timeout", type=float, default=30.0,
                         help="seconds to wait for each source (default: 30)")
    p_rank = sub.add_parser("ranker", help="run the exact ranker on generated data",
                            description="Run the exact SIMD ranker on generated data and check "
                                        "it against numpy.")
    p_rank.add_argument("--items", type=int, default=200_000, help="items (default: 200000)")
    p_rank.add_argument("--dim", type=int, default=128, help="vector length (default: 128)")
    p_rank.add_argument("--queries", type=int, default=256, help="queries (default: 256)")
    p_rank.add_argument("-k", type=int, default=10, help="results per query (default: 10)")
    p_rank.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sub.add_parser("info", help="print build information as JSON",
                   description="Print build information (SIMD levels, threads, CUDA) as JSON.")
    p_serve = sub.add_parser("serve", help="serve a saved Recommender over HTTP (extra [serve])",
                             description="Serve a saved Recommender over HTTP, with a page to "
                                         "try it at / and the API documented at /docs.")
    p_serve.add_argument("model_dir", metavar="MODEL_DIR", help="a directory written by Recommender.save")
    p_serve.add_argument("--host", default="127.0.0.1",
                         help="address to listen on (default 127.0.0.1: this machine only)")
    p_serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p_serve.add_argument("--workers", type=int, default=None,
                         help="reads served at once, on threads of one process (default: two per core)")
    p_serve.add_argument("--api-key-file", default=None,
                         help="file holding the key that writes and /admin need (Authorization: "
                              "Bearer KEY); without it writes are refused")
    p_serve.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                         help="save the model (with every write) into MODEL_DIR once its write log "
                              "holds N records, so a restart replays few (default 2000; 0: never)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llmrec`` command."""
    parser = build_parser()
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

        from .serve.holder import CHECKPOINT_EVERY

        if args.workers is not None and args.workers < 1:
            parser.error("--workers must be at least 1")
        if args.checkpoint_every is not None and args.checkpoint_every < 0:
            parser.error("--checkpoint-every must be 0 (never) or more")
        every = CHECKPOINT_EVERY if args.checkpoint_every is None else args.checkpoint_every or None
        try:
            return serve(args.model_dir, host=args.host, port=args.port, workers=args.workers,
                         api_key_file=args.api_key_file, checkpoint_every=every)
        except (OSError, ValueError) as error:  # no model there, a damaged one, a bad key file
            parser.exit(2, f"llmrec serve: {error}\n")
    if args.command == "evaluate":
        from .datasets import DataFormatError

        try:
            return evaluate(args.data, args.split, args.k, args.encoder, args.seed, report=args.report,
                            diversities=None if args.diversity is None else tuple(args.diversity))
        except (FileNotFoundError, IsADirectoryError, DataFormatError, ImportError) as error:
            print(f"llmrec evaluate: {error}", file=sys.stderr)  # what to do, not a traceback
            return 2
    if args.command == "data":
        return fetch_data(args.dataset, args.dir, args.timeout)
    return ranker(args.items, args.dim, args.queries, args.k, args.seed)


if __name__ == "__main__":
    sys.exit(main())
