"""Quality anchors on MovieLens-100K: the numbers later models must beat.

Protocol: ``temporal_split(0.2)`` (each user's latest 20% of ratings held out), binary
implicit feedback, full ranking over all items, training items excluded, metrics at
k = 10 from :func:`llmrec.evaluation.evaluate` — one code path for every model.

Models:
* popularity — items ranked by their number of training interactions;
* implicit's ALS — small grid over factors × regularization × alpha;
* EASE — closed form B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹, λ grid;
* recency-weighted EASE — the same B, scoring each user's history with weights
  1 + w·p², p the interaction's relative position in the user's history (0 oldest,
  1 newest); grid over λ × w.

Top-k selection goes through llmrec's native ranker (``ExactIndex.search`` with the
training items excluded). Run:

    python bench/quality_anchors.py [--data data/ml-100k] [--quick] [--markdown]
    python bench/quality_anchors.py --speed     # metric and synthetic() timings only
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec import ExactIndex
from llmrec.datasets import load_movielens, synthetic, to_csr
from llmrec.evaluation import ImplicitAdapter, evaluate, ranking_metrics, temporal_split

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("ndcg", "recall", "precision", "map", "coverage")
K = 10


class Popularity:
    """Rank items by how many users interacted with them in training."""

    def fit(self, user_items: sp.csr_matrix) -> Popularity:
        counts = np.asarray((user_items != 0).sum(axis=0), dtype=np.float32).ravel()
        self.index_ = ExactIndex(counts[:, None])
        return self

    def recommend(self, user_ids, user_items, k=10, *, exclude_seen=True):
        queries = np.ones((len(user_ids), 1), dtype=np.float32)
        return self.index_.search(queries, k, exclude=user_items if exclude_seen else None)


class EASE:
    """Embarrassingly shallow autoencoder (Steck, 2019), closed form.

    Fitted on the binary training matrix; ``recommend`` scores the ``user_items`` it is
    given, so weighted histories (recency) change the scores but not the model.
    """

    def __init__(self, *, regularization: float = 300.0) -> None:
        self.regularization = regularization

    def fit(self, user_items: sp.csr_matrix) -> EASE:
        binary = (user_items != 0).astype(np.float64)
        gram = (binary.T @ binary).toarray()
        gram[np.diag_indices_from(gram)] += self.regularization
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        # score(u, j) = x_u · B[:, j]: item j's vector is column j of B.
        self.index_ = ExactIndex(np.ascontiguousarray(weights.T, dtype=np.float32))
        return self

    def recommend(self, user_ids, user_items, k=10, *, exclude_seen=True):
        histories = user_items.toarray().astype(np.float32)
        return self.index_.search(histories, k, exclude=user_items if exclude_seen else None)


def recency_weights(train: pd.DataFrame, w: float) -> np.ndarray:
    """1 + w·p² per training row, p = relative position in the user's history."""
    order = np.lexsort((train["timestamp"].to_numpy(), train["user_id"].to_numpy()))
    users = train["user_id"].to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    denominator = np.maximum(np.repeat(counts, counts) - 1, 1)
    position = np.empty(len(users))
    position[order] = rank / denominator
    return 1.0 + w * position ** 2


def row(name: str, metrics: dict, seconds: float) -> dict:
    return {"model": name, **{c: metrics[c] for c in COLUMNS}, "seconds": seconds}


