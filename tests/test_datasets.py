"""Tests for llmrec.datasets: MovieLens loaders (all three layouts), synthetic, to_csr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec.datasets import DataFormatError, load_movielens, synthetic, to_csr
from movielens import MOVIELENS, needs_movielens

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- writers
def write_recbole(directory: Path, *, inter: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ml-100k.inter").write_text(inter if inter is not None else (
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n"
        "186\t302\t3\t891717742\n"
        "196\t1\t5\t881250950\n"), encoding="utf-8")
    (directory / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n"
        "242\tKolya\t1996\tComedy\n"
        "267\tunkonwn\tunkonwn\tunknown\n"
        "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n", encoding="utf-8")
    (directory / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "186\t39\tF\texecutive\t00000\n"
        "196\t49\tM\twriter\t55105\n", encoding="utf-8")
    return directory


def _flags(*genres: str) -> str:
    from llmrec.datasets import ML100K_GENRES
    return "|".join("1" if g in genres else "0" for g in ML100K_GENRES)


def write_ml100k(directory: Path, *, data: str | None = None, item_lines: list[str] | None = None
                 ) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "u.data").write_text(data if data is not None else
                                      "196\t242\t3\t881250949\n"
                                      "186\t302\t3\t891717742\n"
                                      "22\t1\t1\t878887116\n", encoding="ascii")
    lines = item_lines if item_lines is not None else [
        "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
        + _flags("Animation", "Children's", "Comedy"),
        f"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|"
        f"{_flags('Comedy')}",
        f"267|unknown||||{_flags('unknown')}",
        f'302|Café "Society" (1997)|01-Jan-1997||http://x|{_flags("Crime", "Film-Noir")}',
    ]
    (directory / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (directory / "u.user").write_text("22|25|M|writer|40206\n186|39|F|executive|00000\n"
                                      "196|49|M|writer|55105\n", encoding="ascii")
    return directory


def write_ml_latest(directory: Path, *, ratings: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ratings.csv").write_text(ratings if ratings is not None else
                                           "userId,movieId,rating,timestamp\n"
                                           "1,1,4.0,964982703\n"
                                           "1,3,4.5,964981247\n"
                                           "2,11,2.5,964982224\n", encoding="utf-8")
    (directory / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        "11,Unknown Film,(no genres listed)\n", encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- loaders
def check_frames(interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> None:
    assert list(interactions.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert interactions["rating"].dtype == np.float32
    assert interactions["timestamp"].dtype == np.int64
    assert list(items.columns[:5]) == ["item_id", "title", "year", "genres", "text"]
    assert "user_id" in users.columns


def test_recbole_atomic(tmp_path):
    interactions, items, users = load_movielens(write_recbole(tmp_path / "ml-100k"))
    check_frames(interactions, items, users)
    assert interactions["user_id"].tolist() == [196, 186, 196]
    assert interactions["item_id"].dtype == np.int64
    assert interactions["rating"].tolist() == [3.0, 3.0, 5.0]
    assert interactions["timestamp"].tolist() == [881250949, 891717742, 881250950]
    toy = items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert toy["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    unknown = items.set_index("item_id").loc[267]
    assert pd.isna(unknown["year"])
    assert unknown["text"] == "unkonwn. Genres: unknown"
    assert items.set_index("item_id").loc[302, "genres"] == ["Crime", "Film-Noir", "Mystery",
                                                             "Thriller"]
    assert users.set_index("user_id").loc[196, "occupation"] == "writer"
    assert users.set_index("user_id").loc[186, "zip_code"] == "00000"  # leading zeros kept
    assert users["age"].tolist() == [39, 49]
    assert users["text"].tolist() == ["A 39-year-old female executive.", "A 49-year-old male writer."]


def test_recbole_string_ids_stay_strings(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "d.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                       "u1\ti9\t1\t10\nu2\ti9\t2\t11\n")
    interactions, items, users = load_movielens(directory)
    assert interactions["user_id"].tolist() == ["u1", "u2"]
    assert items["item_id"].tolist() == ["i9"]  # no item file: items from interactions
    assert users["user_id"].tolist() == ["u1", "u2"]


def test_original_ml100k(tmp_path):
    interactions, items, users = load_movielens(write_ml100k(tmp_path / "ml-100k-orig"))
    check_frames(interactions, items, users)
    assert interactions["item_id"].tolist() == [242, 302, 1]
    by_id = items.set_index("item_id")
    assert by_id.loc[1, "text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert by_id.loc[242, "year"] == 1996  # from the title, not the 1997 release date
    assert by_id.loc[302, "title"] == 'Café "Society"'  # latin-1 é and quotes survive
    assert by_id.loc[302, "genres"] == ["Crime", "Film-Noir"]
    assert pd.isna(by_id.loc[267, "year"]) and by_id.loc[267, "genres"] == ["unknown"]
    assert by_id.loc[242, "release_date"] == "24-Jan-1997"
    assert list(users.columns) == ["user_id", "age", "gender", "occupation", "zip_code", "text"]
    assert users["age"].dtype == np.int64 and users["zip_code"].tolist()[1] == "00000"
    assert users["text"].tolist()[1] == "A 39-year-old female executive."


def test_ml_latest_csv(tmp_path):
    interactions, items, users = load_movielens(write_ml_latest(tmp_path / "ml-latest-small"))
    check_frames(interactions, items, users)
    assert interactions["rating"].tolist() == [4.0, 4.5, 2.5]
    by_id = items.set_index("item_id")
    assert by_id.loc[3, "title"] == "American President, The"
    assert by_id.loc[3, "year"] == 1995
    assert by_id.loc[3, "genres"] == ["Comedy", "Drama", "Romance"]
    assert by_id.loc[11, "genres"] == [] and pd.isna(by_id.loc[11, "year"])
    assert by_id.loc[11, "text"] == "Unknown Film."
    assert users["user_id"].tolist() == [1, 2]


def test_empty_directory_names_files_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_movielens(tmp_path)
    for name in (".inter", "u.data", "ratings.csv"):
        assert name in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_movielens(tmp_path / "missing")
    with pytest.raises(TypeError, match="path"):
        load_movielens(42)


@pytest.mark.parametrize("layout, content, line, words", [
    ("ml100k", "1\t2\t3\t4\n5\t6\t7\n", 2, "expected 4 fields"),
    ("ml100k", "1\t2\t3\t4\n5\t6\t7\t8\n9\tx\t1\t2\n", 3, "item_id"),
    ("ml100k", "1\t2\t3\t4\n\n5\t6\tfive\t8\n", 3, "rating"),
    ("latest", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5\n", 3, "expected 4"),
    ("latest", "userId,movieId,rating,timestamp\n1,1,4.0,9649827.5\n", 2, "timestamp"),
    ("recbole", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4\n"
                "1\t2\tnan?\t4\n", 3, "rating"),
    ("recbole", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4\t5\n",
     2, "expected 4"),
    ("recbole", "user_id\titem_id\n1\t2\n", 1, "name:type"),
])
def test_malformed_line_is_named(tmp_path, layout, content, line, words):
    if layout == "ml100k":
        directory, name = write_ml100k(tmp_path / "a", data=content), "u.data"
    elif layout == "latest":
        directory, name = write_ml_latest(tmp_path / "b", ratings=content), "ratings.csv"
    else:
        directory, name = write_recbole(tmp_path / "c", inter=content), "ml-100k.inter"
    with pytest.raises(DataFormatError) as info:
        load_movielens(directory)
    message = str(info.value)
    assert name in message and f"line {line}" in message and words in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("field", ["99999999999999999999999", "-9223372036854775809"])
def test_integer_beyond_int64_is_a_named_line(tmp_path, field):
    # pandas raised OverflowError and the line scan accepted the Python int.
    directory = write_ml100k(tmp_path / "a", data=f"1\t1\t4\t100\n{field}\t2\t3\t5\n")
    with pytest.raises(DataFormatError, match=r"u\.data, line 2: user_id must fit a 64-bit integer"):
        load_movielens(directory)
    # The extremes of int64 themselves are fine.
    ok = write_ml100k(tmp_path / "b", data="9223372036854775807\t1\t4\t100\n")
    assert load_movielens(ok)[0].user_id.iloc[0] == 2**63 - 1


def test_quote_left_open_is_a_named_line(tmp_path):
    # csv's strict reader raised _csv.Error ("unexpected end of data").
    directory = write_ml_latest(tmp_path / "a")
    (directory / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story (1995),Comedy\n',
                                          encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"movies\.csv, line \d+: malformed"):
        load_movielens(directory)


def test_malformed_item_file_is_named(tmp_path):
    bad = ["1|Toy Story (1995)|01-Jan-1995||url|" + _flags("Comedy"),
           "2|Broken (1995)|01-Jan-1995||url|0|1"]
    with pytest.raises(DataFormatError, match=r"u\.item, line 2: expected 24 fields"):
        load_movielens(write_ml100k(tmp_path / "d", item_lines=bad))
    bad_flag = ["1|Toy Story (1995)|01-Jan-1995||url|" + _flags("Comedy").replace("0", "2", 1)]
    with pytest.raises(DataFormatError, match=r"u\.item, line 1: genre flags"):
        load_movielens(write_ml100k(tmp_path / "e", item_lines=bad_flag))


@needs_movielens
def test_real_movielens_100k():
    interactions, items, users = load_movielens(MOVIELENS)
    check_frames(interactions, items, users)
    assert len(interactions) == 100_000
    assert interactions["user_id"].nunique() == 943 and len(users) == 943
    assert interactions["item_id"].nunique() == 1682 and len(items) == 1682
    assert set(interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert items.set_index("item_id").loc[1, "text"] == \
        "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert items["text"].str.len().min() > 0
    assert set(users.columns) == {"user_id", "age", "gender", "occupation", "zip_code", "text"}
    assert users.set_index("user_id").loc[1, "text"] == "A 24-year-old male technician."


# --------------------------------------------------------------------------- synthetic
def test_synthetic_shapes_and_invariants():
    interactions, items, users = synthetic(400, 300, n_topics=8, density=0.03, random_state=0)
    check_frames(interactions, items, users)
    assert len(items) == 300 and len(users) == 400
    assert abs(len(interactions) / (0.03 * 400 * 300) - 1) < 0.1
    assert not interactions.duplicated(["user_id", "item_id"]).any()
    assert interactions["user_id"].between(0, 399).all()
    assert interactions["item_id"].between(0, 299).all()
    assert interactions["rating"].between(1, 5).all()
    # sorted by user, then time
    keys = interactions[["user_id", "timestamp"]].to_numpy()
    assert (np.diff(keys[:, 0]) >= 0).all()
    same_user = np.diff(keys[:, 0]) == 0
    assert (np.diff(keys[:, 1])[same_user] >= 0).all()
    assert interactions.groupby("user_id").size().min() >= 5
    assert items["text"].str.contains("Genres:").all()


def test_synthetic_is_seeded():
    a = synthetic(100, 80, random_state=3)
    b = synthetic(100, 80, random_state=np.random.default_rng(3))
    c = synthetic(100, 80, random_state=4)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0].equals(c[0])


def test_synthetic_structure_is_recoverable():
    interactions, items, users = synthetic(2000, 1000, n_topics=10, density=0.02,
                                           topics_per_user=1, random_state=1)
    item_topic = items["topic"].to_numpy()
    # Topic from text: each topic's vocabulary is its own.
    for topic in range(10):
        words = [set(t.lower().replace(".", "").replace(",", "").split())
                 for t in items.loc[item_topic == topic, "description"]]
        other = [set(t.lower().replace(".", "").replace(",", "").split())
                 for t in items.loc[item_topic != topic, "description"]]
        shared = set.union(*words) & set.union(*other)
        assert shared <= {"a", "story", "of", "the", "and", "where", "every", "matters"}
    # Users concentrate on their topic far above the 1/10 of chance.
    own = item_topic[interactions["item_id"]] == users["topic"].to_numpy()[interactions["user_id"]]
    assert own.mean() > 0.3
    # Power-law popularity: the top 10% of items draw a large share of interactions.
    counts = np.sort(np.bincount(interactions["item_id"], minlength=1000))[::-1]
    assert counts[:100].sum() > 0.3 * counts.sum()
    # Ratings are higher on preferred topics than on exploration.
    late = item_topic[interactions["item_id"]] == users["late_topic"].to_numpy()[interactions["user_id"]]
    ratings = interactions["rating"].to_numpy()
    explored = ~own & ~late
    assert 0.03 < explored.mean() < 0.2
    assert ratings[own].mean() > ratings[explored].mean() + 0.5
    # Drift: the late topic is more frequent in the second half of each user's history.
    position = interactions.groupby("user_id").cumcount() / interactions.groupby("user_id")[
        "item_id"].transform("size")
    assert late[position >= 0.5].mean() > late[position < 0.5].mean() + 0.1


def test_synthetic_edge_sizes():
    interactions, items, users = synthetic(1, 1, random_state=0)
    assert interactions[["user_id", "item_id"]].to_numpy().tolist() == [[0, 0]]
    interactions, items, users = synthetic(5, 3, n_topics=50, random_state=0)
    assert items["topic"].max() < 3
    interactions, items, _ = synthetic(20, 200, n_topics=40, random_state=0)
    assert items["genres"].map(len).eq(1).all()


@pytest.mark.parametrize("kwargs, error, words", [
    ({"n_users": 0, "n_items": 5}, ValueError, "n_users"),
    ({"n_users": 5, "n_items": 2.5}, TypeError, "n_items"),
    ({"n_users": 5, "n_items": 5, "density": 0}, ValueError, "density"),
    ({"n_users": 5, "n_items": 5, "density": 1.5}, ValueError, "density"),
    ({"n_users": 5, "n_items": 5, "n_topics": 0}, ValueError, "n_topics"),
    ({"n_users": 5, "n_items": 5, "random_state": "x"}, TypeError, "random_state"),
    ({"n_users": 5, "n_items": 5, "drift": 2.0}, ValueError, "drift"),
])
def test_synthetic_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        synthetic(**kwargs)


# --------------------------------------------------------------------------- to_csr
def test_to_csr_maps_ids_both_ways():
    frame = pd.DataFrame({"user_id": ["b", "a", "b", "c"], "item_id": [30, 10, 10, 30],
                          "rating": [1.0, 2.0, 3.0, 4.0]})
    matrix, users, items = to_csr(frame)
    assert isinstance(matrix, sp.csr_matrix) and matrix.dtype == np.float32
    assert users.tolist() == ["a", "b", "c"] and items.tolist() == [10, 30]
    assert matrix.toarray().tolist() == [[1, 0], [1, 1], [0, 1]]
    rows, cols = matrix.nonzero()
    pairs = {(users[r], items[c]) for r, c in zip(rows, cols)}
    assert pairs == set(zip(frame["user_id"], frame["item_id"]))
    assert matrix.has_sorted_indices


def test_to_csr_values_and_duplicates():
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [5, 5, 6], "rating": [2.0, 3.0, 4.0]})
    binary, _, _ = to_csr(frame)
    assert binary.toarray().tolist() == [[1, 0], [0, 1]] and binary.nnz == 2
    summed, _, _ = to_csr(frame, value="rating")
    assert summed.toarray().tolist() == [[5, 0], [0, 4]]
    weighted, _, _ = to_csr(frame, value=np.array([1, 1, 7]))
    assert weighted.toarray().tolist() == [[2, 0], [0, 7]]


def test_to_csr_with_given_indexes_aligns_train_and_test():
    full = pd.DataFrame({"user_id": [1, 2, 3, 3], "item_id": [7, 8, 9, 7]})
    train, test = full.iloc[:2], full.iloc[2:]
    users, items = [3, 2, 1], [9, 8, 7]
    a, u1, i1 = to_csr(train, user_index=users, item_index=items)
    b, u2, i2 = to_csr(test, user_index=users, item_index=items)
    assert a.shape == b.shape == (3, 3)
    assert u1.tolist() == users and i2.tolist() == items
    assert a.toarray().tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert b.toarray().tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_to_csr_bad_input():
    frame = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    with pytest.raises(ValueError, match="user_index"):
        to_csr(frame, user_index=[1])
    with pytest.raises(ValueError, match="item_index"):
        to_csr(frame, item_index=[3, 5])
    with pytest.raises(ValueError, match="duplicate"):
        to_csr(frame, item_index=[3, 3, 4])
    with pytest.raises(ValueError, match="item_id"):
        to_csr(pd.DataFrame({"user_id": [1]}))
    with pytest.raises(ValueError, match="value"):
        to_csr(frame, value="rating")
    with pytest.raises(ValueError, match="value"):
        to_csr(frame, value=[1.0])
    with pytest.raises(ValueError, match="NaN"):
        to_csr(frame, value=[1.0, np.nan])
    with pytest.raises(TypeError, match="value"):
        to_csr(frame, value=np.array(["a", "b"]))
    with pytest.raises(TypeError, match="interactions"):
        to_csr(42)


@needs_movielens
def test_to_csr_on_movielens():
    interactions, _, _ = load_movielens(MOVIELENS)
    matrix, users, items = to_csr(interactions, value="rating")
    assert matrix.shape == (943, 1682) and matrix.nnz == 100_000
    # exact: integer ratings, and every partial sum stays below 2**24 (float32 integers)
    assert interactions["rating"].sum() < 2 ** 24
    assert matrix.sum() == interactions["rating"].sum()


def test_profile_texts_use_the_columns_there_are():
    from llmrec.datasets import _profile_texts

    frame = pd.DataFrame({"user_id": [1, 2, 3], "gender": ["F", "X", None],
                          "occupation": ["nurse", "", "artist"]})
    assert _profile_texts(frame) == ["A female nurse.", "A X.", "An artist."]
    ages = pd.DataFrame({"user_id": [1, 2, 3, 4], "age": [18, 81, 7, 11]})
    assert _profile_texts(ages) == ["An 18-year-old.", "An 81-year-old.", "A 7-year-old.",
                                    "An 11-year-old."]
    assert _profile_texts(pd.DataFrame({"user_id": [1], "zip_code": ["00000"]})) is None
    assert _profile_texts(pd.DataFrame({"user_id": [1], "age": [None]})) == [""]
