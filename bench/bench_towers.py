"""SequenceTowers on MovieLens-100K: ids-only tower against the frozen-text tower, warm
and cold items, training time, and the latency of one user vector.

Protocols (from :mod:`llmrec.evaluation`, as in bench_recommender.py):

* warm: ``temporal_split(0.2)``; each user's training items, in time order, are the
  history; full ranking over all items with training items excluded; metrics @10 from
  :func:`ranking_metrics`, plus the full-ranking AUC of :func:`llmrec.evaluation.auc` and
  the AUC over 100 sampled negatives per user (:func:`llmrec.evaluation.sampled_auc`).
* cold: ``cold_item_split(0.2, random_state=seed)``; the towers are fitted on the warm
  items only, the cold items are then added from their MiniLM text with ``add_items``
  and every test user's top 10 is ranked among the cold items only. The ids-only tower
  has nothing for items it never saw (every cold item scores 0: ties, broken by id).
* latency: ``user_vectors`` for one 50-item history, median of ``--repeats`` calls.

    LLMREC_MOVIELENS_DIR=data/ml-100k python bench/bench_towers.py warm --text frozen none
    python bench/bench_towers.py cold --seeds 0 --text frozen none
    python bench/bench_towers.py latency

Defaults of the runs: dim 64, 2 layers, max_history 50, dropout 0.2, AdamW lr 3e-3,
batch 64, validation 0.2 of the users (their last ``--validation-items`` items, 1),
patience 20, weight average 0.98 (``--average``; 0 was the default before the ninth
session), torch threads 1, and a wall-clock
``--budget`` (300 s) after which training stops with the best epoch so far: on a shared
2-core machine every run stays bounded. (Two torch threads on an oversubscribed machine
were ~30x slower per epoch than one: OpenMP workers spin while waiting for a core.)

Item text vectors come from the default MiniLM encoder, cached on disk under
``LLMREC_BENCH_CACHE`` (~/.cache/llmrec-bench), like bench_recommender.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import llmrec
from llmrec.datasets import load_movielens, to_csr
from llmrec.evaluation import auc, cold_item_split, ranking_metrics, sampled_auc, temporal_split
from llmrec.towers import SequenceTowers

K = 10
CACHE = os.environ.get("LLMREC_BENCH_CACHE", str(Path.home() / ".cache" / "llmrec-bench"))
DATA = os.environ.get("LLMREC_MOVIELENS_DIR", "data/ml-100k")


def _encoder() -> llmrec.TextEncoder:
    return llmrec.TextEncoder("default", cache_dir=CACHE)


def _text_vectors(items: pd.DataFrame) -> np.ndarray:
    return _encoder().encode(items["text"].tolist())


def _histories(frame: pd.DataFrame, users: np.ndarray, item_index: pd.Index,
               column: str = "item_id") -> list[np.ndarray]:
    """Each user's items in time order (ties keep file order), as rows of item_index;
    with ``column="timestamp"`` their times instead."""
    ordered = frame.sort_values("timestamp", kind="stable")
    values = (item_index.get_indexer(ordered["item_id"]) if column == "item_id"
              else ordered[column].to_numpy())
    by_user = pd.Series(values).groupby(ordered["user_id"].to_numpy()).agg(list)
    dtype = np.int64 if column == "item_id" else np.float64
    return [np.asarray(by_user.get(u, []), dtype=dtype) for u in users]


def _towers(text: str, seed: int, args: argparse.Namespace) -> SequenceTowers:
    return SequenceTowers(dim=args.dim, layers=args.layers, max_history=50,
                          text=None if text == "none" else text, dropout=args.dropout,
                          lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                          finetune_layers=args.finetune_layers, encoder_lr=args.encoder_lr,
                          average=args.average, average_epochs=args.average_epochs,
                          random_state=seed, num_threads=args.threads)


def _fit(model: SequenceTowers, H: list[np.ndarray], E: np.ndarray | None, args,
         timestamps: list[np.ndarray] | None = None, texts: list[str] | None = None) -> None:
    """``texts`` (with ``text="finetune"``): the item texts, encoded by the default MiniLM."""
    kwargs = {"item_text_vectors": E} if model.text is not None else {"n_items": args.n_items}
    encoder = None
    if model.text == "finetune":
        kwargs, encoder = {"item_texts": texts}, _encoder()
    if timestamps is not None:
        kwargs["timestamps"] = timestamps
    epochs = args.epochs if args.epochs == "auto" else int(args.epochs)

    def progress(epoch: int, record: dict) -> bool:
        if epoch % 10 == 0 or record.get("tuning"):
            print(f"    epoch {epoch}: loss {record['loss']:.4f} validation ndcg@10 "
                  f"{record['validation_ndcg']:.4f} ({record['elapsed']:.0f} s)", flush=True)
        return record["elapsed"] > args.budget  # keep every run bounded in time

    model.fit(H, encoder=encoder, epochs=epochs, validation=args.validation,
              validation_items=args.validation_items, callback=progress, **kwargs)


def warm(args: argparse.Namespace) -> None:
    interactions, items, _ = load_movielens(args.data)
    train_df, test_df = temporal_split(interactions, 0.2)
    users = np.sort(interactions["user_id"].unique())
    item_index = pd.Index(items["item_id"])
    args.n_items = len(item_index)
    train, _, _ = to_csr(train_df, user_index=users, item_index=item_index)
    test, _, _ = to_csr(test_df, user_index=users, item_index=item_index)
    H = _histories(train_df, users, item_index)
    T = _histories(train_df, users, item_index, "timestamp") if args.timestamps else None
    E = _text_vectors(items) if "frozen" in args.text else None
    texts = items["text"].tolist()
    print(f"MovieLens-100K temporal_split(0.2): {len(users)} users, {len(item_index)} items; "
          f"torch threads {args.threads}", flush=True)
    for text in args.text:
        for seed in args.seeds:
            model = _towers(text, seed, args)
            start, cpu = time.perf_counter(), time.process_time()
            _fit(model, H, E, args, T, texts)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            U = model.user_vectors(H) if T is None else model.user_vectors(H, timestamps=T)
            S = U @ model.item_vectors().T
            S[train.nonzero()] = -np.inf
            top = np.argsort(-S, axis=1, kind="stable")[:, :K]
            m = ranking_metrics(top, test, K, train=train)
            S[np.isinf(S)] = 0.0
            a = auc(S, test, train)
            sa = sampled_auc(lambda r, c: S[r, c], train, test)
            print(f"  text={text:<6} seed {seed}: ndcg@10 {m['ndcg']:.4f} recall@10 "
                  f"{m['recall']:.4f} AUC {a:.4f} (sampled, 100 negatives: {sa:.4f}) | best epoch "
                  f"{model.best_epoch_} of "
                  f"{len(model.history_)}{_phases(model)}, {model.averaged_epochs_} epoch(s) averaged, validation ndcg {model.validation_ndcg_:.4f}, fit "
                  f"{seconds:.1f} s (CPU {cpu:.1f} s), peak RSS {_peak_mb():.0f} MB", flush=True)


def cold(args: argparse.Namespace) -> None:
    interactions, items, _ = load_movielens(args.data)
    E_all = _text_vectors(items)
    for seed in args.seeds:
        train_df, test_df = cold_item_split(interactions, 0.2, random_state=seed)
        is_warm = items["item_id"].isin(train_df["item_id"].unique()).to_numpy()
        warm_index = pd.Index(items["item_id"][is_warm])
        cold_index = pd.Index(items["item_id"][~is_warm])
        args.n_items = len(warm_index)
        users = np.sort(test_df["user_id"].unique())
        H = _histories(train_df, users, warm_index)
        all_users = np.sort(train_df["user_id"].unique())
        H_train = _histories(train_df, all_users, warm_index)
        test, _, _ = to_csr(test_df, user_index=users, item_index=cold_index)
        rng = np.random.default_rng(seed)
        random_lists = np.argsort(rng.random((len(users), len(cold_index))), axis=1)[:, :K]
        line = [f"cold_item_split(0.2, random_state={seed}): {len(cold_index)} cold items, "
                f"{len(users)} users; random {ranking_metrics(random_lists, test, K)['ndcg']:.4f}"]
        for text in args.text:
            model = _towers(text, 0, args)
            start = time.perf_counter()
            _fit(model, H_train, E_all[is_warm], args,
                 texts=items["text"][is_warm].tolist())
            seconds = time.perf_counter() - start
            if model.text is not None:
                new_ids = (model.add_items(texts=items["text"][~is_warm].tolist())
                           if text == "finetune" else model.add_items(text_vectors=E_all[~is_warm]))
                V = model.item_vectors(new_ids)
            else:
                V = np.zeros((len(cold_index), args.dim), dtype=np.float32)
            S = model.user_vectors(H) @ V.T
            top = np.argsort(-S, axis=1, kind="stable")[:, :K]
            m = ranking_metrics(top, test, K)
            line.append(f"text={text}: ndcg@10 {m['ndcg']:.4f} recall@10 {m['recall']:.4f} "
                        f"(fit {seconds:.1f} s, best epoch {model.best_epoch_})")
        print("\n  ".join(line), flush=True)


def latency(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    n_items, text_dim = 1682, 384
    T = rng.standard_normal((n_items, text_dim)).astype(np.float32)
    H = [rng.integers(n_items, size=60) for _ in range(200)]
    model = SequenceTowers(dim=args.dim, layers=args.layers, max_history=50,
                           num_threads=args.threads, random_state=0)
    model.fit(H, item_text_vectors=T, encoder=None, epochs=1, validation=0.0)
    history = [rng.integers(n_items, size=50)]
    for _ in range(20):
        model.user_vectors(history)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.user_vectors(history)
        times.append(time.perf_counter() - start)
    t = np.array(times) * 1e3
    print(f"user_vectors, one 50-item history, dim {args.dim}, {args.layers} layers, "
          f"{args.threads} threads: median {np.median(t):.3f} ms, p90 {np.percentile(t, 90):.3f} ms, "
          f"min {t.min():.3f} ms ({args.repeats} calls)")


def _phases(model: SequenceTowers) -> str:
    """With text="finetune": the best validation ndcg of the frozen phase, for comparison."""
    if model.text != "finetune":
        return ""
    records = model.history_
    switch = next((i for i in range(1, len(records)) if records[i].get("tuning")), len(records))
    frozen = max(r["validation_ndcg"] for r in records[:switch])
    return f" (fine-tuning from epoch {switch}; frozen phase's best validation ndcg {frozen:.4f})"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("warm", "cold", "latency"))
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--text", nargs="+", default=["frozen"], choices=("frozen", "finetune", "none"))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--epochs", default="auto")
    parser.add_argument("--validation", type=float, default=0.2)
    parser.add_argument("--validation-items", type=int, default=1,
                        help="latest items held out per validation user")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--finetune-layers", type=int, default=1)
    parser.add_argument("--encoder-lr", type=float, default=3e-5)
    parser.add_argument("--average", type=float, default=0.98,
                        help="decay of the weights' moving average per step (0: off)")
    parser.add_argument("--average-epochs", type=int, default=0,
                        help="R: also validate the mean of the 2r+1 epochs around the best, r <= R")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="stop training after this many seconds (best epoch kept)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--timestamps", action="store_true",
                        help="warm: give fit and user_vectors the event times (time-gap tokens)")
    args = parser.parse_args(argv)
    {"warm": warm, "cold": cold, "latency": latency}[args.mode](args)


if __name__ == "__main__":
    main(sys.argv[1:])
