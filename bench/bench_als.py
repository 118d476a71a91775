"""ALS side by side with implicit (CPU), in one process on the same data.

    python bench/bench_als.py speed   [--users 200000 --items 50000 --nnz 10000000
                                       --factors 64 128 --iterations 3 --threads 2]
    python bench/bench_als.py foldin  (fold_in latency of one user with 100 interactions)
    python bench/bench_als.py quality --data DIR   (MovieLens-100K, RecBole atomic files)
    python bench/bench_als.py large   (1,000,000 × 100,000 × 50,000,000, llmrec only)

Speed: both libraries run conjugate gradient with the same number of steps (3) on the
same synthetic power-law matrix with the same thread count, and both models' training
objective is evaluated afterwards by the same code (llmrec's loss), so the comparison is
"seconds per iteration at the same loss after the same iterations". implicit gets the
confidences 1 + alpha·r as its values (its confidence is the value itself), which makes
the two objectives identical.

Floor per iteration (printed beside the timings): about 10·f²·(U + I) + 32·f·N flops
and 32·f·N bytes of gathered factor rows, for U users, I items and N interactions.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice; llmrec uses no BLAS
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import llmrec  # noqa: E402
from llmrec import _core  # noqa: E402


def power_law_matrix(n_users: int, n_items: int, nnz: int, *, seed: int = 0,
                     exponent: float = 0.8) -> sp.csr_matrix:
    """A user × item count matrix with Zipf-like item popularity and user activity.

    Draws (user, item) pairs independently (users and items each with probability
    ∝ 1/rank^exponent, ranks shuffled); pairs drawn more than once become counts; exactly nnz distinct entries remain.
    """
    rng = np.random.default_rng(seed)

    def sample(n: int, size: int) -> np.ndarray:
        weights = 1.0 / np.arange(1, n + 1) ** exponent
        cdf = np.cumsum(weights / weights.sum())
        ranks = np.searchsorted(cdf, rng.random(size, dtype=np.float64))
        return rng.permutation(n).astype(np.int32)[np.minimum(ranks, n - 1)]

    # Duplicates collapse into counts: keep drawing until there are enough distinct
    # pairs, then drop a random excess so that exactly nnz remain.
    R = sp.csr_matrix((n_users, n_items), dtype=np.float32)
    while R.nnz < nnz:
        draws = int((nnz - R.nnz) * 1.3) + 1000
        batch = sp.csr_matrix((np.ones(draws, dtype=np.float32),
                               (sample(n_users, draws), sample(n_items, draws))),
                              shape=(n_users, n_items))
        R = (R + batch).tocsr()
    if R.nnz > nnz:
        drop = rng.choice(R.nnz, size=R.nnz - nnz, replace=False)
        R.data[drop] = 0
        R.eliminate_zeros()
    R.sort_indices()
    return R


def objective(R: sp.csr_matrix, U: np.ndarray, V: np.ndarray, *, alpha: float,
              regularization: float) -> float:
    """llmrec's implicit objective of any pair of factor matrices (float64 sums)."""
    U = np.ascontiguousarray(U, dtype=np.float32)
    V = np.ascontiguousarray(V, dtype=np.float32)
    G = _core.als_gramian(V)
    data = _core.als_loss(R.indptr.astype(np.int64), R.indices.astype(np.int32),
                          R.data.astype(np.float32), U, V, G, implicit=True,
                          regularization=regularization, alpha=alpha)
    return data + regularization * float((V.astype(np.float64) ** 2).sum())


def floor_text(R: sp.csr_matrix, f: int) -> str:
    U, I = R.shape
    N = R.nnz
    flops = 10 * f * f * (U + I) + 32 * f * N
    return f"floor: {flops / 1e9:.1f} GFLOP and {32 * f * N / 1e9:.1f} GB gathered per iteration"


