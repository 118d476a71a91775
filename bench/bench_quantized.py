"""Quantized search, side by side: llmrec.QuantizedIndex vs faiss on the same data.

Everything runs in one process with the same thread count. For each configuration it
reports build time (training + adding), memory per vector, recall@10 against exact
search, and QPS for single queries (one call per query) and for a batch of 256.

    python bench/bench_quantized.py                      # 200k x 128, 2 threads
    python bench/bench_quantized.py --n 1000000          # the issue's size
    python bench/bench_quantized.py --quick              # smoke run
    python bench/bench_quantized.py --dataset als --families flat ivf ivf-pq4 \
        --plot bench/quantized_als.png                   # ALS item factors, curves as PNG

Datasets: "clustered" (a mixture of anisotropic Gaussian clusters, queries from the same
mixture) and "als" (item factors of llmrec.ALS fitted on synthetic interactions with
cluster-shaped tastes and power-law popularity; queries are user factors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import llmrec


def clustered(n: int, d: int, nq: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A mixture of anisotropic Gaussian clusters; queries from the same mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    # Each cluster stretched along its own random directions with decaying scales.
    scales = (rng.uniform(0.1, 0.6, (clusters, 1)) * np.geomspace(1, 0.1, d)[None, :]).astype(np.float32)
    rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)

    def draw(count: int) -> np.ndarray:
        members = rng.integers(0, clusters, count)
        out = np.empty((count, d), np.float32)
        for start in range(0, count, 100_000):
            m = members[start:start + 100_000]
            noise = rng.standard_normal((len(m), d)).astype(np.float32) * scales[m]
            out[start:start + len(m)] = centres[m] + noise @ rotation
        return out

    return draw(n), draw(nq)


def als_factors(n: int, d: int, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ALS item factors (n, d) and user factors (nq, d) from synthetic implicit feedback.

    Items fall into n / 500 topics with Zipf popularity inside each topic; each user
    follows one to three topics and picks 40 items, 90 % from them and 10 % at random.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    users, per_user, topics = max(4 * nq, n // 5), 40, max(2, n // 500)
    topic_of = rng.integers(0, topics, n)
    order = np.argsort(topic_of, kind="stable")  # items grouped by topic
    sizes = np.bincount(topic_of, minlength=topics)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n) - np.repeat(starts, sizes)  # popularity rank inside the topic
    weight = 1.0 / (rank + 1.0) ** 0.8
    cumulative = np.cumsum(weight)  # per topic: cumulative[start:start+size] - offset
    before = np.concatenate([[0.0], cumulative])[starts]
    totals = cumulative[starts + sizes - 1] - before
    liked = rng.integers(0, topics, (users, 3))
    follows = rng.integers(1, 4, users)
    draws = users * per_user
    user = np.repeat(np.arange(users), per_user)
    topic = liked[user, (rng.random(draws) * follows[user]).astype(np.int64)]
    target = before[topic] + rng.random(draws) * totals[topic]
    position = np.minimum(np.searchsorted(cumulative, target), starts[topic] + sizes[topic] - 1)
    items = order[position]
    stray = rng.random(draws) < 0.1
    items[stray] = rng.integers(0, n, int(stray.sum()))
    matrix = sp.csr_matrix((np.ones(draws, np.float32), (user, items)), shape=(users, n))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    model = llmrec.ALS(factors=d, iterations=8, regularization=0.05, alpha=10.0, random_state=seed)
    model.fit(matrix)
    picked = rng.choice(users, nq, replace=False)
    return (np.ascontiguousarray(model.item_factors_, np.float32),
            np.ascontiguousarray(model.user_factors_[picked], np.float32))


def median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(a[:k], b)) / k for a, b in zip(ids, truth)]))


class System:
    """One configuration: a builder plus a search(queries) -> ids function."""

    def __init__(self, name: str, family: str, build, search, memory):
        self.name, self.family = name, family
        self.build, self.search, self.memory = build, search, memory


def llmrec_systems(threads: int, k: int) -> list[System]:
    systems = []
    for codec in ("sq8", "fp16"):
        for rerank in ((0, 4) if codec == "sq8" else (0,)):
            holder: dict = {}
            keep = rerank > 0

            def build(x, codec=codec, keep=keep, holder=holder):
                holder["index"] = llmrec.QuantizedIndex(x, codec=codec, keep_vectors=keep,
                                                        random_state=0, num_threads=threads)

            def search(q, rerank=rerank, holder=holder):
                return holder["index"].search(q, k=k, rerank=rerank)[0]

            systems.append(System(f"llmrec {codec}" + (f" rerank={rerank}" if rerank else ""),
                                  codec, build, search,
                                  lambda holder=holder: holder["index"].memory_bytes()))
    return systems


def pq4_systems(threads: int, k: int, d: int, factors: list[int]) -> list[System]:
    """llmrec pq4 (M = d / 2) and faiss IndexPQFastScan (same M, 4 bits) + IndexRefineFlat,
    each built once and searched at several re-ranking factors (ours: rerank=f, shortlist
    f * k; faiss: k_factor=f)."""
    import faiss

    m = d // 2
    ours: dict = {}
    theirs: dict = {}
    systems = []
    for i, factor in enumerate(factors):
        def build_ours(x, first=i == 0):
            if first:
                ours["index"] = llmrec.QuantizedIndex(x, codec="pq4", pq_subspaces=m, keep_vectors=True,
                                                      random_state=0, num_threads=threads)

        def build_theirs(x, first=i == 0):
            if first:
                base = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_INNER_PRODUCT)
                index = faiss.IndexRefineFlat(base)
                index.train(x)
                index.add(x)
                theirs["index"], theirs["base"] = index, base

        def search_ours(q, factor=factor):
            return ours["index"].search(q, k=k, rerank=factor)[0]

        def search_theirs(q, factor=factor):
            if factor == 0:
                return theirs["base"].search(q, k)[1]
            theirs["index"].k_factor = factor
            return theirs["index"].search(q, k)[1]

        def memory_ours(factor=factor):
            index = ours["index"]
            return index.memory_bytes() - (0 if factor else len(index) * d * 4)

        def memory_theirs(factor=factor):
            base = theirs["base"]
            return base.ntotal * m // 2 + (base.ntotal * d * 4 if factor else 0)

        label = f"rerank={factor}" if factor else "rerank=0"
        systems.append(System(f"llmrec pq4 M={m} {label}", "pq4", build_ours, search_ours, memory_ours))
        systems.append(System(f"faiss PQ{m}x4fs" + (f" + RefineFlat k_factor={factor}" if factor else ""),
                              "pq4", build_theirs, search_theirs, memory_theirs))
    return systems


def ivf_systems(threads: int, k: int, partitions: int, probes_list: list[int], d: int,
                codec: str = "sq8", factor: int = 0) -> list[System]:
    """llmrec and faiss inverted files, built once each and searched at several probe counts.

    codec "sq8": QuantizedIndex(codec="sq8", partitions) vs IndexIVFScalarQuantizer(QT_8bit),
    no re-ranking. codec "pq4": QuantizedIndex(codec="pq4", pq_subspaces=d / 2, partitions)
    with rerank=factor vs IndexIVFPQFastScan(M = d / 2, 4 bits) in IndexRefineFlat with
    k_factor=factor (both re-score factor * k candidates exactly).
    """
    import faiss

    m = d // 2
    ours: dict = {}
    theirs: dict = {}
    systems = []
    label = "SQ8" if codec == "sq8" else f"PQ{m}x4fs" + (f" rerank={factor}" if factor else "")
    family = f"ivf-{codec}"
    for i, probes in enumerate(probes_list):
        def build_ours(x, first=i == 0):
            if first:
                extra = {"pq_subspaces": m} if codec == "pq4" else {}
                ours["index"] = llmrec.QuantizedIndex(x, codec=codec, partitions=partitions,
                                                      keep_vectors=codec == "pq4" and factor > 0,
                                                      random_state=0, num_threads=threads, **extra)

        def build_theirs(x, first=i == 0):
            if first:
                quantizer = faiss.IndexFlatIP(d)
                if codec == "sq8":
                    ivf = faiss.IndexIVFScalarQuantizer(quantizer, d, partitions,
                                                        faiss.ScalarQuantizer.QT_8bit,
                                                        faiss.METRIC_INNER_PRODUCT)
                else:
                    ivf = faiss.IndexIVFPQFastScan(quantizer, d, partitions, m, 4,
                                                   faiss.METRIC_INNER_PRODUCT)
                ivf.cp.niter = 20
                index = ivf
                if factor:
                    index = faiss.IndexRefineFlat(ivf)
                    index.k_factor = factor
                index.train(x)
                index.add(x)
                theirs["index"], theirs["ivf"], theirs["quantizer"] = index, ivf, quantizer

        def search_ours(q, probes=probes):
            return ours["index"].search(q, k=k, probes=probes, rerank=factor)[0]

        def search_theirs(q, probes=probes):
            theirs["ivf"].nprobe = probes
            return theirs["index"].search(q, k)[1]

        def memory_theirs():
            ivf = theirs["ivf"]
            return (ivf.ntotal * (ivf.code_size + 8) + partitions * d * 4
                    + (ivf.ntotal * d * 4 if factor else 0))

        systems.append(System(f"llmrec IVF{partitions},{label} probes={probes}", family,
                              build_ours, search_ours, lambda: ours["index"].memory_bytes()))
        systems.append(System(f"faiss IVF{partitions},{label} nprobe={probes}", family,
                              build_theirs, search_theirs, memory_theirs))
    return systems


def faiss_systems(d: int, k: int) -> list[System]:
    import faiss

    systems = []

    def flat_sq(qtype, name, family, refine_factor=None):
        holder: dict = {}

        def build(x):
            index = faiss.IndexScalarQuantizer(d, qtype, faiss.METRIC_INNER_PRODUCT)
            if refine_factor:
                index = faiss.IndexRefineFlat(index)
                index.k_factor = refine_factor
            index.train(x)
            index.add(x)
            holder["index"] = index

        def search(q):
            return holder["index"].search(q, k)[1]

        def memory():
            index = holder["index"]
            base = faiss.downcast_index(index.base_index) if refine_factor else index
            extra = index.ntotal * d * 4 if refine_factor else 0
            return base.sa_code_size() * base.ntotal + extra

        systems.append(System(name, family, build, search, memory))

    flat_sq(faiss.ScalarQuantizer.QT_8bit, "faiss SQ8 (QT_8bit)", "sq8")
    flat_sq(faiss.ScalarQuantizer.QT_8bit, "faiss SQ8 + RefineFlat k_factor=4", "sq8", refine_factor=4)
    flat_sq(faiss.ScalarQuantizer.QT_fp16, "faiss SQfp16", "fp16")
    return systems


def run(args) -> dict:
    import faiss

    faiss.omp_set_num_threads(args.threads)
    if args.dataset == "als":
        x, queries = als_factors(args.n, args.d, args.nq, args.seed)
    else:
        x, queries = clustered(args.n, args.d, args.nq, args.clusters, args.seed)
    truth = llmrec.ExactIndex(x, num_threads=args.threads).search(queries, k=args.k)[0]
    systems = []
    if "flat" in args.families:
        systems += llmrec_systems(args.threads, args.k) + faiss_systems(args.d, args.k)
    if "pq4" in args.families:
        systems += pq4_systems(args.threads, args.k, args.d, args.pq_factors)
    if args.partitions and "ivf" in args.families:
        systems += ivf_systems(args.threads, args.k, args.partitions, args.probes, args.d)
    if args.partitions and "ivf-pq4" in args.families:
        systems += ivf_systems(args.threads, args.k, args.partitions, args.probes, args.d,
                               codec="pq4", factor=args.ivf_pq_factor)
    singles = queries[:args.single_queries]
    # One thread on both sides: the process's CPU time is the searches' own, which the
    # waits of a loaded machine do not inflate.
    clock = time.process_time if args.cpu_time else time.perf_counter
    rows = []
    for system in systems:
        start = time.perf_counter()
        system.build(x)
        build_s = time.perf_counter() - start
        ids = system.search(queries)
        recall = recall_at(ids, truth)
        batch_s = median_time(lambda: system.search(queries), args.repeats, clock)
        single_s = median_time(lambda: [system.search(q[None, :]) for q in singles], args.repeats, clock)
        row = {"system": system.name, "family": system.family, "build_s": build_s,
               "bytes_per_vector": system.memory() / args.n, "recall@10": recall,
               "qps_1": len(singles) / single_s, "qps_256": len(queries) / batch_s}
        rows.append(row)
        print(f"{row['system']:<38} build {build_s:7.2f}s  {row['bytes_per_vector']:7.1f} B/vec  "
              f"recall@10 {recall:.4f}  QPS@1 {row['qps_1']:9.1f}  QPS@{len(queries)} {row['qps_256']:9.1f}",
              flush=True)
        if system.family not in ("ivf-sq8", "ivf-pq4", "pq4"):
            system.build = system.search = None  # free the index before the next one
    by_name = {r["system"]: r for r in rows}
    ratios = {}
    for ours, theirs in [("llmrec sq8", "faiss SQ8 (QT_8bit)"),
                         ("llmrec sq8 rerank=4", "faiss SQ8 + RefineFlat k_factor=4"),
                         ("llmrec fp16", "faiss SQfp16")]:
        if ours in by_name and theirs in by_name:
            a, b = by_name[ours], by_name[theirs]
            ratios[f"{ours} / {theirs}"] = {"qps_1": a["qps_1"] / b["qps_1"],
                                            "qps_256": a["qps_256"] / b["qps_256"],
                                            "build": b["build_s"] / a["build_s"]}
    for factor in args.pq_factors if "pq4" in args.families else []:
        ours = f"llmrec pq4 M={args.d // 2} rerank={factor}"
        theirs = f"faiss PQ{args.d // 2}x4fs" + (f" + RefineFlat k_factor={factor}" if factor else "")
        a, b = by_name[ours], by_name[theirs]
        ratios[f"{ours} / {theirs}"] = {"qps_1": a["qps_1"] / b["qps_1"],
                                        "qps_256": a["qps_256"] / b["qps_256"],
                                        "build": b["build_s"] / a["build_s"]}
    pq_label = f"PQ{args.d // 2}x4fs" + (f" rerank={args.ivf_pq_factor}" if args.ivf_pq_factor else "")
    for family, label in (("ivf", "SQ8"), ("ivf-pq4", pq_label)):
        if not (args.partitions and family in args.families):
            continue
        first = args.probes[0]  # the build is timed on the first configuration only
        build_ratio = (by_name[f"faiss IVF{args.partitions},{label} nprobe={first}"]["build_s"]
                       / by_name[f"llmrec IVF{args.partitions},{label} probes={first}"]["build_s"])
        for probes in args.probes:
            ours = f"llmrec IVF{args.partitions},{label} probes={probes}"
            theirs = f"faiss IVF{args.partitions},{label} nprobe={probes}"
            a, b = by_name[ours], by_name[theirs]
            ratios[f"{ours} / {theirs}"] = {"qps_1": a["qps_1"] / b["qps_1"],
                                            "qps_256": a["qps_256"] / b["qps_256"],
                                            "build": build_ratio}
    print("\nratios (llmrec / faiss; build: faiss time / llmrec time)")
    for name, r in ratios.items():
        print(f"  {name:<62} QPS@1 x{r['qps_1']:.2f}  QPS@256 x{r['qps_256']:.2f}  build x{r['build']:.2f}")
    return {"dataset": args.dataset, "n": args.n, "d": args.d, "nq": args.nq, "k": args.k,
            "threads": args.threads, "clusters": args.clusters, "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "simd": llmrec.build_info(), "rows": rows, "ratios": ratios}


def plot(result: dict, path: str) -> None:
    """Recall@10 against QPS (one query per call, and batches) for every family, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    groups: dict = {}
    for row in result["rows"]:
        system = row["system"]
        library = system.split()[0]
        family = row["family"]
        # One curve per (library, family, configuration without its probe count).
        key = (library, family, system.rsplit(" probes=", 1)[0].rsplit(" nprobe=", 1)[0].split(" ", 1)[1])
        groups.setdefault(key, []).append(row)
    for (library, family, label), rows in sorted(groups.items()):
        style = "-o" if library == "llmrec" else "--s"
        for ax, metric in zip(axes, ("qps_1", "qps_256")):
            ax.plot([r[metric] for r in rows], [r["recall@10"] for r in rows], style, label=f"{library} {label}",
                    markersize=4)
    for ax, title in zip(axes, ("one query per call", f"batches of {result['nq']} queries")):
        ax.set_xscale("log")
        ax.set_xlabel("queries per second (log)")
        ax.set_ylabel("recall@10")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{result['dataset']} {result['n']:,} x {result['d']}, k={result['k']}, "
                 f"{result['threads']} threads (llmrec solid, faiss dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--nq", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=0, help="default n / 250")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--single-queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=-1, help="IVF lists; default 4 * sqrt(n), 0 = skip")
    parser.add_argument("--probes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--pq-factors", type=int, nargs="+", default=[0, 4, 8, 16],
                        help="pq4 re-ranking factors (ours: rerank, faiss: k_factor)")
    parser.add_argument("--families", nargs="+", default=["flat", "pq4", "ivf", "ivf-pq4"],
                        choices=["flat", "pq4", "ivf", "ivf-pq4"], help="which comparisons to run")
    parser.add_argument("--ivf-pq-factor", type=int, default=16,
                        help="IVF + pq4 re-ranking factor (ours: rerank, faiss: RefineFlat k_factor)")
    parser.add_argument("--dataset", choices=["clustered", "als"], default="clustered")
    parser.add_argument("--plot", help="write a recall-vs-QPS PNG here")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time searches by the process's CPU time (needs --threads 1): for a loaded machine")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1 (CPU time adds up every thread's)")
    if args.quick:
        args.n, args.single_queries, args.repeats = 20_000, 5, 1
    if args.dataset == "als" and args.d == 128:
        args.d = 64  # ALS factors: 64 unless asked otherwise
    args.clusters = args.clusters or max(10, args.n // 250)
    if args.partitions < 0:
        args.partitions = int(4 * np.sqrt(args.n))
    result = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()
