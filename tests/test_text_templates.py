"""item_text / history_text: the strings the text encoder reads (no torch needed)."""

import math

import pytest

from llmrec.text import DEFAULT_ITEM_TEMPLATE, history_text, item_text


def test_default_template_one_item():
    item = {"title": "Toy Story", "year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert item_text(item) == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert DEFAULT_ITEM_TEMPLATE == "{title} ({year}). Genres: {genres}"


def test_many_items_keep_order_and_extra_fields_are_ignored():
    items = [{"title": "Heat", "year": 1995.0, "genres": ("Action", "Crime"), "id": 7},
             {"title": "Fargo", "year": 1996, "genres": "Crime, Drama", "id": 8}]
    assert item_text(items) == ["Heat (1995). Genres: Action, Crime",
                                "Fargo (1996). Genres: Crime, Drama"]
    assert item_text(items, "{title}") == ["Heat", "Fargo"]
    assert item_text([]) == []


@pytest.mark.parametrize("year, genres, expected", [
    (None, ["Comedy"], "Toy Story. Genres: Comedy"),
    (math.nan, ["Comedy"], "Toy Story. Genres: Comedy"),
    ("", ["Comedy"], "Toy Story. Genres: Comedy"),
    (1995, [], "Toy Story (1995)."),
    (1995, None, "Toy Story (1995)."),
    (None, [None, math.nan], "Toy Story."),
])
def test_missing_values_leave_no_debris(year, genres, expected):
    assert item_text({"title": "Toy Story", "year": year, "genres": genres}) == expected


def test_custom_templates_and_missing_middle_value():
    assert item_text({"a": "A", "b": None, "c": "C"}, "{a}, {b}, {c}") == "A, C"
    assert item_text({"t": "Alien", "s": ""}, "{t}: {s}") == "Alien"
    assert item_text({"t": "Alien", "r": 4.5}, "{t} rated {r}") == "Alien rated 4.5"


def test_dataframe_rows():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"title": ["Heat", "Fargo"], "year": [1995, None],
                          "genres": [["Action"], ["Crime", "Drama"]]})
    assert item_text(frame) == ["Heat (1995). Genres: Action", "Fargo. Genres: Crime, Drama"]
    with pytest.raises(KeyError, match="plot"):
        item_text(frame, "{title}: {plot}")


class _FakeFrame:
    """The two things item_text uses from a pandas DataFrame."""

    def __init__(self, records):
        self.records = records
        self.columns = list(records[0])

    def to_dict(self, orient):
        assert orient == "records"
        return self.records


def test_dataframe_like_without_pandas():
    frame = _FakeFrame([{"title": "Heat", "year": 1995, "genres": ["Action"]}])
    assert item_text(frame) == ["Heat (1995). Genres: Action"]
    with pytest.raises(KeyError, match="plot"):
        item_text(frame, "{plot}")


def test_bad_items_and_templates():
    with pytest.raises(KeyError, match=r"'year'.*items\[1\]"):
        item_text([{"title": "A", "year": 1, "genres": []}, {"title": "B", "genres": []}])
    with pytest.raises(TypeError, match=r"items\[0\]"):
        item_text(["Toy Story"])
    with pytest.raises(TypeError):
        item_text("Toy Story")
    with pytest.raises(TypeError):
        item_text(None)
    with pytest.raises(ValueError, match="named"):
        item_text({"title": "A"}, "{} and {0}")
    with pytest.raises(TypeError):
        item_text({"title": "A"}, template=3)


def test_history_most_recent_first():
    assert history_text(["Toy Story", "Heat", "Fargo"], prefix="watched: ") == \
        "watched: Fargo; Heat; Toy Story"
    assert history_text(["Fargo", "Heat", "Toy Story"], most_recent_last=False) == \
        "Fargo; Heat; Toy Story"
    assert history_text(["a", "b"], separator=" | ") == "b | a"


def test_history_max_items_keeps_the_most_recent():
    titles = [f"m{i}" for i in range(50)]
    text = history_text(titles, max_items=3)
    assert text == "m49; m48; m47"


def test_history_char_budget_drops_whole_old_items():
    titles = ["Toy Story", "Heat", "Fargo"]
    assert history_text(titles, prefix="watched: ", max_chars=20) == "watched: Fargo; Heat"
    for budget in range(14, 60):
        text = history_text(titles * 5, prefix="watched: ", max_chars=budget)
        assert len(text) <= budget
        assert all(part in titles for part in text[len("watched: "):].split("; "))


def test_history_cuts_an_overlong_latest_item_at_a_word():
    text = history_text(["old", "a very long title that goes on and on"], max_chars=20)
    assert len(text) <= 20
    assert text == "a very long title…"


def test_history_empty_and_blank_items():
    assert history_text([]) == ""
    assert history_text([], prefix="watched: ") == "watched:"
    assert history_text(["  ", "Heat  \n Fargo "]) == "Heat Fargo"


def test_history_bad_input():
    with pytest.raises(TypeError):
        history_text("Toy Story")
    with pytest.raises(TypeError, match=r"item_texts\[1\]"):
        history_text(["a", None])
    with pytest.raises(ValueError):
        history_text(["a"], max_items=0)
    with pytest.raises(TypeError):
        history_text(["a"], max_chars=2.5)
