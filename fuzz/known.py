"""Minimal reproducers of the findings in fuzz/FINDINGS.md, each run in a fresh process.

    python -m fuzz.known            # every reproducer: FIXED or STILL BROKEN (and how)
    python -m fuzz.known F03 F14    # some of them

Each snippet exits 0 when the behaviour is right (a clear ValueError/TypeError, or a
correct result) and fails otherwise (an assertion, another exception, a signal, a hang).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = """
import os, sys, tempfile, numpy as np, scipy.sparse as sp, llmrec
from llmrec import _core
OK = (ValueError, TypeError)
def rejects(fn, *a, **k):
    try:
        fn(*a, **k)
    except OK:
        return True
    return False
r = np.random.default_rng(0)
"""

# id: (issue-13 status, title, code)
CASES: dict[str, tuple[str, str, str]] = {
    "F01": ("known §2", "QuantizedIndex sq8 on finite 1e19 vectors", """
        x = (r.standard_normal((2000, 32)) * 1e19).astype(np.float32)
        try:
            llmrec.QuantizedIndex(x, codec="sq8", random_state=0)
        except OK:
            pass
    """),
    "F02": ("known §2", "ExactIndex(num_threads=2**62).search: SIGFPE", """
        x = r.standard_normal((192, 24)).astype(np.float32)
        try:
            llmrec.ExactIndex(x, num_threads=2**62).search(x[:3], k=5)
        except OK:
            pass
    """),
    "F03": ("known §2", "_core.kmeans_train(num_threads=2**62): SIGFPE", """
        x = r.standard_normal((300, 16)).astype(np.float32)
        rejects(_core.kmeans_train, x, 4, 5, 0, 2**62)   # a result (threads capped) or a clear error
    """),
    "F04": ("known §2", "_core.pq4_encode(first_slot=2**64-1): SIGSEGV", """
        x = r.standard_normal((32, 16)).astype(np.float32)
        cb = llmrec.QuantizedIndex(x, codec="pq4", random_state=0)._codebooks
        blocks = np.zeros((1, _core.pq4_block_bytes(cb.shape[0])), np.uint8)
        assert rejects(_core.pq4_encode, x[:1], cb, blocks, 2**64 - 1)
    """),
    "F05": ("known §2", "in-place outputs written to a temporary (caller's array unchanged)", """
        rows = r.standard_normal((4, 8)).astype(np.float32)
        bad = [rows.tolist(), rows.astype(">f4"), np.asfortranarray(rows), np.repeat(rows, 2, 1)[:, ::2]]
        for b in bad:
            assert rejects(_core.normalize_rows, b), type(b)
    """),
    "F06": ("known §2 (class); new entry points", "sq8_copy_slots / pq4_copy_slots accept a list or strided dst", """
        src = np.full((1, _core.sq8_block_bytes(16)), 7, np.uint8)
        dst = [[0] * src.shape[1]]
        assert rejects(_core.sq8_copy_slots, src, np.array([0]), dst, np.array([0]), 16)
        src4 = np.full((1, _core.pq4_block_bytes(8)), 7, np.uint8)
        dst4 = np.zeros((1, 2 * src4.shape[1]), np.uint8)[:, ::2]
        assert rejects(_core.pq4_copy_slots, src4, np.array([0]), dst4, np.array([0]), 8)
    """),
    "F07": ("known §4", "k not capped: ExactIndex.search(k=2**31) allocates 48 GiB", """
        x = r.standard_normal((300, 16)).astype(np.float32)
        try:
            llmrec.ExactIndex(x).search(x[:3], k=2**31)
        except OK:
            pass
    """),
    "F08": ("new entry points (§4 class)", "k not capped in mmr_rerank, rescore_candidates, rerank_exact, "
            "kmeans_train(k=10**9 centroids for 300 rows)", """
        from llmrec.diversity import mmr_rerank
        x = r.standard_normal((300, 16)).astype(np.float32)
        ids, s = llmrec.ExactIndex(x).search(x[:2], k=20)
        for call in (lambda: mmr_rerank(ids, s, x, 2**53 + 1, 0.3),
                     lambda: _core.rerank_exact(x, x[:2], ids, 2**32, 0),
                     lambda: _core.kmeans_train(x, 10**9, 5, 0, 0)):
            try:
                call()
            except OK:
                pass
    """),
    "F09": ("known §4", "ALS.partial_fit_users([2**40]) allocates 64 TiB", """
        ui = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=0)
        m = llmrec.ALS(factors=4, iterations=1, random_state=0).fit(ui)
        try:
            m.partial_fit_users([2**40], ui[:1])
        except OK:
            pass
    """),
    "F10": ("new path (§2/§3 causes)", "QuantizedIndex(metric='cosine') on tiny finite vectors (1e-40; pq4 with "
            "partitions=16, or sq8 flat): SIGSEGV/SIGABRT", """
        x = np.full((923, 18), 1e-40, np.float32)
        try:
            idx = llmrec.QuantizedIndex(x, codec="pq4", metric="cosine", partitions=16, random_state=0)
            ids, _ = idx.search(x[0], k=3)
        except OK:
            pass
        try:
            llmrec.QuantizedIndex(np.full((1433, 65), -1e-42, np.float32), codec="sq8", metric="cosine",
                                  train_size=999, random_state=0)
        except OK:
            pass
    """),
    "F11": ("known §3", "ExactIndex(metric='cosine').add(1e-40 rows) stores inf", """
        idx = llmrec.ExactIndex(np.ones((3, 4), np.float32), metric="cosine")
        try:
            idx.add(np.full((2, 4), 1e-40, np.float32))
            assert np.isfinite(idx.vectors).all()
        except OK:
            pass
    """),
    "F12": ("new", "misaligned float32 arrays reach the kernels (UBSan: misaligned load, "
            "als/kernels_scalar.cpp:38); run under tests/sanitize.sh", """
        f = r.standard_normal((50, 8)).astype(np.float32)
        raw = np.zeros(f.nbytes + 1, np.uint8)
        g = raw[1:].view(np.float32).reshape(f.shape); g[...] = f
        if "asan" not in os.environ.get("LD_PRELOAD", ""):
            sys.exit(3)        # only the sanitizer build can see it
        _core.set_simd_level("scalar")
        _core.als_gramian(g)
    """),
    "F13": ("new (§2 class: CSR structure unchecked)", "ALS.recommend(user_items=CSR with a bad indptr): "
            "RuntimeError vector::_M_default_append", """
        ui = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=0); ui.data[:] = 1
        m = llmrec.ALS(factors=4, iterations=1, random_state=0).fit(ui)
        rows = ui[:3].copy(); p = rows.indptr.copy(); p[1] = rows.nnz + 5
        bad = sp.csr_matrix((rows.data, rows.indices, p), shape=rows.shape)
        try:
            m.recommend([0, 1, 2], bad, k=5)
        except OK:
            pass
    """),
    "F14": ("known §2", "Recommender.load of a directory whose als.llmrec has a crafted indptr "
            "(checksums recomputed): SIGSEGV", """
        import pandas as pd
        from llmrec._fileformat import load_arrays, save_arrays
        ev = pd.DataFrame({"user_id": r.integers(0, 20, 200), "item_id": r.integers(0, 30, 200)})
        d = tempfile.mkdtemp() + "/rec"
        llmrec.Recommender(encoder=None, factors=4, iterations=1, validation=0.0, random_state=0).fit(ev).save(d)
        path = d + "/als.llmrec"
        meta, arrays, kv = load_arrays(path, "ALS", max_kind_version=99)
        arrays = {k: np.array(v) for k, v in arrays.items()}
        arrays["indptr"][3] = arrays["indptr"].max() + 1
        save_arrays(path, "ALS", kv, meta, arrays)
        try:
            rec = llmrec.Recommender.load(d, encoder=None)
            rec.recommend(list(ev.user_id[:3]), k=5)
        except OK:
            pass
    """),
    "F15": ("known §2", "crafted file headers/arrays raise KeyError/AttributeError, not FormatError", """
        from llmrec._fileformat import load_arrays, save_arrays
        d = tempfile.mkdtemp()
        llmrec.ExactIndex(np.ones((3, 4), np.float32)).save(d + "/a.llmrec")
        save_arrays(d + "/b.llmrec", "ExactIndex", 1, -1, {"vectors": np.ones((3, 4), np.float32)})
        save_arrays(d + "/c.llmrec", "ExactIndex", 1, {"metric": "ip"}, {})
        for name in ("b", "c"):
            assert rejects(llmrec.ExactIndex.load, f"{d}/{name}.llmrec"), name
    """),
    "F16": ("known §2", "header length 2**32-1 starts a 4 GiB read (MemoryError under a 4 GiB limit)", """
        import struct
        d = tempfile.mkdtemp(); p = d + "/a.llmrec"
        llmrec.ExactIndex(np.ones((3, 4), np.float32)).save(p)
        raw = bytearray(open(p, "rb").read()); raw[12:16] = struct.pack("<I", 2**32 - 1)
        open(p, "wb").write(raw)
        if "asan" in os.environ.get("LD_PRELOAD", ""):
            sys.exit(3)  # ASan reserves terabytes of address space: RLIMIT_AS cannot be set
        import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))
        assert rejects(llmrec.ExactIndex.load, p)
    """),
    "F17": ("known §2", "loading a FIFO hangs", """
        d = tempfile.mkdtemp(); p = d + "/fifo.llmrec"; os.mkfifo(p)
        try:
            llmrec.ALS.load(p)
        except OK + (OSError,):
            pass
    """),
    "F18": ("new", "files: Recommender.load of a damaged directory raises IndexError (persistence.py:136)", """
        import pandas as pd, glob
        from llmrec._fileformat import load_arrays, save_arrays
        ev = pd.DataFrame({"user_id": r.integers(0, 20, 200), "item_id": r.integers(0, 30, 200)})
        d = tempfile.mkdtemp() + "/rec"
        llmrec.Recommender(encoder=None, factors=4, iterations=1, validation=0.0, random_state=0).fit(ev).save(d)
        path = d + "/recommender.llmrec"
        meta, arrays, kv = load_arrays(path, "Recommender", max_kind_version=99)
        bad = 0
        for name in sorted(arrays):
            a = {k: np.array(v) for k, v in arrays.items()}
            a[name] = a[name][:0]
            save_arrays(path, "Recommender", kv, meta, a)
            try:
                llmrec.Recommender.load(d, encoder=None).recommend(list(ev.user_id[:2]), k=3)
            except OK:
                pass
            except Exception as e:
                print(name, type(e).__name__, e); bad += 1
        assert not bad
    """),
    "F19": ("new", "datasets.load_movielens: truncated movies.csv raises _csv.Error", """
        from llmrec import datasets
        d = tempfile.mkdtemp()
        open(d + "/ratings.csv", "w").write("userId,movieId,rating,timestamp\\n1,1,4,100\\n")
        open(d + "/movies.csv", "w").write('movieId,title,genres\\n1,"Toy Story (1995),Comedy\\n')
        assert rejects(datasets.load_movielens, d)
    """),
    "F20": ("new", "datasets.load_movielens: an integer field of 10**23 raises OverflowError", """
        from llmrec import datasets
        d = tempfile.mkdtemp()
        open(d + "/u.data", "w").write("1\\t1\\t4\\t100\\n99999999999999999999999\\t2\\t3\\t5\\n")
        assert rejects(datasets.load_movielens, d)
    """),
    "F21": ("new", "evaluation.leave_last_k(k=2**64-1): OverflowError", """
        import pandas as pd
        from llmrec import evaluation as ev
        f = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
        assert rejects(ev.leave_last_k, f, k=2**64 - 1)
    """),
    "F22": ("new", "diversity.intra_list_diversity with no item vectors: IndexError", """
        from llmrec.diversity import intra_list_diversity
        try:
            out = intra_list_diversity(np.array([[-1, -1]]), np.zeros((0, 4), np.float32))
        except OK:
            pass
    """),
    "F23": ("known §2 mechanism, new entry point", "_core.kmeans_assign returns -1 for inf/NaN rows (d > 16)", """
        x = np.full((5, 17), np.inf, np.float32); x[1] = np.nan
        c = r.standard_normal((3, 17)).astype(np.float32)
        try:
            a = _core.kmeans_assign(x, c)
            assert ((a >= 0) & (a < 3)).all(), a
        except OK:
            pass
    """),
    "F25": ("known §2 (class: loaders check shapes)", "ALS file with item_factors one row short (checksums "
            "recomputed) loads; partial_fit_users then SIGABRT", """
        from llmrec._fileformat import load_arrays, save_arrays
        ui = sp.random(20, 15, density=0.3, format="csr", dtype=np.float32, random_state=0); ui.data[:] = 1
        p = tempfile.mkdtemp() + "/als.llmrec"
        llmrec.ALS(factors=4, iterations=1, random_state=0).fit(ui).save(p)
        meta, arrays, kv = load_arrays(p, "ALS", max_kind_version=99)
        arrays = {k: np.array(v) for k, v in arrays.items()}
        arrays["item_factors"] = arrays["item_factors"][:-1]
        save_arrays(p, "ALS", kv, meta, arrays)
        # The fuzzer's case (python -m fuzz --repro files.als 298) crashes in partial_fit_users with
        # "malloc(): invalid size"; whether it does depends on the heap, so check the load itself.
        assert rejects(llmrec.ALS.load, p), "loaded item_factors of 14 rows with 15-column interactions"
    """),
    "F26": ("new", "float->int conversion of NaN in the quantizers (UBSan float-cast-overflow: "
            "bindings/quant.cpp:86 sq8_encode, quant/codecs.cpp:159 prepare_sq8_queries, quant/pq4.cpp:238 "
            "pq4_tables) when step has denormals, a loaded file's mid is inf, or a query is huge; "
            "sanitizer build only", """
        if "asan" not in os.environ.get("LD_PRELOAD", ""):
            sys.exit(3)
        from fuzz.targets_core import collect_seeds
        from fuzz.worker import run_one
        collect_seeds()
        for target, seed in (("core.sq8_encode", 660818276829), ("core.QuantizedView.search", 660818276911),
                             ("core.pq4_tables", 1077720992637)):
            run_one(target, seed)   # the fuzzer's cases; the sanitizer aborts on the bad conversion
    """),
    "F27": ("new", "QuantizedIndex.search with a huge finite query (3e38): pq4 (any) and sq8 with partitions "
            "return only padding; sq8 flat / fp16 with rerank return NaN scores", """
        x = r.standard_normal((300, 16)).astype(np.float32)
        q = np.full(16, 3e38, np.float32)
        bad = []
        for codec, p in (("pq4", None), ("pq4", 4), ("sq8", 4), ("sq8", None), ("fp16", None)):
            idx = llmrec.QuantizedIndex(x, codec=codec, partitions=p, random_state=0)
            try:
                ids, s = idx.search(q, k=3, rerank=4, **({"probes": 4} if p else {}))
            except OK:
                continue
            if (ids < 0).all() or np.isnan(s).any():
                bad.append((codec, p, ids.tolist(), s.tolist()))
        assert not bad, bad
    """),
    "F28": ("known §3 cause, query side", "ExactIndex(metric='cosine').search(np.full(d, 1e-40)) returns only "
            "padding", """
        x = r.standard_normal((50, 8)).astype(np.float32)
        try:
            ids, s = llmrec.ExactIndex(x, metric="cosine").search(np.full(8, 1e-40), k=3)
            assert (ids >= 0).all(), ids
        except OK:
            pass
    """),
    "F29": ("new", "evaluation.auc(scores, test, train) with a CSR train whose column index is out of range: "
            "SIGSEGV (10**6, 2**31-1), 'double free or corruption' (-1); n_cols itself is silently accepted", """
        from llmrec import evaluation as ev
        test = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=0); test.data[:] = 1
        train = sp.random(20, 30, density=0.2, format="csr", dtype=np.float32, random_state=1); train.data[:] = 1
        ind = train.indices.copy(); ind[3] = 10**6
        bad = sp.csr_matrix((train.data, ind, train.indptr), shape=train.shape)
        assert rejects(ev.auc, r.standard_normal((20, 30)).astype(np.float32), test, bad)
    """),
    "F32": ("new", "Recommender fitted with item id -1 (or loaded from a file holding one): recommend returns "
            "id -1 with a finite score, a real item read as padding", """
        import pandas as pd
        frame = pd.DataFrame({"user_id": np.repeat(np.arange(20), 3),
                              "item_id": np.resize([-1, 2, 3, 4, 5], 60)})
        try:
            ids, s = llmrec.Recommender(encoder=None, random_state=0).fit(frame).recommend(2, k=10)  # -1 unseen
            assert np.isneginf(s[ids == -1]).all(), (ids, s)
        except OK:
            pass
    """),
    "F24": ("new (debatable)", "_core.rescore_candidates returns an id twice when a candidate row repeats it", """
        V = r.standard_normal((10, 4)).astype(np.float32)
        cand = np.array([[1, 1, 2, 3]], np.int64)
        try:
            ids, s = _core.rescore_candidates(cand, [V], [V[:1]], [None], [None], np.zeros(1, np.float32), 3, 0)
            real = ids[ids >= 0]
            assert len(np.unique(real)) == len(real), ids
        except OK:
            pass
    """),
}


def run(case_id: str, timeout: float = 60) -> str:
    status, title, code = CASES[case_id]
    src = PRELUDE + textwrap.dedent(code)
    try:
        # The repo root on the path: some reproducers replay the fuzzer's own cases.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])))
        p = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        return "STILL BROKEN: hang"
    if p.returncode == 0:
        return "FIXED (or never broken here)"
    if p.returncode == 3:
        return "SKIPPED: not observable in this build (the case says why: most need tests/sanitize.sh)"
    if p.returncode < 0:
        return f"STILL BROKEN: {signal.Signals(-p.returncode).name}"
    last = [line for line in p.stderr.strip().splitlines() if line.strip()][-1:] or ["?"]
    return f"STILL BROKEN: {last[0][:200]}"


def main() -> int:
    ids = sys.argv[1:] or list(CASES)
    broken = 0
    for i in ids:
        result = run(i)
        broken += result.startswith("STILL")
        print(f"{i} [{CASES[i][0]}] {CASES[i][1]}\n    -> {result}", flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
