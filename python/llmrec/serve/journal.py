"""The write log of ``llmrec serve``: every write made through the API, in order, in the
model directory, so that a restart (or a reload) holds every acknowledged write.

File: ``MODEL_DIR/writes.jsonl`` (:data:`llmrec.recommender.persistence.WRITE_LOG`), one
JSON object per line: ``{"seq": n, "op": "events" | "add_items" | "remove_items", ...}``.

* **When a write counts.** The server applies a write to the model under its one write
  lock, appends the record, flushes and ``fsync``s it, and only then answers. A write that
  fails is not logged; a kill before the ``fsync`` returns loses only a write that was
  never acknowledged.
* **Replay.** Loading the model directory (at start and on every reload) replays the
  log onto the saved model, in order. A last line without its newline (a kill during
  the append) is cut off: it was never acknowledged. Any other damaged line stops the
  start with an error naming the line (that is not a kill, it is damage).
* **Saving again.** The log holds the writes since the model in the directory was
  saved. ``Recommender.save`` into the directory replaces the model and the log in one
  atomic switch (the log is not carried into the new directory): ``POST /admin/save``
  does this with every logged write already in the saved model (a compaction), and so
  does the server itself every ``checkpoint_every`` records (:mod:`.holder`). A model
  saved there by another program replaces the served model's writes too: until the
  server reloads, writes are refused with 409 (the log they would go to is gone).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmrec._atomic import fsync_directory
from llmrec.recommender.persistence import WRITE_LOG

_TAIL_BYTES = 4 << 20  # a record is at most one request body (1 MiB) plus JSON escapes


class JournalError(ValueError):
    """The log is damaged somewhere other than its last line."""


class DirectoryReplaced(RuntimeError):
    """The model directory was replaced on disk (a new save) since the log was opened."""


class Journal:
    """Append-only JSON-lines log in ``directory``; appends are made by one writer at a
    time (the server's write lock)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / WRITE_LOG
        existed = self.path.exists()
        self._file = open(self.path, "ab")
        if not existed:
            fsync_directory(self.path.parent)  # the new file's name survives a crash too
        self._identity = _identity(os.fstat(self._file.fileno()))
        self.records = 0

    def cut_torn_tail(self) -> int:
        """Cut a last line left without its newline by a kill; returns the bytes cut."""
        size = os.fstat(self._file.fileno()).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as f:
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
        if tail.endswith(b"\n"):
            return 0
        keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        if keep == 0 and size > len(tail):
            raise JournalError(f"{self.path}: its last line is longer than {_TAIL_BYTES} bytes: damaged")
        os.truncate(self.path, keep)
        os.fsync(self._file.fileno())
        return size - keep

    def read(self, start: int = 0) -> tuple[list[dict[str, Any]], int]:
        """The complete records from byte ``start`` on, and the offset after the last one
        (a line still being appended by another thread is not complete yet)."""
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read()
        end = data.rfind(b"\n") + 1
        records = []
        line_no = None
        for line_no, line in enumerate(data[:end].splitlines(), 1):
            records.append(_parse(line, self.path, start, line_no))
        return records, start + end

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` durably (written, flushed and fsync'd) or raise, leaving the
        log as it was."""
        self.check_in_place()
        line = json.dumps({"seq": self.records + 1, **record}, ensure_ascii=False,
                          separators=(",", ":")).encode() + b"\n"
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        try:
            self._file.write(line)
            self._file.flush()
            os.fsync(fd)
        except BaseException:
            try:  # no half record left for the next append to follow
                self._file.seek(0, os.SEEK_END)
                os.truncate(self.path, size)
            except OSError:
                pass
            raise
        self.records += 1

    def check_in_place(self) -> None:
        """Raise :class:`DirectoryReplaced` when the log's path no longer names this file."""
        try:
            current = _identity(os.stat(self.path))
        except FileNotFoundError:
            current = None
        if current != self._identity:
            raise DirectoryReplaced(f"the model directory {self.path.parent} was replaced on disk "
                                    "(a new save) since it was loaded: reload the server (POST "
                                    "/admin/reload or SIGHUP) to serve and log against it")

    def close(self) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read()[0])


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


def _parse(line: bytes, path: Path, start: int, line_no: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise JournalError(f"{path}: record {line_no} after byte {start} is damaged ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("op"), str):
        raise JournalError(f"{path}: record {line_no} after byte {start} is not a write record")
    return record


__all__ = ["DirectoryReplaced", "Journal", "JournalError"]
