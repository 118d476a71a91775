"""llmrec's ALS against Spark MLlib's, the engine most teams run ALS on today: same data,
same cores, same objective, same factors and iterations.

    unshare -n sh -c 'ip link set lo up && python bench/bench_spark.py \\
        [--users 100000 --items 30000 --nnz 4000000 --factors 64 --iterations 5 10 \\
         --threads 2 --regularization 0.01 --alpha 1.0 --holdout 0.02]'

The objective. Spark's ``ALS(implicitPrefs=True, alpha=a, regParam=l)`` (Hu, Koren &
Volinsky) gives each stored rating r > 0 the preference 1 and the confidence 1 + a·|r|,
every other pair preference 0 and confidence 1, and multiplies the regularisation of a
row by its number of ratings (ALS-WR's weighting, in both implicit and explicit mode).
llmrec's implicit ALS uses the same preference and confidence (1 + alpha·r) and
regularises each row by ``regularization``·n^ν with ν = ``regularization_exponent``:
with ν = 1 the two minimise the same function

    Σ_{u,i} c_ui (p_ui − x_u·y_i)² + λ (Σ_u n_u ‖x_u‖² + Σ_i n_i ‖y_i‖²)

so the mapping is regParam = regularization = λ, alpha = alpha, and
regularization_exponent = 1. Spark solves every row exactly (Cholesky of the f×f normal
equations, in double precision); llmrec runs both its conjugate gradient (3 steps, its
default) and Cholesky.

Timing. Spark's fit includes start-up work (building its in/out blocks, shuffles, JIT
warm-up), so it is timed at ``--iterations n1 n2`` and the seconds per iteration are
(t(n2) − t(n1)) / (n2 − n1). llmrec's start-up is negligible: seconds per iteration are
its n2-iteration fit divided by n2. ``llmrec.distributed.ALS`` (where installed) is timed
like Spark, on a local Ray with ``--threads`` actors of one thread each.

Quality, measured by the same code for every model: the objective above on the training
matrix (float64 sums), and ndcg@10 on held-out interactions (``--holdout`` of them, drawn
at random; training items excluded; up to ``--eval-users`` users).

Data: bench_als.py's power-law matrix (counts as ratings). Spark runs ``local[threads]``
with its driver bound to 127.0.0.1; everything runs inside a network namespace with only
loopback, as above.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import llmrec  # noqa: E402
from bench_als import power_law_matrix  # noqa: E402
from llmrec import _core  # noqa: E402
from llmrec.evaluation import ranking_metrics  # noqa: E402


def split(R: sp.csr_matrix, holdout: float, seed: int = 1) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Train and test matrices: each interaction goes to test with probability ``holdout``."""
    coo = R.tocoo()
    test_mask = np.random.default_rng(seed).random(coo.nnz) < holdout
    parts = []
    for mask in (~test_mask, test_mask):
        parts.append(sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=R.shape))
    return parts[0], parts[1]


def objective(R: sp.csr_matrix, U: np.ndarray, V: np.ndarray, *, alpha: float, reg: float) -> float:
    """Σ c (p − u·v)² over all pairs + λ(Σ n_u‖u‖² + Σ n_i‖v‖²): the function both minimise."""
    U = np.ascontiguousarray(U, dtype=np.float32)
    V = np.ascontiguousarray(V, dtype=np.float32)
    data = _core.als_loss(R.indptr.astype(np.int64), R.indices.astype(np.int32),
                          R.data.astype(np.float32), U, V, _core.als_gramian(V), implicit=True,
                          regularization=0.0, alpha=alpha)
    n_u = np.diff(R.indptr).astype(np.float64)
    n_i = np.bincount(R.indices, minlength=R.shape[1]).astype(np.float64)
    U64, V64 = U.astype(np.float64), V.astype(np.float64)
    return data + reg * (float(n_u @ (U64 ** 2).sum(1)) + float(n_i @ (V64 ** 2).sum(1)))


