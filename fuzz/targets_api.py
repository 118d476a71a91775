"""Fuzz targets for llmrec's public classes and functions.

Each target builds small inputs from a seeded :class:`fuzz.gen.G` (valid by default,
hostile with the case's probability per argument), calls one public entry point and
checks what comes back against the documented contract (fuzz.checks).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from fuzz import checks
from fuzz.gen import G

# ---------------------------------------------------------------- helpers


def _matrix(g: G, name: str, n_range=(1, 400), d_range=(1, 64)) -> tuple[Any, np.ndarray]:
    n = g.int_between(*n_range)
    d = g.choice([1, 2, 3, 4, 7, 8, 16, 17, 24, 32, 64, 128]) if g.chance(0.5) else g.int_between(*d_range)
    x = g.values((n, d), name)
    return g.layout(x, name), x


def _queries(g: G, d: int, name: str = "queries") -> Any:
    shape = (d,) if g.chance(0.3) else (g.int_between(1, 8), d)
    q = g.values(shape, name)
    return g.layout(q, name)


def _k(g: G, n: int) -> Any:
    valid = g.choice([1, 2, 5, 10, max(1, n), n + 7])
    return g.int_(valid, "k")


def _exclude(g: G, nq: int, n: int, single: bool) -> Any:
    if not g.chance(0.4):
        return None
    form = g.choice(["lists", "csr", "single"])
    if form == "single" and single:
        return g.ids(n, g.int_between(0, 5), "exclude")
    rows = [g.ids(n, g.int_between(0, 6), f"exclude[{i}]", sort=not g.chance(0.2)) for i in range(nq)]
    if g.chance(0.1):
        rows = rows[:-1] if rows else [np.array([0])]
        g.note("exclude: wrong number of rows")
    if form == "csr":
        import scipy.sparse as sp
        data, indices, indptr = [], [], [0]
        for r in rows:
            indices.extend(r.tolist()); data.extend([1.0] * len(r)); indptr.append(len(indices))
        try:
            return sp.csr_matrix((np.array(data, np.float32), np.array(indices, np.int64),
                                  np.array(indptr, np.int64)), shape=(len(rows), max(n, 1)))
        except Exception:
            return rows
    return rows


def _allow(g: G, n: int) -> Any:
    if not g.chance(0.3):
        return None
    if g.chance(0.5):
        mask = g.r.random(n) < g.choice([0.0, 0.1, 0.5, 1.0])
        if g.chance():
            mask = mask[:-1] if mask.size else np.ones(3, bool)
            g.note("allow: mask of wrong length")
        return mask
    return g.ids(n, g.int_between(0, 20), "allow")


def _excluded_rows(exclude: Any, nq: int, single: bool) -> list | None:
    if exclude is None:
        return None
    try:
        import scipy.sparse as sp
        if sp.issparse(exclude):
            c = exclude.tocsr()
            return [c.indices[c.indptr[i]:c.indptr[i + 1]] for i in range(nq)]
        if single and isinstance(exclude, np.ndarray):
            return [exclude]
        return [np.asarray(r) for r in exclude]
    except Exception:
        return None


def _check_search(ids, scores, *, n: int, exclude: Any, allow: Any, queries: Any, finite_ok: bool,
                  where: str, sorted_scores: bool = True) -> None:
    ids2 = np.atleast_2d(ids)
    checks.topk(ids, scores, n=n, finite_input=finite_ok, where=where, sorted_scores=sorted_scores)
    rows = _excluded_rows(exclude, ids2.shape[0], np.ndim(ids) == 1)
    if rows is not None and len(rows) == ids2.shape[0]:
        checks.excluded_absent(ids2, rows, where=f"{where} exclude")
    if allow is not None:
        a = np.asarray(allow)
        allowed = np.flatnonzero(a) if a.dtype == bool else a
        checks.allowed_only(ids2, allowed, where=f"{where} allow")


def _check_not_empty(ids, applies: bool, where: str) -> None:
    """An unfiltered search over finite vectors returns at least one item per query."""
    if applies and (np.atleast_2d(ids)[:, 0] == -1).any():
        raise checks.Garbage(f"{where}: only padding for an unfiltered query over finite vectors")


def _tame(x: Any, limit: float = 1e15) -> bool:
    """Finite and small enough that float32 dot products cannot overflow to inf - inf."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except Exception:
        return False
    return bool(np.isfinite(a).all() and np.abs(a).max(initial=0) < limit and
                (a == 0).all() | (np.abs(a[a != 0]).min(initial=1) > 1e-30))


