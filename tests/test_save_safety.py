"""save never loses a model and never removes what it did not write: foreign targets are
refused, the switch to a new model is atomic (or load recovers), killed saves' temporaries
are cleaned up by the next save, and a save killed at random points always leaves a
loadable model."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec import ALS, ExactIndex, QuantizedIndex, Recommender, _atomic

from recommender_helpers import WordEncoder, small_data

_OURS = re.compile(r"\..+\.llmrec-\d+-[0-9a-f]+\.(tmp|old)")


@pytest.fixture(scope="module")
def model():
    interactions, items, _ = small_data(120, 90)
    return Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                       factors=8, iterations=3).fit(interactions, items=items)


def _leftovers(folder: Path) -> list[str]:
    return sorted(e.name for e in folder.iterdir() if _OURS.fullmatch(e.name))


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped: it no longer runs)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------- foreign targets
def test_save_refuses_a_directory_holding_other_files(model, tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    (target / "important.txt").write_text("do not lose me")
    before = _snapshot(target)
    with pytest.raises(FileExistsError, match=re.escape(str(target))):
        model.save(target)
    assert _snapshot(target) == before
    assert sorted(os.listdir(tmp_path)) == ["dir"]  # no temporary left behind


def test_save_refuses_a_model_directory_with_an_extra_file(model, tmp_path):
    target = tmp_path / "m"
    model.save(target)
    (target / "notes.txt").write_text("mine")
    before = _snapshot(target)
    with pytest.raises(FileExistsError, match="notes.txt"):
        model.save(target)
    assert _snapshot(target) == before


def test_save_refuses_an_existing_file(model, tmp_path):
    target = tmp_path / "model"
    target.write_text("an ordinary file")
    with pytest.raises(FileExistsError, match="not a directory"):
        model.save(target)
    assert target.read_text() == "an ordinary file"


def test_save_refuses_a_file_named_like_a_model_file(model, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "recommender.llmrec").write_text("not llmrec's")
    with pytest.raises(FileExistsError):
        model.save(target)
    assert (target / "recommender.llmrec").read_text() == "not llmrec's"


def test_save_into_new_empty_and_existing_model_directories(model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    model.save(empty)
    nested = tmp_path / "a" / "b" / "m"
    model.save(nested)
    expected = model.recommend(3, 5)
    for target in (empty, nested):
        assert sorted(os.listdir(target)) == ["als.llmrec", "recommender.llmrec"]
        np.testing.assert_array_equal(Recommender.load(target, encoder=model.encoder).recommend(3, 5).ids,
                                      expected.ids)
    # Replacing a model: the new one, nothing else left beside it.
    changed = Recommender.load(empty, encoder=model.encoder)
    changed.add_items(pd.DataFrame({"item_id": [90_001], "text": ["a new cooking story"]}))
    changed.save(empty)
    assert len(Recommender.load(empty, encoder=model.encoder)._item_map) == len(model._item_map) + 1
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(empty)) == ["als.llmrec", "recommender.llmrec"]


def test_save_through_a_symlink_keeps_the_link(model, tmp_path):
    real = tmp_path / "real"
    model.save(real)
    link = tmp_path / "link"
    link.symlink_to(real)
    model.save(link)
    assert link.is_symlink() and Recommender.load(link, encoder=model.encoder)._item_map is not None


# ----------------------------------------------------------------- switching models
@pytest.mark.parametrize("exchange", [True, False])
def test_replace_switches_whole_models(model, tmp_path, monkeypatch, exchange):
    monkeypatch.setattr(_atomic, "USE_EXCHANGE", exchange)
    target = tmp_path / "m"
    model.save(target)
    other = Recommender.load(target, encoder=model.encoder)
    other.update(0, [model._item_map.ids[5]])
    other.save(target)
    loaded = Recommender.load(target, encoder=model.encoder)
    np.testing.assert_array_equal(loaded.recommend(0, 10).ids, other.recommend(0, 10).ids)
    assert _leftovers(tmp_path) == []


def test_load_recovers_a_model_moved_aside_by_a_killed_switch(model, tmp_path, monkeypatch):
    """Without an atomic exchange the old model is renamed aside first; a failure (or a
    kill) before the new one is renamed in leaves no directory under the target name:
    load falls back to the copy aside, and the next save cleans it up."""
    monkeypatch.setattr(_atomic, "USE_EXCHANGE", False)
    target = tmp_path / "m"
    model.save(target)
    expected = model.recommend(7, 10).ids
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".tmp") and Path(dst) == target:
            raise KeyboardInterrupt  # stands in for the kill between the two renames
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    monkeypatch.setattr(os, "rename", real_rename)
    assert not target.exists() and len(_leftovers(tmp_path)) == 1
    np.testing.assert_array_equal(Recommender.load(target, encoder=model.encoder).recommend(7, 10).ids,
                                  expected)
    model.save(target)
    assert target.is_dir() and _leftovers(tmp_path) == []


def test_stale_temporaries_are_removed_and_live_ones_kept(model, tmp_path):
    target = tmp_path / "m"
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".m.llmrec-{dead}-0a1b2c.tmp", tmp_path / f".m.llmrec-{dead}-3d4e5f.old"]
    for folder in stale:
        folder.mkdir()
        (folder / "recommender.llmrec").write_bytes(b"\x89LLMREC\n" + bytes(1000))
    live = tmp_path / f".m.llmrec-{alive}-aaaaaa.tmp"
    live.mkdir()
    unrelated = [tmp_path / ".m.backup.tmp", tmp_path / f".other.llmrec-{dead}-0a1b2c.tmp"]
    for path in unrelated:
        path.write_text("someone else's")
    # Left by llmrec versions that named temporaries without the pid: removed once old.
    legacy = [tmp_path / ".m.ab12cd34.tmp", tmp_path / ".m.ef56gh78.old"]
    old = time.time() - 2 * _atomic._LEGACY_AGE_S
    for folder in legacy:
        folder.mkdir()
        (folder / "als.llmrec").write_bytes(b"\x89LLMREC\n" + bytes(10))
        (folder / ".als.llmrec.x1y2z3w4.tmp").touch()  # killed right after creating it
        os.utime(folder, (old, old))
    recent = tmp_path / ".m.ij90kl12.tmp"  # may still be written by an older llmrec
    recent.mkdir()
    model.save(target)
    names = set(os.listdir(tmp_path))
    assert not {p.name for p in stale + legacy} & names
    assert live.name in names and recent.name in names and all(p.name in names for p in unrelated)


def test_a_failed_save_leaves_nothing_behind(model, tmp_path, monkeypatch):
    target = tmp_path / "m"
    model.save(target)
    before = _snapshot(target)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ALS, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert _snapshot(target) == before and _leftovers(tmp_path) == []


# ----------------------------------------------------------------- single files
def _small_als() -> ALS:
    R = sp.random(30, 20, density=0.2, format="csr", dtype=np.float32, random_state=0)
    R.data[:] = 1.0
    return ALS(factors=4, iterations=2, random_state=0).fit(R)


@pytest.mark.parametrize("make", [
    lambda: _small_als(),
    lambda: ExactIndex(np.eye(20, 8, dtype=np.float32)),
    lambda: QuantizedIndex(np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)),
], ids=["ALS", "ExactIndex", "QuantizedIndex"])
def test_single_file_saves(make, tmp_path):
    obj = make()
    foreign = tmp_path / "data.bin"
    foreign.write_bytes(b"precious bytes")
    with pytest.raises(FileExistsError, match="not an llmrec file"):
        obj.save(foreign)
    assert foreign.read_bytes() == b"precious bytes"
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(FileExistsError, match="directory"):
        obj.save(folder)
    empty = tmp_path / "empty.llmrec"
    empty.touch()
    obj.save(empty)  # an empty file holds nothing to lose
    obj.save(empty)  # an llmrec file is replaced
    type(obj).load(empty)
    dead = _dead_pid()
    stale = tmp_path / f".empty.llmrec.llmrec-{dead}-abcdef.tmp"
    stale.write_bytes(b"\x89LLMREC\n" + bytes(100))
    legacy_new = tmp_path / ".empty.llmrec.ab12cd34.tmp"  # an older llmrec's, maybe still writing
    legacy_old = tmp_path / ".empty.llmrec.zz98yy76.tmp"  # an older llmrec's, long abandoned
    for path in (legacy_new, legacy_old):
        path.write_bytes(b"\x89LLMREC\n" + bytes(100))
    old = time.time() - 2 * _atomic._LEGACY_AGE_S
    os.utime(legacy_old, (old, old))
    obj.save(empty)
    names = set(os.listdir(tmp_path))
    assert stale.name not in names and legacy_old.name not in names and legacy_new.name in names
    assert not [n for n in names if _OURS.fullmatch(n)]


# ----------------------------------------------------------------- killed at random
_SAVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from llmrec import Recommender, _atomic
    from recommender_helpers import WordEncoder
    _atomic.USE_EXCHANGE = {exchange!r}
    models = [Recommender.load(p, encoder=WordEncoder()) for p in {sources!r}]
    print("ready", flush=True)
    step = 0
    while True:
        models[step % 2].save({target!r})
        step += 1
""")


