"""A readers-writer lock: many searches at once, or one writer alone.

The indexes' in-place maintenance (``update``, ``remove``) rewrites rows that searches
read. Searches hold the lock shared for the whole native scan; a writer holds it
exclusively, so a search sees every row either before or after a write, never half
written. Writers are preferred: once one waits, new searches wait behind it, so a steady
stream of searches cannot starve an update.
"""

from __future__ import annotations

import threading


class ReadWriteLock:
    """Shared (``read``) and exclusive (``write``) sections; neither is re-entrant.

    ``read()`` and ``write()`` return context managers made once (a generator-based one
    cost more than the search over a few short lists it guards)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0
        self._shared = _Shared(self)
        self._exclusive = _Exclusive(self)

    def read(self) -> _Shared:
        return self._shared

    def write(self) -> _Exclusive:
        return self._exclusive


class _Shared:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock._cond:
            while lock._writing or lock._writers_waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._cond:
            lock._readers -= 1
            if lock._readers == 0 and lock._writers_waiting:
                lock._cond.notify_all()


class _Exclusive:
    __slots__ = ("_lock",)

    def __init__(self, lock: ReadWriteLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        lock = self._lock
        with lock._cond:
            lock._writers_waiting += 1
            try:
                while lock._writing or lock._readers:
                    lock._cond.wait()
            finally:
                lock._writers_waiting -= 1
            lock._writing = True

    def __exit__(self, *exc: object) -> None:
        lock = self._lock
        with lock._cond:
            lock._writing = False
            lock._cond.notify_all()
