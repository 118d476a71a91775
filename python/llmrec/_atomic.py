"""Writing files and directories so that a crash or a kill never loses a model.

Every temporary llmrec writes beside a target ``NAME`` is named
``.NAME.llmrec-<pid>-<token>.tmp`` (being written) or ``.NAME.llmrec-<pid>-<token>.old``
(a replaced model being removed), so the next save can recognise what a killed
process left behind and remove it: only entries of that shape, only when their process
no longer runs (POSIX; elsewhere they are kept), and never one this process is still
writing. A replaced directory is swapped out in one atomic step where the system
allows it (Linux ``renameat2(RENAME_EXCHANGE)``); elsewhere it takes two renames, and
:func:`recover_directory` lets ``load`` find the previous copy if a kill falls between
them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path

_IN_PROGRESS: set[str] = set()  # temporaries this process is writing now
_IN_PROGRESS_LOCK = threading.Lock()
# Temporaries of llmrec versions before the pid was part of the name (mkstemp/mkdtemp:
# 8 random characters) are removed once this old, when their content is llmrec's.
_LEGACY_AGE_S = 3600.0
USE_EXCHANGE = True  # False: always the two-rename fallback (tests of that path)


def temporary(target: Path, suffix: str) -> Path:
    """A fresh name for a temporary of ``target`` (registered as in progress)."""
    path = target.parent / f".{target.name}.llmrec-{os.getpid()}-{secrets.token_hex(6)}.{suffix}"
    with _IN_PROGRESS_LOCK:
        _IN_PROGRESS.add(_key(path))
    return path


def _key(path: Path) -> str:
    """One spelling per file, however the caller named its directory."""
    return os.path.realpath(path)


def done(path: Path) -> None:
    """``path`` is no longer being written (it was renamed away or removed)."""
    with _IN_PROGRESS_LOCK:
        _IN_PROGRESS.discard(_key(path))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours and not in progress: a leftover of an earlier, failed call
    if os.name != "posix":
        return True  # no safe liveness probe here: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but is not ours to signal, or unknown: keep it
    return True


def _is_llmrec_file(path: Path) -> bool:
    from llmrec._fileformat import MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _remove(path: Path) -> None:
    """Remove a temporary llmrec wrote: a file, or a directory of llmrec's files only."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                return  # not a directory llmrec writes: leave it
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


def clean_stale(target: Path, kinds: tuple[str, ...] = ("tmp", "old")) -> list[Path]:
    """Remove the temporaries of ``target`` that a killed or failed save left behind
    (``kinds``: "tmp", half-written; "old", a replaced model moved aside, which may be
    the only copy until the target exists again); returns what was removed."""
    name = re.escape(target.name)
    kind = "|".join(kinds)
    ours = re.compile(rf"\.{name}\.llmrec-(\d+)-[0-9a-f]+\.({kind})")
    legacy = re.compile(rf"\.{name}\.[A-Za-z0-9_]{{8}}\.({kind})")
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = ours.fullmatch(entry.name)
        if match:
            with _IN_PROGRESS_LOCK:
                busy = _key(entry) in _IN_PROGRESS
            if busy or _alive(int(match.group(1))):
                continue
        elif not (legacy.fullmatch(entry.name) and _legacy_stale(entry)):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _legacy_stale(entry: Path) -> bool:
    try:
        if time.time() - entry.lstat().st_mtime < _LEGACY_AGE_S:
            return False
    except OSError:
        return False
    if entry.is_dir():
        return all(_is_llmrec_file(f) or f.stat().st_size == 0 for f in entry.iterdir() if f.is_file())
    return _is_llmrec_file(entry) or entry.stat().st_size == 0  # killed before its first write


def fsync_directory(path: Path) -> None:
    """Make renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_file_target(path: Path) -> None:
    """Refuse to replace what is not an llmrec file: a directory, or a non-empty file
    that does not start with llmrec's magic bytes (an empty file is replaced)."""
    if path.is_dir():
        raise FileExistsError(f"{path} is a directory; llmrec saves a model file there only "
                              "where there is no file or an llmrec file")
    if path.exists() and path.stat().st_size > 0 and not _is_llmrec_file(path):
        raise FileExistsError(f"{path} exists and is not an llmrec file: refusing to "
                              "overwrite it (remove it or choose another path)")


def exchange(a: Path, b: Path) -> bool:
    """Swap the two existing paths ``a`` and ``b`` in one atomic step (Linux
    ``renameat2(RENAME_EXCHANGE)``). Returns False where the system or the file system
    cannot, having changed nothing."""
    if not USE_EXCHANGE or not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def recover_directory(target: Path) -> Path:
    """``target``, or, when it is missing, the newest copy a save moved aside just before
    a kill (``.NAME.llmrec-*.old``, or the ``.NAME.*.old`` of older llmrec versions)."""
    if target.exists():
        return target
    name = re.escape(target.name)
    aside = re.compile(rf"\.{name}\.(llmrec-\d+-[0-9a-f]+|[A-Za-z0-9_]{{8}})\.old")
    try:
        candidates = [e for e in target.parent.iterdir() if aside.fullmatch(e.name) and e.is_dir()]
    except OSError:
        return target
    if not candidates:
        return target
    return max(candidates, key=lambda e: e.stat().st_mtime)