# ---------------------------------------------------------------- indexes


def exact_index(g: G) -> None:
    import llmrec

    vectors, x = _matrix(g, "vectors")
    metric = g.choice(["ip", "cosine"]) if not g.chance(0.05) else "l2"
    g.note(f"ExactIndex(metric={metric!r}) on {type(vectors).__name__} {getattr(vectors, 'dtype', '')}"
           f"{np.shape(vectors)}")
    index = llmrec.ExactIndex(vectors, metric=metric, num_threads=g.threads())
    n, d = len(index), index.dim
    if g.chance(0.3):
        extra = g.layout(g.values((g.int_between(0, 20), d), "add"), "add")
        index.add(extra)
        n = len(index)
    q = _queries(g, d)
    single = np.ndim(q) == 1
    nq = 1 if np.ndim(q) < 2 else np.shape(q)[0]
    exclude, allow = _exclude(g, nq, n, single), _allow(g, n)
    k = _k(g, n)
    ids, scores = index.search(q, k, exclude=exclude, allow=allow)
    finite_in = checks.finite(index.vectors) and checks.finite(q)
    _check_search(ids, scores, n=n, exclude=exclude, allow=allow, queries=q,
                  finite_ok=finite_in, where="ExactIndex.search")
    _check_not_empty(ids, finite_in and exclude is None and allow is None, "ExactIndex.search")
    if metric == "cosine" and not np.isfinite(index.vectors).all() and _tame(x, 3.4e38):
        raise checks.Garbage("ExactIndex(metric='cosine') stored non-finite vectors for finite input")


def quantized_index(g: G) -> None:
    import llmrec

    codec = g.choice(["sq8", "fp16", "pq4"])
    n_lo = 16 if codec == "pq4" else 1
    vectors, x = _matrix(g, "vectors", n_range=(n_lo, 3000), d_range=(1, 96))
    partitions = None if g.chance(0.5) else g.int_(g.choice([1, 2, 4, 16]), "partitions")
    kw: dict[str, Any] = {}
    if codec == "pq4" and g.chance(0.4):
        d = np.shape(vectors)[-1] if np.ndim(vectors) else 1
        kw["pq_subspaces"] = g.int_(g.choice([m for m in (1, 2, 4, 8, d) if m > 0 and d % m == 0] or [1]), "pq_subspaces")
    if g.chance(0.2):
        kw["train_size"] = g.int_(g.choice([16, 50, 1000]), "train_size")
    keep = g.chance(0.7) if not g.chance(0.05) else "yes"
    g.note(f"QuantizedIndex(codec={codec!r}, partitions={partitions!r}, {kw}) on "
           f"{type(vectors).__name__} {getattr(vectors, 'dtype', '')}{np.shape(vectors)}")
    index = llmrec.QuantizedIndex(vectors, codec=codec, metric=g.choice(["ip", "cosine"]),
                                  partitions=partitions, keep_vectors=keep,
                                  random_state=g.int_between(0, 1000), num_threads=g.threads(), **kw)
    g.note(f"built {index!r}")
    n, d = len(index), index.dim
    if g.chance(0.3):
        index.add(g.layout(g.values((g.int_between(0, 50), d), "add"), "add"))
        n = len(index)
    what = g.choice(["search", "search", "search", "reconstruct", "memory"])
    if what == "reconstruct":
        index.reconstruct(g.ids(n, g.int_between(0, 10), "reconstruct ids"))
        return
    if what == "memory":
        index.memory_bytes()
        return
    q = _queries(g, d)
    single = np.ndim(q) == 1
    nq = 1 if np.ndim(q) < 2 else np.shape(q)[0]
    exclude, allow = _exclude(g, nq, n, single), _allow(g, n)
    skw: dict[str, Any] = {}
    if partitions is not None and g.chance(0.5):
        skw["probes"] = g.int_(g.choice([1, 2, 4, 100]), "probes")
    if g.chance(0.4):
        skw["rerank"] = g.int_(g.choice([0, 1, 4]) if keep is True else 0, "rerank")
    elif keep is not True:
        skw["rerank"] = 0
    ids, scores = index.search(q, _k(g, n), exclude=exclude, allow=allow, **skw)
    finite_in = checks.finite(x) and checks.finite(q)
    _check_search(ids, scores, n=n, exclude=exclude, allow=allow, queries=q, finite_ok=finite_in,
                  where=f"QuantizedIndex({codec}).search")
    # Issue 13 §3: an unfiltered search over finite vectors must find something.
    _check_not_empty(ids, finite_in and exclude is None and allow is None, f"QuantizedIndex({codec}).search")


