"""One consistent view of a Recommender for every request, however many threads write.

Writers (``update``, ``add_items``; one at a time under the Recommender's writer lock)
build a new :class:`Snapshot` and publish it in one assignment; a request pins the
current snapshot once at its start and reads only it, so it sees one catalogue, one set
of user rows and one version of every item row, whatever is published meanwhile.

Big arrays are not copied per write:

* new items are appended in spare capacity (:func:`llmrec._arrays.grow_rows`), past the
  rows that earlier snapshots see; stage-1 indexes and the ALS model are forked
  (:func:`fork`) and the fork grows, the original stays as it was;
* a user's rows (their signal vectors, their history) are rewritten in place, but only
  under the publish lock, under which requests copy the rows they need when they pin;
* the rows of items re-solved by ``update`` are written in place only when no request
  is running (the publish lock held, the reader count zero), otherwise into copies of
  the item matrices that the next snapshot publishes, so that no request reads a row
  half written;
* the stage-1 index rows of those items are rewritten in the index itself
  (``ExactIndex.update`` / ``QuantizedIndex.update``), under the index's write lock:
  searches hold its read lock for their whole scan, so each sees a row old or new,
  never half written (the torn-row note closed); removed items are marked there too
  (``remove``) and skipped inside the scan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np


class Snapshot(NamedTuple):
    """What requests read, as of one moment (replaced as a whole by writers)."""

    items: Any                    # scoring.Items: item matrices and the stage-1 index
    als: Any                      # the ALS model whose item factors match ``items``
    labels: Any                   # item titles (explanations): a .labels.Labels, or None
    users: dict[str, np.ndarray | None]  # per-user signal rows (n_users or more rows)
    n_users: int                  # users known to this snapshot (rows beyond are not theirs)
    towers: Any = None            # fitted SequenceTowers knowing this catalogue (towers on)
    removed: np.ndarray | None = None  # uint8 per item row, 1 = removed (remove_items); None: none

    @property
    def n_items(self) -> int:
        """Items in this snapshot's catalogue (rows beyond belong to later ones)."""
        return len(self.items.V)


class Publisher:
    """The current :class:`Snapshot` and the short lock that publishes it."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot
        self.lock = threading.Lock()  # held for microseconds: pin, publish, row writes
        self.readers = 0              # requests running (pinned) now
        self._drained = threading.Condition(self.lock)
        self._held_back = False       # a writer waits for the running requests: new ones wait

    @contextmanager
    def pin(self, gather: Callable[[Snapshot], Any] | None = None) -> Iterator[tuple[Snapshot, Any]]:
        """The current snapshot, counted as in use until the block ends; ``gather`` runs
        under the publish lock (to copy rows that writers rewrite in place)."""
        with self.lock:
            while self._held_back:
                self._drained.wait()
            snapshot = self.current
            gathered = None if gather is None else gather(snapshot)
            self.readers += 1
        try:
            yield snapshot, gathered
        finally:
            with self.lock:
                self.readers -= 1
                if self._held_back and self.readers == 0:
                    self._drained.notify_all()

    def drain(self, timeout: float) -> bool:
        """With :attr:`lock` held: hold new requests back until the running ones finish,
        ``timeout`` seconds at most. True when none runs (the caller may then rewrite the
        current snapshot's rows in place before it releases the lock; the requests held
        back start after that); False when some still run (nothing was held back in the
        end: the caller must copy instead)."""
        if self.readers == 0:
            return True
        self._held_back = True
        try:
            return self._drained.wait_for(lambda: self.readers == 0, timeout)
        finally:
            self._held_back = False
            self._drained.notify_all()

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` the one that requests starting from now will pin."""
        with self.lock:
            self.current = snapshot

    def __getstate__(self) -> dict[str, Any]:
        return {"current": self.current}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Publisher.__init__(self, state["current"])


def fork(obj: Any) -> Any:
    """A shallow twin of ``obj`` (same arrays, own attribute dict, own ``_cache`` dict),
    made without the pickling hooks. Growing the twin (``add``, ``partial_fit_items``)
    rebinds its attributes and writes only past the rows the original sees, so the
    original stays usable by the requests that hold it. Only the newest twin may grow."""
    twin = object.__new__(type(obj))
    twin.__dict__.update(obj.__dict__)
    if isinstance(obj.__dict__.get("_cache"), dict):
        twin._cache = dict(obj._cache)
    return twin


def write_rows(items: Any, patch: dict[str, np.ndarray]) -> None:
    """Write re-solved item rows (``patch``: "rows" and new "V", "inv_norm", "P", "Q") in place."""
    rows = patch["rows"]
    for name in ("V", "inv_norm", "P", "Q"):
        getattr(items, name)[rows] = patch[name]
    items.warm[rows] = 1


def with_rows(items: Any, patch: dict[str, np.ndarray]) -> Any:
    """``items`` with re-solved rows written into copies of the matrices they change."""
    copies = {name: getattr(items, name).copy() for name in ("V", "inv_norm", "P", "Q", "warm")}
    updated = items._replace(**copies)
    write_rows(updated, patch)
    return updated


__all__ = ["Publisher", "Snapshot", "fork", "with_rows", "write_rows"]
