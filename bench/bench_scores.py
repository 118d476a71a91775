"""Scores people can use (issue 16, §4): calibration of ``predict_proba`` and AUC.

    python bench/bench_recommender.py calibration [--data data/ml-100k] [--encoder none|minilm]
                                                  [--png bench/recommender_reliability.png]

MovieLens-100K, ``temporal_split(0.2)``; the Recommender is fitted on the training
frame (its Platt scaling on its own validation slice, inside the training data). On
the test split: positives are the held-out (user, item) pairs, negatives
``--negatives`` items per user drawn uniformly among the items the user neither saw in
training nor holds out, each weighing (those items' count) / (the number drawn), so
the weighted sample stands for every unseen item. Reported: the reliability curve
(mean predicted probability against the observed frequency per bin of predicted
probability, log-spaced; a PNG), the weighted Brier score and log-loss against a
constant base-rate forecast, expected against actual held-out counts per user, and
``evaluate``'s ndcg@10 and sampled AUC (through ``RecommenderAdapter``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _test_pairs(train, test, negatives: int, rng: np.random.Generator):
    """(rows, cols, labels, weights) of test positives and weighted sampled negatives."""
    rows, cols, labels, weights = [], [], [], []
    n_items = test.shape[1]
    for u in np.flatnonzero(np.diff(test.indptr) > 0):
        pos = test.indices[test.indptr[u]:test.indptr[u + 1]]
        blocked = np.union1d(pos, train.indices[train.indptr[u]:train.indptr[u + 1]])
        free = np.setdiff1d(np.arange(n_items), blocked)
        neg = rng.choice(free, min(negatives, len(free)), replace=False)
        rows += [np.full(len(pos), u), np.full(len(neg), u)]
        cols += [pos, neg]
        labels += [np.ones(len(pos)), np.zeros(len(neg))]
        weights += [np.ones(len(pos)), np.full(len(neg), len(free) / max(len(neg), 1))]
    return (np.concatenate(rows), np.concatenate(cols), np.concatenate(labels),
            np.concatenate(weights))


def calibration(args: argparse.Namespace) -> None:
    import llmrec
    from llmrec.datasets import load_movielens, to_csr
    from llmrec.evaluation import RecommenderAdapter, evaluate, temporal_split

    sys.path.insert(0, str(HERE))
    from bench_recommender import _encoder

    interactions, items, _ = load_movielens(args.data)
    train_df, test_df = temporal_split(interactions, 0.2)
    encoder = _encoder() if args.encoder == "minilm" else None
    rec = llmrec.Recommender(encoder=encoder, random_state=0).fit(train_df, items=items)
    print(f"calibration: Platt a={rec.calibration_.a:.4f} b={rec.calibration_.b:.4f} on "
          f"{rec.calibration_.positives} held-out pairs and {rec.calibration_.negatives} sampled "
          f"negatives of the validation slice", flush=True)
    train, users, item_index = to_csr(train_df, item_index=items["item_id"])
    test, _, _ = to_csr(test_df, user_index=users, item_index=item_index)
    adapter = RecommenderAdapter(rec, users, item_index)
    metrics = evaluate(adapter, train, test, k=10, auc_negatives=args.negatives)
    print(f"evaluate: ndcg@10 {metrics['ndcg']:.4f}, sampled AUC {metrics['auc']:.4f} "
          f"({metrics['auc_negatives']} negatives per user)", flush=True)
    rows, cols, labels, weights = _test_pairs(train, test, args.negatives, np.random.default_rng(0))
    p = np.asarray(rec.predict_proba(list(users[rows]), list(item_index[cols])))
    base = np.average(labels, weights=weights)
    brier = np.average((p - labels) ** 2, weights=weights)
    brier0 = np.average((base - labels) ** 2, weights=weights)
    eps = 1e-12
    loss = -np.average(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps), weights=weights)
    loss0 = -np.average(labels * np.log(base) + (1 - labels) * np.log(1 - base), weights=weights)
    expected = np.bincount(rows, weights=p * weights)
    actual = np.bincount(rows, weights=labels)
    has = actual > 0
    print(f"test pairs: {int(labels.sum())} positives, {int((1 - labels).sum())} sampled negatives "
          f"(base rate {base:.2e}); Brier {brier:.3e} (constant {brier0:.3e}); log-loss {loss:.4f} "
          f"(constant {loss0:.4f}); held-out per user: expected {expected[has].mean():.2f}, "
          f"actual {actual[has].mean():.2f}", flush=True)
    edges = np.concatenate([[0.0], np.logspace(-5, 0, args.bins + 1)[1:]])
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, args.bins - 1)
    predicted, observed, counts = [], [], []
    print("bin  mean predicted  observed  positives  weight")
    for b in range(args.bins):
        mine = which == b
        if weights[mine].sum() == 0:
            continue
        predicted.append(np.average(p[mine], weights=weights[mine]))
        observed.append(np.average(labels[mine], weights=weights[mine]))
        counts.append(int(labels[mine].sum()))
        print(f"{b:>3}  {predicted[-1]:.2e}        {observed[-1]:.2e}  {counts[-1]:>9}  "
              f"{weights[mine].sum():.3g}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.loglog([1e-5, 1], [1e-5, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    shown = np.array(observed) > 0
    ax.loglog(np.array(predicted)[shown], np.array(observed)[shown], "o-",
              label="Recommender.predict_proba")
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed frequency (weighted)")
    ax.set_title("MovieLens-100K temporal_split(0.2): reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"reliability curve: {args.png}")


def add_parsers(sub: argparse._SubParsersAction, data: str) -> None:
    c = sub.add_parser("calibration", help="predict_proba reliability and sampled AUC on MovieLens")
    c.add_argument("--data", default=data)
    c.add_argument("--encoder", choices=["none", "minilm"], default="none")
    c.add_argument("--negatives", type=int, default=100)
    c.add_argument("--bins", type=int, default=10)
    c.add_argument("--png", default=str(HERE / "recommender_reliability.png"))


COMMANDS = {"calibration": calibration}
