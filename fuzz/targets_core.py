"""Fuzz targets for every function of the private native module ``llmrec._core``.

Seeds: a scenario drives the public API over small valid data while every ``_core``
function is wrapped to record the arguments it receives, so each target starts from
calls the library really makes (plus a few direct calls for functions the Python layer
does not use). A case then takes one recorded call and mutates one to three of its
arguments with hostile values, layouts, dtypes, shapes and ids.

``core_functions()`` lists the module; ``check_coverage()`` fails when one has no seed,
so a new native function cannot be forgotten.
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Any
from collections.abc import Callable

import numpy as np

from fuzz import checks
from fuzz.gen import G

_SEEDS: dict[str, list[tuple[tuple, dict]]] = {}
_MAX_SEEDS = 64

# In-place outputs: (positional index, keyword name, dtype) that the function writes.
IN_PLACE = {
    "normalize_rows": [(0, "rows", np.float32)],
    "als_solve": [(4, "X", np.float32)],
    "sq8_encode": [(3, "blocks", np.uint8), (None, "item_scales", np.float32)],
    "pq4_encode": [(2, "blocks", np.uint8)],
    "sq8_copy_slots": [(2, "dst", np.uint8)],
    "pq4_copy_slots": [(2, "dst", np.uint8)],
}


# Methods of bound classes that take untrusted arguments: each is a target of its own.
METHODS = ("QuantizedView.search",)


def core_functions() -> list[str]:
    from llmrec import _core

    names = [n for n in dir(_core) if not n.startswith("__") and callable(getattr(_core, n))]
    return sorted(names + [m for m in METHODS if m.split(".")[0] in names])


def _keep_seed(name: str, args: tuple, kwargs: dict) -> None:
    seeds = _SEEDS.setdefault(name, [])
    if len(seeds) < _MAX_SEEDS:
        seeds.append((copy.deepcopy(args), copy.deepcopy(kwargs)))


class _RecordedView:
    """A QuantizedView built by the scenario: its searches are kept as seeds of
    ``QuantizedView.search`` whose first argument is the storage the view was built on."""

    def __init__(self, cls: Any, args: tuple, kwargs: dict) -> None:
        self._view = cls(*args, **kwargs)
        self._storage = (copy.deepcopy(args), copy.deepcopy(kwargs))

    def search(self, *args: Any, **kwargs: Any) -> Any:
        _keep_seed("QuantizedView.search", (self._storage, *args), kwargs)
        return self._view.search(*args, **kwargs)


def _record(name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _keep_seed(name, args, kwargs)
        if name == "QuantizedView":
            return _RecordedView(fn, args, kwargs)
        return fn(*args, **kwargs)
    return wrapper


def _scenario() -> None:
    """Drive the public API over small valid data (every codec, partitions, ALS, MMR,
    the Recommender's re-scoring) and call the rest of _core directly."""
    import pandas as pd
    import scipy.sparse as sp

    import llmrec
    from llmrec import _core
    from llmrec.diversity import mmr_rerank

    r = np.random.default_rng(0)
    x = r.standard_normal((300, 16)).astype(np.float32)
    q = r.standard_normal((3, 16)).astype(np.float32)
    ex = [np.array([1, 5]), np.array([], np.int64), np.array([0])]
    for metric in ("ip", "cosine"):
        idx = llmrec.ExactIndex(x, metric=metric, num_threads=2)
        idx.search(q, k=5, exclude=ex)
        idx.search(q, k=5, allow=np.arange(0, 300, 3))
        idx.search(q[0], k=5, allow=np.arange(300) % 2 == 0)
    for codec in ("sq8", "fp16", "pq4"):
        for partitions in (None, 4):
            for keep in (True, False):
                qi = llmrec.QuantizedIndex(x, codec=codec, partitions=partitions, keep_vectors=keep,
                                           random_state=1, num_threads=2)
                qi.search(q, k=5, exclude=ex, **({"rerank": 0} if not keep else {}))
                qi.search(q, k=5, allow=np.arange(0, 300, 3), **({"rerank": 0} if not keep else {}))
                qi.search(q[0], k=5, allow=np.arange(300) % 2 == 0, **({"rerank": 0} if not keep else {}))
                qi.add(x[:40])
                qi.reconstruct(np.arange(10))
    qi = llmrec.QuantizedIndex(x, codec="pq4", random_state=1)
    _core.rerank_exact(x, q, np.tile(np.arange(20, dtype=np.int64), (3, 1)), 5, 2)
    _core.pq4_tables(q, qi._codebooks)
    ui = sp.random(40, 30, density=0.2, format="csr", random_state=2, dtype=np.float32)
    ui.data[:] = 1 + r.random(ui.nnz).astype(np.float32) * 4
    for feedback, solver in (("implicit", "cg"), ("explicit", "cholesky"), ("implicit", "cholesky")):
        m = llmrec.ALS(factors=8, iterations=2, feedback=feedback, solver=solver, random_state=0,
                       regularization=0.1).fit(ui, item_features=r.standard_normal((30, 5)))
        m.loss(ui)
        m.recommend(np.arange(5), ui[:5], k=5)
    ids, scores = llmrec.ExactIndex(x).search(q, k=30)
    mmr_rerank(ids, scores, x, k=5, lambda_=0.3)
    events = pd.DataFrame({"user_id": r.integers(0, 30, 400), "item_id": r.integers(0, 50, 400)})
    rec = llmrec.Recommender(encoder=None, factors=8, iterations=2, validation=0.0,
                             random_state=0, num_threads=2).fit(events)
    rec.recommend([0, 1, 2], k=5)
    rec.recommend_for_history([1, 2, 3], k=5)
    for fn in ("compiled_simd_levels", "supported_simd_levels", "active_simd_level", "hardware_threads",
               "sq8_kernel", "pq4_kernel", "vnni_supported"):
        getattr(_core, fn)()
    _core.set_simd_level(_core.active_simd_level())
    _core.set_vnni_enabled(bool(_core.vnni_supported()))
    _core._parallel_task_sum(100, 2)
    _core._parallel_task_sum(10, 2, 3) if False else None  # raising variant is mutated in
    _core.sq8_block_bytes(16)
    _core.pq4_block_bytes(8)
    blocks = np.zeros((1, _core.pq4_block_bytes(8)), np.uint8)
    _core.pq4_decode(blocks, np.arange(4, dtype=np.int64), qi._codebooks)


def save_seeds(path: str) -> None:
    """Pickle the recorded seed calls for child processes (the scenario is slow under ASan)."""
    import pickle

    with open(path, "wb") as f:
        pickle.dump(collect_seeds(), f)


def collect_seeds(path: str | None = None) -> dict[str, list[tuple[tuple, dict]]]:
    """Record the seed calls (once per process), or read them from ``path`` (save_seeds)."""
    if _SEEDS:
        return _SEEDS
    if path and os.path.exists(path):
        import pickle

        with open(path, "rb") as f:
            _SEEDS.update(pickle.load(f))
        return _SEEDS
    from llmrec import _core

    originals = {n: getattr(_core, n) for n in core_functions() if "." not in n}
    try:
        for n, fn in originals.items():
            setattr(_core, n, _record(n, fn))
        level = _core.active_simd_level()
        _scenario()
        _core.set_simd_level(level)
    finally:
        for n, fn in originals.items():
            setattr(_core, n, fn)
    return _SEEDS


def check_coverage() -> list[str]:
    """_core functions with no seed call (and so no fuzz target)."""
    seeds = collect_seeds()
    return [n for n in core_functions() if not seeds.get(n)]


# Arguments that define how much work is asked for: mutated to invalid values only.
WORK_ARGS = {"iterations", "cg_steps", "n_tasks"}


@functools.cache
def param_names(name: str) -> tuple[str, ...]:
    """Parameter names of _core.<name>, from pybind11's signature line."""
    from llmrec import _core

    if name == "QuantizedView.search":  # the seeds' first argument: the view's storage
        return ("storage",) + _signature_names(_core.QuantizedView.search.__doc__)[1:]
    if name == "QuantizedView":
        return _signature_names(_core.QuantizedView.__init__.__doc__)[1:]
    return _signature_names(getattr(_core, name).__doc__)


def _signature_names(docstring: str | None) -> tuple[str, ...]:
    doc = (docstring or "").split("\n", 1)[0]
    inner = doc[doc.find("(") + 1:doc.rfind(") ->")]
    names, depth, current = [], 0, ""
    for ch in inner + ",":
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            part = current.strip()
            if part and part != "*":
                names.append(part.split(":")[0].strip())
            current = ""
        else:
            current += ch
    return tuple(names)


def _mutate_value(g: G, value: Any, name: str) -> Any:
    if name in WORK_ARGS and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        old, g.p = g.p, 1.0
        try:
            return g.size(int(value), name)
        finally:
            g.p = old
    if isinstance(value, np.ndarray):
        return g.mutate_array(value, name)
    if isinstance(value, bool):
        v = g.choice([not value, 2, None, "yes", np.bool_(value)])
        g.note(f"{name}={v!r}")
        return v
    if isinstance(value, (int, np.integer)):
        old, g.p = g.p, 1.0
        try:
            return g.int_(int(value), name)
        finally:
            g.p = old
    if isinstance(value, float):
        old, g.p = g.p, 1.0
        try:
            return g.float_(value, name)
        finally:
            g.p = old
    if isinstance(value, str):
        v = g.choice(["", "sq8 ", "SQ8", "fp16", "pq4", "sq8", "avx512", "scalar", "avx2", "neon", "\x00",
                      "x" * 1000])
        g.note(f"{name}={v!r}")
        return v
    if isinstance(value, list):
        v = list(value)
        if v and g.chance(0.5):
            i = g.int_between(0, len(v) - 1)
            v[i] = _mutate_value(g, v[i], f"{name}[{i}]")
        elif g.chance(0.5):
            v = v[:-1] if v else [None]
            g.note(f"{name}: list length {len(v)}")
        else:
            v = v + v[:1]
            g.note(f"{name}: list length {len(v)}")
        return v
    if value is None:
        v = g.choice([np.zeros(4, np.float32), np.zeros((2, 2), np.int64), np.arange(3, dtype=np.int64),
                      np.full(8, 255, np.uint8), 0])
        g.note(f"{name}: None -> {type(v).__name__} {getattr(v, 'dtype', '')}{getattr(v, 'shape', '')}")
        return v
    return value


def make_case(name: str, g: G) -> tuple[tuple, dict]:
    """One mutated call of _core.<name>."""
    seeds = collect_seeds()[name]
    i = g.int_between(0, len(seeds) - 1)
    args, kwargs = copy.deepcopy(seeds[i])
    g.note(f"seed call #{i} of {len(seeds)}")
    args = list(args)
    slots = [("a", j) for j in range(len(args))] + [("k", key) for key in kwargs]
    if not slots:
        if g.chance(0.5):
            args.append(g.hostile_int())
            g.note(f"extra arg {args[-1]!r}")
        return tuple(args), kwargs
    names = param_names(name)
    count = 0 if g.p == 0.0 else g.choice([1, 1, 1, 2, 3])
    for _ in range(count):
        kind, key = g.choice(slots)
        if kind == "a":
            args[key] = _mutate_value(g, args[key], names[key] if key < len(names) else f"arg{key}")
        else:
            kwargs[key] = _mutate_value(g, kwargs[key], key)
    return tuple(args), kwargs


def _arg(args: tuple, kwargs: dict, pos: int | None, key: str) -> Any:
    if key in kwargs:
        return kwargs[key]
    if pos is not None and pos < len(args):
        return args[pos]
    return None


def _rows_of(indptr: Any, ids: Any, nq: int) -> list | None:
    if not (isinstance(indptr, np.ndarray) and isinstance(ids, np.ndarray)):
        return None
    if indptr.ndim != 1 or indptr.size != nq + 1 or ids.ndim != 1 or indptr.dtype.kind not in "iu":
        return None
    if indptr[0] != 0 or (np.diff(indptr.astype(np.int64)) < 0).any() or indptr[-1] > ids.size:
        return None
    return [ids[indptr[i]:indptr[i + 1]] for i in range(nq)]


def check_result(name: str, args: tuple, kwargs: dict, result: Any, mutated: bool) -> None:
    """Raise checks.Garbage when a returning call broke its contract."""
    for pos, key, dtype in IN_PLACE.get(name, []):
        out = _arg(args, kwargs, pos, key)
        if out is None and pos is None:
            continue
        ok = (isinstance(out, np.ndarray) and out.dtype == dtype and out.flags.c_contiguous
              and out.flags.writeable and out.flags.aligned)
        if not ok:
            desc = (f"{type(out).__name__} {getattr(out, 'dtype', '')} "
                    f"{'' if not isinstance(out, np.ndarray) else dict(C=out.flags.c_contiguous, W=out.flags.writeable, A=out.flags.aligned)}")
            raise checks.Garbage(f"{name}: in-place output {key!r} accepted as {desc}: the result went "
                                 f"to a temporary copy and the caller's array is unchanged")
    if name in ("search_exact", "QuantizedView", "QuantizedView.search", "rerank_exact"):
        ids, scores = result
        if name == "search_exact":
            items, queries = args[0], args[1]
            n = items.shape[0] if isinstance(items, np.ndarray) and items.ndim == 2 else None
            ex = (_arg(args, kwargs, 3, "exclude_indptr"), _arg(args, kwargs, 4, "exclude_ids"))
            am, ai = _arg(args, kwargs, 5, "allow_mask"), _arg(args, kwargs, 6, "allow_ids")
            finite = checks.finite(items) and checks.finite(queries) and \
                np.abs(np.asarray(items, np.float64)).max(initial=0) < 1e15 and \
                np.abs(np.asarray(queries, np.float64)).max(initial=0) < 1e15
        elif name == "QuantizedView":  # the built view's search of a plain query (run_case)
            n = _arg(args, kwargs, 1, "n")
            ex, am, ai, finite = (None, None), None, None, False
        elif name == "QuantizedView.search":
            storage_args, storage_kwargs = args[0]
            n = _arg(storage_args, storage_kwargs, 1, "n")
            ex = (_arg(args, kwargs, 3, "exclude_indptr"), _arg(args, kwargs, 4, "exclude_ids"))
            am, ai = _arg(args, kwargs, 5, "allow_mask"), _arg(args, kwargs, 6, "allow_ids")
            finite = False
        else:
            vectors = args[0]
            n = vectors.shape[0] if isinstance(vectors, np.ndarray) and vectors.ndim == 2 else None
            ex, am, ai, finite = (None, None), None, None, False
            cand = args[2]
        checks.topk(ids, scores, n=n if isinstance(n, int) else None, finite_input=finite, where=name)
        rows = _rows_of(ex[0], ex[1], ids.shape[0])
        if rows is not None:
            checks.excluded_absent(ids, rows, where=f"{name} exclude")
        if isinstance(ai, np.ndarray) and ai.ndim == 1 and ai.dtype.kind in "iu":
            checks.allowed_only(ids, ai, where=f"{name} allow_ids")
        if isinstance(am, np.ndarray) and am.ndim == 1 and isinstance(n, int) and am.size == n:
            checks.allowed_only(ids, np.flatnonzero(am), where=f"{name} allow_mask")
        if name == "rerank_exact" and isinstance(cand, np.ndarray) and cand.ndim == 2:
            for row, c in zip(ids, cand):
                bad = np.setdiff1d(row[row >= 0], c)
                if bad.size:
                    raise checks.Garbage(f"rerank_exact returned non-candidates {bad[:5].tolist()}")
    elif name in ("rescore_candidates", "mmr_rerank"):
        ids, scores = result
        checks.topk(ids, scores, sorted_scores=name == "rescore_candidates", where=name)
        cand = args[0]
        if isinstance(cand, np.ndarray) and cand.ndim == 2 and ids.ndim == 2 and len(cand) == len(ids):
            for row, c in zip(ids, cand):
                bad = np.setdiff1d(row[row >= 0], c)
                if bad.size:
                    raise checks.Garbage(f"{name} returned non-candidates {bad[:5].tolist()}")
    elif name == "kmeans_assign":
        cents = args[1] if len(args) > 1 else kwargs.get("centroids")
        kc = cents.shape[0] if isinstance(cents, np.ndarray) and cents.ndim == 2 else None
        if kc is not None and ((result < 0) | (result >= kc)).any():
            raise checks.Garbage(f"kmeans_assign returned lists outside [0, {kc}): "
                                 f"{np.unique(result[(result < 0) | (result >= kc)])[:5].tolist()}")
    elif name == "kmeans_train":
        cents, assign = result
        if ((assign < 0) | (assign >= len(cents))).any():
            raise checks.Garbage("kmeans_train returned assignments outside [0, k)")


def run_case(name: str, g: G) -> Any:
    from llmrec import _core

    args, kwargs = make_case(name, g)
    if name == "QuantizedView.search":
        storage_args, storage_kwargs = args[0]
        result = _core.QuantizedView(*storage_args, **storage_kwargs).search(*args[1:], **kwargs)
    elif name == "QuantizedView":  # a view that passed its checks must search safely
        view = _core.QuantizedView(*args, **kwargs)
        result = view.search(np.ones((2, view.d), np.float32), 5)
    else:
        result = getattr(_core, name)(*args, **kwargs)
    check_result(name, args, kwargs, result, mutated=bool(g.log))
    return result
