"""ExactIndex save/load: round trips, memory maps, damaged files, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from llmrec import ExactIndex
from llmrec._fileformat import FormatError, load_arrays, save_arrays


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(tmp_path, rng, metric, mmap):
    items = rng.standard_normal((321, 13)).astype(np.float32)
    index = ExactIndex(items, metric=metric)
    index.add(rng.standard_normal((5, 13)))
    path = tmp_path / "index.llmrec"
    index.save(path)
    loaded = ExactIndex.load(path, mmap=mmap)
    assert (len(loaded), loaded.dim, loaded.metric) == (326, 13, metric)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)  # exact: saved bit for bit
    assert isinstance(loaded._items, np.memmap) == mmap
    queries = rng.standard_normal((4, 13)).astype(np.float32)
    for a, b in zip(loaded.search(queries, k=7), index.search(queries, k=7)):
        np.testing.assert_array_equal(a, b)
    loaded.add(np.ones((1, 13)))  # a mapped index grows into memory of its own
    assert len(loaded) == 327 and len(ExactIndex.load(path)) == 326


def test_empty_index_round_trip(tmp_path):
    path = tmp_path / "empty.llmrec"
    ExactIndex(np.zeros((0, 3), np.float32)).save(path)
    assert len(ExactIndex.load(path, mmap=True)) == 0


@pytest.fixture
def saved(tmp_path, rng):
    path = tmp_path / "index.llmrec"
    ExactIndex(rng.standard_normal((200, 8)).astype(np.float32)).save(path)
    return path


def test_truncated_file_is_rejected(saved):
    data = saved.read_bytes()
    for cut in (5, 20, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="truncated|not an llmrec file"):
            ExactIndex.load(saved)


@pytest.mark.parametrize("mmap", [False, True])
def test_corrupted_data_is_rejected(saved, mmap):
    data = bytearray(saved.read_bytes())
    data[-100] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum mismatch in array 'vectors'"):
        ExactIndex.load(saved, mmap=mmap)


def test_corrupted_header_is_rejected(saved):
    data = bytearray(saved.read_bytes())
    data[30] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="header checksum"):
        ExactIndex.load(saved)


def test_foreign_and_newer_files_are_rejected(tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"PK\x03\x04 not ours at all")
    with pytest.raises(FormatError, match="not an llmrec file"):
        ExactIndex.load(other)
    wrong_kind = tmp_path / "kind.llmrec"
    save_arrays(wrong_kind, "ALS", 1, {}, {"x": np.zeros(3)})
    with pytest.raises(FormatError, match="holds a ALS, not a ExactIndex"):
        ExactIndex.load(wrong_kind)
    newer = tmp_path / "newer.llmrec"
    save_arrays(newer, "ExactIndex", 99, {"metric": "ip"}, {"vectors": np.zeros((1, 2), np.float32)})
    with pytest.raises(FormatError, match="version 99"):
        ExactIndex.load(newer)
    with pytest.raises(FileNotFoundError):
        ExactIndex.load(tmp_path / "missing.llmrec")


def test_failed_save_keeps_the_old_file_and_leaves_no_debris(saved, monkeypatch, rng):
    before = saved.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        ExactIndex(rng.standard_normal((50, 8)).astype(np.float32)).save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


def test_arrays_of_many_dtypes_round_trip(tmp_path, rng):
    arrays = {"f32": rng.standard_normal((3, 4)).astype(np.float32), "i64": np.arange(7),
              "u8": np.array([1, 2, 255], np.uint8), "empty": np.zeros((0, 5)),
              "big_endian": np.arange(4, dtype=">i4")}
    save_arrays(tmp_path / "a", "Test", 2, {"hello": [1, "x"]}, arrays)
    meta, loaded, version = load_arrays(tmp_path / "a", "Test", max_kind_version=2)
    assert meta == {"hello": [1, "x"]} and version == 2
    for name, a in arrays.items():
        np.testing.assert_array_equal(loaded[name], a)
        assert loaded[name].shape == a.shape
