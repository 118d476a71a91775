"""A larger saved model grown from a saved scale model without a fit (issue 16, §3):

    python bench/bench_recommender.py scale-grow MODEL OUT --copies 3

Where a fit at the target size does not fit in memory (the 1M fit peaks at 11.5 GiB),
this writes a model of ``copies`` × the items and users of MODEL: copy j of item i is
item row j·n + i, with the item factors V, P, Q multiplied by 1 + 5 % Gaussian noise
per coordinate (copy 0 as saved) and the int8 text codes shifted by a uniform integer
in [−2, 2] per coordinate (clipped), so no two copies tie; copy j of a user has the
same vectors and history, moved onto copy j's items. The ALS model's item factors are
the new V and its interactions the block-diagonal copies; the geometry (covariances,
PCA basis) is MODEL's. No stage 1 is written: the first ``Recommender.load`` of OUT
builds it from the grown rows (then save it once, with ``--save-built``, to serve from).
The figures measured on such a model are of its size, not of a fitted model's quality.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

NOISE = 0.05
CODE_SHIFT = 2


def _noisy(rows: np.ndarray, copy: int, rng: np.random.Generator) -> np.ndarray:
    if copy == 0:
        return np.asarray(rows)
    return (rows * (1.0 + NOISE * rng.standard_normal(rows.shape, dtype=np.float32))).astype(np.float32)


def _shifted(codes: np.ndarray, copy: int, rng: np.random.Generator) -> np.ndarray:
    if copy == 0:
        return np.asarray(codes)
    shift = rng.integers(-CODE_SHIFT, CODE_SHIFT + 1, codes.shape, dtype=np.int8)
    return np.clip(codes.astype(np.int16) + shift, -127, 127).astype(np.int8)


def _indptr(indptr: np.ndarray, copies: int) -> np.ndarray:
    nnz = int(indptr[-1])
    return np.concatenate([indptr[:1]] + [indptr[1:] + j * nnz for j in range(copies)]).astype(indptr.dtype)


def grow(model: Path, out: Path, copies: int) -> None:
    from llmrec._fileformat import load_arrays, save_arrays
    from llmrec.recommender.rows import inverse_norms

    rng = np.random.default_rng(0)
    meta, A, version = load_arrays(model / "recommender.llmrec", "Recommender", max_kind_version=8, mmap=True)
    ameta, B, aversion = load_arrays(model / "als.llmrec", "ALS", max_kind_version=2, mmap=True)
    n, nu = len(A["item_ids"]), len(A["user_ids"])
    if any(name in A for name in ("item_gone", "user_gone", "G", "profile")):
        raise ValueError("scale-grow takes a model without removals, towers or profiles")
    item_step = int(A["item_ids"].max()) + 1
    user_step = int(A["user_ids"].max()) + 1
    tiled = {"V": np.concatenate([_noisy(A["V"], j, rng) for j in range(copies)])}
    for name in ("P", "Q"):
        tiled[name] = np.concatenate([_noisy(A[name], j, rng) for j in range(copies)])
    tiled["inv_norm"] = inverse_norms(tiled["V"], np.tile(np.asarray(A["inv_norm"]) != 0, copies))
    tiled["E_codes"] = np.concatenate([_shifted(A["E_codes"], j, rng) for j in range(copies)])
    tiled["item_ids"] = np.concatenate([A["item_ids"] + j * item_step for j in range(copies)])
    tiled["user_ids"] = np.concatenate([A["user_ids"] + j * user_step for j in range(copies)])
    for name in ("hist", "fb"):
        tiled[f"{name}_indptr"] = _indptr(A[f"{name}_indptr"], copies)
        tiled[f"{name}_items"] = np.concatenate([A[f"{name}_items"] + j * n for j in range(copies)])
    if "label_offsets" in A:  # kind version 7: UTF-8 bytes and offsets
        tiled["label_bytes"] = np.tile(np.asarray(A["label_bytes"]), copies)
        tiled["label_offsets"] = _indptr(A["label_offsets"], copies)
    rest = {name: np.tile(np.asarray(A[name]), (copies,) + (1,) * (A[name].ndim - 1))
            for name in ("E_scales", "labels", "user_behaviour", "user_sequence", "user_transition",
                         "user_text", "user_text_codes", "user_text_scales", "fb_weight", "fb_disliked",
                         "fb_rating", "fb_event") if name in A}
    arrays = {**{k: np.asarray(v) for k, v in A.items()}, **tiled, **rest}
    meta = dict(meta)
    meta.pop("stage1", None)  # built by the first load
    out.mkdir(parents=True, exist_ok=False)
    save_arrays(out / "recommender.llmrec", "Recommender", version, meta, arrays)
    del arrays, rest
    als = {"user_factors": np.tile(np.asarray(B["user_factors"]), (copies, 1)), "item_factors": tiled["V"],
           "item_prior_weights": np.asarray(B["item_prior_weights"]),
           "indptr": _indptr(B["indptr"], copies),
           "indices": np.concatenate([B["indices"] + j * n for j in range(copies)]).astype(np.int32),
           "values": np.tile(np.asarray(B["values"]), copies)}
    save_arrays(out / "als.llmrec", "ALS", aversion, dict(ameta), als)
    print(f"grown {model} ×{copies}: {copies * n:,} items, {copies * nu:,} users → {out}", flush=True)


def scale_grow(args: argparse.Namespace) -> None:
    """See the module docstring; ``--save-built DIR`` then loads OUT (building stage 1,
    timed) and saves it to DIR with its stage 1."""
    import resource
    import sys

    grow(Path(args.model), Path(args.out), args.copies)
    if args.save_built:
        import llmrec

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_recommender import StandInEncoder

        start = time.perf_counter()
        rec = llmrec.Recommender.load(args.out, encoder=StandInEncoder())
        built = time.perf_counter() - start
        rec.save(args.save_built)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"load with stage-1 build {built:.0f} s ({rec.index_info_}); peak RSS {peak:.2f} GiB; "
              f"saved with stage 1 → {args.save_built}", flush=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale-grow", help="a saved model ×copies without a fit (bench_scale_grow.py)")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--save-built", default="", help="load OUT (building stage 1) and save it here")


COMMANDS = {"scale-grow": scale_grow}
