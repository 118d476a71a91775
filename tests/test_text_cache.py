"""VectorCache: the on-disk store behind TextEncoder(cache_dir=...) (no torch needed)."""

import sqlite3

import numpy as np
import pytest

from llmrec.text.cache import FILE_NAME, VectorCache, text_key


def _keys(texts, fingerprint="model-a", prefix=""):
    return [text_key(fingerprint, prefix, t) for t in texts]


def test_round_trip_across_instances(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    keys = _keys([f"text {i}" for i in range(50)])
    with VectorCache(tmp_path, dim=8) as cache:
        found, _ = cache.get_many(keys)
        assert not found.any()
        cache.put_many(keys, vectors)
        assert len(cache) == 50
    with VectorCache(tmp_path, dim=8) as cache:
        found, got = cache.get_many(keys[::-1] + _keys(["unseen"]))
    assert found.tolist() == [True] * 50 + [False]
    np.testing.assert_array_equal(got[:50], vectors[::-1])
    np.testing.assert_array_equal(got[50], 0)


def test_keys_depend_on_fingerprint_prefix_and_text():
    base = text_key("m", "", "heat")
    assert len(base) == 32
    assert text_key("m", "", "heat") == base
    assert len({base, text_key("m2", "", "heat"), text_key("m", "query: ", "heat"),
                text_key("m", "", "Heat")}) == 4
    # Length-prefixed parts: moving characters between prefix and text changes the key.
    assert text_key("m", "ab", "c") != text_key("m", "a", "bc")


def test_duplicate_keys_and_many_keys(tmp_path):
    keys = _keys([f"t{i}" for i in range(1200)])  # more than one SELECT chunk
    vectors = np.arange(1200 * 4, dtype=np.float32).reshape(1200, 4)
    with VectorCache(tmp_path, dim=4) as cache:
        cache.put_many(keys, vectors)
        found, got = cache.get_many([keys[3], keys[3], keys[1100]])
    assert found.all()
    np.testing.assert_array_equal(got, vectors[[3, 3, 1100]])


def test_corrupted_rows_are_reported_missing(tmp_path):
    keys = _keys(["a", "b", "c", "d"])
    vectors = np.eye(4, dtype=np.float32)
    with VectorCache(tmp_path, dim=4) as cache:
        cache.put_many(keys, vectors)
    db = sqlite3.connect(str(tmp_path / FILE_NAME))
    with db:
        flipped = bytearray(vectors[0].tobytes())
        flipped[1] ^= 0x40
        db.execute("UPDATE vectors SET data = ? WHERE key = ?", (bytes(flipped), keys[0]))
        db.execute("UPDATE vectors SET data = ? WHERE key = ?", (b"\0" * 8, keys[1]))
        db.execute("UPDATE vectors SET dim = 3 WHERE key = ?", (keys[2],))
    db.close()
    with VectorCache(tmp_path, dim=4) as cache:
        found, got = cache.get_many(keys)
        assert found.tolist() == [False, False, False, True]
        np.testing.assert_array_equal(got[3], vectors[3])
        cache.put_many(keys[:3], vectors[:3])  # recomputed values overwrite the bad rows
        found, got = cache.get_many(keys)
    assert found.all()
    np.testing.assert_array_equal(got, vectors)


def test_unreadable_file_is_moved_aside(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        cache = VectorCache(tmp_path, dim=2)
    with cache:
        assert len(cache) == 0
        cache.put_many(_keys(["x"]), np.ones((1, 2), np.float32))
        assert cache.get_many(_keys(["x"]))[0].all()
    assert list(tmp_path.glob(FILE_NAME + ".*.corrupt"))


def test_other_dimension_is_a_miss(tmp_path):
    keys = _keys(["x"])
    with VectorCache(tmp_path, dim=4) as cache:
        cache.put_many(keys, np.ones((1, 4), np.float32))
    with VectorCache(tmp_path, dim=8) as cache:
        assert not cache.get_many(keys)[0].any()


def test_put_checks_shape(tmp_path):
    with VectorCache(tmp_path / "new" / "dir", dim=4) as cache:
        with pytest.raises(ValueError, match=r"\(2, 4\)"):
            cache.put_many(_keys(["a", "b"]), np.ones((2, 3), np.float32))
        assert cache.get_many([])[1].shape == (0, 4)


def _write_from_process(directory, worker, batches, per_batch):
    """Run in a child process: write ``batches`` transactions of this worker's keys, read
    every earlier batch back after each write."""
    with VectorCache(directory, dim=4) as cache:
        for b in range(batches):
            keys = _keys([f"w{worker} b{b} t{i}" for i in range(per_batch)])
            cache.put_many(keys, np.full((per_batch, 4), worker * 1000 + b, np.float32))
            found, _ = cache.get_many(_keys([f"w{worker} b{c} t{i}" for c in range(b + 1)
                                             for i in range(per_batch)]))
            if not found.all():
                raise AssertionError(f"worker {worker} lost its own rows after batch {b}")


def test_processes_share_one_cache(tmp_path):
    # Four processes write and read the same file at once (what dist.encode's driver and
    # local encoders do): SQLite's locks serialise them, nothing is lost or moved aside.
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_from_process, args=(tmp_path, w, 15, 40))
               for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    assert not list(tmp_path.glob("*.corrupt"))
    with VectorCache(tmp_path, dim=4) as cache:
        assert len(cache) == 4 * 15 * 40
        found, got = cache.get_many(_keys([f"w3 b14 t{i}" for i in range(40)]))
    assert found.all() and (got == 3014).all()


def test_a_lock_is_not_corruption(tmp_path, monkeypatch):
    # "database is locked" (another process holding the write lock past the busy
    # timeout) must raise, not move the shared file aside as if it were damaged.
    import llmrec.text.cache as cache_module

    keys = _keys(["a", "b"])
    with VectorCache(tmp_path, dim=2) as cache:
        cache.put_many(keys, np.ones((2, 2), np.float32))
    connect = sqlite3.connect
    monkeypatch.setattr(cache_module.sqlite3, "connect",
                        lambda *args, **kwargs: connect(*args, **{**kwargs, "timeout": 0.05}))
    holder = connect(str(tmp_path / FILE_NAME), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            VectorCache(tmp_path, dim=2)
    finally:
        holder.execute("ROLLBACK")
    cache = VectorCache(tmp_path, dim=2)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            cache.get_many(keys)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            cache.put_many(_keys(["c"]), np.ones((1, 2), np.float32))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with cache:
        assert cache.get_many(keys)[0].all()
    assert not list(tmp_path.glob("*.corrupt"))
