"""Data sets: MovieLens loaders, a scalable synthetic generator, and id ↔ index mapping.

Every loader returns the same three pandas frames:

``interactions``
    one row per (user, item) event: ``user_id``, ``item_id``, ``rating`` (float32),
    ``timestamp`` (int64, seconds).
``items``
    one row per item: ``item_id``, ``title``, ``year`` (nullable Int64), ``genres``
    (a list of strings per row) and ``text``, a ready description for a text encoder
    such as ``"Toy Story (1995). Genres: Animation, Children's, Comedy"``.
``users``
    one row per user: ``user_id`` and whatever else the files carry (age, gender, …),
    with a ``text`` profile made of those (``"A 24-year-old male technician."``) where
    the file has any of age, gender and occupation.

:func:`to_csr` turns an interaction frame into the scipy CSR user × item matrix the
rest of llmrec consumes, and gives back the ids of its rows and columns.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec._checks import as_generator, check_int, check_real, plain
from llmrec._fetch import DataUnavailableError, default_data_dir, default_movielens_dir
from llmrec.exceptions import FormatError

__all__ = ["DataUnavailableError", "default_data_dir", "default_movielens_dir", "fetch_movielens",
           "load_movielens", "synthetic", "to_csr"]

# The genre flags of the original ml-100k u.item, in file order (as listed in u.genre).
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
                 "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
                 "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")

log = logging.getLogger(__name__)

_INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
_ITEM_COLUMNS = ("item_id", "title", "year", "genres", "text")
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1
_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


# --------------------------------------------------------------------------- errors
class DataFormatError(FormatError):
    """A data file is malformed; the message names the file and the line.

    A :class:`llmrec.FormatError` (so a ``ValueError``), like every loader's error."""


def _line_error(path: Path, line: int, message: str) -> DataFormatError:
    return DataFormatError(f"{path}, line {line}: {message}")


# --------------------------------------------------------------------------- reading
def _read_table(path: Path, *, sep: str, names: Sequence[str], dtypes: dict[str, str],
                header: bool, encoding: str = "utf-8", quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE
                ) -> pd.DataFrame:
    """Read a delimited file fast with pandas; on any problem, find and name the line.

    ``dtypes`` maps column name to "int", "float" or "str". The fast path reads with
    pandas' C parser; when it fails (wrong field count, a value that is not a number,
    a missing value in a numeric column) a slow line-by-line scan locates the first
    bad line so the error names it.
    """
    kinds = {"int": np.int64, "float": np.float64, "str": str}
    column_types = {position: kinds[dtypes.get(name, "str")] for position, name in enumerate(names)}
    try:
        frame = pd.read_csv(path, sep=sep, header=None, skiprows=1 if header else 0,
                            dtype=column_types, encoding=encoding, quoting=quoting,
                            keep_default_na=False, na_filter=False, engine="c",
                            skip_blank_lines=True, index_col=False)
        if frame.shape[1] != len(names):
            raise ValueError(f"expected {len(names)} columns, found {frame.shape[1]}")
        frame.columns = list(names)
        if quoting == csv.QUOTE_NONE and len(frame):
            # A short line is padded silently by the parser: count the separators.
            raw = np.fromfile(path, dtype=np.uint8)
            found = int(np.count_nonzero(raw == ord(sep)))
            if found != (len(frame) + int(header)) * (len(names) - 1):
                raise ValueError("a line has the wrong number of fields")
        for name, kind in dtypes.items():
            if kind == "float" and not np.isfinite(frame[name].to_numpy()).all():
                raise ValueError(f"column {name} holds NaN or infinite values")
        return frame
    except (ValueError, OverflowError, pd.errors.ParserError, UnicodeDecodeError) as error:
        _locate_bad_line(path, sep=sep, names=names, dtypes=dtypes, header=header,
                         encoding=encoding, quoting=quoting)
        raise DataFormatError(f"{path}: could not parse: {error}") from error


def _locate_bad_line(path: Path, *, sep: str, names: Sequence[str], dtypes: dict[str, str],
                     header: bool, encoding: str, quoting: Literal[0, 1, 2, 3]) -> None:
    """Scan ``path`` line by line and raise for the first malformed line found."""
    with open(path, "rb") as raw:
        data = raw.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise _line_error(path, line, f"cannot decode as {encoding}: {error.reason}") from None
    lines = text.splitlines()
    reader = csv.reader(lines, delimiter=sep, quoting=quoting, strict=True)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # e.g. a quote left open up to the end of the file
            raise _line_error(path, max(reader.line_num, 1), f"malformed: {error}") from None
        if (header and reader.line_num == 1) or not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(names):
            raise _line_error(path, reader.line_num,
                              f"expected {len(names)} fields separated by {sep!r}, "
                              f"found {len(fields)}")
        for name, value in zip(names, fields):
            kind = dtypes.get(name, "str")
            if kind == "str":
                continue
            try:
                number = int(value) if kind == "int" else float(value)
            except ValueError:
                expected = "an integer" if kind == "int" else "a number"
                raise _line_error(path, reader.line_num,
                                  f"{name} must be {expected}, got {value!r}") from None
            if kind == "int" and not _INT64_MIN <= number <= _INT64_MAX:
                raise _line_error(path, reader.line_num,
                                  f"{name} must fit a 64-bit integer, got {value!r}")
            if kind == "float" and not np.isfinite(number):
                raise _line_error(path, reader.line_num, f"{name} must be finite, got {value!r}")