def speed(n_users: int = 100_000, n_items: int = 20_000, k: int = 10) -> None:
    """Time ranking_metrics on n_users lists (best of 5) and synthetic() once."""
    rng = np.random.default_rng(0)
    interactions, _, _ = synthetic(n_users, n_items, density=50 / n_items, random_state=0)
    train_df, test_df = temporal_split(interactions, 0.2)
    train, users, items = to_csr(train_df, user_index=np.arange(n_users),
                                 item_index=np.arange(n_items))
    test, _, _ = to_csr(test_df, user_index=users, item_index=items)
    recommended = rng.integers(0, 2_000, size=(n_users, k))
    for label, kwargs in (("test only", {}), ("train removed", {"train": train})):
        best = min(_timed(lambda: ranking_metrics(recommended, test, k, **kwargs))
                   for _ in range(5))
        print(f"ranking_metrics, {n_users:,} users, k={k}, {label}: {best * 1e3:.0f} ms")
    seconds = _timed(lambda: synthetic(100_000, 20_000, density=5e-3, random_state=1))
    print(f"synthetic(100k users, 20k items, 10M interactions): {seconds:.1f} s")


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("LLMREC_MOVIELENS_DIR",
                                                         str(REPO / "data" / "ml-100k")))
    parser.add_argument("--quick", action="store_true", help="one point per grid")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--speed", action="store_true", help="time the metrics, then stop")
    args = parser.parse_args(argv)
    if args.speed:
        speed()
        return 0

    interactions, _, _ = load_movielens(args.data)
    train_df, test_df = temporal_split(interactions, 0.2)
    users = np.sort(interactions["user_id"].unique())
    items = np.sort(interactions["item_id"].unique())
    train, _, _ = to_csr(train_df, user_index=users, item_index=items)
    test, _, _ = to_csr(test_df, user_index=users, item_index=items)
    print(f"MovieLens-100K from {args.data}: {len(users)} users, {len(items)} items; "
          f"temporal_split(0.2): {train.nnz} train, {test.nnz} test interactions")

    results: list[dict] = []

    def run(name: str, model, user_items: sp.csr_matrix) -> dict:
        start = time.perf_counter()
        metrics = evaluate(model, user_items, test, K)
        result = row(name, metrics, time.perf_counter() - start)
        results.append(result)
        print(f"  {name:<42} ndcg@10 {metrics['ndcg']:.4f}  recall@10 {metrics['recall']:.4f}"
              f"  precision@10 {metrics['precision']:.4f}  map@10 {metrics['map']:.4f}"
              f"  coverage {metrics['coverage']:.4f}", flush=True)
        return result

    start = time.perf_counter()
    run("popularity", Popularity().fit(train), train)

    try:
        from threadpoolctl import threadpool_limits
        from implicit.als import AlternatingLeastSquares
    except ImportError:
        print("  implicit not installed: skipping ALS (pip install implicit)")
    else:
        grid = ([(32, 5.0, 0.5)] if args.quick else
                [(f, r, a) for f in (16, 32, 64) for r in (0.1, 1.0, 5.0) for a in (0.5, 1.0, 2.0)])
        with threadpool_limits(1, "blas"):
            for factors, regularization, alpha in grid:
                model = AlternatingLeastSquares(factors=factors, regularization=regularization,
                                                alpha=alpha, iterations=15, random_state=0,
                                                num_threads=2)
                run(f"implicit ALS f={factors} reg={regularization} alpha={alpha}",
                    ImplicitAdapter(model).fit(train), train)

    lambdas = [300.0] if args.quick else [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0]
    eases = {lam: EASE(regularization=lam).fit(train) for lam in lambdas}
    for lam, model in eases.items():
        run(f"EASE lambda={lam:g}", model, train)

    recency = [9.0] if args.quick else [1.0, 3.0, 9.0, 20.0]
    for w in recency:
        weighted, _, _ = to_csr(train_df, user_index=users, item_index=items,
                                value=recency_weights(train_df, w))
        for lam, model in eases.items():
            run(f"recency EASE lambda={lam:g} w={w:g}", model, weighted)

    table = pd.DataFrame(results)
    best = (table.assign(family=table["model"].str.extract(r"^(popularity|implicit ALS|EASE|recency EASE)")[0])
            .sort_values("ndcg", ascending=False).groupby("family", sort=False).head(1))
    print(f"\nbest per family (k = {K}; {time.perf_counter() - start:.1f} s in all):")
    print(best[["model", *COLUMNS]].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.markdown:
        print(f"\n| model | {' | '.join(c + ('@10' if c != 'coverage' else '') for c in COLUMNS)} |")
        print("|---|" + "---:|" * len(COLUMNS))
        for _, r in table.iterrows():
            print(f"| {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS) + " |")
        print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