@pytest.mark.parametrize("exchange", [True, False])
def test_save_killed_at_random_points_leaves_a_model(tmp_path, exchange, rng):
    """A process saves two models in turns into one directory and is SIGKILLed at a random
    moment, 6 times: the directory always loads, as one of the two models, and the
    temporaries never pile up (at most the killed save's own)."""
    interactions, items, _ = small_data(1500, 400)
    a = Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                    factors=48, iterations=2).fit(interactions, items=items)
    sources = [str(tmp_path / "a"), str(tmp_path / "b")]
    a.save(sources[0])
    a.add_items(pd.DataFrame({"item_id": [10**6], "text": ["one more"]}))
    a.save(sources[1])
    sizes = {len(a._item_map) - 1, len(a._item_map)}
    work = tmp_path / "work"
    work.mkdir()
    target = work / "model"
    a.save(target)
    script = _SAVER.format(tests=str(Path(__file__).parent), exchange=exchange, sources=sources,
                           target=str(target))
    deadline = time.monotonic() + 60
    kills = 0
    while kills < 6 and time.monotonic() < deadline:
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            # (an editable install may print its rebuild first)
            assert any(line.strip() == b"ready" for line in child.stdout), "the saver did not start"
            time.sleep(float(rng.uniform(0.0, 0.4)))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        kills += 1
        loaded = Recommender.load(target, encoder=WordEncoder())
        assert len(loaded._item_map) in sizes
        assert loaded.recommend(0, 5).ids.shape == (5,)
        assert len(_leftovers(work)) <= 2, _leftovers(work)
    assert kills >= 3
    a.save(target)
    assert _leftovers(work) == [] and os.listdir(work) == ["model"]


def test_a_save_in_progress_in_this_process_is_not_cleaned_up(tmp_path, monkeypatch):
    """Two threads of one process saving beside each other: the temporary one is writing
    is not taken for a leftover by the other, however each spells the directory."""
    monkeypatch.chdir(tmp_path)
    target = Path("m.llmrec")  # relative here, absolute below
    busy = _atomic.temporary(target, "tmp")
    busy.write_bytes(b"\x89LLMREC\n")
    try:
        ExactIndex(np.eye(4, dtype=np.float32)).save(tmp_path / "m.llmrec")
        assert busy.exists()
    finally:
        _atomic.done(busy)
    ExactIndex(np.eye(4, dtype=np.float32)).save(tmp_path / "m.llmrec")
    assert not busy.exists()  # ours, no longer in progress: a leftover now