# ---------------------------------------------------------------- ALS


def _interactions(g: G, n_users: int, n_items: int, name: str = "user_items") -> Any:
    import scipy.sparse as sp

    density = g.choice([0.0, 0.05, 0.2, 0.6])
    m = sp.random(n_users, n_items, density=density, format="csr", dtype=np.float32,
                  random_state=int(g.r.integers(2**31)))
    m.data[:] = 1 + np.floor(g.r.random(m.nnz) * 5)
    if g.chance():
        what = g.choice(["data", "indices", "indptr", "dense", "coo", "dtype", "negative", "shape", "unsorted"])
        g.note(f"{name}: {what}")
        if what == "data" and m.nnz:
            m.data = g.poison_values(m.data, f"{name}.data")
        elif what == "indices" and m.nnz:
            ind = m.indices.copy()
            ind[g.int_between(0, m.nnz - 1)] = g.choice([n_items, -1, 10**6, 2**31 - 1])
            m = sp.csr_matrix((m.data, ind, m.indptr), shape=m.shape)
        elif what == "indptr" and m.nnz:
            p = m.indptr.copy()
            p[g.int_between(1, len(p) - 1)] = g.choice([m.nnz + 5, 0, -1])
            try:
                m = sp.csr_matrix((m.data, m.indices, p), shape=m.shape)
            except Exception:
                pass
        elif what == "dense":
            return m.toarray()
        elif what == "coo":
            return m.tocoo()
        elif what == "dtype":
            return m.astype(g.choice([np.float64, np.int64, np.bool_, np.float16]))
        elif what == "negative" and m.nnz:
            m.data[0] = -m.data[0]
        elif what == "shape":
            return m[:, :-1] if n_items > 1 else m
        elif what == "unsorted" and m.nnz > 1:
            m.indices = m.indices[::-1].copy()
            m.has_sorted_indices = False
    return m


def _fitted_als(g: G):
    import llmrec

    n_users, n_items = g.int_between(1, 60), g.int_between(1, 60)
    ui = _interactions(g, n_users, n_items)
    model = llmrec.ALS(
        factors=g.size(g.choice([1, 2, 8, 16]), "factors"),
        regularization=g.float_(g.choice([0.0, 0.01, 1.0]), "regularization"),
        alpha=g.float_(g.choice([0.5, 1.0, 40.0]), "alpha"),
        iterations=g.size(g.choice([0, 1, 2]), "iterations"),
        feedback=g.choice(["implicit", "explicit"]), solver=g.choice(["cg", "cholesky"]),
        cg_steps=g.size(g.choice([1, 3]), "cg_steps"),
        prior_strength=g.float_(1.0, "prior_strength"),
        random_state=g.int_between(0, 100), num_threads=g.threads())
    kw = {}
    if g.chance(0.3):
        kw["item_features"] = g.layout(g.values((n_items, g.int_between(1, 8)), "item_features"), "item_features")
    if g.chance(0.2):
        kw["user_features"] = g.layout(g.values((n_users, g.int_between(1, 8)), "user_features"), "user_features")
    g.note(f"ALS{model.get_params()} fit on {type(ui).__name__} {np.shape(ui)}")
    model.fit(ui, **kw)
    for a in ("user_factors_", "item_factors_"):
        f = getattr(model, a)
        if not np.isfinite(f).all() and not g.log:
            raise checks.Garbage(f"ALS.fit on valid input produced non-finite {a}")
    return model, ui