def run_speed(args: argparse.Namespace) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    t0 = time.perf_counter()
    R = power_law_matrix(args.users, args.items, args.nnz)
    print(f"data: {R.shape[0]:,} users × {R.shape[1]:,} items, {R.nnz:,} interactions "
          f"(generated in {time.perf_counter() - t0:.1f} s); threads={args.threads}, "
          f"simd={_core.active_simd_level()}, cpu cores={os.cpu_count()}")
    alpha, reg = args.alpha, args.regularization
    confidence = R.copy()
    confidence.data = 1.0 + alpha * confidence.data  # implicit: confidence = value
    for f in args.factors:
        print(f"\nfactors={f}, iterations={args.iterations}, CG steps=3, "
              f"regularization={reg}, alpha={alpha}; {floor_text(R, f)}")
        rows = []
        model = llmrec.ALS(factors=f, regularization=reg, alpha=alpha, iterations=args.iterations,
                           cg_steps=3, random_state=0, num_threads=args.threads)
        start = time.perf_counter()
        model.fit(R)
        ours = (time.perf_counter() - start) / args.iterations
        rows.append(("llmrec", ours, objective(R, model.user_factors_, model.item_factors_,
                                                alpha=alpha, regularization=reg)))
        other = AlternatingLeastSquares(factors=f, regularization=reg, alpha=1.0,
                                        iterations=args.iterations, use_cg=True,
                                        calculate_training_loss=False, num_threads=args.threads,
                                        random_state=0)
        start = time.perf_counter()
        other.cg_steps = 3  # its default, set explicitly
        other.fit(confidence, show_progress=False)
        theirs = (time.perf_counter() - start) / args.iterations
        rows.append(("implicit", theirs, objective(R, other.user_factors, other.item_factors,
                                                    alpha=alpha, regularization=reg)))
        flops = 10 * f * f * sum(R.shape) + 32 * f * R.nnz
        for name, seconds, loss in rows:
            print(f"  {name:9s} {seconds:7.3f} s/iteration  {flops / seconds / 1e9:6.1f} GFLOP/s  "
                  f"loss {loss:.6e}")
        print(f"  speed-up llmrec vs implicit: {theirs / ours:.2f}×; loss ratio "
              f"{rows[0][2] / rows[1][2]:.4f}")


def run_foldin(args: argparse.Namespace) -> None:
    R = power_law_matrix(20000, args.items, 1_000_000)
    for f in args.factors:
        model = llmrec.ALS(factors=f, iterations=2, random_state=0, num_threads=args.threads).fit(R)
        rng = np.random.default_rng(1)
        items = np.sort(rng.choice(args.items, size=100, replace=False))
        row = sp.csr_matrix((np.ones(100, dtype=np.float32), (np.zeros(100, dtype=np.int64), items)),
                            shape=(1, args.items))
        model.fold_in(row)  # builds the cached Gramian once
        timings = []
        for _ in range(300):
            start = time.perf_counter()
            model.fold_in(row)
            timings.append(time.perf_counter() - start)
        native_timings = []
        indptr, indices, data = (row.indptr.astype(np.int64), row.indices.astype(np.int32),
                                 row.data.astype(np.float32))
        G = model._item_gram()
        X = np.zeros((1, f), dtype=np.float32)
        for _ in range(300):
            start = time.perf_counter()
            _core.als_solve(indptr, indices, data, model.item_factors_, X, G, cholesky=True,
                            num_threads=1)
            native_timings.append(time.perf_counter() - start)
        rec = []
        for _ in range(100):
            start = time.perf_counter()
            model.recommend_for_history(row, k=10)
            rec.append(time.perf_counter() - start)
        print(f"factors={f}, {args.items:,} items, one user with 100 interactions: fold_in "
              f"median {np.median(timings) * 1e3:.3f} ms (p99 {np.quantile(timings, 0.99) * 1e3:.3f}); "
              f"native solve {np.median(native_timings) * 1e3:.3f} ms; "
              f"recommend_for_history k=10 {np.median(rec) * 1e3:.3f} ms")