def _split_title_year(title: str) -> tuple[str, int | None]:
    """'Toy Story (1995)' → ('Toy Story', 1995); a title without a year is kept as is."""
    match = _TITLE_YEAR.match(title)
    if match is None:
        return title.strip(), None
    return match.group(1).strip(), int(match.group(2))


def _item_text(title: str, year: Any, genres: Sequence[str]) -> str:
    text = title
    if year is not None and not pd.isna(year):
        text = f"{text} ({int(year)})"
    text = f"{text}."
    if genres:
        text = f"{text} Genres: {', '.join(genres)}"
    return text


def _profile_texts(users: pd.DataFrame) -> list[str] | None:
    """"A 24-year-old male technician." per user, from the age, gender and occupation
    columns there are (None without any): what ``Recommender.fit(users=…)`` reads."""
    columns = [c for c in ("age", "gender", "occupation") if c in users.columns]
    if not columns:
        return None
    texts = []
    for row in users[columns].itertuples(index=False):
        words = []
        for name, value in zip(columns, row):
            if value is None or pd.isna(value) or not str(value).strip():
                continue
            if name == "age":
                words.append(f"{value}-year-old")
            elif name == "gender":
                words.append({"M": "male", "F": "female"}.get(str(value), str(value)))
            else:
                words.append(str(value))
        texts.append(f"{_article(words[0])} {' '.join(words)}." if words else "")
    return texts


def _article(word: str) -> str:
    """"An" before a vowel sound ("an 18-year-old", "an artist"), else "A"."""
    number = word.split("-")[0]
    if number.isdigit():
        vowel = number in ("8", "11", "18") or number.startswith("8")
    else:
        vowel = word[:1].lower() in "aeiou"
    return "An" if vowel else "A"


def _make_items(item_ids: Sequence[Any], titles: Sequence[str], years: Sequence[Any],
                genres: Sequence[list[str]], extra: dict[str, Any] | None = None
                ) -> pd.DataFrame:
    years_column = pd.array([None if y is None or pd.isna(y) else int(y) for y in years],
                            dtype="Int64")
    frame = pd.DataFrame({
        "item_id": item_ids,
        "title": list(titles),
        "year": years_column,
        "genres": list(genres),
        "text": [_item_text(t, y, g) for t, y, g in zip(titles, years_column, genres)],
    })
    for name, values in (extra or {}).items():
        frame[name] = values
    return frame


def _finish_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "user_id": _maybe_int_ids(frame["user_id"]),
        "item_id": _maybe_int_ids(frame["item_id"]),
        "rating": frame["rating"].to_numpy(dtype=np.float32),
        "timestamp": frame["timestamp"].to_numpy(dtype=np.int64),
    })
    return out


def _maybe_int_ids(column: pd.Series) -> pd.Series:
    """Token ids that are all integers become int64; anything else stays a string."""
    if pd.api.types.is_integer_dtype(column):
        return column.astype(np.int64)
    numeric = pd.to_numeric(column, errors="coerce")
    if not numeric.isna().any() and np.all(np.mod(numeric.to_numpy(np.float64), 1) == 0):
        return numeric.astype(np.int64)
    return column.astype(str)


def _users_from_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    ids = pd.unique(interactions["user_id"])
    try:
        ids = np.sort(ids)
    except TypeError:
        pass
    return pd.DataFrame({"user_id": ids})


def _items_from_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    ids = pd.unique(interactions["item_id"])
    try:
        ids = np.sort(ids)
    except TypeError:
        pass
    return _make_items(ids, [""] * len(ids), [None] * len(ids), [[] for _ in ids])


# --------------------------------------------------------------------------- formats
def _load_recbole(directory: Path, inter: Path) -> tuple[pd.DataFrame, ...]:
    stem = inter.name[:-len(".inter")]

    def read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline().rstrip("\r\n")
        names, types = [], {}
        for position, field in enumerate(first.split("\t"), start=1):
            name, sep, kind = field.partition(":")
            if not sep or not name or kind not in ("token", "token_seq", "float", "float_seq"):
                raise _line_error(path, 1, f"header field {position} ({field!r}) must look like "
                                  "name:type with type token, token_seq, float or float_seq")
            names.append(name)
            types[name] = kind
        dtypes = {name: ("float" if kind == "float" else "str") for name, kind in types.items()}
        return _read_table(path, sep="\t", names=names, dtypes=dtypes, header=True), types

    frame, _ = read_atomic(inter)
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{inter}: missing column(s) {missing}; found {list(frame.columns)}")
    if "rating" not in frame.columns:
        frame["rating"] = 1.0
    if "timestamp" not in frame.columns:
        frame["timestamp"] = 0
    interactions = _finish_interactions(frame)

    item_path = directory / f"{stem}.item"
    if item_path.exists():
        raw, types = read_atomic(item_path)
        if "item_id" not in raw.columns:
            raise DataFormatError(f"{item_path}: missing column 'item_id'; found {list(raw.columns)}")
        title_col = next((c for c in ("movie_title", "title") if c in raw.columns), None)
        year_col = next((c for c in ("release_year", "year") if c in raw.columns), None)
        genre_col = next((c for c in ("class", "genre", "genres") if c in raw.columns), None)
        titles = raw[title_col].tolist() if title_col else [""] * len(raw)
        years = (pd.to_numeric(raw[year_col], errors="coerce").tolist() if year_col
                 else [None] * len(raw))
        genres = ([g.split() for g in raw[genre_col]] if genre_col else [[] for _ in range(len(raw))])
        used = {"item_id", title_col, year_col, genre_col}
        extra = {c: raw[c].to_numpy() for c in raw.columns if c not in used}
        items = _make_items(_maybe_int_ids(raw["item_id"]).to_numpy(), titles, years, genres, extra)
    else:
        items = _items_from_interactions(interactions)

    user_path = directory / f"{stem}.user"
    if user_path.exists():
        users, types = read_atomic(user_path)
        if "user_id" not in users.columns:
            raise DataFormatError(f"{user_path}: missing column 'user_id'; found {list(users.columns)}")
        users["user_id"] = _maybe_int_ids(users["user_id"])
        for name in users.columns:
            if name != "user_id" and types.get(name) == "token":
                numeric = pd.to_numeric(users[name], errors="coerce")
                if not numeric.isna().any() and name == "age":
                    users[name] = numeric.astype(np.int64)
    else:
        users = _users_from_interactions(interactions)
    return interactions, items, users.reset_index(drop=True)


