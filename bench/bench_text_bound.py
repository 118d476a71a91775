"""How much more can item text add to the Recommender for warm users? An upper bound.

Issue 14 asks the default Recommender (MiniLM) to beat the same model with
``encoder=None`` by 0.005 ndcg@10 on ``temporal_split(0.2)``. This bench fits both (with
the towers signal, as ``bench_recommender.py towers --parts warm --towers-only``), takes
each model's served score of every (test user, item) pair (``recommend`` over the whole
catalogue) and adds text-only signals built from the MiniLM vectors of the items:

- ``kernel τ``: Σ over the user's latest 50 training items j of exp((cos(e_i, e_j) − 1)/τ),
  a content nearest-neighbour score (sequels, same franchise, same genres and years);
- ``linear``: Σ over the latest 50 (or 10) items of cos(e_i, e_j), the user's mean text
  interest.

Each signal and the served score are standardised per user; the signals' weights are
chosen by coordinate ascent **on the test interactions themselves**, so the result is an
optimistic bound on what these signals could add with weights fitted honestly, not a
model. Printed per seed and encoder: the served ndcg@10, the bound and its weights.

    python bench/bench_text_bound.py [--data data/ml-100k] [--seeds 0 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recommender import K, _encoder, _temporal  # noqa: E402

import llmrec  # noqa: E402
from llmrec.datasets import load_movielens  # noqa: E402
from llmrec.evaluation import ranking_metrics  # noqa: E402

LATEST = 50
WEIGHT_GRID = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)


def _standardised(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean over the finite entries, over their standard deviation
    (non-finite entries, the user's training items, stay -inf)."""
    finite = np.isfinite(scores)
    masked = np.where(finite, scores, np.nan)
    mean, spread = np.nanmean(masked, axis=1, keepdims=True), np.nanstd(masked, axis=1, keepdims=True)
    return np.where(finite, (scores - mean) / np.maximum(spread, 1e-12), -np.inf)


def _text_signals(E: np.ndarray, histories: list[np.ndarray]) -> dict[str, np.ndarray]:
    """{name: (users, items) standardised text-only scores} for the histories (item rows,
    oldest first)."""
    cosine = E @ E.T
    kernels = {f"kernel {tau}": np.exp((cosine - 1.0) / tau) for tau in (0.02, 0.05, 0.1)}
    for kernel in kernels.values():
        np.fill_diagonal(kernel, 0.0)
    out = {}
    for name, matrix, latest in [*((n, k, LATEST) for n, k in kernels.items()),
                                 ("linear", cosine, LATEST), ("linear, latest 10", cosine, 10)]:
        out[name] = _standardised(np.stack([matrix[h[-latest:]].sum(axis=0) for h in histories]))
    return out


def _served(rec: llmrec.Recommender, users: np.ndarray, n_items: int, item_index) -> np.ndarray:
    """(users, items) served scores, -inf where not ranked (the users' training items)."""
    out = rec.recommend(list(users), n_items)
    rows = item_index.get_indexer(out.ids.ravel()).reshape(out.ids.shape)
    scores = np.full((len(users), n_items), -np.inf)
    valid = rows >= 0
    np.put_along_axis(scores, np.where(valid, rows, 0), np.where(valid, out.scores, -np.inf), axis=1)
    return scores


def _ndcg(scores: np.ndarray, rows: np.ndarray, n_users: int, test, train) -> float:
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1), axis=1)
    recommended = np.full((n_users, K), -1, dtype=np.int64)
    recommended[rows] = top
    return ranking_metrics(recommended, test, K, train=train)["ndcg"]


def bound(served: np.ndarray, signals: dict[str, np.ndarray], evaluate) -> tuple[float, dict[str, float]]:
    """Coordinate ascent (two rounds over WEIGHT_GRID) of the signals' weights added to
    the standardised served scores, maximising ``evaluate`` (the test's ndcg@10)."""
    base = _standardised(served)
    weights = {name: 0.0 for name in signals}
    best = evaluate(base)
    for _ in range(2):
        for name in signals:
            for value in WEIGHT_GRID:
                trial = dict(weights, **{name: value})
                score = evaluate(base + sum(w * signals[n] for n, w in trial.items() if w))
                if score > best + 1e-9:
                    best, weights = score, trial
    return best, weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args(argv)
    interactions, items, _ = load_movielens(args.data)
    train_df, _, users, item_index, binary, test = _temporal(interactions, items)
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    encoder = _encoder()
    E = np.asarray(encoder.encode(list(items["text"])), dtype=np.float64)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    ordered = train_df.sort_values("timestamp", kind="stable")
    by_user = ordered.groupby("user_id")["item_id"].agg(list)
    histories = [item_index.get_indexer(by_user[u]) for u in users[rows]]
    signals = _text_signals(E, histories)
    evaluate = lambda scores: _ndcg(scores, rows, len(users), test, binary)  # noqa: E731
    for seed in args.seeds:
        for name, enc in (("MiniLM", encoder), ("encoder=None", None)):
            rec = llmrec.Recommender(encoder=enc, random_state=seed, towers={"num_threads": 1}).fit(
                train_df, items=items)
            served = _served(rec, users[rows], len(item_index), item_index)
            value, weights = bound(served, signals, evaluate)
            print(f"seed {seed} {name}: served (full ranking) ndcg@10 {evaluate(served):.4f}; with the text "
                  f"signals at weights chosen on the test {value:.4f} "
                  f"{ {k: v for k, v in weights.items() if v} }", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
