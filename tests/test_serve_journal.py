"""The write log on its own: appends are whole lines, a torn last line (a kill during an
append) is cut and never replayed, damage anywhere else stops the start with an error
naming the record, and a replaced directory is noticed before a write."""

from __future__ import annotations

import json
import shutil

import pytest

from llmrec.serve.journal import DirectoryReplaced, Journal, JournalError

pytestmark = pytest.mark.serve


def test_appends_are_whole_numbered_lines(tmp_path):
    journal = Journal(tmp_path)
    records = [{"op": "events", "user_id": 7, "items": [1, 2]},
               {"op": "add_items", "items": [{"item_id": "é\n\"x", "text": "new\nline"}]}]
    for r in records:
        journal.append(r)
    got, end = journal.read()
    assert got == [{"seq": i + 1, **r} for i, r in enumerate(records)]
    assert end == journal.path.stat().st_size
    assert journal.path.read_bytes().count(b"\n") == 2
    journal.close()


@pytest.mark.parametrize("tail", [b'{"seq":3,"op":"events","user_id":1,"ite', b"{", b'{"seq":3,"op":"x"}'])
def test_a_torn_last_line_is_cut_not_replayed(tmp_path, tail):
    journal = Journal(tmp_path)
    journal.append({"op": "events", "user_id": 1, "items": [1]})
    journal.append({"op": "events", "user_id": 2, "items": [2]})
    size = journal.path.stat().st_size
    with open(journal.path, "ab") as f:
        f.write(tail)
    records, end = journal.read()  # a reader never sees the incomplete line
    assert [r["user_id"] for r in records] == [1, 2] and end == size
    assert journal.cut_torn_tail() == len(tail)
    assert journal.path.stat().st_size == size
    journal.append({"op": "events", "user_id": 3, "items": [3]})  # and appends go on cleanly
    assert [r["user_id"] for r in Journal(tmp_path).read()[0]] == [1, 2, 3]


def test_a_log_that_is_one_torn_line_is_emptied(tmp_path):
    (tmp_path / "writes.jsonl").write_bytes(b'{"seq":1,"op":"ev')
    journal = Journal(tmp_path)
    assert journal.read() == ([], 0)
    assert journal.cut_torn_tail() == 17 and journal.path.read_bytes() == b""


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", b'{"seq": 2}', b"\xff\xfe"])
def test_damage_before_the_last_line_is_an_error_naming_it(tmp_path, bad):
    good = json.dumps({"seq": 1, "op": "events", "user_id": 1, "items": [1]}).encode()
    (tmp_path / "writes.jsonl").write_bytes(good + b"\n" + bad + b"\n" + good + b"\n")
    with pytest.raises(JournalError, match="record 2"):
        Journal(tmp_path).read()


def test_a_replaced_directory_is_noticed(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    journal = Journal(directory)
    journal.check_in_place()
    shutil.rmtree(directory)
    directory.mkdir()
    with pytest.raises(DirectoryReplaced, match="reload"):
        journal.append({"op": "events", "user_id": 1, "items": [1]})
    assert not (directory / "writes.jsonl").exists()
