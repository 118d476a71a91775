"""The Recommender against its baselines on MovieLens-100K, its ablation, cold items,
diversity, and the latency of one request on a 100,000-item catalogue.

Protocol (quality): ``temporal_split(0.2)`` (each user's latest 20 % held out), full
ranking over all items, training items excluded, metrics @10 from
:func:`llmrec.evaluation.ranking_metrics`; the Recommender is fitted on the training
frame with the items' MiniLM text. Cold items: ``cold_item_split(0.2, random_state=0)``,
fitted without the cold items, which are then added with ``add_items`` and ranked among
the cold items only (``allow``). Latency: one ``recommend`` for one user, 100,000 items
(synthetic interactions; item text vectors from a stand-in 384-dim encoder, as
encoding 100k texts with MiniLM takes most of an hour on 2 cores).

    python bench/bench_recommender.py quality [--data data/ml-100k] [--no-implicit]
    python bench/bench_recommender.py cold
    python bench/bench_recommender.py latency [--items 100000] [--repeats 200]
    python bench/bench_recommender.py scale [--items 100000 1000000 10000000]  (bench_scale.py)
    python bench/bench_recommender.py scale-grow MODEL OUT [--copies 3]  (bench_scale_grow.py)
    python bench/bench_recommender.py scale-request | scale-interest | scale-memory MODEL  (bench_scale_parts.py)
    python bench/bench_recommender.py calibration [--data data/ml-100k] [--png FILE]  (bench_scores.py)
    python bench/bench_recommender.py ratings [--seeds 0 1 2] [--encoder none|minilm]
    python bench/bench_recommender.py towers [--parts warm cold cold-users] [--seeds 0 1 2]
        [--towers-text frozen|finetune] [--towers-only] [--towers-set average=0.98 …]
        [--profiles off|on]

Towers (``towers``): with ``--profiles on`` the fits get the users' profile texts
(MovieLens-100K's age, gender and occupation, ``"A 24-year-old male technician."``, from
``load_movielens``; encoder=None cannot read them), and so do the cold users below.

Cold users (``towers --parts cold-users``): ``cold_user_split(0.2, n)`` holds 20 % of the
users out of the fit; each is known by their first n = 1, 3, 5 interactions
(``recommend_for_history``, with the user's profile text with ``--profiles on``) and
the rest of their interactions is ranked over the whole catalogue, against popularity
(training counts), with and without the towers signal.

Ratings: the same Recommender fitted on the training frame with its ``rating`` column
read (``rating_rule="threshold"``: 1/5 a dislike, likes weighted by the rating) and
ignored (``rating_rule="ignore"``), side by side under two protocols over the same
``temporal_split(0.2)``: "watched" (every held-out interaction is relevant) and "liked"
(only held-out ratings >= 4 are relevant, over the users that have one; the lists are
checked to hold no item the user rated <= 2 in training).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_anchors import EASE, Popularity, recency_weights  # noqa: E402

import llmrec  # noqa: E402
from llmrec.datasets import load_movielens, synthetic, to_csr  # noqa: E402
from llmrec.recommender import updates  # noqa: E402
from llmrec.evaluation import (ImplicitAdapter, cold_item_split,  # noqa: E402
                               cold_user_split, evaluate, ranking_metrics, temporal_split)

REPO = Path(__file__).resolve().parents[1]
K = 10
CACHE = os.environ.get("LLMREC_BENCH_CACHE", str(Path.home() / ".cache" / "llmrec-bench"))


def _line(name: str, m: dict) -> dict:
    extra = f"  diversity {m['diversity']:.4f}" if "diversity" in m else ""
    print(f"  {name:<52} ndcg@10 {m['ndcg']:.4f}  recall@10 {m['recall']:.4f}  "
          f"precision@10 {m['precision']:.4f}  coverage {m['coverage']:.4f}{extra}", flush=True)
    return {"model": name, **m}


def _lists(rec: llmrec.Recommender, users: np.ndarray, item_index: pd.Index, k: int = K,
           **kwargs) -> np.ndarray:
    out = rec.recommend(list(users), k, **kwargs).ids
    rows = item_index.get_indexer(out.ravel()).reshape(out.shape)
    return np.where(out == -1, -1, rows)


def _encoder() -> llmrec.TextEncoder:
    return llmrec.TextEncoder("default", cache_dir=CACHE)


def _temporal(interactions: pd.DataFrame, items: pd.DataFrame):
    """temporal_split(0.2) and its matrices over every user and item: (train frame, test
    frame, user ids, item index, binary train CSR, test CSR)."""
    train_df, test_df = temporal_split(interactions, 0.2)
    users = np.sort(interactions["user_id"].unique())
    item_index = pd.Index(items["item_id"])
    train, _, _ = to_csr(train_df, user_index=users, item_index=item_index)
    test, _, _ = to_csr(test_df, user_index=users, item_index=item_index)
    return train_df, test_df, users, item_index, (train != 0).astype(np.float32).tocsr(), test


def quality(args: argparse.Namespace) -> None:
    interactions, items, _ = load_movielens(args.data)
    train_df, test_df, users, item_index, binary, test = _temporal(interactions, items)
    print(f"MovieLens-100K: {len(users)} users, {len(item_index)} items, temporal_split(0.2)")
    results = []
    results.append(_line("popularity", evaluate(Popularity().fit(binary), binary, test)))
    if not args.no_implicit:
        try:
            from implicit.als import AlternatingLeastSquares
            from threadpoolctl import threadpool_limits
        except ImportError:
            print("  implicit not installed: skipping its ALS")
        else:
            best = None
            with threadpool_limits(1, "blas"):
                for f in (16, 32, 64):
                    for reg in (0.1, 1.0, 5.0):
                        for alpha in (0.5, 1.0, 2.0):
                            model = ImplicitAdapter(AlternatingLeastSquares(
                                factors=f, regularization=reg, alpha=alpha, iterations=15,
                                random_state=0, num_threads=2)).fit(binary)
                            m = evaluate(model, binary, test)
                            if best is None or m["ndcg"] > best[1]["ndcg"]:
                                best = (f"implicit ALS best of grid (f={f} reg={reg} alpha={alpha})", m)
            results.append(_line(*best))
    als = llmrec.ALS(factors=64, regularization=1.0, alpha=1.0, random_state=0).fit(binary)
    results.append(_line("llmrec ALS f=64 reg=1", evaluate(als, binary, test)))
    ease = EASE(regularization=300.0).fit(binary)
    results.append(_line("EASE lambda=300", evaluate(ease, binary, test)))
    weighted, _, _ = to_csr(train_df, user_index=users, item_index=item_index,
                            value=recency_weights(train_df, 9.0))
    results.append(_line("recency EASE lambda=300 w=9", evaluate(ease, weighted.tocsr(), test)))

    encoder = _encoder()
    E = encoder.encode(items["text"].tolist())
    test_users = users[np.diff(test.indptr) > 0]
    rows = np.flatnonzero(np.diff(test.indptr) > 0)

    def score(name: str, rec: llmrec.Recommender, **kwargs) -> None:
        recommended = np.full((len(users), K), -1, dtype=np.int64)
        recommended[rows] = _lists(rec, test_users, item_index, **kwargs)
        m = ranking_metrics(recommended, test, K, train=binary, item_features=E)
        results.append(_line(name, m))

    start = time.perf_counter()
    rec = llmrec.Recommender(encoder=encoder, random_state=0).fit(train_df, items=items)
    print(f"  (Recommender fit {time.perf_counter() - start:.1f} s; regularization "
          f"{rec.regularization_}, weights {rec.weights_}, validation ndcg "
          f"{ {k: round(v, 4) for k, v in rec.validation_['ndcg'].items()} })")
    score("Recommender (fitted blend)", rec)
    w = rec.weights_
    ablation = {
        "ablation: behaviour only (recency fold-in)": {"behaviour": 1.0},
        "ablation: sequence only": {"sequence": 1.0},
        "ablation: transition only": {"transition": 1.0},
        "ablation: text only": {"text": 1.0},
        "ablation: behaviour + sequence": {"behaviour": 1.0, "sequence": w["sequence"]},
        "ablation: behaviour + sequence + transition": {
            "behaviour": 1.0, "sequence": w["sequence"], "transition": w["transition"]},
        "ablation: behaviour + text": {"behaviour": 1.0, "text": max(w["text"], 0.1)},
        "ablation: fitted blend with text 0.3": {**w, "text": 0.3},
    }
    for name, weights in ablation.items():
        rec.set_scenario(name, weights)
        score(name, rec, scenario=name)
    for lam in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
        score(f"Recommender, diversity={lam}", rec, diversity=lam)
    plain = llmrec.Recommender(encoder=None, random_state=0).fit(train_df, items=items)
    score("Recommender, encoder=None (no text)", plain)
    if args.markdown:
        print("\n| model | ndcg@10 | recall@10 | precision@10 | coverage | diversity |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in results:
            div = f"{r['diversity']:.4f}" if "diversity" in r else ""
            print(f"| {r['model']} | {r['ndcg']:.4f} | {r['recall']:.4f} | {r['precision']:.4f} "
                  f"| {r['coverage']:.4f} | {div} |")


def cold(args: argparse.Namespace) -> None:
    interactions, items, _ = load_movielens(args.data)
    encoder = _encoder()
    for seed in args.seeds:
        train_df, test_df = cold_item_split(interactions, 0.2, random_state=seed)
        warm = items[items["item_id"].isin(train_df["item_id"].unique())]
        cold_items = items[~items["item_id"].isin(warm["item_id"])]
        rec = llmrec.Recommender(encoder=encoder, random_state=0).fit(train_df, items=warm)
        rec.add_items(cold_items)
        users = np.sort(test_df["user_id"].unique())
        cold_index = pd.Index(cold_items["item_id"])
        test, _, _ = to_csr(test_df, user_index=users, item_index=cold_index)
        out = rec.recommend(list(users), K, allow=list(cold_index)).ids
        recommended = cold_index.get_indexer(out.ravel()).reshape(out.shape)
        m = ranking_metrics(recommended, test, K)
        # The same model without its cold signal (weight 0): what the signal adds.
        rec.set_scenario("no-cold", {**rec.weights_, "cold": 0.0})
        out = rec.recommend(list(users), K, allow=list(cold_index), scenario="no-cold").ids
        off = ranking_metrics(cold_index.get_indexer(out.ravel()).reshape(out.shape), test, K)
        rng = np.random.default_rng(seed)
        random_lists = np.argsort(rng.random((len(users), len(cold_index))), axis=1)[:, :K]
        r = ranking_metrics(random_lists, test, K)
        # Text alone: the users' text-interest vectors against the cold items' text vectors
        # (the Recommender itself leaves that signal out for items without interactions).
        interest = rec._users["text"][rec._user_map.rows(list(users), "users")]
        cold_text = rec._items.E[rec._item_map.rows(list(cold_index), "cold")]
        out_t = np.argsort(-(interest @ cold_text.T), axis=1, kind="stable")[:, :K]
        t = ranking_metrics(out_t, test, K)
        print(f"cold_item_split(0.2, random_state={seed}): {len(cold_index)} cold items, "
              f"{len(users)} users; weights {rec.weights_}, regularization {rec.regularization_}")
        report = {k: v for k, v in rec.validation_.get("cold", {}).items() if k != "ndcg"}
        print(f"  cold signal chosen at fit: {report}")
        print(f"  Recommender ndcg@10 {m['ndcg']:.4f} recall@10 {m['recall']:.4f} | without the cold signal "
              f"{off['ndcg']:.4f} | text signal only {t['ndcg']:.4f} | random {r['ndcg']:.4f}", flush=True)


def towers(args: argparse.Namespace) -> None:
    """The Recommender with and without its towers signal (``towers="auto"``): warm
    ndcg@10 on temporal_split(0.2) with text and with encoder=None, cold items
    (cold_item_split(0.2), ranked among cold items) and cold users (see _cold_users),
    per seed."""
    interactions, items, users_frame = load_movielens(args.data)
    profiles = users_frame if args.profiles == "on" else None
    encoder = _encoder()
    # torch at one thread: on a small, shared machine oversubscribed OpenMP spins.
    towers_spec = {"num_threads": 1, **({"epochs": args.epochs} if args.epochs else {}),
                   **({"text": "finetune"} if args.towers_text == "finetune" else {}),
                   **_towers_settings(args.towers_set)}
    specs = (towers_spec,) if args.towers_only else (None, towers_spec)
    train_df, test_df, users, item_index, binary, test = _temporal(interactions, items)
    test_users = users[np.diff(test.indptr) > 0]
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    for seed in args.seeds:
        encoders = [e for name, e in (("minilm", encoder), ("none", None)) if name in args.encoders]
        for enc in (encoders if "warm" in args.parts else []):
            for spec in specs:
                start = time.perf_counter()
                rec = llmrec.Recommender(encoder=enc, random_state=seed, towers=spec).fit(
                    train_df, items=items, users=profiles)
                fit_s = time.perf_counter() - start
                recommended = np.full((len(users), K), -1, dtype=np.int64)
                recommended[rows] = _lists(rec, test_users, item_index)
                m = ranking_metrics(recommended, test, K, train=binary)
                print(f"warm seed {seed} encoder={'MiniLM' if enc else None} towers={spec}: ndcg@10 "
                      f"{m['ndcg']:.4f} recall@10 {m['recall']:.4f} (fit {fit_s:.0f} s; weights "
                      f"{ {k: round(v, 3) for k, v in rec.weights_.items()} }; validation towers "
                      f"{ {k: v for k, v in rec.validation_.items() if k.startswith('towers')} }; "
                      f"serving towers {_towers_kept(rec)}; popularity prior {_prior(rec)})", flush=True)
        if "cold-users" in args.parts:
            _cold_users(interactions, items, profiles, encoder, towers_spec, seed)
        if "cold" not in args.parts:
            continue
        c_train, c_test = cold_item_split(interactions, 0.2, random_state=seed)
        warm = items[items["item_id"].isin(c_train["item_id"].unique())]
        cold_items = items[~items["item_id"].isin(warm["item_id"])]
        c_users = np.sort(c_test["user_id"].unique())
        cold_index = pd.Index(cold_items["item_id"])
        c_csr, _, _ = to_csr(c_test, user_index=c_users, item_index=cold_index)
        for spec in specs:
            rec = llmrec.Recommender(encoder=encoder, random_state=0, towers=spec).fit(c_train, items=warm)
            rec.add_items(cold_items)
            out = rec.recommend(list(c_users), K, allow=list(cold_index)).ids
            m = ranking_metrics(cold_index.get_indexer(out.ravel()).reshape(out.shape), c_csr, K)
            print(f"cold_item_split(0.2, {seed}) towers={spec}: ndcg@10 {m['ndcg']:.4f} "
                  f"(weights { {k: round(v, 3) for k, v in rec.weights_.items()} })", flush=True)


def _towers_kept(rec: llmrec.Recommender) -> str:
    """The serving towers' best epoch, how many epochs their weights average, fit wall."""
    towers = rec._publisher.current.towers
    if towers is None:
        return "none"
    return (f"best epoch {towers.best_epoch_} of {len(towers.history_)}, "
            f"{towers.averaged_epochs_} epoch(s) averaged, validation {towers.validation_ndcg_:.4f}, "
            f"fit {towers.fit_seconds_:.0f} s wall")