def als(g: G) -> None:
    model, ui = _fitted_als(g)
    nu, ni = model.n_users_, model.n_items_
    what = g.choice(["recommend", "recommend_rows", "recommend_for_history", "fold_in", "fold_in_items",
                     "partial_fit_users", "partial_fit_items", "similar_items", "similar_users", "predict",
                     "explain", "loss"])
    g.note(f"ALS.{what}")
    if what in ("recommend", "recommend_rows"):
        users = g.ids(nu, g.int_between(1, 5), "user_ids", sort=False)
        user_items = None if what == "recommend" else _interactions(g, len(users), ni, "user_items rows")
        allow = _allow(g, ni)
        ids, scores = model.recommend(users, user_items, k=_k(g, ni), allow=allow,
                                      exclude_seen=g.chance(0.8))
        checks.topk(ids, scores, n=ni, where="ALS.recommend")
    elif what == "recommend_for_history":
        rows = _interactions(g, g.int_between(1, 5), ni, "history_rows")
        ids, scores = model.recommend_for_history(rows, k=_k(g, ni), allow=_allow(g, ni))
        checks.topk(ids, scores, n=ni, where="ALS.recommend_for_history")
    elif what == "fold_in":
        model.fold_in(_interactions(g, g.int_between(0, 5), ni, "history_rows"))
    elif what == "fold_in_items":
        model.fold_in_items(_interactions(g, g.int_between(0, 5), nu, "item_rows"))
    elif what == "partial_fit_users":
        users = g.ids(nu + 3, g.int_between(1, 4), "user_ids")
        if g.chance(0.2):
            users = np.array([g.choice([10**9, 2**40, -1, nu + 100])])
            g.note(f"user_ids={users.tolist()}")
        model.partial_fit_users(users, _interactions(g, len(users), ni, "history_rows"))
        model.recommend(users[:1] if (users[:1] < model.n_users_).all() else [0], k=3)
    elif what == "partial_fit_items":
        items = g.ids(ni + 3, g.int_between(1, 4), "item_ids")
        rows = None if g.chance(0.3) else _interactions(g, len(items), nu, "item_rows")
        model.partial_fit_items(items, rows)
    elif what in ("similar_items", "similar_users"):
        m = ni if what == "similar_items" else nu
        ids, scores = getattr(model, what)(g.ids(m, g.int_between(1, 4), "ids"), k=_k(g, m))
        checks.topk(ids, scores, n=m, where=f"ALS.{what}")
    elif what == "predict":
        model.predict(g.ids(nu, 3, "user_ids", sort=False), g.ids(ni, 3, "item_ids", sort=False))
    elif what == "explain":
        u = g.int_(g.int_between(0, nu - 1), "user_id")
        # The user's own row when u is a plain valid index (the harness must not index
        # with a hostile u itself), else the whole matrix.
        own_row = isinstance(u, (int, np.integer)) and not isinstance(u, bool) and 0 <= u < nu
        model.explain(u, ui[int(u)] if own_row and g.chance(0.5) else ui,
                      g.int_(g.int_between(0, ni - 1), "item_id"), k=_k(g, ni))
    else:
        model.loss(ui if g.chance(0.7) else _interactions(g, nu, ni, "loss user_items"))


