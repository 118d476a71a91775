"""The served model: loaded from its directory with the write log replayed, swapped
atomically on reload, and written to by one writer at a time.

Reads need no lock here: a request takes :attr:`ModelHolder.model` once and uses that
object to the end (``Recommender`` requests pin one snapshot of it and run in parallel
with its writers), so a reload swaps in a new model while requests in flight finish on
the old one. Writes (events, new items, removals) take the holder's one write lock:
applied, then logged durably (:mod:`.journal`), then acknowledged, in one order that the
log replays exactly. Every :data:`CHECKPOINT_EVERY` records the model is saved into its
directory with an empty log (a checkpoint), so that a reload or a restart costs a load
and a short replay, not a replay of every write since the model was first saved.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import pandas as pd

from llmrec.serve.journal import Journal
from llmrec.serve.memory import return_freed_memory

log = logging.getLogger("llmrec.serve")


def _load(directory: Path, encoder: Any) -> Any:
    from llmrec import Recommender

    return Recommender.load(directory, encoder=encoder)


def apply_write(model: Any, record: dict[str, Any]) -> int:
    """Apply one write record to ``model``; returns how many ids or items it carried."""
    op = record["op"]
    if op == "events":
        model.update(record["user_id"], record["items"], profile=record.get("profile"))
        return len(record["items"])
    if op == "add_items":
        model.add_items(_items_frame(record["items"]))
        return len(record["items"])
    if op == "remove_items":
        if not hasattr(model, "remove_items"):
            raise NotImplementedError("this llmrec's Recommender has no remove_items yet")
        model.remove_items(record["items"])
        return len(record["items"])
    raise ValueError(f"unknown write operation {op!r}")


def _items_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame({"item_id": pd.Series([i["item_id"] for i in items], dtype=object),
                          "text": [i["text"] for i in items]})
    if any(i.get("title") for i in items):  # labels: the title where given, else the text
        frame["title"] = [i.get("title") or i["text"] for i in items]
    return frame


BACKGROUND_NICENESS = 10  # added to a background thread's nice value (Linux: per thread)
# Log records after which the server saves the model (every logged write in it) and starts
# an empty log: a reload or restart then loads the saved model and replays the few
# records written since, instead of every write ever made (~1.3 ms each at 100k items).
CHECKPOINT_EVERY = 2000


def in_background(work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` on a thread of its own at a lower CPU priority (Linux: the nice
    value is per thread, and a thread may lower its own priority but not raise it back,
    hence a fresh thread); its result, or its exception raised here."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            if hasattr(os, "setpriority"):
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICENESS)
        except OSError:  # not permitted here: run at the normal priority
            pass
        try:
            out["result"] = work(*args)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            out["error"] = error

    thread = threading.Thread(target=run, name="llmrec-background", daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


class ModelHolder:
    """The model of ``directory`` and its write log.

    ``encoder``: what :meth:`Recommender.load` gets ("saved": the spec saved with the
    model). ``loader(directory, encoder)`` loads a model (tests substitute their own).
    ``checkpoint_every``: once the log holds that many records, a write starts a
    checkpoint (:meth:`save`, on a thread of its own; writes wait for it, reads do not);
    None: never (``POST /admin/save`` still compacts)."""

    def __init__(self, directory: Any, *, encoder: Any = "saved",
                 loader: Callable[[Path, Any], Any] = _load,
                 checkpoint_every: int | None = CHECKPOINT_EVERY) -> None:
        if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or
                                             not isinstance(checkpoint_every, int) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every must be a positive int or None, got {checkpoint_every!r}")
        self.directory = Path(directory)
        self.encoder = encoder
        self.checkpoint_every = checkpoint_every
        self._checkpointing = threading.Event()  # set while a checkpoint is pending or running
        self._loader = loader
        self._write_lock = threading.Lock()   # writes, log appends, the swap
        self._reload_lock = threading.Lock()  # one reload at a time
        self.model: Any = None
        self._journal: Journal | None = None
        self.version = 0
        self.loaded_at = 0.0

    @property
    def journal(self) -> Journal:
        """The write log of the served model (from the first :meth:`reload` on)."""
        if self._journal is None:
            raise RuntimeError("no model loaded yet: call reload() first")
        return self._journal

    def reload(self) -> dict[str, Any]:
        """Load the directory again, replay its log and swap the result in. Writes wait
        only while the tail of the log written during the load is replayed; requests
        never wait (those running finish on the model they started with). Raises, with
        the current model still served, when the directory or its log cannot be read."""
        with self._reload_lock:
            start = time.perf_counter()
            journal = Journal(self.directory)
            try:
                # The load and the replay of the log so far share the cores with requests:
                # run at a lower CPU priority, so that requests come first.
                model, offset, skipped, records = in_background(self._load_and_replay, journal)
                with self._write_lock:
                    cut = journal.cut_torn_tail()  # no writer now: only a kill leaves one
                    if cut:
                        log.warning("cut %d bytes of a torn last record from %s", cut, journal.path)
                    rest, _ = journal.read(offset)
                    skipped += self._replay(model, rest)
                    journal.records = len(records) + len(rest)
                    old, self._journal = self._journal, journal
                    self.model = model
                    self.version += 1
                    self.loaded_at = time.time()
            except BaseException:
                journal.close()
                raise
            if old is not None:
                old.close()
            return_freed_memory()
            report = {"version": self.version, "replayed": journal.records - skipped,
                      "skipped": skipped, "seconds": round(time.perf_counter() - start, 3)}
            log.info("model %s loaded: %s", self.directory, report)
            return report

    def _load_and_replay(self, journal: Journal) -> tuple[Any, int, int, list[dict[str, Any]]]:
        """The directory's model with the log read so far replayed: (model, the log offset
        read up to, records skipped, records)."""
        model = self._loader(self.directory, self.encoder)
        if callable(getattr(model, "warm_up", None)):  # the first requests then need no build
            try:
                model.warm_up()
            except (OSError, ValueError, ImportError, RuntimeError) as error:
                # Served all the same: requests that need no text still work, and those
                # that do report this error, as they did before warm-ups.
                log.warning("the model of %s could not be warmed up: %s", self.directory, error)
        records, offset = journal.read()  # appends may go on meanwhile
        return model, offset, self._replay(model, records), records

    @staticmethod
    def _replay(model: Any, records: list[dict[str, Any]]) -> int:
        """Apply logged writes; one that no longer applies (it cannot fail the way it was
        logged, only if the saved model changed under the log) is skipped and counted."""
        skipped = 0
        for record in records:
            try:
                apply_write(model, record)
            except Exception as error:  # noqa: BLE001 - one bad record must not stop a start
                skipped += 1
                log.warning("write %s of the log does not apply to this model, skipped: %s",
                            record.get("seq"), error)
        return skipped

    def write(self, record: dict[str, Any]) -> int:
        """Apply ``record`` and log it durably; returns its size. Raises (nothing logged,
        nothing changed) when it does not apply, or DirectoryReplaced."""
        with self._write_lock:
            journal = self.journal
            journal.check_in_place()
            count = apply_write(self.model, record)
            try:
                journal.append(record)
            except BaseException:
                # Applied but not durable: serve the directory's state again rather than
                # a write that a restart would not have.
                log.exception("a write could not be logged; reloading %s", self.directory)
                threading.Thread(target=self._reload_quietly, daemon=True).start()
                raise
            if (self.checkpoint_every is not None and journal.records >= self.checkpoint_every
                    and not self._checkpointing.is_set()):
                self._checkpointing.set()
                threading.Thread(target=self._checkpoint, name="llmrec-checkpoint", daemon=True).start()
            return count

    def save(self) -> dict[str, Any]:
        """Save the model into its directory (every logged write is in it) and start an
        empty log: the saved model and the log switch together (see :mod:`.journal`)."""
        with self._reload_lock, self._write_lock:
            self.journal.check_in_place()
            self.model.save(self.directory)
            old, self._journal = self.journal, Journal(self.directory)
            old.close()
            return {"version": self.version, "log_records": 0}

    def _checkpoint(self) -> None:
        """:meth:`save`, at the normal CPU priority (it holds the write lock: a lower one
        would keep writes waiting behind the reads)."""
        try:
            if self.checkpoint_every is None or self.journal.records < self.checkpoint_every:
                return  # a reload or a save came first and left a short log
            start = time.perf_counter()
            self.save()
            log.info("checkpoint of %s saved in %.2f s", self.directory, time.perf_counter() - start)
        except Exception:  # noqa: BLE001 - logged; the log keeps every write meanwhile
            log.exception("checkpoint of %s failed; the write log still holds every write", self.directory)
        finally:
            self._checkpointing.clear()

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except Exception:  # noqa: BLE001 - logged; the server keeps its model
            log.exception("reload of %s failed", self.directory)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


__all__ = ["ModelHolder", "apply_write"]