def ndcg(train: sp.csr_matrix, test: sp.csr_matrix, U: np.ndarray, V: np.ndarray,
         users: np.ndarray) -> float:
    index = llmrec.ExactIndex(np.ascontiguousarray(V, dtype=np.float32))
    ids, _ = index.search(np.ascontiguousarray(U[users], dtype=np.float32), 10, exclude=train[users])
    return ranking_metrics(ids, test[users], 10)["ndcg"]


def spark_session(threads: int, memory: str, local_dir: str):
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(f"local[{threads}]").appName("llmrec-bench")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", memory)
            .config("spark.local.dir", local_dir)
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", str(2 * threads))
            .getOrCreate())


def spark_frame(spark, R: sp.csr_matrix, directory: str):
    """The interactions as a cached Spark DataFrame (user int, item int, rating float),
    handed over through a CSV file that the JVM reads (no pyarrow needed)."""
    import pandas as pd

    coo = R.tocoo()
    path = os.path.join(directory, "interactions.csv")
    pd.DataFrame({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                  "rating": coo.data.astype(np.float32)}).to_csv(path, index=False, header=False)
    df = spark.read.csv(path, schema="user INT, item INT, rating FLOAT").cache()
    df.count()
    return df


def spark_factors(model, n: int, f: int, column: str) -> np.ndarray:
    """A Spark factor DataFrame (id, features) as a dense (n, f) array; rows Spark never
    saw (no ratings) stay zero."""
    rows = getattr(model, column).collect()
    out = np.zeros((n, f), dtype=np.float32)
    if rows:
        out[np.array([row["id"] for row in rows])] = np.array([row["features"] for row in rows],
                                                             dtype=np.float32)
    return out


def run_spark(args, train):
    from pyspark.ml.recommendation import ALS as SparkALS

    with tempfile.TemporaryDirectory(prefix="llmrec-spark-") as local_dir:
        spark = spark_session(args.threads, args.spark_memory, local_dir)
        spark.sparkContext.setLogLevel("ERROR")
        try:
            df = spark_frame(spark, train, local_dir)
            times, model = {}, None
            for iterations in (1, *args.iterations):  # 1: warm-up (JIT, class loading), untimed
                als = SparkALS(rank=args.factors, maxIter=iterations, regParam=args.regularization,
                               alpha=args.alpha, implicitPrefs=True, userCol="user", itemCol="item",
                               ratingCol="rating", numUserBlocks=args.spark_blocks,
                               numItemBlocks=args.spark_blocks, seed=0, coldStartStrategy="nan")
                start = time.perf_counter()
                model = als.fit(df)
                times[iterations] = time.perf_counter() - start
            U = spark_factors(model, train.shape[0], args.factors, "userFactors")
            V = spark_factors(model, train.shape[1], args.factors, "itemFactors")
        finally:
            spark.stop()
    return times, U, V