def _load_ml100k(directory: Path) -> tuple[pd.DataFrame, ...]:
    path = directory / "u.data"
    frame = _read_table(path, sep="\t", names=_INTERACTION_COLUMNS, header=False,
                        dtypes={"user_id": "int", "item_id": "int", "rating": "float",
                                "timestamp": "int"})
    interactions = _finish_interactions(frame)

    item_path = directory / "u.item"
    if item_path.exists():
        flag_names = [f"g{i}" for i in range(len(ML100K_GENRES))]
        names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flag_names]
        dtypes = {"item_id": "int", **{f: "int" for f in flag_names}}
        raw = _read_table(item_path, sep="|", names=names, dtypes=dtypes, header=False,
                          encoding="latin-1")
        flags = raw[flag_names].to_numpy(dtype=np.int64)
        if not np.isin(flags, (0, 1)).all():
            row = int(np.nonzero(~np.isin(flags, (0, 1)).all(axis=1))[0][0])
            raise _line_error(item_path, row + 1, "genre flags must be 0 or 1")
        titles, years = [], []
        for title, date in zip(raw["title"], raw["release_date"]):
            clean, year = _split_title_year(title)
            if year is None and len(date) >= 4 and date[-4:].isdigit():
                year = int(date[-4:])
            titles.append(clean)
            years.append(year)
        genres = [[ML100K_GENRES[j] for j in np.flatnonzero(row)] for row in flags]
        items = _make_items(raw["item_id"].to_numpy(np.int64), titles, years, genres,
                            {"release_date": raw["release_date"].to_numpy(),
                             "imdb_url": raw["imdb_url"].to_numpy()})
    else:
        items = _items_from_interactions(interactions)

    user_path = directory / "u.user"
    if user_path.exists():
        users = _read_table(user_path, sep="|", header=False,
                            names=["user_id", "age", "gender", "occupation", "zip_code"],
                            dtypes={"user_id": "int", "age": "int"})
    else:
        users = _users_from_interactions(interactions)
    return interactions, items, users


def _load_ml_latest(directory: Path) -> tuple[pd.DataFrame, ...]:
    path = directory / "ratings.csv"
    frame = _read_table(path, sep=",", names=["userId", "movieId", "rating", "timestamp"],
                        header=True, quoting=csv.QUOTE_MINIMAL,
                        dtypes={"userId": "int", "movieId": "int", "rating": "float",
                                "timestamp": "int"})
    frame = frame.rename(columns={"userId": "user_id", "movieId": "item_id"})
    interactions = _finish_interactions(frame)

    movie_path = directory / "movies.csv"
    if movie_path.exists():
        raw = _read_table(movie_path, sep=",", names=["movieId", "title", "genres"], header=True,
                          quoting=csv.QUOTE_MINIMAL, dtypes={"movieId": "int"})
        titles, years = zip(*(_split_title_year(t) for t in raw["title"])) if len(raw) else ((), ())
        genres = [[] if g in ("(no genres listed)", "") else g.split("|") for g in raw["genres"]]
        items = _make_items(raw["movieId"].to_numpy(np.int64), list(titles), list(years), genres)
    else:
        items = _items_from_interactions(interactions)
    return interactions, items, _users_from_interactions(interactions)


def fetch_movielens(dir: str | os.PathLike[str] | None = None, *, timeout: float = 30.0) -> Path:  # noqa: A002
    """Place MovieLens-100K where :func:`load_movielens` finds it; return the directory.

    Downloads GroupLens' ``ml-100k.zip`` (converted to RecBole's atomic files), or where
    GroupLens cannot be reached, the same files from RecBole's wheel on the package
    index (``pip download recbole==1.2.1``). Either way the three files placed —
    ``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user`` — are checked against known
    SHA-256 hashes before they appear, and are written atomically (a temporary
    directory beside the target, then renames). Idempotent: when the directory already
    holds them (hashes checked), nothing is downloaded. The command line is
    ``llmrec data fetch movielens-100k [--dir DIR]``. MovieLens is GroupLens' data set,
    for research use under its licence (see grouplens.org).

    Parameters
    ----------
    dir : directory to place the files in; None (the default) is
        :func:`default_movielens_dir` (``$LLMREC_DATA/ml-100k``, else
        ``~/.cache/llmrec/data/ml-100k``), where ``load_movielens()`` looks by default.
    timeout : seconds to wait for each source before trying the next.

    Raises
    ------
    DataUnavailableError (an OSError)
        No source could be reached (offline); the message says why for each and what
        to do. Nothing is written.
    FileExistsError
        A file of that name is already there with another content; it is left as is.
    """
    from llmrec._fetch import fetch

    return fetch(dir, timeout=timeout).path


