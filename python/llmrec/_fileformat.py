"""llmrec's on-disk format: named arrays plus JSON metadata, versioned and checksummed.

Layout (all integers little-endian)::

    magic      8 bytes   b"\\x89LLMREC\\n"  (the high byte and newline catch text-mode damage)
    version    uint32    format version, currently 1
    hlen       uint32    length of the header in bytes
    header     hlen bytes of UTF-8 JSON:
                 {"kind": str, "kind_version": int, "meta": {...}, "file_size": int,
                  "arrays": [{"name", "dtype", "shape", "offset", "nbytes", "crc32"}, ...]}
    hcrc       uint32    CRC-32 of the header bytes
    arrays     each at its offset, aligned to 64 bytes, raw C-order data

Files are written to a temporary file beside the target (``.NAME.llmrec-<pid>-<token>.tmp``)
and renamed over it only once complete and flushed, so a crash never leaves a
half-written file under the real name; the temporaries of killed saves are removed by
the next save of the same name (see :mod:`llmrec._atomic`). A save refuses to replace a
directory or a non-empty file that is not an llmrec file (``FileExistsError``).
Loading checks the magic, version, header checksum, file size and (unless told not to)
every array's CRC-32, and can memory-map arrays instead of reading them.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from llmrec import _atomic

MAGIC = b"\x89LLMREC\n"
FORMAT_VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sII")
_CRC = struct.Struct("<I")
_CRC_CHUNK = 1 << 26


class FormatError(ValueError):
    """A file is not an llmrec file, is of another kind or version, or is damaged."""


def _bytes(array: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _crc32(array: np.ndarray) -> int:
    data = _bytes(array)
    crc = 0
    for start in range(0, len(data), _CRC_CHUNK):
        crc = zlib.crc32(data[start:start + _CRC_CHUNK], crc)
    return crc


def _aligned(offset: int) -> int:
    return (offset + _ALIGN - 1) // _ALIGN * _ALIGN


def save_arrays(path: str | os.PathLike[str], kind: str, kind_version: int,
                meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and JSON-serialisable ``meta`` to ``path`` atomically.

    Raises ``FileExistsError`` when ``path`` is a directory or a non-empty file that is
    not an llmrec file (it is never overwritten)."""
    path = Path(path)
    arrays = {name: np.ascontiguousarray(a).astype(np.asarray(a).dtype.newbyteorder("<"), copy=False)
              for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} has dtype object, which cannot be saved")
    entries = [{"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                "nbytes": int(a.nbytes), "crc32": _crc32(a)} for name, a in arrays.items()]
    # Offsets depend on the header length, which depends on the offsets' digits: settle
    # it by fixing the header size to a generous upper bound first.
    for e in entries:
        e["offset"] = 0
    header: dict[str, Any] = {"kind": kind, "kind_version": kind_version, "meta": meta,
                              "file_size": 0, "arrays": entries}
    reserve = len(json.dumps(header).encode()) + 40 * (len(entries) + 1) + 64
    offset = _aligned(_PREFIX.size + reserve + _CRC.size)
    for e in entries:
        e["offset"] = offset
        offset = _aligned(offset + e["nbytes"])
    header["file_size"] = offset
    header_bytes = json.dumps(header).encode().ljust(reserve)

    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic.check_file_target(path)
    _atomic.clean_stale(path)  # first: a killed save's temporary may hold gigabytes
    tmp = _atomic.temporary(path, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)))
            f.write(header_bytes)
            f.write(_CRC.pack(zlib.crc32(header_bytes)))
            for e, a in zip(entries, arrays.values()):
                f.seek(e["offset"])
                f.write(_bytes(a))
            f.truncate(offset)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _atomic.fsync_directory(path.parent)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    finally:
        _atomic.done(tmp)


def load_arrays(path: str | os.PathLike[str], kind: str, *, max_kind_version: int,
                mmap: bool = False, verify: bool = True
                ) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    """Read a file written by :func:`save_arrays`.

    Returns ``(meta, arrays, kind_version)``. With ``mmap`` the arrays are read-only
    memory maps. Raises :class:`FormatError` for a file of another kind, a newer
    version, a truncated file or a checksum mismatch, and ``FileNotFoundError`` when
    the path does not exist.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise FormatError(f"{path} is not an llmrec file (bad magic bytes)")
        _, version, header_len = _PREFIX.unpack(prefix)
        if version > FORMAT_VERSION:
            raise FormatError(f"{path} uses llmrec file format {version}; this llmrec reads "
                              f"up to {FORMAT_VERSION}: upgrade llmrec")
        header_bytes = f.read(header_len)
        crc_bytes = f.read(_CRC.size)
        if len(header_bytes) < header_len or len(crc_bytes) < _CRC.size:
            raise FormatError(f"{path} is truncated (header incomplete)")
        if zlib.crc32(header_bytes) != _CRC.unpack(crc_bytes)[0]:
            raise FormatError(f"{path} is corrupted (header checksum mismatch)")
        header = json.loads(header_bytes.decode())
        if header["kind"] != kind:
            raise FormatError(f"{path} holds a {header['kind']}, not a {kind}")
        if header["kind_version"] > max_kind_version:
            raise FormatError(f"{path} holds a {kind} of version {header['kind_version']}; this "
                              f"llmrec reads up to {max_kind_version}: upgrade llmrec")
        if size != header["file_size"]:
            raise FormatError(f"{path} is truncated or padded: {size} bytes, expected "
                              f"{header['file_size']}")
        arrays: dict[str, np.ndarray] = {}
        for e in header["arrays"]:
            dtype, shape = np.dtype(e["dtype"]), tuple(e["shape"])
            if mmap and e["nbytes"] > 0:
                a = np.memmap(path, dtype=dtype, mode="r", offset=e["offset"], shape=shape)
            else:
                f.seek(e["offset"])
                a = np.frombuffer(bytearray(f.read(e["nbytes"])), dtype=dtype)
                if a.nbytes != e["nbytes"]:
                    raise FormatError(f"{path} is truncated (array {e['name']!r} incomplete)")
                a = a.reshape(shape)
            if verify and _crc32(a) != e["crc32"]:
                raise FormatError(f"{path} is corrupted (checksum mismatch in array {e['name']!r})")
            arrays[e["name"]] = a
    return header["meta"], arrays, header["kind_version"]
