"""Files are untrusted input: crafted headers, crafted arrays with valid checksums,
non-regular files. Every loader must raise llmrec.FormatError (a ValueError), never
KeyError/TypeError/AttributeError, never hang, never hand memory-unsafe arrays to the
native core or to scipy. Former crashes run in a subprocess and must end in FormatError."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from llmrec import ALS, ExactIndex, QuantizedIndex
from llmrec._fileformat import MAGIC, FormatError, load_arrays, save_arrays

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


# ------------------------------------------------------------------------ helpers

def _run(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (a crash there fails the test, not the suite)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def _assert_raised(result: subprocess.CompletedProcess, error: str = "FormatError") -> None:
    assert result.returncode == 1, (f"expected a Python exception, got exit status {result.returncode} "
                                    f"(negative: killed by a signal)\n{result.stderr[-2000:]}")
    assert f"{error}:" in result.stderr, result.stderr[-2000:]


def _rewrite(path: Path, kind: str, change, *, max_kind_version: int = 2) -> None:
    """Load ``path``'s arrays, let ``change(meta, arrays)`` edit them, and save them back with
    fresh checksums (as an attacker would)."""
    meta, arrays, version = load_arrays(path, kind, max_kind_version=max_kind_version)
    arrays = {name: np.array(a) for name, a in arrays.items()}
    change(meta, arrays)
    save_arrays(path, kind, version, meta, arrays)


def _raw_file(path: Path, header: dict | bytes, *, version: int = 1, header_len: int | None = None,
              payload: bytes = b"") -> None:
    """Write a file with an arbitrary header (JSON object or raw bytes) and a valid header CRC."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(body) if header_len is None else header_len
    data = struct.pack("<8sII", MAGIC, version, length) + body + struct.pack("<I", zlib.crc32(body))
    path.write_bytes(data + payload)


def _valid_header(payload_offset: int, vectors: np.ndarray) -> dict:
    return {"kind": "ExactIndex", "kind_version": 1, "meta": {"metric": "ip"},
            "file_size": payload_offset + vectors.nbytes,
            "arrays": [{"name": "vectors", "dtype": "<f4", "shape": list(vectors.shape),
                        "offset": payload_offset, "nbytes": vectors.nbytes,
                        "crc32": zlib.crc32(vectors.tobytes())}]}


def _raw_index(path: Path, edit=None, *, rng) -> None:
    """An ExactIndex file written by hand, its header edited by ``edit(header)``."""
    vectors = rng.standard_normal((4, 3)).astype(np.float32)
    offset = 4096  # beyond any header below
    header = _valid_header(offset, vectors)
    if edit is not None:
        edit(header)
    body = json.dumps(header).encode()
    prefix = struct.pack("<8sII", MAGIC, 1, len(body)) + body + struct.pack("<I", zlib.crc32(body))
    path.write_bytes(prefix.ljust(offset, b"\0") + vectors.tobytes())


# ------------------------------------------------------------------ file format

def test_hand_written_file_loads(tmp_path, rng):
    # The helper writes what the loader accepts, so the failures below are the edits'.
    _raw_index(tmp_path / "ok", rng=rng)
    assert len(ExactIndex.load(tmp_path / "ok")) == 4


def test_arrays_read_with_spare_rows_grow_in_place(tmp_path, rng):
    from llmrec._arrays import grow_rows, spare_rows

    saved = {"rows": rng.standard_normal((5, 3)).astype(np.float32), "ids": np.arange(7),
             "empty": np.zeros((0, 2), np.int8), "text": np.array(["a", "bé"])}
    save_arrays(tmp_path / "f", "Test", 1, {}, saved)
    _, arrays, _ = load_arrays(tmp_path / "f", "Test", max_kind_version=1, spare_rows=("rows", "empty", "text"))
    for name, want in saved.items():
        np.testing.assert_array_equal(arrays[name], want)
        assert arrays[name].flags.writeable and arrays[name].dtype == want.dtype
    grown = grow_rows(arrays["rows"], 9)  # into the spare rows: no copy
    assert np.shares_memory(grown, arrays["rows"]) and not grown[5:].any()
    assert spare_rows(arrays["rows"]) is arrays["rows"]
    assert not np.shares_memory(grow_rows(arrays["ids"], 8), arrays["ids"])  # read as it is: copied
    roomy = spare_rows(arrays["ids"])
    assert np.shares_memory(grow_rows(roomy, 14), roomy) and np.array_equal(roomy, saved["ids"])
    data = (tmp_path / "f").read_bytes()
    (tmp_path / "short").write_bytes(data[:-3])
    with pytest.raises(FormatError, match="truncated"):
        load_arrays(tmp_path / "short", "Test", max_kind_version=1, spare_rows=("rows",))