def load_movielens(path: str | os.PathLike[str] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Load a MovieLens data set from a directory, whatever its distribution format.

    Recognised, in this order of preference:

    * RecBole's atomic files: ``<name>.inter`` (``user_id:token``, ``item_id:token``,
      ``rating:float``, ``timestamp:float``) with optional ``<name>.item`` and
      ``<name>.user`` — what :func:`fetch_movielens` places;
    * the original ml-100k files: ``u.data`` (tab-separated), ``u.item`` (pipe-separated,
      latin-1, 19 genre flags) and ``u.user``;
    * the ml-latest / ml-latest-small / ml-20m / ml-25m CSVs: ``ratings.csv`` and
      ``movies.csv`` (genres separated by ``|``).

    Parameters
    ----------
    path : directory holding one of the layouts above; None (the default) is where
        :func:`fetch_movielens` places MovieLens-100K by default
        (:func:`default_movielens_dir`).

    Returns
    -------
    interactions : DataFrame with ``user_id``, ``item_id``, ``rating`` (float32),
        ``timestamp`` (int64), in file order.
    items : DataFrame with ``item_id``, ``title`` (without the year), ``year`` (Int64,
        missing where unknown), ``genres`` (list of str) and ``text``
        (``"Toy Story (1995). Genres: Animation, Children's, Comedy"``), plus any other
        column of the item file.
    users : DataFrame with ``user_id`` and what the user file carries (age, gender,
        occupation, zip_code), plus a profile ``text`` made of the age, gender and
        occupation (``"A 24-year-old male technician."``; ``Recommender.fit(users=…)``
        reads it) where the file has any of them; the distinct interaction users where
        there is no file.

    Raises
    ------
    FileNotFoundError
        ``path`` holds none of the files above (the message lists those looked for).
    DataFormatError (a llmrec.FormatError, so a ValueError)
        A file is malformed; the message names the file and the line.
    """
    if path is None:
        directory = default_movielens_dir()
        if not directory.is_dir():
            raise FileNotFoundError(
                f"MovieLens-100K is not in {str(directory)!r} (the default place): run "
                "`llmrec data fetch movielens-100k` (or llmrec.datasets.fetch_movielens()) "
                "first, or pass the directory that holds it")
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    else:
        directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"path {str(directory)!r} is not a directory")
    start = time.perf_counter()
    frames = _load_directory(directory)
    texts = _profile_texts(frames[2]) if "text" not in frames[2].columns else None
    if texts is not None:
        frames = (frames[0], frames[1], frames[2].assign(text=texts))
    log.info("load_movielens: %s: %d interactions, %d items, %d users in %.2f s", directory,
             len(frames[0]), len(frames[1]), len(frames[2]), time.perf_counter() - start)
    return frames


def _load_directory(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inters = sorted(directory.glob("*.inter"))
    if inters:
        preferred = [p for p in inters if p.name == f"{directory.name}.inter"]
        return _load_recbole(directory, (preferred or inters)[0])
    if (directory / "u.data").exists():
        return _load_ml100k(directory)
    if (directory / "ratings.csv").exists():
        return _load_ml_latest(directory)
    raise FileNotFoundError(
        f"no MovieLens files in {str(directory)!r}: looked for *.inter (RecBole atomic, e.g. "
        "ml-100k.inter), u.data (original ml-100k) and ratings.csv (ml-latest, ml-25m)")


# --------------------------------------------------------------------------- synthetic
# Real English words per theme, so that a text encoder can recover an item's topic from
# its title and description. Topics beyond these get invented (but consistent) words.
_THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Space", ("galaxy", "rocket", "astronaut", "orbit", "planet", "nebula", "starship",
               "comet", "alien", "cosmos", "moon", "satellite")),
    ("Cooking", ("kitchen", "recipe", "chef", "spice", "oven", "bread", "sauce", "garlic",
                 "pastry", "flavor", "dinner", "harvest")),
    ("Crime", ("detective", "murder", "heist", "gangster", "police", "alibi", "suspect",
               "witness", "robbery", "trial", "clue", "smuggler")),
    ("Romance", ("love", "wedding", "kiss", "heart", "sweetheart", "romance", "date",
                 "proposal", "passion", "letter", "couple", "honeymoon")),
    ("War", ("soldier", "battle", "army", "trench", "general", "invasion", "tank",
             "regiment", "siege", "frontline", "medal", "ceasefire")),
    ("Sports", ("football", "coach", "championship", "stadium", "athlete", "team",
                "tournament", "goal", "referee", "marathon", "trophy", "season")),
    ("Horror", ("ghost", "haunted", "vampire", "zombie", "curse", "demon", "nightmare",
                "graveyard", "scream", "witch", "monster", "crypt")),
    ("Music", ("guitar", "band", "concert", "singer", "melody", "piano", "jazz", "song",
               "orchestra", "drummer", "album", "rhythm")),
    ("Ocean", ("sailor", "ship", "island", "whale", "pirate", "harbor", "storm", "reef",
               "lighthouse", "voyage", "anchor", "tide")),
    ("Western", ("cowboy", "sheriff", "saloon", "ranch", "outlaw", "horse", "desert",
                 "frontier", "gunslinger", "cattle", "canyon", "bounty")),
    ("Technology", ("robot", "computer", "hacker", "algorithm", "network", "startup",
                    "software", "circuit", "engineer", "code", "drone", "server")),
    ("Fantasy", ("dragon", "wizard", "castle", "sword", "kingdom", "elf", "spell",
                 "quest", "prophecy", "knight", "sorcerer", "realm")),
    ("Medicine", ("doctor", "hospital", "surgeon", "nurse", "virus", "patient", "cure",
                  "clinic", "vaccine", "diagnosis", "ambulance", "epidemic")),
    ("School", ("teacher", "student", "classroom", "exam", "campus", "homework",
                "graduation", "library", "principal", "semester", "lesson", "diploma")),
    ("Politics", ("election", "senator", "president", "campaign", "parliament", "vote",
                  "scandal", "diplomat", "minister", "treaty", "debate", "protest")),
    ("Nature", ("forest", "mountain", "river", "wolf", "eagle", "meadow", "glacier",
                "valley", "bear", "wilderness", "waterfall", "canyon")),
    ("Finance", ("bank", "stock", "investor", "merger", "fortune", "broker", "market",
                 "debt", "billionaire", "profit", "auction", "tax")),
    ("Family", ("mother", "father", "grandmother", "sibling", "childhood", "reunion",
                "cousin", "holiday", "household", "adoption", "twins", "inheritance")),
    ("Art", ("painter", "gallery", "sculpture", "canvas", "museum", "portrait", "poet",
             "theater", "dancer", "novelist", "studio", "masterpiece")),
    ("Travel", ("journey", "passport", "train", "airport", "backpack", "map", "hotel",
                "road", "border", "tourist", "caravan", "expedition")),
    ("Aviation", ("pilot", "airplane", "cockpit", "runway", "parachute", "jet", "hangar",
                  "squadron", "altitude", "glider", "propeller", "airline")),
    ("Animals", ("dog", "cat", "puppy", "zoo", "elephant", "lion", "horse", "rabbit",
                 "parrot", "kitten", "farm", "veterinarian")),
    ("Mystery", ("secret", "riddle", "puzzle", "disappearance", "enigma", "mansion",
                 "diary", "code", "stranger", "shadow", "inheritance", "locked")),
    ("Comedy", ("joke", "prank", "clown", "laugh", "blunder", "roommate", "mishap",
                "sitcom", "comedian", "farce", "party", "parody")),
)
_SHARED_ADJECTIVES = ("Last", "Secret", "Great", "Lost", "Silent", "Golden", "Dark",
                      "Final", "Little", "Wild", "Hidden", "Broken", "Endless", "First")
_SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "qui", "dan", "pe", "zor",
              "ni", "bar", "osh", "lin", "ta", "gu", "mer", "fi")


def _topic_vocabulary(n_topics: int, rng: np.random.Generator) -> list[tuple[str, list[str]]]:
    topics: list[tuple[str, list[str]]] = [(name, list(words)) for name, words in _THEMES[:n_topics]]
    seen = {w for _, words in topics for w in words}
    while len(topics) < n_topics:
        words: list[str] = []
        while len(words) < 12:
            word = "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4))))
            if word not in seen:
                seen.add(word)
                words.append(word)
        topics.append((f"Topic {len(topics)}", words))
    return topics


def synthetic(n_users: int, n_items: int, *, n_topics: int = 20, density: float = 0.01,
              topics_per_user: int = 3, popularity_exponent: float = 0.9,
              drift: float = 0.5, exploration: float = 0.1, random_state: Any = None
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Generate a recommendation data set with a known latent structure.

    Model: every item belongs to one of ``n_topics`` topics and has a popularity drawn
    from a power law (``rank ** -popularity_exponent`` over a random permutation). Its
    title and description are written from its topic's vocabulary (real English words
    for the first 24 topics, invented words after that), so a text encoder can recover
    the topic. Every user prefers ``topics_per_user`` topics (Dirichlet weights) and
    drifts towards one more topic over time: an interaction at relative time p ∈ [0, 1]
    comes from the late topic with probability ``drift · p``, and with probability
    ``exploration`` from a topic drawn uniformly. Each interaction picks a topic this
    way, then an item of that topic with probability proportional to popularity.
    Activity per user is log-normal (at least ``min(5, n_items)`` interactions),
    timestamps grow with p over each user's own window, and ratings (1–5) are higher
    for the user's preferred topics.

    The work is vectorised (a few sorts over int64 keys), so 1,000,000 users × 100,000
    items at density 5e-4 (50 M interactions) is a matter of a minute or so and a
    few GB of memory.

    Parameters
    ----------
    n_users, n_items : int ≥ 1
    n_topics : int ≥ 1 (at most n_items are used)
    density : float in (0, 1]
        Target fraction of the user × item matrix that is filled. The result holds
        about ``density · n_users · n_items`` distinct (user, item) pairs (a little
        fewer where heavy users exhaust their topics).
    topics_per_user : int ≥ 1
    popularity_exponent : float in [0, 4]
    drift : float in [0, 1]
        How strongly preferences move to a new topic over a user's history.
    exploration : float in [0, 1]
        Share of interactions from a uniformly drawn topic (off-preference noise).
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    interactions : DataFrame ``user_id`` (int32), ``item_id`` (int32), ``rating``
        (float32), ``timestamp`` (int64), sorted by user then time, no duplicate pairs.
    items : DataFrame ``item_id``, ``title``, ``year``, ``genres`` ([topic name]),
        ``text``, ``description``, ``topic`` (int), ``popularity`` (float).
    users : DataFrame ``user_id``, ``topic`` (the user's strongest topic),
        ``late_topic`` (the topic they drift to).
    """
    n_users = check_int(n_users, "n_users", minimum=1)
    n_items = check_int(n_items, "n_items", minimum=1)
    n_topics = check_int(n_topics, "n_topics", minimum=1)
    topics_per_user = check_int(topics_per_user, "topics_per_user", minimum=1)
    density = check_real(density, "density", low=0.0, high=1.0, low_open=True)
    popularity_exponent = check_real(popularity_exponent, "popularity_exponent", low=0.0, high=4.0)
    drift = check_real(drift, "drift", low=0.0, high=1.0)
    exploration = check_real(exploration, "exploration", low=0.0, high=1.0)
    rng = as_generator(random_state)
    n_topics = min(n_topics, n_items)  # every topic holds at least one item
    topics_per_user = min(topics_per_user, n_topics)
    if n_users * n_items >= 2 ** 62:
        raise ValueError("n_users * n_items is too large (must be < 2**62)")

    # ---- items: topic, popularity, cumulative popularity laid out topic by topic.
    item_topic = rng.integers(0, n_topics, size=n_items)
    item_topic[: min(n_topics, n_items)] = np.arange(min(n_topics, n_items))  # no empty topic
    rng.shuffle(item_topic)
    popularity = (rng.permutation(n_items) + 1.0) ** -popularity_exponent
    by_topic = np.argsort(item_topic, kind="stable")
    cumulative = np.cumsum(popularity[by_topic])
    topic_end = np.searchsorted(item_topic[by_topic], np.arange(n_topics), side="right")
    topic_start = np.concatenate(([0], topic_end[:-1]))
    topic_low = np.where(topic_start > 0, cumulative[np.maximum(topic_start - 1, 0)], 0.0)
    topic_high = cumulative[np.maximum(topic_end - 1, 0)]
    topic_high = np.where(topic_end > topic_start, topic_high, topic_low)
    topic_size = topic_end - topic_start

    # ---- users: preferred topics with Dirichlet weights, a late topic, activity.
    preferred = np.argsort(rng.random((n_users, n_topics)), axis=1)[:, :topics_per_user] \
        if n_topics <= 64 else _sample_topics(rng, n_users, n_topics, topics_per_user)
    weights = rng.gamma(1.0, size=(n_users, topics_per_user))
    weights = np.sort(weights, axis=1)[:, ::-1]
    weights /= weights.sum(axis=1, keepdims=True)
    cum_weights = np.cumsum(weights, axis=1)
    late_topic = rng.integers(0, n_topics, size=n_users)

    target_total = density * n_users * n_items
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    floor = min(5, n_items)
    reachable = (topic_size[preferred].sum(axis=1) + topic_size[late_topic]
                 + (n_items if exploration > 0 else 0))
    cap = np.maximum(np.minimum(reachable * 3 // 4, n_items * 3 // 4), floor)
    scale = target_total / activity.sum()
    for _ in range(8):  # the floor and the cap move the total: rescale until it fits
        counts = np.clip(np.rint(activity * scale), floor, cap).astype(np.int64)
        total = counts.sum()
        if abs(total - target_total) <= 1e-3 * target_total + 1:
            break
        scale *= max(target_total - floor * n_users, 1.0) / max(total - floor * n_users, 1.0)

    time_bits = 20
    item_bits = int(n_items - 1).bit_length() or 1
    user_bits = int(n_users - 1).bit_length() or 1
    if user_bits + item_bits + time_bits > 62:
        time_bits = max(0, 62 - user_bits - item_bits)

    def draw(users: np.ndarray, block: int = 1 << 22) -> np.ndarray:
        """One interaction for each entry of ``users``: keys (user, item, time).

        Works in blocks so that the temporaries stay small next to the result.
        """
        if users.shape[0] > block:
            out = np.empty(users.shape[0], dtype=np.int64)
            for begin in range(0, users.shape[0], block):
                out[begin:begin + block] = draw(users[begin:begin + block], block)
            return out
        m = int(users.shape[0])
        when = rng.random(m)
        pick = rng.random(m)
        slot = np.minimum((pick[:, None] > cum_weights[users]).sum(axis=1), topics_per_user - 1) \
            if topics_per_user <= 8 else _pick_slot(cum_weights, users, pick)
        topic = preferred[users, slot]
        late = rng.random(m) < drift * when
        topic = np.where(late, late_topic[users], topic)
        explore = rng.random(m) < exploration
        topic[explore] = rng.integers(0, n_topics, size=int(explore.sum()))
        u = rng.random(m)
        position = topic_low[topic] + u * (topic_high[topic] - topic_low[topic])
        local = np.searchsorted(cumulative, position, side="right")
        local = np.clip(local, topic_start[topic], np.maximum(topic_end[topic] - 1, topic_start[topic]))
        item = by_topic[local]
        time_code = (when * (1 << time_bits)).astype(np.int64) if time_bits else np.zeros(m, np.int64)
        return ((users.astype(np.int64) << (item_bits + time_bits))
                | (item.astype(np.int64) << time_bits) | time_code)

    keys = draw(np.repeat(np.arange(n_users, dtype=np.int64), counts))
    keys = _unique_pairs(keys, time_bits)
    # Top up users who lost interactions to duplicates; draws that repeat a pair are
    # dropped again (a user whose topics are nearly exhausted may end a little short).
    extra = np.zeros(0, dtype=np.int64)
    user_shift = item_bits + time_bits
    have = np.bincount(keys >> user_shift, minlength=n_users)
    for _ in range(8):
        missing = np.maximum(counts - have, 0)
        if not missing.any():
            break
        new = _unique_pairs(draw(np.repeat(np.arange(n_users, dtype=np.int64), missing)),
                            time_bits)
        for existing in (keys, extra):
            if existing.size and new.size:
                pair = new >> time_bits
                at = np.minimum(np.searchsorted(existing, pair << time_bits), existing.size - 1)
                new = new[(existing[at] >> time_bits) != pair]
        new_users = new >> user_shift
        # Keep at most `missing` per user, the first ones in key order.
        order_in_user = np.arange(new.size) - np.searchsorted(new_users, new_users)
        new = new[order_in_user < missing[new_users]]
        have += np.bincount(new >> user_shift, minlength=n_users)
        extra = np.sort(np.concatenate((extra, new)))
    keys = np.concatenate((keys, extra))
    del extra

    # ---- decode, then order each user's interactions by time.
    time_mask = (1 << time_bits) - 1
    item_mask = (1 << item_bits) - 1
    # (user, item, time) → (user, time, item), in place where possible.
    items_part = (keys >> time_bits) & item_mask
    time_part = keys & time_mask
    keys >>= item_bits + time_bits
    keys <<= item_bits + time_bits
    time_part <<= item_bits
    keys |= time_part
    del time_part
    keys |= items_part
    del items_part
    keys.sort()
    users_col = (keys >> (item_bits + time_bits)).astype(np.int32)
    items_col = (keys & item_mask).astype(np.int32)
    when = ((keys >> item_bits) & time_mask).astype(np.float64) / float(1 << max(time_bits, 0))
    del keys

    # Each user's window: a start within two years, a length of a week to a year.
    epoch = 1_600_000_000
    start = epoch + rng.integers(0, 2 * 365 * 86400, size=n_users)
    length = rng.integers(7 * 86400, 365 * 86400, size=n_users)
    timestamps = start[users_col] + (when * length[users_col]).astype(np.int64)
    del when

    in_preferred = np.zeros(users_col.shape[0], dtype=bool)
    topic_of_item = item_topic[items_col]
    for slot in range(topics_per_user):
        in_preferred |= preferred[users_col, slot] == topic_of_item
    in_preferred |= late_topic[users_col] == topic_of_item
    del topic_of_item
    noise = rng.normal(0.0, 0.9, size=int(users_col.shape[0])).astype(np.float32)
    ratings = np.clip(np.rint(2.6 + 1.2 * in_preferred + noise), 1, 5).astype(np.float32)
    del noise, in_preferred

    interactions = pd.DataFrame({"user_id": users_col, "item_id": items_col,
                                 "rating": ratings, "timestamp": timestamps}, copy=False)

    vocabulary = _topic_vocabulary(n_topics, rng)
    items = _synthetic_items(item_topic, popularity, vocabulary, rng)
    users = pd.DataFrame({"user_id": np.arange(n_users, dtype=np.int32),
                          "topic": preferred[:, 0].astype(np.int32),
                          "late_topic": late_topic.astype(np.int32)})
    return interactions, items, users


def _unique_pairs(keys: np.ndarray, time_bits: int) -> np.ndarray:
    """Sort (user, item, time) keys and keep the first of each (user, item) pair."""
    keys.sort()
    pair = keys >> time_bits
    keep = np.ones(keys.shape[0], dtype=bool)
    keep[1:] = pair[1:] != pair[:-1]
    del pair
    return keys[keep]


def _sample_topics(rng: np.random.Generator, n_users: int, n_topics: int, per_user: int) -> np.ndarray:
    """Distinct topics per user without an (n_users, n_topics) matrix."""
    chosen = rng.integers(0, n_topics, size=(n_users, per_user))
    for _ in range(100):
        ordered = np.sort(chosen, axis=1)
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not clash.any():
            break
        chosen[clash] = rng.integers(0, n_topics, size=(int(clash.sum()), per_user))
    return chosen


def _pick_slot(cum_weights: np.ndarray, users: np.ndarray, pick: np.ndarray) -> np.ndarray:
    slot = np.zeros(users.shape[0], dtype=np.int64)
    for column in range(cum_weights.shape[1] - 1):
        slot += pick > cum_weights[users, column]
    return slot


def _synthetic_items(item_topic: np.ndarray, popularity: np.ndarray,
                     vocabulary: list[tuple[str, list[str]]],
                     rng: np.random.Generator) -> pd.DataFrame:
    n_items = int(item_topic.shape[0])
    n_words = len(vocabulary[0][1])
    word_a = rng.integers(0, n_words, size=n_items)
    word_b = (word_a + rng.integers(1, n_words, size=n_items)) % n_words
    word_c = (word_b + rng.integers(1, n_words - 1, size=n_items)) % n_words
    word_c = np.where(word_c == word_a, (word_c + 1) % n_words, word_c)
    adjective = rng.integers(0, len(_SHARED_ADJECTIVES), size=n_items)
    years = rng.integers(1950, 2024, size=n_items)
    titles, descriptions, genres, texts = [], [], [], []
    for i in range(n_items):
        name, words = vocabulary[item_topic[i]]
        a, b, c = words[word_a[i]], words[word_b[i]], words[word_c[i]]
        title = f"The {_SHARED_ADJECTIVES[adjective[i]]} {a.capitalize()}"
        description = f"A story of the {b} and the {c}, where every {a} matters."
        titles.append(title)
        descriptions.append(description)
        genres.append([name])
        texts.append(f"{title} ({years[i]}). Genres: {name}. {description}")
    return pd.DataFrame({
        "item_id": np.arange(n_items, dtype=np.int32),
        "title": titles,
        "year": pd.array(years, dtype="Int64"),
        "genres": genres,
        "text": texts,
        "description": descriptions,
        "topic": item_topic.astype(np.int32),
        "popularity": popularity,
    })


# --------------------------------------------------------------------------- to_csr
def _as_index(values: Any, name: str) -> pd.Index:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of ids, got a string")
    index = pd.Index(values)
    if index.has_duplicates:
        duplicated = index[index.duplicated()][0]
        raise ValueError(f"{name} holds duplicate id {plain(duplicated)!r}")
    return index


def _sorted_unique(column: pd.Series) -> pd.Index:
    unique = pd.unique(column)
    try:
        unique = np.sort(unique)
    except TypeError:  # mixed types: keep first-seen order
        pass
    return pd.Index(unique)


def to_csr(interactions: Any, *, user_index: Any = None, item_index: Any = None,
           value: Any = None) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Build the user × item CSR matrix of an interaction frame.

    Parameters
    ----------
    interactions : DataFrame (or anything ``pandas.DataFrame`` accepts) with columns
        ``user_id`` and ``item_id``; ids may be ints or strings.
    user_index, item_index : sequence of ids, optional
        The id of each row / column, in order. Pass the ids returned by an earlier call
        (or of a full data set) so that train and test matrices line up. Without them,
        the distinct ids of ``interactions`` are used, sorted. Every id in
        ``interactions`` must be in the index given.
    value : None, str or array-like, optional
        None: a binary matrix (1.0 per distinct pair). A column name or an array with
        one value per row: those values, summed over duplicate (user, item) pairs.

    Returns
    -------
    matrix : scipy.sparse.csr_matrix, float32, shape (n_users, n_items), sorted indices,
        no duplicate entries.
    user_ids : array, the id of each row.
    item_ids : array, the id of each column.
    """
    if not isinstance(interactions, pd.DataFrame):
        try:
            interactions = pd.DataFrame(interactions)
        except (ValueError, TypeError) as error:
            raise TypeError("interactions must be a DataFrame with columns user_id and item_id, "
                            f"got {type(interactions).__name__}") from error
    missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions is missing column(s) {missing}; "
                         f"found {list(interactions.columns)}")
    users = interactions["user_id"]
    items = interactions["item_id"]
    n = len(interactions)
    user_ids = _sorted_unique(users) if user_index is None else _as_index(user_index, "user_index")
    item_ids = _sorted_unique(items) if item_index is None else _as_index(item_index, "item_index")
    rows = user_ids.get_indexer(users)
    cols = item_ids.get_indexer(items)
    for name, codes, column in (("user_index", rows, users), ("item_index", cols, items)):
        if (codes < 0).any():
            bad = column.iloc[int(np.flatnonzero(codes < 0)[0])]
            raise ValueError(f"interactions holds {int((codes < 0).sum())} row(s) whose id is not "
                             f"in {name} (e.g. {plain(bad)!r})")
    if value is None:
        data = np.ones(n, dtype=np.float32)
    elif isinstance(value, str):
        if value not in interactions.columns:
            raise ValueError(f"value names column {value!r}, which interactions does not have")
        data = interactions[value].to_numpy(dtype=np.float32)
    else:
        data = np.asarray(value)
        if data.shape != (n,):
            raise ValueError(f"value must hold one number per interaction ({n},), got shape {data.shape}")
        if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
            raise TypeError(f"value must be numeric, got dtype {data.dtype}")
        data = data.astype(np.float32)
    if data.size and not np.isfinite(data).all():
        raise ValueError("value contains NaN or infinite values")
    shape = (len(user_ids), len(item_ids))
    matrix = sp.csr_matrix((data, (rows.astype(np.int64), cols.astype(np.int64))), shape=shape)
    matrix.sum_duplicates()
    if value is None:
        matrix.data[:] = 1.0
    return matrix, user_ids.to_numpy(), item_ids.to_numpy()
