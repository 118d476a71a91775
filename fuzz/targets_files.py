"""Fuzz targets for the file loaders: llmrec's array files (ExactIndex, QuantizedIndex,
ALS, Recommender directories) and the MovieLens readers.

A case saves a small valid model, then damages the file: raw bit flips, truncation or
padding, a crafted header (JSON changed, header CRC recomputed), crafted arrays with every
checksum recomputed (what an attacker would do), a version or header length out of range.
The loaded object is then used (search, recommend, partial_fit_users), because a file that
loads but crashes later is the dangerous case.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fuzz import checks
from fuzz.gen import G

_PREFIX = struct.Struct("<8sII")


def _workdir() -> Path:
    d = Path(os.environ.get("LLMREC_FUZZ_TMP") or tempfile.gettempdir()) / f"llmrec-fuzz-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _fresh(name: str) -> Path:
    """A path in the work dir with nothing at it (save refuses to replace a damaged file)."""
    path = _workdir() / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    return path


def _split(raw: bytes) -> tuple[int, dict, int]:
    """(version, header, header length) of a valid file."""
    _, version, hlen = _PREFIX.unpack(raw[:_PREFIX.size])
    return version, json.loads(raw[_PREFIX.size:_PREFIX.size + hlen].decode()), hlen


def _with_header(raw: bytes, header: dict, *, version: int | None = None, hlen: int | None = None) -> bytes:
    """The file with a new JSON header (same length, padded) and its CRC recomputed."""
    v, _, old_len = _split(raw)
    body = json.dumps(header).encode()
    if len(body) > old_len:  # keep the arrays' offsets: only shorter headers fit in place
        return raw
    body = body.ljust(old_len)
    crc = struct.pack("<I", zlib.crc32(body))
    prefix = _PREFIX.pack(b"\x89LLMREC\n", v if version is None else version, old_len if hlen is None else hlen)
    return prefix + body + crc + raw[_PREFIX.size + old_len + 4:]


def _crafted_arrays(g: G, path: Path, kind: str) -> None:
    """Rewrite the file with one array or meta value changed, all checksums valid."""
    from llmrec._fileformat import load_arrays, save_arrays

    meta, arrays, kind_version = load_arrays(path, kind, max_kind_version=10**6, verify=False)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    what = g.choice(["array", "array", "array", "shape", "dtype", "drop", "meta", "kind_version"])
    names = sorted(arrays)
    if what in ("array", "shape", "dtype", "drop") and names:
        name = g.choice(names)
        g.note(f"crafted {what} of array {name!r} {arrays[name].dtype}{arrays[name].shape}")
        if what == "array":
            arrays[name] = g.mutate_array(arrays[name], name)
            if not isinstance(arrays[name], np.ndarray):
                arrays[name] = np.asarray(arrays[name] if arrays[name] is not None else 0)
        elif what == "shape":
            a = arrays[name]
            arrays[name] = a[:-1] if a.ndim and len(a) else np.concatenate([a.reshape(-1), a.reshape(-1)[:1]])
        elif what == "dtype":
            arrays[name] = arrays[name].astype(g.choice([np.float64, np.int32, np.uint8, np.float16, "<U3"]))
        else:
            del arrays[name]
    elif what == "meta" and isinstance(meta, dict) and meta:
        key = g.choice(sorted(meta))
        meta[key] = g.choice([None, -1, 2**62, 2**64, "x", [], {}, 1e308, float("nan"), True, "sq8"])
        g.note(f"crafted meta[{key!r}] = {meta[key]!r}")
    else:
        kind_version = g.choice([0, -1, 2**40, "1", None, 1.5])
        g.note(f"crafted kind_version={kind_version!r}")
    try:
        save_arrays(path, kind, kind_version, meta, arrays)
    except (TypeError, ValueError) as e:  # e.g. NaN in meta is fine JSON for Python; others not
        g.note(f"crafted file not writable ({e})")


def damage(g: G, path: Path, kind: str) -> None:
    raw = path.read_bytes()
    what = g.choice(["flip", "flip", "truncate", "pad", "header", "header", "version", "hlen",
                     "crafted", "crafted", "crafted", "crafted", "empty", "zeros"])
    g.note(f"damage {path.name}: {what}")
    if what == "flip":
        b = bytearray(raw)
        for _ in range(g.choice([1, 1, 2, 8])):
            i = g.int_between(0, len(b) - 1)
            b[i] ^= 1 << g.int_between(0, 7)
            g.note(f"flip byte {i}")
        raw = bytes(b)
    elif what == "truncate":
        raw = raw[:g.int_between(0, len(raw) - 1)]
    elif what == "pad":
        raw = raw + b"\x00" * g.int_between(1, 100)
    elif what == "empty":
        raw = b""
    elif what == "zeros":
        raw = b"\x00" * len(raw)
    elif what == "version":
        _, _, hlen = _split(raw)
        v = g.choice([0, 2, 2**32 - 1])
        g.note(f"version={v}")
        raw = _PREFIX.pack(b"\x89LLMREC\n", v, hlen) + raw[_PREFIX.size:]
    elif what == "hlen":
        v, _, _ = _split(raw)
        h = g.choice([0, 1, 2**31, 2**32 - 1, len(raw)])
        g.note(f"header length={h}")
        raw = _PREFIX.pack(b"\x89LLMREC\n", v, h) + raw[_PREFIX.size:]
    elif what == "header":
        _, header, _ = _split(raw)
        target = g.choice(["kind", "kind_version", "file_size", "arrays", "entry", "meta", "root"])
        hostile = g.choice([None, -1, 2**64, "x", [], {}, 1.5, True, -2**63])
        if target == "root":
            header = g.choice([[], "x", 1, None])
        elif target == "entry" and header.get("arrays"):
            e = g.choice(header["arrays"])
            field = g.choice(["dtype", "shape", "offset", "nbytes", "name", "crc32"])
            e[field] = g.choice([hostile, "|O", "<U10", "V8", ">f8", [-1], [2**40, 2**40], [3, -3], 0])
            g.note(f"header entry {e.get('name')!r}.{field} = {e[field]!r}")
        else:
            header[target] = hostile
            g.note(f"header[{target!r}] = {hostile!r}")
        raw = _with_header(raw, header)
    else:
        if what == "crafted":
            _crafted_arrays(g, path, kind)
            return
    path.write_bytes(raw)


# ---------------------------------------------------------------- models to save


def _save_exact(g: G, path: Path):
    import llmrec
    llmrec.ExactIndex(g.values((g.int_between(1, 50), g.int_between(1, 16)), "vectors"),
                      metric=g.choice(["ip", "cosine"])).save(path)


def _save_quantized(g: G, path: Path):
    import llmrec
    x = np.random.default_rng(g.seed).standard_normal((g.int_between(16, 400), g.choice([4, 8, 16]))).astype(np.float32)
    llmrec.QuantizedIndex(x, codec=g.choice(["sq8", "fp16", "pq4"]), partitions=g.choice([None, 2, 4]),
                          keep_vectors=g.chance(0.5), random_state=1).save(path)


def _save_als(g: G, path: Path):
    import scipy.sparse as sp

    import llmrec
    ui = sp.random(g.int_between(2, 30), g.int_between(2, 30), density=0.3, format="csr", dtype=np.float32,
                   random_state=g.seed % 2**31)
    ui.data[:] = 1
    kw = {"item_features": np.random.default_rng(0).standard_normal((ui.shape[1], 3))} if g.chance(0.3) else {}
    llmrec.ALS(factors=4, iterations=1, random_state=0).fit(ui, **kw).save(path)


def _use_index(g: G, index: Any, where: str) -> None:
    n, d = len(index), index.dim
    q = np.random.default_rng(1).standard_normal((2, d)).astype(np.float32)
    allow = np.ones(n, bool) if g.chance(0.5) else None
    kw = {"rerank": 0} if hasattr(index, "keeps_vectors") and not index.keeps_vectors else {}
    if n:
        ids, scores = index.search(q, k=min(n, 5), allow=allow, **kw)
        checks.topk(ids, scores, n=n, where=where)
    if hasattr(index, "add") and g.chance(0.3):
        index.add(q)


def _index_file(g: G, kind: str, save: Any) -> None:
    """Save an index of class ``kind`` with ``save``, damage the file, load it, use it."""
    import llmrec
    path = _fresh(f"{kind}.llmrec")
    save(g, path)
    damage(g, path, kind)
    index = getattr(llmrec, kind).load(path, mmap=g.chance(0.3), verify=g.chance(0.7))
    _use_index(g, index, f"loaded {kind}.search")


def exact_index_file(g: G) -> None:
    _index_file(g, "ExactIndex", _save_exact)


def quantized_index_file(g: G) -> None:
    _index_file(g, "QuantizedIndex", _save_quantized)


def als_file(g: G) -> None:
    import scipy.sparse as sp

    import llmrec
    path = _fresh("als.llmrec")
    _save_als(g, path)
    damage(g, path, "ALS")
    model = llmrec.ALS.load(path, verify=g.chance(0.7))
    nu, ni = model.n_users_, model.n_items_
    what = g.choice(["recommend", "partial_fit_users", "partial_fit_items", "similar_items", "fold_in"])
    g.note(f"then ALS.{what}")
    if what == "recommend":
        ids, scores = model.recommend(np.arange(min(nu, 3)), k=min(ni, 5))
        checks.topk(ids, scores, n=ni, where="loaded ALS.recommend")
    elif what == "partial_fit_users":
        row = sp.csr_matrix(np.ones((1, ni), np.float32))
        model.partial_fit_users([0], row)
    elif what == "partial_fit_items":
        model.partial_fit_items([0])
    elif what == "similar_items":
        model.similar_items([0], k=3)
    else:
        model.fold_in(sp.csr_matrix(np.ones((1, ni), np.float32)))


def recommender_file(g: G) -> None:
    import llmrec
    from fuzz.targets_api import HashEncoder, _fitted_recommender

    old = g.p
    g.p = 0.0  # a valid model first
    rec, events = _fitted_recommender(g)
    g.p = old
    d = _fresh("rec")
    rec.save(d)
    files = sorted(p for p in d.iterdir() if p.is_file())
    victim = g.choice(files)
    if victim.suffix == ".llmrec":
        kind = "ALS" if victim.name == "als.llmrec" else "Recommender"
        damage(g, victim, kind)
    else:  # JSON or text side files
        raw = victim.read_bytes()
        b = bytearray(raw)
        if b and g.chance(0.5):
            b[g.int_between(0, len(b) - 1)] ^= 1 << g.int_between(0, 7)
        else:
            b = b[:g.int_between(0, len(b))]
        victim.write_bytes(bytes(b))
        g.note(f"damage {victim.name}: raw")
    loaded = llmrec.Recommender.load(d, encoder=HashEncoder() if rec.encoder is not None else None)
    users = list(dict.fromkeys(events["user_id"].tolist()))[:3]
    out = loaded.recommend(users, k=5)
    checks.topk(out.ids if out.ids.dtype == np.int64 else np.zeros(out.scores.shape, np.int64), out.scores,
                where="loaded Recommender.recommend", sorted_scores=not loaded.diversity)
    if g.chance(0.3):
        loaded.update(users[0], list(events["item_id"][:2]))


def fifo_file(g: G) -> None:
    """Loaders given a FIFO (or a directory, or /dev/zero) must not hang."""
    import llmrec
    path = _workdir() / "fifo.llmrec"
    if path.exists() or path.is_symlink():
        path.unlink()
    what = g.choice(["fifo", "dir", "devzero", "missing"])
    g.note(f"path is a {what}")
    if what == "fifo":
        os.mkfifo(path)
    elif what == "dir":
        path.mkdir()
    elif what == "devzero":
        path.symlink_to("/dev/zero")
    loader = g.choice([llmrec.ExactIndex.load, llmrec.QuantizedIndex.load, llmrec.ALS.load])
    g.note(f"loader {loader.__qualname__}")
    try:
        loader(path)
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.exists() or path.is_symlink():
            path.unlink()


# ---------------------------------------------------------------- datasets


def datasets(g: G) -> None:
    from llmrec import datasets as ds

    what = g.choice(["ml100k", "recbole", "latest", "synthetic", "to_csr"])
    g.note(f"datasets.{what}")
    if what == "synthetic":
        ds.synthetic(g.size(g.int_between(1, 200), "n_users"), g.size(g.int_between(1, 200), "n_items"),
                     n_topics=g.size(g.choice([1, 5, 20]), "n_topics"),
                     density=g.float_(g.choice([0.0, 0.01, 0.5, 1.0]), "density"),
                     random_state=g.int_between(0, 9))
        return
    if what == "to_csr":
        from fuzz.targets_api import _events
        frame = _events(g)
        ds.to_csr(frame)
        return
    d = _workdir() / "ml"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    r = g.r
    n = g.int_between(0, 50)
    lines = [[str(r.integers(1, 20)), str(r.integers(1, 30)), str(r.integers(1, 6)), str(r.integers(0, 10**9))]
             for _ in range(n)]
    if g.chance() and lines:
        i = g.int_between(0, len(lines) - 1)
        j = g.int_between(0, 3)
        lines[i][j] = g.choice(["", "x", "nan", "inf", "-1", "99999999999999999999999", "1e400", "\x00",
                                "1.5", "a|b", "\t", "é"])
        g.note(f"field [{i}][{j}] = {lines[i][j]!r}")
    if g.chance(0.2) and lines:
        lines[0] = lines[0][:g.int_between(0, 3)]
        g.note("short line")
    items = [[str(i), f"Movie {i} (19{i % 100:02d})", "01-Jan-1995", "", "http://x"] + ["0"] * 19
             for i in range(1, 30)]
    if g.chance() and items:
        items[0][g.int_between(0, len(items[0]) - 1)] = g.choice(["", "x|y", "(", "()", "\xff", "0" * 500])
        g.note("item line damaged")
    if what == "ml100k":
        (d / "u.data").write_text("\n".join("\t".join(l) for l in lines) + "\n")
        if g.chance(0.7):
            (d / "u.item").write_text("\n".join("|".join(l) for l in items) + "\n", encoding="latin-1",
                                      errors="replace")
    elif what == "recbole":
        header = g.choice(["user_id:token\titem_id:token\trating:float\ttimestamp:float",
                           "user_id:token\titem_id:token", "user_id\titem_id", "user_id:float\titem_id:token_seq",
                           ""])
        (d / "ml.inter").write_text(header + "\n" + "\n".join("\t".join(l[:len(header.split())] or l)
                                                              for l in lines) + "\n")
        if g.chance(0.5):
            (d / "ml.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\n" +
                                       "\n".join(f"{l[0]}\t{l[1]}\t{g.choice(['1995', '', 'x'])}"
                                                 for l in items) + "\n")
    else:
        (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" +
                                       "\n".join(",".join(l) for l in lines) + "\n")
        (d / "movies.csv").write_text("movieId,title,genres\n" +
                                      "\n".join(f"{l[0]},\"{l[1]}\",Comedy|Drama" for l in items) + "\n")
    if g.chance(0.1):
        victim = g.choice(sorted(d.iterdir()))
        raw = victim.read_bytes()
        victim.write_bytes(raw[:g.int_between(0, len(raw))] + g.choice([b"", b"\xff\xfe", b"\x00" * 10]))
        g.note(f"{victim.name} truncated/binary")
    inter, items_df, users_df = ds.load_movielens(d)
    if len(inter) and inter["rating"].dtype != np.float32:
        raise checks.Garbage(f"load_movielens rating dtype {inter['rating'].dtype}")