# ---------------------------------------------------------------- diversity and evaluation


def diversity(g: G) -> None:
    from llmrec.diversity import intra_list_diversity, mmr_rerank

    vectors, _ = _matrix(g, "item_vectors", n_range=(1, 300))
    n = np.shape(vectors)[0] if np.ndim(vectors) >= 1 else 1
    nq = g.int_between(1, 4)
    c = g.int_between(1, 30)
    cand = np.stack([g.r.permutation(max(n, c, 1))[:c] for _ in range(nq)]).astype(np.int64)
    cand[cand >= n] = -1
    if g.chance():
        cand = g.mutate_array(cand, "candidates")
    rel = g.values((nq, c), "relevance")
    rel = -np.sort(-rel, axis=1)
    if g.chance(0.3) and isinstance(cand, np.ndarray) and cand.ndim == 2 and len(cand):
        cand, rel = cand[0], rel[0]
    if g.chance(0.2):
        intra_list_diversity(cand, vectors)
        return
    k = _k(g, c)
    ids, scores = mmr_rerank(cand, g.layout(rel, "relevance"), vectors, k,
                             g.float_(g.choice([0.0, 0.3, 1.0]), "lambda_"), num_threads=g.threads())
    checks.topk(ids, scores, sorted_scores=False, where="mmr_rerank")
    for row, crow in zip(np.atleast_2d(ids), np.atleast_2d(np.asarray(cand))):
        bad = np.setdiff1d(row[row >= 0], crow)
        if bad.size:
            raise checks.Garbage(f"mmr_rerank returned non-candidates {bad[:5].tolist()}")


def _events(g: G, n_users=30, n_items=40, n=300):
    import pandas as pd

    users = g.r.integers(0, n_users, n)
    items = g.r.integers(0, n_items, n)
    frame = pd.DataFrame({"user_id": users, "item_id": items,
                          "timestamp": g.r.integers(0, 10**6, n), "rating": g.r.integers(1, 6, n).astype(float)})
    if g.chance():
        what = g.choice(["nan_ids", "str_ids", "huge_ids", "neg_ids", "nan_ts", "drop_col", "empty",
                         "dup", "obj_mix", "float_ids", "inf_rating"])
        g.note(f"events: {what}")
        if what == "nan_ids":
            frame["item_id"] = frame["item_id"].astype(float); frame.loc[0, "item_id"] = np.nan
        elif what == "str_ids":
            frame["user_id"] = "u" + frame["user_id"].astype(str)
        elif what == "huge_ids":
            frame.loc[0, "item_id"] = 2**63 - 1
        elif what == "neg_ids":
            frame.loc[0, "user_id"] = -1
        elif what == "nan_ts":
            frame["timestamp"] = frame["timestamp"].astype(float); frame.loc[0, "timestamp"] = np.nan
        elif what == "drop_col":
            frame = frame.drop(columns=[g.choice(["user_id", "item_id"])])
        elif what == "empty":
            frame = frame.iloc[:0]
        elif what == "dup":
            frame = pd.concat([frame, frame])
        elif what == "obj_mix":
            frame["item_id"] = frame["item_id"].astype(object); frame.loc[0, "item_id"] = "x"
        elif what == "float_ids":
            frame["item_id"] = frame["item_id"] + 0.5
        else:
            frame.loc[0, "rating"] = np.inf
    return frame