def _prior(rec: llmrec.Recommender) -> str:
    """The popularity prior's fitted weights by history length (or "off")."""
    v = rec.validation_
    if "popularity_lengths" not in v:
        return "off"
    return ", ".join(f"w({n}) = {w:g}" for n, w in zip(v["popularity_lengths"], v["popularity_weights"]))


def _towers_settings(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings (``--towers-set``) as towers parameters; values read as
    int, float or str."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for kind in (int, float, str):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                continue
    return out


def _cold_users(interactions: pd.DataFrame, items: pd.DataFrame, profiles: pd.DataFrame | None,
                encoder, towers_spec: dict, seed: int, known_counts: tuple[int, ...] = (1, 3, 5)
                ) -> None:
    """Cold users: ``cold_user_split(0.2, n, random_state=seed)`` holds out 20 % of the
    users entirely (the same users for every n on MovieLens, where everyone has >= 20
    interactions); each is known by their first n items (``recommend_for_history``, with
    the user's profile text from ``profiles`` when given; the fit reads the training
    users' ones) and the rest of their interactions are ranked over the whole catalogue,
    known items excluded. Against popularity (training counts)."""
    item_index = pd.Index(items["item_id"])
    train_df = cold_user_split(interactions, 0.2, max(known_counts), random_state=seed)[0]
    counts = np.bincount(item_index.get_indexer(train_df["item_id"]), minlength=len(item_index))
    known_users = None if profiles is None else profiles[profiles["user_id"].isin(train_df["user_id"])]
    models = {}
    for name, spec in (("Recommender", None), ("Recommender + towers", towers_spec)):
        start = time.perf_counter()
        models[name] = llmrec.Recommender(encoder=encoder, random_state=seed, towers=spec).fit(
            train_df, items=items, users=known_users)
        print(f"cold users seed {seed}: {name} fit {time.perf_counter() - start:.0f} s; popularity prior "
              f"{_prior(models[name])}", flush=True)
    for n in known_counts:
        _, known, rest = cold_user_split(interactions, 0.2, n, random_state=seed)
        assert set(_["user_id"]) == set(train_df["user_id"])
        users = np.sort(known["user_id"].unique())
        ordered = known.sort_values("timestamp", kind="stable")
        histories = ordered.groupby("user_id")["item_id"].agg(list)
        test, _, _ = to_csr(rest, user_index=users, item_index=item_index)
        seen, _, _ = to_csr(known, user_index=users, item_index=item_index)
        popular = np.argsort(-counts, kind="stable")
        lists = {"popularity": np.stack([popular[~np.isin(popular, seen[r].indices)][:K]
                                         for r in range(len(users))])}
        text = profiles.set_index("user_id")["text"] if profiles is not None else None
        for name, rec in models.items():
            out = np.stack([rec.recommend_for_history(histories[u], K, profile=None if text is None else text[u]).ids
                            for u in users])
            lists[name] = item_index.get_indexer(out.ravel()).reshape(out.shape)
        line = ", ".join(f"{name} {ranking_metrics(top, test, K)['ndcg']:.4f}" for name, top in lists.items())
        print(f"cold users seed {seed}, {len(users)} users known by their first {n}: ndcg@10 {line}",
              flush=True)


def cold_feed(args: argparse.Namespace) -> None:
    """New items after their first clicks, two protocols. "shelf": the cold split; the
    earliest ``--feed`` share of the cold items' test interactions goes through
    ``update`` in time order and the rest is ranked among the cold items. "catalogue":
    ``temporal_split(0.2)`` with a random 20 % of the items removed from training and
    added with ``add_items``; the earliest share of all test interactions is fed and the
    rest ranked over the whole catalogue. Each with the new items re-solved from their
    clicks (the Recommender) and with their text-prior factors frozen."""
    interactions, items, _ = load_movielens(args.data)
    encoder = _encoder()
    for seed in args.seeds:
        for protocol in ("shelf", "catalogue"):
            if protocol == "shelf":
                train_df, test_df = cold_item_split(interactions, 0.2, random_state=seed)
                new_ids = np.setdiff1d(items["item_id"], train_df["item_id"].unique())
            else:
                train_df, test_df = temporal_split(interactions, 0.2)
                rng = np.random.default_rng(seed)
                new_ids = rng.choice(items["item_id"].to_numpy(), len(items) // 5, replace=False)
                train_df = train_df[~train_df["item_id"].isin(new_ids)]
            new = items[items["item_id"].isin(new_ids)]
            fitted = llmrec.Recommender(encoder=encoder, random_state=0).fit(
                train_df, items=items[~items["item_id"].isin(new_ids)])
            fitted.add_items(new)
            saved = Path(tempfile.mkdtemp()) / "model"
            fitted.save(saved)
            ranked = pd.Index(new["item_id"] if protocol == "shelf" else items["item_id"])
            events = test_df.sort_values("timestamp", kind="stable")
            for share in args.feed:
                n_fed = int(round(share * len(events)))
                fed, rest = events.iloc[:n_fed], events.iloc[n_fed:]
                users = np.sort(rest["user_id"].unique())
                test, _, _ = to_csr(rest, user_index=users, item_index=ranked)
                line = []
                for frozen in (True, False):
                    rec = llmrec.Recommender.load(saved, encoder=encoder)
                    start = time.perf_counter()
                    # frozen: late items are not re-solved (their text-prior factors stay)
                    with mock.patch.object(updates, "refresh_items", lambda *args: None) if frozen \
                            else contextlib.nullcontext():
                        for user, item in zip(fed["user_id"].tolist(), fed["item_id"].tolist()):
                            rec.update(user, [item])
                    per_update = (time.perf_counter() - start) / max(len(fed), 1) * 1e3
                    allow = list(ranked) if protocol == "shelf" else None
                    out = rec.recommend(list(users), K, allow=allow).ids
                    m = ranking_metrics(ranked.get_indexer(out.ravel()).reshape(out.shape), test, K)
                    line.append(f"{'frozen' if frozen else 're-solved'} ndcg@10 {m['ndcg']:.4f} "
                                f"recall@10 {m['recall']:.4f} new in lists {np.isin(out, new_ids).mean():.3f} "
                                f"({per_update:.2f} ms/update)")
                print(f"seed {seed} {protocol}, {n_fed} events fed ({share:.0%}), "
                      f"{rest['item_id'].isin(new_ids).mean():.0%} of the rest on new items: "
                      + " | ".join(line), flush=True)


class StandInEncoder:
    """384-dim unit vectors from a hash of the text (latency runs only: no meaning)."""

    dim = 384
    model_name = "stand-in"

    def encode(self, texts, *, kind="document", show_progress=False):
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def latency(args: argparse.Namespace) -> None:
    interactions, items, _ = synthetic(args.users, args.items, density=20 / args.items, random_state=0)
    print(f"synthetic: {args.users:,} users x {args.items:,} items, {len(interactions):,} "
          f"interactions; 2 threads; stand-in 384-dim text vectors")
    rng = np.random.default_rng(1)
    users = rng.integers(0, args.users, args.repeats)
    for kind in args.index:
        start = time.perf_counter()
        rec = llmrec.Recommender(encoder=StandInEncoder(), random_state=0, num_threads=2, index=kind,
                                 validation=0.0, regularization=20.0).fit(interactions, items=items)
        stage1 = rec._items.index.behaviour  # the channel a request without text reads
        print(f"index={kind}: fit {time.perf_counter() - start:.1f} s; stage-1 vectors "
              f"{stage1.dim} dims", flush=True)
        flat = np.ascontiguousarray(np.hstack([rec._items.V, rec._items.V]))  # 128 float32 dims
        probe = np.ones(stage1.dim, np.float32)
        calls = {
            "Recommender.recommend, 1 user, k=10": lambda u: rec.recommend(int(u), 10),
            "  with diversity=0.3": lambda u: rec.recommend(int(u), 10, diversity=0.3),
            "  with query= (both stage-1 channels)":
                lambda u: rec.recommend(int(u), 10, query="something about topic three"),
            "  stage-1 search alone (top 256)": lambda u: stage1.search(probe, 256),
            "numpy: 100k x 128 float32 matvec + argpartition":
                lambda u: np.argpartition(-(flat @ np.ones(128, np.float32)), 10)[:10]}
        medians = {}
        # Interleave the calls user by user so that load on the shared machine hits all alike.
        times = {label: [] for label in calls}
        for u in users:
            for label, call in calls.items():
                start = time.perf_counter()
                call(u)
                times[label].append((time.perf_counter() - start) * 1e3)
        numpy_median = float(np.median(times["numpy: 100k x 128 float32 matvec + argpartition"]))
        for label, values in times.items():
            values = np.array(values[5:])
            medians[label] = float(np.median(values))
            print(f"  {label:<52} median {medians[label]:.2f} ms  p90 {np.percentile(values, 90):.2f} ms"
                  f"  ({medians[label] / numpy_median:.2f}x numpy)", flush=True)
        _write_latency(rec, users, args.items)
        _cold_latency(rec, users, args.items)


def _cold_latency(rec: llmrec.Recommender, users: np.ndarray, n_items: int, new: int = 1000) -> None:
    """What the cold signal costs a request: ``new`` items added with text (the 100 of
    _write_latency among them), then one ``recommend`` with the signal at weight 1 and at
    0 (the same model), over the whole catalogue and among the new items only (every
    candidate then has a row), interleaved user by user."""
    if rec._state.cold_kernel is None:
        print("  (no cold signal: fitted without text or priors)")
        return
    have = int((rec._items.Z.slots > 0).sum())
    extra = pd.DataFrame({"item_id": n_items * 20 + np.arange(max(new - have, 0)),
                          "text": [f"another new item {i}" for i in range(max(new - have, 0))]})
    if len(extra):
        rec.add_items(extra)
    fresh = rec.item_ids_[rec._items.Z.slots[:len(rec.item_ids_)] > 0]
    for name, weight in (("cold-on", 1.0), ("cold-off", 0.0)):
        rec.set_scenario(name, {**rec.weights_, "cold": weight})
    calls = {f"recommend, k=10, {len(fresh)} new items in the catalogue, cold signal on":
             lambda u: rec.recommend(int(u), 10, scenario="cold-on"),
             "  same, cold signal off": lambda u: rec.recommend(int(u), 10, scenario="cold-off"),
             f"recommend among the {len(fresh)} new items (allow=), cold signal on":
             lambda u: rec.recommend(int(u), 10, allow=fresh, scenario="cold-on"),
             "  same among them, cold signal off": lambda u: rec.recommend(int(u), 10, allow=fresh, scenario="cold-off")}
    times: dict[str, list[float]] = {label: [] for label in calls}
    for u in users:
        for label, call in calls.items():
            start = time.perf_counter()
            call(u)
            times[label].append((time.perf_counter() - start) * 1e3)
    m = len(rec._state.cold_kernel.landmark_rows)
    print(f"  cold signal: {m} landmarks", flush=True)
    for label, values in times.items():
        values = np.array(values[5:])
        print(f"  {label:<70} median {np.median(values):.3f} ms  p90 {np.percentile(values, 90):.3f} ms", flush=True)


def _write_latency(rec: llmrec.Recommender, users: np.ndarray, n_items: int) -> None:
    """Median cost of the calls that change the model: update (one user, two new items)
    and add_items (one new item with text)."""
    rng = np.random.default_rng(2)
    known = rec._item_map.ids
    timings = {"update(user, 2 items)": [], "add_items(1 item)": []}
    for step, u in enumerate(users[:100]):
        start = time.perf_counter()
        rec.update(int(u), known[rng.integers(0, n_items, 2)].tolist())
        timings["update(user, 2 items)"].append((time.perf_counter() - start) * 1e3)
        new = pd.DataFrame({"item_id": [n_items * 10 + step], "text": [f"a new item number {step}"]})
        start = time.perf_counter()
        rec.add_items(new)
        timings["add_items(1 item)"].append((time.perf_counter() - start) * 1e3)
    for label, values in timings.items():
        print(f"  {label:<52} median {np.median(values[5:]):.2f} ms", flush=True)


def ratings(args: argparse.Namespace) -> None:
    interactions, items, _ = load_movielens(args.data)
    train_df, test_df, users, item_index, binary, test = _temporal(interactions, items)
    liked_df = test_df[test_df["rating"] >= 4]
    liked, _, _ = to_csr(liked_df, user_index=users, item_index=item_index)
    disliked_train, _, _ = to_csr(train_df[train_df["rating"] <= 2], user_index=users,
                                  item_index=item_index)
    encoder = _encoder() if args.encoder == "minilm" else None
    print(f"MovieLens-100K ratings: {len(users)} users, {len(item_index)} items, "
          f"temporal_split(0.2); liked protocol: {len(liked_df)} of {len(test_df)} held-out "
          f"interactions rated >= 4; encoder {args.encoder}")
    test_users = users[np.diff(test.indptr) > 0]
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    table: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        for label, rule in (("ratings used", "threshold"), ("ratings ignored", "ignore")):
            start = time.perf_counter()
            rec = llmrec.Recommender(encoder=encoder, random_state=seed, rating_rule=rule)
            rec.fit(train_df, items=items)
            recommended = np.full((len(users), K), -1, dtype=np.int64)
            recommended[rows] = _lists(rec, test_users, item_index)
            hits = disliked_train[np.repeat(np.arange(len(users)), K),
                                  np.maximum(recommended.ravel(), 0)].A1 * (recommended.ravel() >= 0)
            assert not hits.any(), "a list holds an item its user rated <= 2 in training"
            watched = ranking_metrics(recommended, test, K, train=binary)
            good = ranking_metrics(recommended, liked, K, train=binary)
            for protocol, m in (("watched", watched), ("liked", good)):
                table.setdefault(f"{protocol}: {label}", {}).setdefault("ndcg", []).append(m["ndcg"])
                table[f"{protocol}: {label}"].setdefault("recall", []).append(m["recall"])
            print(f"  seed {seed} {label:<16} watched ndcg@10 {watched['ndcg']:.4f} recall@10 "
                  f"{watched['recall']:.4f} | liked ndcg@10 {good['ndcg']:.4f} recall@10 "
                  f"{good['recall']:.4f} ({good['n_users']} users)  fit+rank "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    print(f"\n| protocol: model | ndcg@10 (mean of seeds {args.seeds}) | recall@10 |")
    print("|---|---:|---:|")
    for name, m in table.items():
        print(f"| {name} | {np.mean(m['ndcg']):.4f} | {np.mean(m['recall']):.4f} |")
    for protocol in ("watched", "liked"):
        used = np.array(table[f"{protocol}: ratings used"]["ndcg"])
        ignored = np.array(table[f"{protocol}: ratings ignored"]["ndcg"])
        print(f"{protocol}: ndcg@10 ratio used / ignored {used.mean() / ignored.mean():.4f} "
              f"(per seed {np.round(used / ignored, 4).tolist()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    data = os.environ.get("LLMREC_MOVIELENS_DIR", str(REPO / "data" / "ml-100k"))
    q = sub.add_parser("quality")
    q.add_argument("--data", default=data)
    q.add_argument("--no-implicit", action="store_true")
    q.add_argument("--markdown", action="store_true")
    c = sub.add_parser("cold")
    c.add_argument("--data", default=data)
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    f = sub.add_parser("cold-feed")
    f.add_argument("--data", default=data)
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--feed", type=float, nargs="+", default=[0.01, 0.05, 0.2, 0.5])
    t = sub.add_parser("towers")
    t.add_argument("--data", default=data)
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--parts", nargs="+", default=["warm", "cold"], choices=["warm", "cold", "cold-users"])
    t.add_argument("--encoders", nargs="+", default=["minilm", "none"], choices=["minilm", "none"])
    t.add_argument("--epochs", type=int, default=0, help="towers epochs (0: auto, early stopping)")
    t.add_argument("--towers-text", default="frozen", choices=["frozen", "finetune"],
                   help="the towers' text path (finetune: the encoder's top layer trained too)")
    t.add_argument("--towers-only", action="store_true", help="skip the towers=None runs")
    t.add_argument("--towers-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="towers parameters, e.g. average=0.98 validation=0.3")
    t.add_argument("--profiles", default="off", choices=["off", "on"],
                   help="the users' profile texts given to the fits and to cold users")
    lat = sub.add_parser("latency")
    lat.add_argument("--items", type=int, default=100_000)
    lat.add_argument("--users", type=int, default=20_000)
    lat.add_argument("--repeats", type=int, default=200)
    lat.add_argument("--index", nargs="+", default=["exact", "fp16", "sq8"])
    r = sub.add_parser("ratings")
    r.add_argument("--data", default=data)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--encoder", default="none", choices=["none", "minilm"])
    import bench_scale
    import bench_scale_grow
    import bench_scale_parts
    import bench_scores

    bench_scale.add_parsers(sub)
    bench_scale_grow.add_parsers(sub)
    bench_scale_parts.add_parsers(sub)
    bench_scores.add_parsers(sub, data)
    args = parser.parse_args(argv)
    {"quality": quality, "cold": cold, "cold-feed": cold_feed, "latency": latency,
     "towers": towers, "ratings": ratings, **bench_scale.COMMANDS,
     **bench_scale_grow.COMMANDS, **bench_scale_parts.COMMANDS, **bench_scores.COMMANDS}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
