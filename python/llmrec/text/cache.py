"""On-disk cache of text vectors, so re-encoding a catalogue only encodes what changed.

Format (version 1): one SQLite file ``text-vectors-v1.sqlite`` in the cache directory.

* table ``meta(name TEXT PRIMARY KEY, value TEXT)`` holds ``format = llmrec-text-cache``
  and ``version = 1``;
* table ``vectors(key BLOB PRIMARY KEY, dim INTEGER, crc INTEGER, data BLOB)`` holds one
  row per vector: ``key`` is the 32-byte SHA-256 of the encoder fingerprint (model,
  its weights' sizes, pooling, normalisation, max_length, dtype), the prefix and the
  text; ``data`` is ``dim`` little-endian float32 values; ``crc`` is the CRC-32 of
  ``key + data``.

Each batch of new vectors is written in one transaction, so a crash never leaves half
a batch behind. A row whose length or CRC does not match is treated as absent (the
caller recomputes and overwrites it); a file that SQLite cannot read at all is moved
aside to ``*.corrupt`` with a warning and a fresh cache is started.

Several processes may share one cache directory (``llmrec.distributed.encode`` and local
encoders, or parallel jobs): SQLite's file locks serialise the writers, each waiting up
to 60 s, and readers see whole batches. A lock held longer raises
``sqlite3.OperationalError``; it never counts as a damaged file.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FORMAT_NAME = "llmrec-text-cache"
FORMAT_VERSION = 1
FILE_NAME = f"text-vectors-v{FORMAT_VERSION}.sqlite"
_LOOKUP_CHUNK = 500  # keys per SELECT, below SQLite's default limit on parameters


def text_key(fingerprint: str, prefix: str, text: str) -> bytes:
    """The cache key of ``text`` encoded with ``prefix`` by an encoder with ``fingerprint``."""
    digest = hashlib.sha256()
    for part in (fingerprint, prefix, text):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))  # length-prefixed: no ambiguity
        digest.update(data)
    return digest.digest()


def _raise_unless_corrupt(error: sqlite3.DatabaseError) -> None:
    """Re-raise an error that does not mean a damaged file.

    Several processes may share one cache (SQLite locks the file; writers wait up to the
    connection's 60 s timeout). Python reports "database is locked", a read-only file or
    an I/O error as ``sqlite3.OperationalError``; only a damaged or foreign file
    (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``, or the format check here) comes as another
    ``DatabaseError``. Moving the file aside on a lock would throw away what the other
    processes wrote, and they would go on writing to the moved file.
    """
    if isinstance(error, sqlite3.OperationalError):
        raise error


def _checksum(key: bytes, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(key))


class VectorCache:
    """Vectors of one dimension stored under 32-byte keys in a directory.

    Parameters
    ----------
    directory
        Created if absent. Several encoders (different models or settings) can share
        it: their keys differ.
    dim
        Length of every vector; rows of another length count as corrupted.
    """

    def __init__(self, directory: str | os.PathLike[str], *, dim: int) -> None:
        self.directory = Path(directory).expanduser()
        self.dim = int(dim)
        self.path = self.directory / FILE_NAME
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect_checked()
        except sqlite3.DatabaseError as exc:
            _raise_unless_corrupt(exc)
            return self._start_afresh(exc)

    def _start_afresh(self, error: Exception) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.{time.time_ns()}.corrupt")
        if self.path.exists():
            self.path.replace(aside)
        warnings.warn(f"text vector cache {self.path} was unreadable ({error}); moved it to "
                      f"{aside} and started a new one", RuntimeWarning, stacklevel=4)
        return self._connect_checked()

    def _connect_checked(self) -> sqlite3.Connection:
        connection = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
        try:
            with connection:
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, dim INTEGER NOT NULL,"
                    " crc INTEGER NOT NULL, data BLOB NOT NULL)")
                connection.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT_NAME,))
                connection.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)",
                                   (str(FORMAT_VERSION),))
            meta = dict(connection.execute("SELECT name, value FROM meta").fetchall())
            if meta.get("format") != FORMAT_NAME or meta.get("version") != str(FORMAT_VERSION):
                raise sqlite3.DatabaseError(f"not an llmrec text cache of version {FORMAT_VERSION}: "
                                            f"meta {meta}")
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def get_many(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Look ``keys`` up.

        Returns ``(found, vectors)``: a bool array of shape (n,) and a float32 array of
        shape (n, dim) whose rows are valid where ``found`` is true. Rows that fail
        their length or checksum test are reported as not found.
        """
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return found, vectors
        with self._lock:
            try:
                self._lookup(keys, found, vectors)
            except sqlite3.DatabaseError as exc:
                _raise_unless_corrupt(exc)
                self._connection.close()
                self._connection = self._start_afresh(exc)
                found[:] = False
        return found, vectors

    def _lookup(self, keys: Sequence[bytes], found: np.ndarray, vectors: np.ndarray) -> None:
        n = len(keys)
        position = {key: i for i, key in enumerate(keys)}  # duplicates: the last wins
        unique = list(position)
        expected_bytes = self.dim * 4
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start:start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._connection.execute(
                f"SELECT key, dim, crc, data FROM vectors WHERE key IN ({marks})", chunk)
            for key, dim, crc, data in rows:
                if (dim != self.dim or not isinstance(data, bytes) or len(data) != expected_bytes
                        or _checksum(key, data) != crc):
                    continue
                i = position[key]
                vectors[i] = np.frombuffer(data, dtype="<f4")
                found[i] = True
        if len(unique) != n:  # copy results to the earlier duplicates of a key
            for i, key in enumerate(keys):
                j = position[key]
                if j != i and found[j]:
                    vectors[i] = vectors[j]
                    found[i] = True

    def put_many(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` under ``keys[i]`` in one transaction (replacing old rows)."""
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.dim):
            raise ValueError(f"vectors must have shape ({len(keys)}, {self.dim}), "
                             f"got {vectors.shape}")
        rows = []
        for key, vector in zip(keys, vectors):
            data = vector.tobytes()
            rows.append((key, self.dim, _checksum(key, data), data))
        with self._lock:
            try:
                self._insert(rows)
            except sqlite3.DatabaseError as exc:
                _raise_unless_corrupt(exc)
                self._connection.close()
                self._connection = self._start_afresh(exc)
                self._insert(rows)

    def _insert(self, rows: list[tuple[bytes, int, int, bytes]]) -> None:
        with self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO vectors (key, dim, crc, data) VALUES (?, ?, ?, ?)", rows)