def evaluation(g: G) -> None:

    from llmrec import evaluation as ev

    what = g.choice(["random_split", "temporal_split", "leave_last_k", "cold_item_split",
                     "ranking_metrics", "auc", "evaluate"])
    g.note(f"evaluation.{what}")
    if what in ("random_split", "temporal_split", "leave_last_k", "cold_item_split"):
        frame = _events(g)
        if what == "leave_last_k":
            ev.leave_last_k(frame, k=g.int_(1, "k"))
        elif what == "temporal_split":
            ev.temporal_split(frame, frac=g.float_(0.2, "frac"))
        else:
            getattr(ev, what)(frame, frac=g.float_(0.2, "frac"), random_state=g.int_between(0, 9))
        return
    nu, ni = g.int_between(1, 30), g.int_between(1, 40)
    test = _interactions(g, nu, ni, "test")
    train = _interactions(g, nu, ni, "train") if g.chance(0.5) else None
    if what == "ranking_metrics":
        k = g.int_between(1, 10)
        rec = g.r.integers(-1, ni, (nu, k)).astype(np.int64)
        if g.chance():
            rec = g.mutate_array(rec, "recommended")
        feats = g.values((ni, 4), "item_features") if g.chance(0.3) else None
        out = ev.ranking_metrics(rec, test, k=g.int_(k, "k"), train=train, item_features=feats)
        for key, v in out.items():
            if isinstance(v, float) and key != "n_users" and not (math.isnan(v) or -1e-6 <= v <= 1 + 1e-6) \
                    and key in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "f1", "coverage"):
                raise checks.Garbage(f"ranking_metrics {key}={v} outside [0, 1]")
    elif what == "auc":
        scores = g.layout(g.values((nu, ni), "scores"), "scores")
        v = ev.auc(scores, test, train, batch_size=g.int_(g.choice([None, 1, 7]) or 1, "batch_size")
                   if g.chance(0.5) else None)
        if not (math.isnan(v) or 0 <= v <= 1):
            raise checks.Garbage(f"auc={v} outside [0, 1]")
    else:
        model, ui = _fitted_als(g)
        t = _interactions(g, model.n_users_, model.n_items_, "test")
        ev.evaluate(model, ui, t, k=g.int_(5, "k"), batch_size=g.int_(g.choice([1, 7, 1000]), "batch_size"))


# ---------------------------------------------------------------- Recommender


class HashEncoder:
    """A stand-in text encoder (no torch): deterministic vectors from text hashes."""

    dim = 8

    def encode(self, texts, kind="document", show_progress=False):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            h = hashlib.sha256(str(t).encode("utf-8", "surrogatepass")).digest()
            out[i] = np.frombuffer(h[:self.dim * 4], np.int32) / 2**31
        return out


def _items_frame(g: G, ids):
    import pandas as pd

    texts = [g.choice(["a film", "", "x" * 500, "\x00", "Toy Story (1995)", "日本語", "\ud800"])
             if g.chance() else f"item {i} genre {len(str(i)) % 5}" for i in ids]
    return pd.DataFrame({"item_id": list(ids), "text": texts})


def _fitted_recommender(g: G):
    import llmrec

    events = _events(g, n_users=g.int_between(2, 30), n_items=g.int_between(2, 50), n=g.int_between(10, 400))
    encoder = HashEncoder() if g.chance(0.6) else None
    rec = llmrec.Recommender(
        encoder=encoder, factors=g.size(g.choice([2, 8]), "factors"),
        index=g.choice(["exact", "exact", "sq8", "fp16"]),
        text_weight=g.choice(["auto", 0.0, 0.5]) if not g.chance() else g.float_(0.5, "text_weight"),
        diversity=g.float_(g.choice([0.0, 0.3]), "diversity"),
        random_state=g.int_between(0, 100), num_threads=g.threads(),
        regularization=g.choice(["auto", 1.0]) if not g.chance() else g.float_(1.0, "regularization"),
        alpha=g.float_(1.0, "alpha"), iterations=g.size(2, "iterations"),
        candidates=g.size(g.choice([4, 64]), "candidates"),
        validation=g.choice([0.0, 0.2]) if not g.chance() else g.float_(0.2, "validation"),
        popularity_prior=g.choice([True, True, False]) if not g.chance() else g.choice(["yes", 1, None]))
    items = None
    if encoder is not None and "item_id" in events:
        ids = sorted(set(events["item_id"].dropna().tolist()), key=str) if g.chance(0.8) else [0, 1]
        items = _items_frame(g, ids)
    rec.fit(events, items=items)
    return rec, events