@pytest.mark.parametrize("version", [0, 2, 2**32 - 1])
def test_unsupported_format_versions_are_refused(tmp_path, rng, version):
    path = tmp_path / "v"
    _raw_index(path, rng=rng)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", version)
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=f"file format {version}"):
        ExactIndex.load(path)


def _set(path, value):
    def edit(header):
        target = header
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _delete(path):
    def edit(header):
        target = header
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


CRAFTED = {
    "kind missing": _delete(["kind"]),
    "kind a number": _set(["kind"], 7),
    "kind_version a string": _set(["kind_version"], "1"),
    "kind_version a bool": _set(["kind_version"], True),
    "kind_version 0": _set(["kind_version"], 0),
    "meta a list": _set(["meta"], [1, 2]),
    "meta missing": _delete(["meta"]),
    "metric missing": _delete(["meta", "metric"]),
    "metric a list": _set(["meta", "metric"], ["ip"]),
    "file_size a string": _set(["file_size"], "big"),
    "arrays an object": _set(["arrays"], {"vectors": 1}),
    "array entry a string": _set(["arrays", 0], "vectors"),
    "name missing": _delete(["arrays", 0, "name"]),
    "name a number": _set(["arrays", 0, "name"], 3),
    "dtype object": _set(["arrays", 0, "dtype"], "|O"),
    "dtype object (short)": _set(["arrays", 0, "dtype"], "O"),
    "dtype void": _set(["arrays", 0, "dtype"], "|V12"),
    "dtype struct": _set(["arrays", 0, "dtype"], "[('a', '<f4')]"),
    "dtype big-endian": _set(["arrays", 0, "dtype"], ">f4"),
    "dtype a list": _set(["arrays", 0, "dtype"], ["<f4"]),
    "dtype unknown": _set(["arrays", 0, "dtype"], "<f4 junk"),
    "shape negative": _set(["arrays", 0, "shape"], [-4, -3]),
    "shape floats": _set(["arrays", 0, "shape"], [4.0, 3.0]),
    "shape a number": _set(["arrays", 0, "shape"], 12),
    "shape too deep": _set(["arrays", 0, "shape"], [1] * 40),
    "nbytes disagrees with shape": _set(["arrays", 0, "nbytes"], 8),
    "nbytes huge": _set(["arrays", 0, "nbytes"], 2**62),
    "offset negative": _set(["arrays", 0, "offset"], -64),
    "offset inside the header": _set(["arrays", 0, "offset"], 8),
    "offset past the end": _set(["arrays", 0, "offset"], 2**40),
    "offset a float": _set(["arrays", 0, "offset"], 4096.0),
    "crc a string": _set(["arrays", 0, "crc32"], "abc"),
    "crc out of range": _set(["arrays", 0, "crc32"], -1),
    "vectors missing": _set(["arrays"], []),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_raise_format_error(tmp_path, rng, case):
    path = tmp_path / "crafted"
    _raw_index(path, CRAFTED[case], rng=rng)
    with pytest.raises(FormatError):
        ExactIndex.load(path)


def test_overlapping_and_duplicate_arrays_are_refused(tmp_path, rng):
    def twice(name_b):
        def edit(header):
            second = dict(header["arrays"][0], name=name_b)
            header["arrays"].append(second)
        return edit
    path = tmp_path / "crafted"
    _raw_index(path, twice("other"), rng=rng)
    with pytest.raises(FormatError, match="overlapping"):
        ExactIndex.load(path)
    _raw_index(path, twice("vectors"), rng=rng)
    with pytest.raises(FormatError, match="twice"):
        ExactIndex.load(path)


@pytest.mark.parametrize("body", [b"\xff\xfe not utf-8", b"{not json", b"[1, 2, 3]", b"null",
                                  b"[" * 100_000])
def test_unparsable_headers_raise_format_error(tmp_path, body):
    path = tmp_path / "bad"
    _raw_file(path, body)
    with pytest.raises(FormatError):
        ExactIndex.load(path)


def test_huge_header_length_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(struct.pack("<8sII", MAGIC, 1, 2**32 - 1) + b"{}" * 10)
    start = time.perf_counter()
    with pytest.raises(FormatError, match="header of 4294967295 bytes"):
        ExactIndex.load(path)
    # A header length within the cap but beyond the file is refused from its size too.
    path.write_bytes(struct.pack("<8sII", MAGIC, 1, 1 << 20) + b"{}" * 10)
    with pytest.raises(FormatError, match="truncated"):
        ExactIndex.load(path)
    assert time.perf_counter() - start < 5  # nothing of 4 GiB was read or allocated


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.llmrec"
    os.mkfifo(fifo)
    # In a subprocess with a timeout: if open() blocked on the FIFO, this would hang.
    result = _run(f"""
        from llmrec import ExactIndex, ALS, QuantizedIndex
        from llmrec._fileformat import FormatError
        for cls in (ExactIndex, ALS, QuantizedIndex):
            try:
                cls.load({str(fifo)!r})
            except FormatError as error:
                assert "not a regular file" in str(error), error
            else:
                raise SystemExit("loaded a FIFO")
        raise FormatError("all refused")
    """)
    _assert_raised(result)
    assert "all refused" in result.stderr


def test_directory_and_device_are_refused(tmp_path):
    with pytest.raises(FormatError, match="directory"):
        ExactIndex.load(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(FormatError, match="not a regular file"):
            ExactIndex.load("/dev/zero")
    with pytest.raises(FileNotFoundError):
        ExactIndex.load(tmp_path / "missing")


def _mutations():
    """Values a hostile header field may take."""
    return [None, True, -1, 0, 2**31, 2**70, 1.5, float("nan"), "x", "", [], [1], {}, {"a": 1}]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """One small saved file of each kind."""
    rng = np.random.default_rng(7)
    base = tmp_path_factory.mktemp("models")
    x = rng.standard_normal((200, 8)).astype(np.float32)
    ExactIndex(x).save(base / "exact")
    QuantizedIndex(x, codec="sq8", random_state=0).save(base / "flat_sq8")
    QuantizedIndex(x, codec="sq8", partitions=4, random_state=0).save(base / "ivf_sq8")
    QuantizedIndex(x, codec="pq4", partitions=3, random_state=0).save(base / "ivf_pq4")
    QuantizedIndex(x, codec="fp16", partitions=2, random_state=0).save(base / "ivf_fp16")
    QuantizedIndex(x, codec="pq4", random_state=0).save(base / "flat_pq4")
    R = sp.random(60, 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    ALS(factors=4, iterations=2, random_state=0).fit(
        R, item_features=rng.standard_normal((40, 5))).save(base / "als")
    return base


LOADERS = {"exact": ("ExactIndex", ExactIndex), "flat_sq8": ("QuantizedIndex", QuantizedIndex),
           "ivf_sq8": ("QuantizedIndex", QuantizedIndex), "ivf_pq4": ("QuantizedIndex", QuantizedIndex),
           "ivf_fp16": ("QuantizedIndex", QuantizedIndex), "flat_pq4": ("QuantizedIndex", QuantizedIndex),
           "als": ("ALS", ALS)}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_metadata_field_mutation_raises_format_error_or_loads(tmp_path, saved_models, name):
    """Each metadata field (nested ones too) replaced by each hostile value: the loader
    either refuses with FormatError or returns an object that answers a search."""
    kind, cls = LOADERS[name]
    meta, arrays, version = load_arrays(saved_models / name, kind, max_kind_version=2)
    arrays = {k: np.array(a) for k, a in arrays.items()}

    def fields(obj, prefix=()):
        for key, value in obj.items():
            yield prefix + (key,)
            if isinstance(value, dict):
                yield from fields(value, prefix + (key,))

    path = tmp_path / "m"
    tried = refused = 0
    for field in fields(meta):
        for value in _mutations():
            changed = json.loads(json.dumps(meta))
            target = changed
            for key in field[:-1]:
                target = target[key]
            target[field[-1]] = value
            save_arrays(path, kind, version, changed, arrays)
            tried += 1
            try:
                loaded = cls.load(path)
            except FormatError:
                refused += 1
                continue
            if isinstance(loaded, ALS):
                loaded.recommend(0, k=3)
            else:
                loaded.search(np.ones(loaded.dim, np.float32), k=3)
    assert refused > tried // 3  # most of these are nonsense, and were refused


# --------------------------------------------------------------- QuantizedIndex

def test_quantized_slot_id_in_list_range_no_longer_crashes(tmp_path):
    """The reported crash: slot id -10**9 inside a list range, CRCs recomputed; a search
    with an allow mask read mask[-10**9]. Now the load refuses the file."""
    path = tmp_path / "q.llmrec"
    result = _run(f"""
        import numpy as np
        from llmrec import QuantizedIndex
        from llmrec._fileformat import load_arrays, save_arrays
        x = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
        QuantizedIndex(x, codec="sq8", partitions=4, random_state=0).save({str(path)!r})
        meta, arrays, version = load_arrays({str(path)!r}, "QuantizedIndex", max_kind_version=2)
        arrays = {{k: np.array(a) for k, a in arrays.items()}}
        slots, starts, sizes = arrays["slot_ids"], arrays["list_starts"], arrays["list_sizes"]
        slots[starts[0] + sizes[0]] = -10**9   # a padding slot now inside list 0 ...
        sizes[0] += 1; sizes[1] -= 1           # ... and the item counts still add up
        save_arrays({str(path)!r}, "QuantizedIndex", version, meta, arrays)
        index = QuantizedIndex.load({str(path)!r}, verify=True)
        index.search(x[:3], k=300, allow=np.ones(300, bool), probes=4)
        print("searched")
    """)
    _assert_raised(result)
    assert "slot_ids" in result.stderr and "searched" not in result.stdout


def _lists_edit(edit):
    def change(meta, arrays):
        edit(arrays["slot_ids"], arrays["list_starts"], arrays["list_sizes"], arrays["assignment"], arrays)
    return change


def _swap_two_items(slots, starts, sizes, assignment, arrays):
    a, b = starts[0], starts[1]
    slots[a], slots[b] = slots[b], slots[a]  # each now sits in the other's list


def _duplicate_item(slots, starts, sizes, assignment, arrays):
    slots[starts[0] + 1] = slots[starts[0]]


def _unaligned_start(slots, starts, sizes, assignment, arrays):
    starts[1] += 1


def _overlapping_lists(slots, starts, sizes, assignment, arrays):
    starts[1] = starts[0]


def _list_past_the_end(slots, starts, sizes, assignment, arrays):
    starts[-1] = len(slots)


def _negative_size(slots, starts, sizes, assignment, arrays):
    sizes[0], sizes[1] = -sizes[0], sizes[1] + 2 * sizes[0]


def _id_too_large(slots, starts, sizes, assignment, arrays):
    slots[starts[0]] = 10**9


def _id_in_padding(slots, starts, sizes, assignment, arrays):
    # a real id moved to a padding slot outside every list: counts add up, lists don't
    if not (slots < 0).any():
        pytest.skip("fp16 lists have no padding slots")
    pad = np.flatnonzero(slots < 0)[0]
    slots[pad] = slots[starts[0]]
    slots[starts[0]] = -1


def _assignment_out_of_range(slots, starts, sizes, assignment, arrays):
    assignment[0] = 99


def _sizes_dtype(slots, starts, sizes, assignment, arrays):
    arrays["list_sizes"] = sizes.astype(np.int32)


def _slot_count_not_blocks(slots, starts, sizes, assignment, arrays):
    arrays["slot_ids"] = np.concatenate([slots, [-1]])


LIST_ATTACKS = [_swap_two_items, _duplicate_item, _unaligned_start, _overlapping_lists,
                _list_past_the_end, _negative_size, _id_too_large, _id_in_padding,
                _assignment_out_of_range, _sizes_dtype, _slot_count_not_blocks]


@pytest.mark.parametrize("name", ["ivf_sq8", "ivf_pq4", "ivf_fp16"])
@pytest.mark.parametrize("attack", LIST_ATTACKS, ids=lambda f: f.__name__.strip("_"))
def test_crafted_inverted_lists_are_refused(tmp_path, saved_models, name, attack):
    path = tmp_path / "q"
    path.write_bytes((saved_models / name).read_bytes())
    _rewrite(path, "QuantizedIndex", _lists_edit(attack))
    for verify in (True, False):
        with pytest.raises(FormatError):
            QuantizedIndex.load(path, verify=verify)


def _nan_in(name):
    def change(meta, arrays):
        arrays[name].reshape(-1)[0] = np.nan
    return change


def _reshaped(name, shape_of):
    def change(meta, arrays):
        arrays[name] = np.resize(arrays[name], shape_of(arrays[name].shape))
    return change


def _dropped(name):
    def change(meta, arrays):
        del arrays[name]
    return change


def _fp16_infinity(meta, arrays):
    arrays["codes"][0, 0] = 0x7C00


def _meta(key, value):
    def change(meta, arrays):
        meta[key] = value
    return change


CODEC_ATTACKS = {
    "flat_sq8": [_nan_in("mid"), _nan_in("step"), _nan_in("bases"), _nan_in("item_scales"),
                 _nan_in("vectors"), _dropped("item_bases"), _dropped("mid"),
                 _reshaped("codes", lambda s: (s[0] - 1, s[1])), _reshaped("mid", lambda s: (s[0] + 1,)),
                 _reshaped("vectors", lambda s: (s[0] - 1, s[1])), _meta("n", 10**9),
                 _meta("dim", 9), _meta("codec", "pq4"), _meta("partitions", 4),
                 lambda m, a: a.__setitem__("item_bases", np.full_like(a["item_bases"], 9999)),
                 lambda m, a: a.__setitem__("bases", np.zeros((0, 8), np.float32))],
    "flat_pq4": [_nan_in("codebooks"), _reshaped("codebooks", lambda s: (s[0], 8, s[2])),
                 _reshaped("codes", lambda s: (s[0], s[1] - 1)), _meta("pq_subspaces", 3),
                 _meta("pq_subspaces", None), _meta("keep_vectors", "yes")],
    "ivf_fp16": [_fp16_infinity, _nan_in("centroids"), _reshaped("centroids", lambda s: (s[0] + 1, s[1])),
                 _reshaped("assignment", lambda s: (s[0] - 1,)), _meta("partitions", 0)],
}


@pytest.mark.parametrize("case", [(name, i) for name, attacks in CODEC_ATTACKS.items()
                                  for i in range(len(attacks))], ids=str)
def test_crafted_codec_arrays_are_refused(tmp_path, saved_models, case):
    name, i = case
    path = tmp_path / "q"
    path.write_bytes((saved_models / name).read_bytes())
    _rewrite(path, "QuantizedIndex", CODEC_ATTACKS[name][i])
    with pytest.raises(FormatError):
        QuantizedIndex.load(path)


def test_quantized_round_trips_still_load(saved_models, rng):
    for name in ("flat_sq8", "ivf_sq8", "ivf_pq4", "ivf_fp16", "flat_pq4"):
        for mmap in (False, True):
            index = QuantizedIndex.load(saved_models / name, mmap=mmap)
            ids, _ = index.search(rng.standard_normal(8).astype(np.float32), k=5,
                                  allow=np.ones(200, bool))
            assert (ids >= 0).all()


# ---------------------------------------------------------------------- ExactIndex

@pytest.mark.parametrize("attack", [
    _nan_in("vectors"), _dropped("vectors"), _meta("metric", "l2"), _meta("metric", None),
    lambda m, a: a.__setitem__("vectors", a["vectors"].astype(np.float64)),
    lambda m, a: a.__setitem__("vectors", a["vectors"].reshape(-1)),
    lambda m, a: a.__setitem__("vectors", np.zeros((5, 0), np.float32)),
])
def test_crafted_exact_index_arrays_are_refused(tmp_path, saved_models, attack):
    path = tmp_path / "e"
    path.write_bytes((saved_models / "exact").read_bytes())
    _rewrite(path, "ExactIndex", attack)
    for mmap in (False, True):
        with pytest.raises(FormatError):
            ExactIndex.load(path, mmap=mmap)


# ----------------------------------------------------------------------------- ALS

def _set_index(name, position, value):
    def change(meta, arrays):
        arrays[name][position] = value
    return change


ALS_ATTACKS = [
    _set_index("indices", 3, 10**6), _set_index("indices", 0, -1),
    _set_index("indptr", 0, 1), _set_index("indptr", -1, 10**9), _set_index("indptr", 5, 10**6),
    _set_index("indptr", 5, -3),
    _nan_in("values"), _set_index("values", 0, -1.0), _nan_in("user_factors"), _nan_in("item_factors"),
    _nan_in("item_priors"), _dropped("item_priors"), _dropped("indices"),
    _reshaped("user_factors", lambda s: (s[0], s[1] + 1)),
    _reshaped("item_priors", lambda s: (s[0] - 1, s[1])),
    _reshaped("indptr", lambda s: (s[0] - 1,)),
    _reshaped("values", lambda s: (s[0] - 1,)),
    lambda m, a: a.__setitem__("indices", a["indices"].astype(np.int64)),
    lambda m, a: m["settings"].__setitem__("factors", 9),
    lambda m, a: m["settings"].__setitem__("num_threads", 2**62),
    lambda m, a: m["settings"].__setitem__("implicit", "yes"),
    lambda m, a: m["settings"].__delitem__("alpha"),
    lambda m, a: m["settings"].__setitem__("regularization", -1),
    lambda m, a: m["params"].__setitem__("bogus", 1),
    lambda m, a: m["params"].__setitem__("factors", "many"),
    lambda m, a: m.__setitem__("params", [1]),
]


@pytest.mark.parametrize("attack", range(len(ALS_ATTACKS)))
def test_crafted_als_files_are_refused(tmp_path, saved_models, attack):
    path = tmp_path / "a"
    path.write_bytes((saved_models / "als").read_bytes())
    _rewrite(path, "ALS", ALS_ATTACKS[attack], max_kind_version=2)
    for verify in (True, False):
        with pytest.raises(FormatError):
            ALS.load(path, verify=verify)


def test_als_bit_flips_without_verify_never_crash(tmp_path, saved_models):
    """The reported crash: ALS.load(verify=False) with one flipped bit in indptr/indices
    loaded, and a later partial_fit_users crashed. Every single-bit flip in those arrays
    must now be refused or give a model that works."""
    path = tmp_path / "a"
    result = _run(f"""
        import numpy as np, scipy.sparse as sp
        from llmrec import ALS
        from llmrec._fileformat import FormatError, load_arrays
        original = open({str(saved_models / "als")!r}, "rb").read()
        _, arrays, _ = load_arrays({str(saved_models / "als")!r}, "ALS", max_kind_version=2)
        rng = np.random.default_rng(0)
        row = sp.random(1, 40, density=0.3, format="csr", random_state=2, dtype=np.float32)
        refused = loaded = 0
        for name in ("indptr", "indices"):
            start = original.find(arrays[name].tobytes()[:64])
            assert start > 0
            for byte in rng.choice(arrays[name].nbytes, 40, replace=False):
                for bit in (0, 3, 7):
                    data = bytearray(original)
                    data[start + byte] ^= 1 << bit
                    open({str(path)!r}, "wb").write(bytes(data))
                    try:
                        model = ALS.load({str(path)!r}, verify=False)
                    except FormatError:
                        refused += 1
                        continue
                    loaded += 1
                    model.partial_fit_users([0, model.n_users_], sp.vstack([row, row]).tocsr())
                    model.recommend(np.arange(model.n_users_), k=5)
        print("refused", refused, "loaded", loaded)
        raise FormatError("done")
    """)
    _assert_raised(result)
    line = next(line for line in result.stdout.splitlines() if line.startswith("refused"))
    refused = int(line.split()[1])
    assert refused > 0, result.stdout


# ---------------------------------------------------------------------- Recommender

@pytest.fixture(scope="module")
def saved_recommender(tmp_path_factory):
    from recommender_helpers import WordEncoder, small_data

    from llmrec import Recommender
    interactions, items, _ = small_data(60, 80)
    model = Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, factors=8,
                        iterations=3).fit(interactions, items=items)
    directory = tmp_path_factory.mktemp("rec") / "model"
    model.save(directory)
    return directory


def _copy_model(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("recommender.llmrec", "als.llmrec"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_recommender_als_column_index_no_longer_crashes(tmp_path, saved_recommender):
    """The reported crash: als.llmrec with a CSR column index of 10**6 crashed
    Recommender.load (scipy's tocsc trusted it)."""
    directory = _copy_model(saved_recommender, tmp_path / "model")
    _rewrite(directory / "als.llmrec", "ALS", _set_index("indices", 3, 10**6), max_kind_version=2)
    result = _run(f"""
        from llmrec import Recommender
        Recommender.load({str(directory)!r}, encoder=None)
        print("loaded")
    """)
    _assert_raised(result)
    assert "column index 1000000" in result.stderr


def _rec_array(name, value_of):
    def change(meta, arrays):
        arrays[name] = value_of(arrays[name])
    return change


def _rec_meta(*keys, value=None, delete=False):
    def change(meta, arrays):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        if delete:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return change


RECOMMENDER_ATTACKS = {
    "history item out of range": _rec_array("hist_items", lambda a: np.where(np.arange(len(a)) == 0, 10**6, a)),
    "history item negative": _rec_array("hist_items", lambda a: np.where(np.arange(len(a)) == 0, -5, a)),
    "history pointer decreasing": _rec_array("hist_indptr", lambda a: np.where(np.arange(len(a)) == 3, 10**6, a)),
    "history pointer too long": _rec_array("hist_indptr", lambda a: np.concatenate([a, a[-1:]] * 3)),
    "V rows": _rec_array("V", lambda a: a[:-1]),
    "V NaN": _rec_array("V", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a).astype(np.float32)),
    "P width": _rec_array("P", lambda a: np.hstack([a, a])),
    "E rows": _rec_array("E", lambda a: a[:-2]),
    "user rows": _rec_array("user_behaviour", lambda a: a[:-1]),
    "user text without E": lambda m, a: a.pop("E"),
    "text basis shape": _rec_array("text_basis", lambda a: a[:, :5]),
    "covariance dtype": _rec_array("cov_V", lambda a: a.astype(np.float32)),
    "norm_V zero": _rec_array("norm_V", lambda a: np.zeros_like(a)),
    "duplicate user ids": _rec_array("user_ids", lambda a: np.where(np.arange(len(a)) == 1, a[0], a)),
    "labels count": _rec_array("label_offsets", lambda a: a[:-1]),
    "label offsets past the bytes": _rec_array("label_offsets", lambda a: a + 1),
    "label offsets falling": _rec_array("label_offsets", lambda a: a[::-1].copy()),
    "labels in both forms": lambda m, a: a.update(labels=np.array(["x"] * (len(a["label_offsets"]) - 1))),
    "id kinds": _rec_meta("id_kinds", value=["int", "float"]),
    "id kinds mismatch": _rec_meta("id_kinds", value=["str", "int"]),
    "scenario missing": _rec_meta("scenarios", "home", delete=True),
    "scenario weight": _rec_meta("scenarios", "home", "behaviour", value="high"),
    "settings alpha": _rec_meta("settings", "alpha", value="one"),
    "settings threads": _rec_meta("settings", "num_threads", value=2**62),
    "settings index": _rec_meta("settings", "index", value="faiss"),
    "settings missing": _rec_meta("settings", "candidates", delete=True),
    "settings unknown": _rec_meta("settings", "bogus", value=1),
    "params unknown": _rec_meta("params", "bogus", value=1),
    "params encoder": _rec_meta("params", "encoder", value="x"),
    "encoder a number": _rec_meta("encoder", value=3),
    "regularization": _rec_meta("regularization", value=float("inf")),
    "feedback item out of range": _rec_array("fb_items", lambda a: np.where(np.arange(len(a)) == 0, 10**6, a)),
    "feedback weight negative": _rec_array("fb_weight", lambda a: -a),
    "feedback weight NaN": _rec_array("fb_weight", lambda a: np.full_like(a, np.nan)),
    "feedback disliked flag 7": _rec_array("fb_disliked", lambda a: a + 7),
    "feedback event code": _rec_array("fb_event", lambda a: a + 10**6),
    "feedback pointer short": _rec_array("fb_indptr", lambda a: a[:-1]),
    "feedback likes differ from histories": _rec_array("fb_disliked", lambda a: np.ones_like(a)),
    "feedback array missing": lambda m, a: a.pop("fb_rating"),
    "event names not strings": _rec_meta("event_names", value=[3]),
    "fitted event weights negative": _rec_meta("event_weights_fitted", value={"view": -1}),
    "settings rating rule": _rec_meta("settings", "rating_rule", value="stars"),
    "settings text storage": _rec_meta("settings", "text_storage", value="int4"),
    "inverse norms negative": _rec_array("inv_norm", lambda a: -np.abs(a) - 1),
    "inverse norms rows": _rec_array("inv_norm", lambda a: a[:-1]),
    "inverse norms and unit factors": lambda m, a: a.update(Vn=np.zeros((len(a["V"]), a["V"].shape[1]), np.float32)),
    "neither inverse norms nor unit factors": lambda m, a: a.pop("inv_norm"),
    "text codes and float text": lambda m, a: a.update(E_codes=np.zeros(a["E"].shape, np.int8),
                                                        E_scales=np.zeros(len(a["E"]), np.float32)),
    "text codes without scales": lambda m, a: a.update(E_codes=np.zeros(a.pop("E").shape, np.int8)),
    "text scales negative": lambda m, a: a.update(E_codes=np.zeros(a.pop("E").shape, np.int8),
                                                   E_scales=np.full(len(a["V"]), -1.0, np.float32)),
    "text codes float": lambda m, a: a.update(E_codes=a.pop("E"), E_scales=np.ones(len(a["V"]), np.float32)),
}


@pytest.mark.parametrize("case", sorted(RECOMMENDER_ATTACKS))
def test_crafted_recommender_files_are_refused(tmp_path, saved_recommender, case):
    from llmrec import Recommender
    directory = _copy_model(saved_recommender, tmp_path / "model")
    _rewrite(directory / "recommender.llmrec", "Recommender", RECOMMENDER_ATTACKS[case], max_kind_version=99)
    with pytest.raises(FormatError):
        Recommender.load(directory, encoder=None)


def test_recommender_with_a_foreign_als_is_refused(tmp_path, saved_recommender, saved_models):
    from llmrec import Recommender
    directory = _copy_model(saved_recommender, tmp_path / "model")
    (directory / "als.llmrec").write_bytes((saved_models / "als").read_bytes())
    with pytest.raises(FormatError, match="does not match the Recommender"):
        Recommender.load(directory, encoder=None)


def test_saved_recommender_still_loads_and_ranks(saved_recommender):
    from llmrec import Recommender
    model = Recommender.load(saved_recommender, encoder=None)
    ids, scores = model.recommend(model._user_map.ids[0], 5)
    assert (ids != -1).all() and np.isfinite(scores).all()
