"""ALS side by side with implicit (CPU), in one process on the same data.

    python bench/bench_als.py speed   [--users 200000 --items 50000 --nnz 10000000
                                       --factors 64 128 --iterations 3 --threads 2]
    python bench/bench_als.py foldin  (fold_in latency of one user with 100 interactions)
    python bench/bench_als.py quality [--data DIR] (MovieLens-100K, temporal_split(0.2))
    python bench/bench_als.py cold    [--data DIR --factors 64 --regularization R --alpha A
                                       --prior-strength 1 --features minilm|tfidf]
                                      (cold_item_split(0.2): text priors vs none vs text only)
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


def _movielens(path: str | None):
    from llmrec import datasets

    if path is None:
        for candidate in ("data/ml-100k", os.path.join(os.path.dirname(__file__), "..", "data", "ml-100k"),
                          str(datasets.default_movielens_dir())):
            if os.path.isdir(candidate):
                path = candidate
                break
        else:
            sys.exit("--data DIR is needed (or place it with: llmrec data fetch movielens-100k)")
    return datasets.load_movielens(path)


def _matrices(train_frame, test_frame, interactions):
    """Train and test CSR matrices on the same rows/columns (all users and items)."""
    from llmrec.datasets import to_csr

    _, users, items = to_csr(interactions)
    train, _, _ = to_csr(train_frame, user_index=users, item_index=items)
    test, _, _ = to_csr(test_frame, user_index=users, item_index=items)
    return train, test, users, items


def run_quality(args: argparse.Namespace) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    from llmrec.evaluation import ImplicitAdapter, evaluate, temporal_split

    interactions, _, _ = _movielens(args.data)
    train_frame, test_frame = temporal_split(interactions, 0.2)
    train, test, _, _ = _matrices(train_frame, test_frame, interactions)
    print(f"MovieLens: {train.shape}, train {train.nnz:,}, test {test.nnz:,}; "
          "llmrec.evaluation.temporal_split(0.2), binary to_csr; evaluate(): ndcg@10, full "
          f"ranking, training items excluded; 15 iterations, CG 3 steps, {args.threads} threads")
    for f in (32, 64):
        best = {}
        for reg in (0.01, 0.1, 1.0):
            for alpha in (1.0, 5.0, 20.0):
                ours = llmrec.ALS(factors=f, regularization=reg, alpha=alpha, iterations=15,
                                  random_state=0, num_threads=args.threads).fit(train)
                a = evaluate(ours, train, test, 10)["ndcg"]
                # implicit's confidence is the value itself: give it 1 + alpha·r, so that
                # both libraries optimise the identical objective.
                conf = train.copy()
                conf.data = 1.0 + alpha * conf.data
                theirs = ImplicitAdapter(AlternatingLeastSquares(
                    factors=f, regularization=reg, alpha=1.0, iterations=15, random_state=0,
                    num_threads=args.threads)).fit(conf)
                b = evaluate(theirs, train, test, 10)["ndcg"]
                print(f"  f={f} reg={reg:<5} alpha={alpha:<5} llmrec {a:.4f}  implicit {b:.4f}")
                for name, value in (("llmrec", a), ("implicit", b)):
                    if value > best.get(name, (0.0,))[0]:
                        best[name] = (value, reg, alpha)
        (a, ra, aa), (b, rb, ab) = best["llmrec"], best["implicit"]
        print(f"f={f}: best ndcg@10 llmrec {a:.4f} (reg {ra}, alpha {aa}), implicit {b:.4f} "
              f"(reg {rb}, alpha {ab}): {(a / b - 1) * 100:+.1f} %")
    print("\nCG (3 steps) vs Cholesky, 15 iterations, loss on the training matrix (llmrec.ALS.loss):")
    for f in (32, 64):
        for reg, alpha in ((0.01, 1.0), (0.1, 5.0), (1.0, 20.0)):
            losses = {}
            for solver in ("cg", "cholesky"):
                model = llmrec.ALS(factors=f, regularization=reg, alpha=alpha, iterations=15,
                                   solver=solver, random_state=0, num_threads=args.threads)
                losses[solver] = model.fit(train).loss()
            print(f"  f={f} reg={reg:<5} alpha={alpha:<5} CG {losses['cg']:.6e}  Cholesky "
                  f"{losses['cholesky']:.6e}  CG/Cholesky {losses['cg'] / losses['cholesky']:.4f}")


class _Among:
    """A model restricted to candidate items (``allow``), with evaluate()'s interface."""

    def __init__(self, recommend, allow: np.ndarray) -> None:
        self._recommend = recommend
        self._allow = allow

    def recommend(self, user_ids, user_items, k=10, *, exclude_seen=True):
        return self._recommend(np.asarray(user_ids), user_items, k, exclude_seen, self._allow)


def _scores_model(score_rows):
    """recommend() from a function user_ids -> dense (n, n_items) scores (numpy top-k)."""
    def recommend(user_ids, user_items, k, exclude_seen, allow):
        scores = score_rows(user_ids).astype(np.float32)
        mask = np.full(scores.shape[1], -np.inf, dtype=np.float32)
        mask[allow] = 0.0
        scores = scores + mask
        if exclude_seen:
            seen = sp.csr_matrix(user_items)
            scores[seen.nonzero()] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return top.astype(np.int64), np.take_along_axis(scores, top, axis=1)
    return recommend