def _known(values) -> list:
    return list(dict.fromkeys(values.tolist()))


def _profile(g: G) -> object:
    """A user profile text, often hostile (empty, control characters, long, not a str)."""
    profile = g.choice([None, "A 30-year-old nurse.", "", "\x00" * 3, "x" * 2000, 7, b"bytes"])
    g.note(f"profile={profile!r:.40}")
    return profile


def recommender(g: G) -> None:
    rec, events = _fitted_recommender(g)
    users, items = _known(events["user_id"]), _known(events["item_id"])
    what = g.choice(["recommend", "recommend_for_history", "search", "similar_items", "update", "add_items",
                     "explain", "set_scenario", "recommend_query", "predict", "predict_proba"])
    g.note(f"Recommender.{what}")
    k = _k(g, len(items))

    def pick(pool, name):
        if g.chance() or not pool:
            v = g.choice([-1, 2**63 - 1, "nope", None, 1.5, 10**9])
            g.note(f"{name}={v!r}")
            return v
        return g.choice(pool)

    if what in ("recommend", "recommend_query"):
        us = [pick(users, "user_id") for _ in range(g.int_between(1, 4))]
        kw = {"query": g.choice(["funny film", "", "\x00" * 3])} if what == "recommend_query" else {}
        out = rec.recommend(us if g.chance(0.7) else us[0], k=k, **kw)
        checks.topk(out.ids if out.ids.dtype == np.int64 else np.zeros(out.scores.shape, np.int64),
                    out.scores, where="Recommender.recommend", sorted_scores=not rec.diversity)
    elif what == "recommend_for_history":
        hist = [pick(items, "item_id") for _ in range(g.int_between(0, 6))]
        rec.recommend_for_history(hist, k=k, profile=_profile(g))
    elif what == "search":
        rec.search(g.choice(["a film", "", " ", "x" * 2000]), k=k,
                   user_id=None if g.chance(0.5) else pick(users, "user_id"))
    elif what == "similar_items":
        rec.similar_items([pick(items, "item_id") for _ in range(g.int_between(1, 3))], k=k)
    elif what == "update":
        rec.update(pick(users, "user_id") if g.chance(0.8) else "new-user",
                   [pick(items, "item_id") for _ in range(g.int_between(0, 5))], profile=_profile(g))
        rec.recommend(users[:1] or [0], k=3)
    elif what == "add_items":
        new = [g.choice([10**6 + i, f"new{i}", -5 - i, 2**63 - 1 - i]) for i in range(g.int_between(1, 4))]
        if g.chance():
            new.append(items[0] if items else 0)
            g.note("add_items: an existing id")
        rec.add_items(_items_frame(g, new))
        rec.recommend(users[:1] or [0], k=3)
        rec.similar_items([new[0]], k=3)
    elif what == "explain":
        rec.explain(pick(users, "user_id"), pick(items, "item_id"))
    elif what in ("predict", "predict_proba"):
        us = [pick(users, "user_id") for _ in range(g.int_between(0, 4))]
        its = [pick(items, "item_id") for _ in range(g.choice([len(us), 1, g.int_between(0, 4)]))]
        shape = g.choice(["lists", "one user", "one item", "2-D"])
        g.note(f"{what}: {shape}")
        if shape == "one user" and us:
            us = us[0]
        elif shape == "one item" and its:
            its = its[0]
        elif shape == "2-D":
            us = np.array(us, dtype=object).reshape(-1, 1)
        out = getattr(rec, what)(us, its)
        if not np.all(np.isfinite(out)) or (what == "predict_proba" and not np.all((out >= 0) & (out <= 1))):
            raise checks.Garbage(f"Recommender.{what} returned {out!r}")
    else:
        rec.set_scenario(g.choice(["home", "x", ""]),
                         {g.choice(["behaviour", "sequence", "text", "query", "bogus"]):
                          g.float_(1.0, "weight")})
        rec.recommend(users[:1] or [0], k=3)