def run_distributed(args, train):
    """llmrec.distributed.ALS on a local Ray (where the module exists), timed like Spark."""
    if importlib.util.find_spec("llmrec.distributed.als") is None:
        return None, "llmrec.distributed.als is not installed"
    import ray

    from llmrec import distributed as dist

    wanted = {"factors": args.factors, "regularization": args.regularization, "alpha": args.alpha,
              "regularization_exponent": 1.0, "cg_steps": 3, "random_state": 0,
              "num_blocks": args.threads, "num_actors": args.threads, "num_threads": 1,
              "threads_per_actor": 1}
    accepted = inspect.signature(dist.ALS).parameters
    params = {name: value for name, value in wanted.items() if name in accepted}
    if "regularization_exponent" not in params:
        return None, "llmrec.distributed.ALS has no regularization_exponent (objective differs)"
    ray.init(address="local", num_cpus=args.threads, include_dashboard=False, log_to_driver=False)
    try:
        times, model = {}, None
        for iterations in args.iterations:
            model = dist.ALS(iterations=iterations, **params)
            start = time.perf_counter()
            model.fit(train)
            times[iterations] = time.perf_counter() - start
        return (times, np.asarray(model.user_factors_), np.asarray(model.item_factors_),
                params), None
    finally:
        ray.shutdown()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--nnz", type=int, default=4_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, nargs=2, default=[5, 10], metavar=("N1", "N2"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--holdout", type=float, default=0.02)
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--spark-blocks", type=int, default=4, help="numUserBlocks = numItemBlocks")
    parser.add_argument("--spark-memory", default="6g")
    parser.add_argument("--skip-distributed", action="store_true")
    args = parser.parse_args(argv)
    n1, n2 = args.iterations
    if not 0 < n1 < n2:
        parser.error("--iterations needs 0 < N1 < N2")

    import pyspark

    start = time.perf_counter()
    R = power_law_matrix(args.users, args.items, args.nnz)
    train, test = split(R, args.holdout)
    rng = np.random.default_rng(2)
    with_test = np.flatnonzero(np.diff(test.indptr) > 0)
    users = np.sort(rng.choice(with_test, size=min(args.eval_users, with_test.size), replace=False))
    print(f"llmrec {llmrec.__version__}, pyspark {pyspark.__version__}, cpu cores {os.cpu_count()}, "
          f"simd {_core.active_simd_level()}")
    print(f"data: {R.shape[0]:,} users × {R.shape[1]:,} items, {R.nnz:,} interactions; "
          f"train {train.nnz:,}, held out {test.nnz:,} ({args.holdout:.0%}), ndcg@10 over "
          f"{users.size:,} users ({time.perf_counter() - start:.1f} s)")
    print(f"factors {args.factors}, iterations {n1} and {n2}, {args.threads} threads/cores; "
          f"λ = regParam = regularization = {args.regularization} scaled by each row's count "
          f"(llmrec regularization_exponent=1), alpha {args.alpha} (confidence 1 + alpha·r)")

    def quality(U, V):
        return (objective(train, U, V, alpha=args.alpha, reg=args.regularization),
                ndcg(train, test, U, V, users))

    rows = []
    for solver in ("cg", "cholesky"):
        model = llmrec.ALS(factors=args.factors, regularization=args.regularization,
                           alpha=args.alpha, iterations=n2, regularization_exponent=1.0,
                           solver=solver, cg_steps=3, random_state=0, num_threads=args.threads)
        start = time.perf_counter()
        model.fit(train)
        seconds = (time.perf_counter() - start) / n2
        rows.append((f"llmrec.ALS ({solver})", seconds, *quality(model.user_factors_,
                                                                 model.item_factors_)))
    times, U, V = run_spark(args, train)
    spark_seconds = (times[n2] - times[n1]) / (n2 - n1)
    rows.append((f"Spark MLlib ALS (fits of {n1} and {n2}: {times[n1]:.1f} s, {times[n2]:.1f} s)",
                 spark_seconds, *quality(U, V)))
    if not args.skip_distributed:
        result, why = run_distributed(args, train)
        if result is None:
            print(f"(llmrec.distributed.ALS skipped: {why})")
        else:
            dtimes, DU, DV, params = result
            rows.append((f"llmrec.distributed.ALS ({params.get('num_blocks', params.get('num_actors'))} "
                         f"actors; fits {dtimes[n1]:.1f} s, {dtimes[n2]:.1f} s)",
                         (dtimes[n2] - dtimes[n1]) / (n2 - n1), *quality(DU, DV)))
    print(f"\nafter {n2} iterations:")
    for name, seconds, loss, score in rows:
        print(f"  {name:68s} {seconds:8.3f} s/iteration  objective {loss:.6e}  ndcg@10 {score:.4f}")
    ours = rows[0]
    print(f"\nllmrec (cg) vs Spark: {spark_seconds / ours[1]:.1f}× faster per iteration; objective "
          f"ratio {ours[2] / rows[2][2]:.4f}, ndcg@10 {ours[3]:.4f} vs {rows[2][3]:.4f}")
    print(f"llmrec (cholesky) vs Spark: {spark_seconds / rows[1][1]:.1f}× faster per iteration; "
          f"objective ratio {rows[1][2] / rows[2][2]:.4f}")


if __name__ == "__main__":
    main()