def run_large(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    R = power_law_matrix(1_000_000, 100_000, 50_000_000)
    print(f"data: {R.shape[0]:,} × {R.shape[1]:,}, {R.nnz:,} interactions "
          f"({time.perf_counter() - t0:.1f} s)")
    for f in args.factors:
        model = llmrec.ALS(factors=f, iterations=args.iterations, random_state=0,
                           num_threads=args.threads)
        start = time.perf_counter()
        model.fit(R)
        seconds = (time.perf_counter() - start) / args.iterations
        print(f"factors={f}: {seconds:.2f} s/iteration (llmrec, {args.threads} threads); "
              f"{floor_text(R, f)}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


def ndcg_at_k(recommended: np.ndarray, test: sp.csr_matrix, k: int) -> float:
    """Mean binary NDCG@k over users with test items (local helper, full ranking)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for u in range(test.shape[0]):
        relevant = test.indices[test.indptr[u]:test.indptr[u + 1]]
        if len(relevant) == 0:
            continue
        hits = np.isin(recommended[u, :k], relevant)
        ideal = discounts[:min(k, len(relevant))].sum()
        scores.append(float((hits * discounts).sum() / ideal))
    return float(np.mean(scores))


def run_quality(args: argparse.Namespace) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    from llmrec import datasets

    interactions, _, _ = datasets.load_movielens(args.data)
    try:
        from llmrec.evaluation import temporal_split
        train_frame, test_frame = temporal_split(interactions, 0.2)
        split_name = "llmrec.evaluation.temporal_split(0.2)"
    except ImportError:  # local stand-in: each user's last 20 % by time
        frame = interactions.sort_values(["user_id", "timestamp"], kind="stable")
        rank = frame.groupby("user_id").cumcount()
        size = frame.groupby("user_id")["item_id"].transform("size")
        n_test = np.minimum(np.floor(size * 0.2 + 0.5), size - 1)  # as temporal_split
        is_test = rank >= size - n_test
        train_frame, test_frame = frame[~is_test], frame[is_test]
        split_name = "local per-user temporal split (last 20 %)"
    users = np.unique(interactions["user_id"])
    items = np.unique(interactions["item_id"])

    def to_csr(frame):
        rows = np.searchsorted(users, frame["user_id"].to_numpy())
        cols = np.searchsorted(items, frame["item_id"].to_numpy())
        return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                             shape=(len(users), len(items)))

    train, test = to_csr(train_frame), to_csr(test_frame)
    print(f"MovieLens: {train.shape}, train {train.nnz:,}, test {test.nnz:,}; {split_name}; "
          "ndcg@10, full ranking, training items excluded")
    for f in (32, 64):
        best = {}
        for reg in (0.01, 0.1, 1.0):
            for alpha in (1.0, 5.0, 20.0):
                ours = llmrec.ALS(factors=f, regularization=reg, alpha=alpha, iterations=15,
                                  random_state=0, num_threads=args.threads).fit(train)
                ids, _ = ours.recommend(np.arange(train.shape[0]), k=10)
                a = ndcg_at_k(ids, test, 10)
                conf = train.copy()
                conf.data = 1.0 + alpha * conf.data
                theirs = AlternatingLeastSquares(factors=f, regularization=reg, alpha=1.0,
                                                 iterations=15, random_state=0,
                                                 num_threads=args.threads)
                theirs.fit(conf, show_progress=False)
                ids, _ = theirs.recommend(np.arange(train.shape[0]), train, N=10,
                                          filter_already_liked_items=True)
                b = ndcg_at_k(ids, test, 10)
                print(f"  f={f} reg={reg:<5} alpha={alpha:<5} llmrec {a:.4f}  implicit {b:.4f}")
                best["llmrec"] = max(best.get("llmrec", 0.0), a)
                best["implicit"] = max(best.get("implicit", 0.0), b)
        print(f"f={f}: best ndcg@10 llmrec {best['llmrec']:.4f}, implicit {best['implicit']:.4f} "
              f"({(best['llmrec'] / best['implicit'] - 1) * 100:+.1f} %)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "foldin", "quality", "large"])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--nnz", type=int, default=10_000_000)
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    print(f"llmrec {llmrec.__version__} ({llmrec.__file__}), python {sys.version.split()[0]}")
    {"speed": run_speed, "foldin": run_foldin, "quality": run_quality, "large": run_large}[args.what](args)


if __name__ == "__main__":
    main()