def _item_text_features(items_frame, item_ids, kind: str, cache: str | None) -> np.ndarray:
    """(n_items, d) features of the items' ``text``, rows in ``item_ids`` order."""
    texts = items_frame.set_index("item_id").loc[item_ids, "text"].tolist()
    if cache and os.path.exists(cache):
        E = np.load(cache)
        if E.shape[0] == len(texts):
            return E
    if kind == "minilm":
        E = llmrec.TextEncoder().encode(texts)
    else:  # TF-IDF of the text, reduced by truncated SVD to 128 dimensions, rows normalised
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        E = TruncatedSVD(128, random_state=0).fit_transform(
            TfidfVectorizer(sublinear_tf=True).fit_transform(texts))
        E /= np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    E = np.ascontiguousarray(E, dtype=np.float32)
    if cache:
        np.save(cache, E)
    return E


def run_cold(args: argparse.Namespace) -> None:
    from llmrec.evaluation import cold_item_split, evaluate

    interactions, items_frame, _ = _movielens(args.data)
    train_frame, test_frame = cold_item_split(interactions, 0.2, random_state=args.seed)
    train, test, _, item_ids = _matrices(train_frame, test_frame, interactions)
    t0 = time.perf_counter()
    E = _item_text_features(items_frame, item_ids, args.features, args.features_cache)
    seconds = time.perf_counter() - t0
    if not args.keep_item_order:
        # Ties (all-zero cold vectors) are broken by smaller item index, and MovieLens's
        # small ids are its popular films: shuffle the columns so ties carry no signal.
        perm = np.random.default_rng(12345).permutation(train.shape[1])
        train, test, E = train[:, perm].tocsr(), test[:, perm].tocsr(), E[perm]
    cold = np.flatnonzero(np.diff(train.tocsc().indptr) == 0)
    print(f"MovieLens: {train.shape}, train {train.nnz:,}, test {test.nnz:,} "
          f"({len(np.unique(test.nonzero()[0]))} users); cold_item_split(0.2, random_state="
          f"{args.seed}): {len(cold)} cold items, ranked among the cold items only (allow); "
          f"ndcg@10 by evaluate(); item features: {args.features} {E.shape} "
          f"({seconds:.1f} s); item columns {'in id order' if args.keep_item_order else 'shuffled'}")
    reg, alpha = args.regularization, args.alpha

    def report(name, recommend):
        m = evaluate(_Among(recommend, cold), train, test, 10)
        print(f"  {name:52s} ndcg@10 {m['ndcg']:.4f}  recall@10 {m['recall']:.4f}  "
              f"hit@10 {m['hit_rate']:.4f}")
        return m["ndcg"]

    def als_recommend(model):
        return lambda u, ui, k, ex, allow: model.recommend(u, ui, k, exclude_seen=ex, allow=allow,
                                                           user_items_rows="per_user")

    for f in args.factors:
        print(f"ALS factors={f}, regularization={reg}, alpha={alpha}, 15 iterations, CG")
        plain = llmrec.ALS(factors=f, regularization=reg, alpha=alpha, iterations=15,
                           random_state=0, num_threads=args.threads).fit(train)
        norms = np.linalg.norm(plain.item_factors_[cold], axis=1)
        report(f"no priors (cold vectors as fit leaves them: |v| {norms.max():.0e})",
               als_recommend(plain))
        for strength in args.prior_strength:
            model = llmrec.ALS(factors=f, regularization=reg, alpha=alpha, iterations=15,
                               prior_strength=strength, random_state=0,
                               num_threads=args.threads).fit(train, item_features=E)
            report(f"text priors, prior_strength={strength}", als_recommend(model))
    print("baselines")
    En = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    counts = np.maximum(np.diff(train.indptr), 1)[:, None]
    profile = np.asarray(train @ En) / counts  # mean train-item embedding per user
    report("text only: cos(mean train-item embedding, item)",
           _scores_model(lambda u: profile[u] @ En.T))
    rng = np.random.default_rng(0)
    report("random ranking (context)", _scores_model(
        lambda u: rng.random((len(u), train.shape[1]))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "foldin", "quality", "cold", "large"])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--nnz", type=int, default=10_000_000)
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--data", default=None)
    parser.add_argument("--seed", type=int, default=0, help="cold: cold_item_split random_state")
    parser.add_argument("--features", choices=["minilm", "tfidf"], default="minilm",
                        help="cold: item text features (MiniLM via llmrec.TextEncoder, or TF-IDF+SVD)")
    parser.add_argument("--features-cache", default=None, help="cold: .npy file to reuse features")
    parser.add_argument("--keep-item-order", action="store_true",
                        help="cold: do not shuffle item columns (ties then favour small ids)")
    parser.add_argument("--prior-strength", type=float, nargs="+", default=[1.0])
    args = parser.parse_args(argv)
    print(f"llmrec {llmrec.__version__} ({llmrec.__file__}), python {sys.version.split()[0]}")
    {"speed": run_speed, "foldin": run_foldin, "quality": run_quality, "cold": run_cold,
     "large": run_large}[args.what](args)


if __name__ == "__main__":
    main()
