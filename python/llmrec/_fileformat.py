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
Loading refuses anything but a regular file, checks the magic, version (only the
supported ones), header length (at most 64 MiB, within the file), header checksum, the
header's schema (every field's type; each array's dtype from an allow-list, its byte
count equal to its shape's, its bytes inside the file and overlapping no other array),
the file size and (unless told not to) every array's CRC-32, and can memory-map arrays
instead of reading them. Loaders then validate the arrays' structure (``_validate``).
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from llmrec import _atomic
from llmrec.exceptions import FormatError

MAGIC = b"\x89LLMREC\n"
FORMAT_VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sII")
_CRC = struct.Struct("<I")
_CRC_CHUNK = 1 << 26


def _bytes(array: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))  # type: ignore[arg-type]


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
    entries: list[dict[str, Any]] = [{"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
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


_SUPPORTED_VERSIONS = (1,)  # format versions this llmrec reads; anything else is refused
_MAX_HEADER = 64 << 20  # a header is a few kB; a larger length field is damage or an attack
_MAX_ARRAYS = 4096
_MAX_NDIM = 8
# dtypes a file may hold: little-endian numbers and unicode strings, never objects.
_NUMERIC_DTYPES = frozenset(("|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8",
                             "<f2", "<f4", "<f8"))
_MAX_STRING_CHARS = 1 << 16


def _open_regular(path: Path) -> Any:
    """Open ``path`` for reading, refusing anything but a regular file (a FIFO, device or
    directory) before reading a byte. O_NONBLOCK keeps opening a FIFO from blocking."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise FormatError(f"{path} is {what}: llmrec files are regular files")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _dtype(text: Any, where: str) -> np.dtype:
    """The dtype named by a header entry, from an allow-list (no objects, no structs)."""
    if isinstance(text, str) and text in _NUMERIC_DTYPES:
        return np.dtype(text)
    if (isinstance(text, str) and text.startswith("<U") and text[2:].isdigit()
            and 1 <= int(text[2:]) <= _MAX_STRING_CHARS):
        return np.dtype(text)
    raise FormatError(f"{where} has dtype {text!r}, which llmrec files do not hold")


def _field(mapping: dict[str, Any], key: str, types: Any, where: str) -> Any:
    if key not in mapping:
        raise FormatError(f"{where} lacks the field {key!r}")
    value = mapping[key]
    if isinstance(value, bool) and types is not bool or not isinstance(value, types):
        raise FormatError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _check_entries(header: dict[str, Any], path: Path, data_start: int, size: int
                   ) -> list[tuple[str, np.dtype, tuple[int, ...], int, int, int]]:
    """The array entries of a header, each checked: a unique name, an allowed dtype, a
    shape of non-negative ints whose byte count is ``nbytes``, a range inside the file
    after the header and overlapping no other array."""
    entries = _field(header, "arrays", list, f"{path} header")
    if len(entries) > _MAX_ARRAYS:
        raise FormatError(f"{path} header lists {len(entries)} arrays; at most {_MAX_ARRAYS}")
    out = []
    for position, e in enumerate(entries):
        where = f"{path} header, array #{position}"
        if not isinstance(e, dict):
            raise FormatError(f"{where} is not an object")
        name = _field(e, "name", str, where)
        where = f"{path} header, array {name!r}"
        dtype = _dtype(_field(e, "dtype", str, where), where)
        shape = _field(e, "shape", list, where)
        if len(shape) > _MAX_NDIM or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                             for s in shape):
            raise FormatError(f"{where} has an invalid shape {shape!r}")
        offset = _field(e, "offset", int, where)
        nbytes = _field(e, "nbytes", int, where)
        crc = _field(e, "crc32", int, where)
        if nbytes != math.prod(shape) * dtype.itemsize:
            raise FormatError(f"{where}: nbytes {nbytes} does not match shape {shape} of {dtype}")
        if not 0 <= crc < 2**32:
            raise FormatError(f"{where}: invalid checksum field {crc}")
        if offset < data_start or offset + nbytes > size:
            raise FormatError(f"{where} lies outside the file's data (bytes {offset}..{offset + nbytes} "
                              f"of {size})")
        out.append((name, dtype, tuple(shape), offset, nbytes, crc))
    if len({e[0] for e in out}) != len(out):
        raise FormatError(f"{path} header names an array twice")
    spans = sorted((e[3], e[3] + e[4]) for e in out if e[4])
    if any(end > next_start for (_, end), (next_start, _) in zip(spans, spans[1:])):
        raise FormatError(f"{path} header places two arrays on overlapping bytes")
    return out


def _read_array(f: Any, offset: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...],
                spare: bool) -> np.ndarray | None:
    """The array stored at ``offset``, read straight into its own writeable storage (with
    ``spare``, the first rows of a buffer twice as tall); None when the file ends first."""
    if spare and shape:
        a = np.zeros((max(2 * shape[0], 16), *shape[1:]), dtype=dtype)[:shape[0]]
    else:
        a = np.empty(shape, dtype=dtype)
    if a.nbytes != nbytes:
        return None
    f.seek(offset)
    view = a.reshape(-1).view(np.uint8).data if nbytes else memoryview(bytearray())
    got = 0
    while got < nbytes:
        read = f.readinto(view[got:])
        if not read:
            return None
        got += read
    return a


def load_arrays(path: str | os.PathLike[str], kind: str, *, max_kind_version: int,
                mmap: bool = False, verify: bool = True, spare_rows: Collection[str] = ()
                ) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    """Read a file written by :func:`save_arrays`.

    Returns ``(meta, arrays, kind_version)``. With ``mmap`` the arrays are read-only
    memory maps. The arrays named in ``spare_rows`` are read into storage with room for
    as many rows again (:func:`llmrec._arrays.spare_rows`: rows appended to them later
    go in place). Raises :class:`FormatError` for anything but a regular file, a file of
    another kind, an unsupported version, a truncated file, a checksum mismatch or a
    header that does not describe the file (its schema, dtypes, sizes and offsets are
    checked before any array is read), and ``FileNotFoundError`` when the path does not
    exist. The arrays' contents are the caller's to validate (see ``llmrec._validate``).
    """
    path = Path(path)
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            raise FormatError(f"{path} is not an llmrec file (bad magic bytes)")
        _, version, header_len = _PREFIX.unpack(prefix)
        if version not in _SUPPORTED_VERSIONS:
            advice = ": upgrade llmrec" if version > max(_SUPPORTED_VERSIONS) else ""
            raise FormatError(f"{path} uses llmrec file format {version}; this llmrec reads "
                              f"{', '.join(map(str, _SUPPORTED_VERSIONS))}{advice}")
        data_start = _PREFIX.size + header_len + _CRC.size
        if header_len > _MAX_HEADER:
            raise FormatError(f"{path} declares a header of {header_len} bytes; at most {_MAX_HEADER}")
        if data_start > size:
            raise FormatError(f"{path} is truncated (header incomplete)")
        header_bytes = f.read(header_len)
        crc_bytes = f.read(_CRC.size)
        if len(header_bytes) < header_len or len(crc_bytes) < _CRC.size:
            raise FormatError(f"{path} is truncated (header incomplete)")
        if zlib.crc32(header_bytes) != _CRC.unpack(crc_bytes)[0]:
            raise FormatError(f"{path} is corrupted (header checksum mismatch)")
        try:
            header = json.loads(header_bytes.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise FormatError(f"{path} has an unreadable header ({error})") from None
        if not isinstance(header, dict):
            raise FormatError(f"{path} has a header that is not a JSON object")
        found = _field(header, "kind", str, f"{path} header")
        if found != kind:
            raise FormatError(f"{path} holds a {found}, not a {kind}")
        kind_version = _field(header, "kind_version", int, f"{path} header")
        if kind_version > max_kind_version:
            raise FormatError(f"{path} holds a {kind} of version {kind_version}; this "
                              f"llmrec reads up to {max_kind_version}: upgrade llmrec")
        if kind_version < 1:
            raise FormatError(f"{path} holds a {kind} of version {kind_version}; versions start at 1")
        meta = _field(header, "meta", dict, f"{path} header")
        file_size = _field(header, "file_size", int, f"{path} header")
        if size != file_size:
            raise FormatError(f"{path} is truncated or padded: {size} bytes, expected {file_size}")
        entries = _check_entries(header, path, data_start, size)
        arrays: dict[str, np.ndarray] = {}
        for name, dtype, shape, offset, nbytes, crc in entries:
            a: np.ndarray
            if mmap and nbytes > 0:
                a = np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)
            else:
                read = _read_array(f, offset, nbytes, np.dtype(dtype), shape, name in spare_rows)
                if read is None:
                    raise FormatError(f"{path} is truncated (array {name!r} incomplete)")
                a = read
            if verify and _crc32(a) != crc:
                raise FormatError(f"{path} is corrupted (checksum mismatch in array {name!r})")
            arrays[name] = a
    return meta, arrays, kind_version
