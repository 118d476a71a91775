"""Quantized search, side by side: llmrec.QuantizedIndex vs faiss on the same data.

Everything runs in one process with the same thread count. For each configuration it
reports build time (training + adding), memory per vector, recall@10 against exact
search, and QPS for single queries (one call per query) and for a batch of 256.

    python bench/bench_quantized.py                      # 200k x 128, 2 threads
    python bench/bench_quantized.py --n 1000000          # the issue's size
    python bench/bench_quantized.py --quick              # smoke run
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


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
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


def ivf_systems(threads: int, k: int, partitions: int, probes_list: list[int], d: int) -> list[System]:
    """llmrec and faiss IVF + SQ8, built once each and searched at several probe counts."""
    import faiss

    ours: dict = {}
    theirs: dict = {}
    systems = []
    for i, probes in enumerate(probes_list):
        def build_ours(x, first=i == 0):
            if first:
                ours["index"] = llmrec.QuantizedIndex(x, codec="sq8", partitions=partitions,
                                                      keep_vectors=False, random_state=0,
                                                      num_threads=threads)

        def build_theirs(x, first=i == 0):
            if first:
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFScalarQuantizer(quantizer, d, partitions,
                                                      faiss.ScalarQuantizer.QT_8bit,
                                                      faiss.METRIC_INNER_PRODUCT)
                index.cp.niter = 20
                index.train(x)
                index.add(x)
                theirs["index"], theirs["quantizer"] = index, quantizer

        def search_ours(q, probes=probes):
            return ours["index"].search(q, k=k, probes=probes, rerank=0)[0]

        def search_theirs(q, probes=probes):
            theirs["index"].nprobe = probes
            return theirs["index"].search(q, k)[1]

        def memory_theirs():
            index = theirs["index"]
            return index.ntotal * (index.code_size + 8) + partitions * d * 4

        systems.append(System(f"llmrec IVF{partitions},SQ8 probes={probes}", "ivf-sq8",
                              build_ours, search_ours, lambda: ours["index"].memory_bytes()))
        systems.append(System(f"faiss IVF{partitions},SQ8 nprobe={probes}", "ivf-sq8",
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
    x, queries = clustered(args.n, args.d, args.nq, args.clusters, args.seed)
    truth = llmrec.ExactIndex(x, num_threads=args.threads).search(queries, k=args.k)[0]
    systems = []
    if "flat" in args.families:
        systems += llmrec_systems(args.threads, args.k) + faiss_systems(args.d, args.k)
    if "pq4" in args.families:
        systems += pq4_systems(args.threads, args.k, args.d, args.pq_factors)
    if args.partitions and "ivf" in args.families:
        systems += ivf_systems(args.threads, args.k, args.partitions, args.probes, args.d)
    singles = queries[:args.single_queries]
    rows = []
    for system in systems:
        start = time.perf_counter()
        system.build(x)
        build_s = time.perf_counter() - start
        ids = system.search(queries)
        recall = recall_at(ids, truth)
        batch_s = median_time(lambda: system.search(queries), args.repeats)
        single_s = median_time(lambda: [system.search(q[None, :]) for q in singles], args.repeats)
        row = {"system": system.name, "family": system.family, "build_s": build_s,
               "bytes_per_vector": system.memory() / args.n, "recall@10": recall,
               "qps_1": len(singles) / single_s, "qps_256": len(queries) / batch_s}
        rows.append(row)
        print(f"{row['system']:<38} build {build_s:7.2f}s  {row['bytes_per_vector']:7.1f} B/vec  "
              f"recall@10 {recall:.4f}  QPS@1 {row['qps_1']:9.1f}  QPS@{len(queries)} {row['qps_256']:9.1f}",
              flush=True)
        if system.family not in ("ivf-sq8", "pq4"):
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
    for probes in args.probes if args.partitions and "ivf" in args.families else []:
        ours = f"llmrec IVF{args.partitions},SQ8 probes={probes}"
        theirs = f"faiss IVF{args.partitions},SQ8 nprobe={probes}"
        a, b = by_name[ours], by_name[theirs]
        ratios[f"{ours} / {theirs}"] = {"qps_1": a["qps_1"] / b["qps_1"],
                                        "qps_256": a["qps_256"] / b["qps_256"],
                                        "build": b["build_s"] / a["build_s"]}
    print("\nratios (llmrec / faiss; build: faiss time / llmrec time)")
    for name, r in ratios.items():
        print(f"  {name:<62} QPS@1 x{r['qps_1']:.2f}  QPS@256 x{r['qps_256']:.2f}  build x{r['build']:.2f}")
    return {"n": args.n, "d": args.d, "nq": args.nq, "k": args.k, "threads": args.threads,
            "clusters": args.clusters, "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "simd": llmrec.build_info(), "rows": rows, "ratios": ratios}


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
    parser.add_argument("--families", nargs="+", default=["flat", "pq4", "ivf"],
                        choices=["flat", "pq4", "ivf"], help="which comparisons to run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.n, args.single_queries, args.repeats = 20_000, 5, 1
    args.clusters = args.clusters or max(10, args.n // 250)
    if args.partitions < 0:
        args.partitions = int(4 * np.sqrt(args.n))
    result = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)


if __name__ == "__main__":
    main()
