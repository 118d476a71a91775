"""llmrec.report: the HTML page of an evaluation — parsed back, its images decoded, its
numbers compared with the evaluation's and with an independent numpy ndcg."""

from __future__ import annotations

import base64
import io
import math
from html.parser import HTMLParser

import numpy as np
import pytest

from llmrec import Recommender
from llmrec.comparison import METRICS, compare_lists
from llmrec.datasets import synthetic
from llmrec.evaluation import temporal_split
from tolerances import metric_tolerance

pytest.importorskip("matplotlib")
from llmrec.report import build_report, check_report_path, write_report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
K = 5


class Page(HTMLParser):
    """Tables (id → rows of (text, data-value)) and image sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.images: list[str] = []
        self._table = None
        self._cell = None
        self._in_header = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs["id"]
            self.tables[self._table], self.headers[self._table] = [], []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._table:
            self._cell = [tag, "", attrs.get("data-value")]
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            kind, text, value = self._cell
            if kind == "th":
                self.headers[self._table].append(text)
            else:
                self._row.append((text, value))
            self._cell = None
        elif tag == "tr" and self._table and self._row:
            self.tables[self._table].append(self._row)
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def evaluated():
    interactions, items, _ = synthetic(n_users=240, n_items=120, random_state=3)
    train, test = temporal_split(interactions, 0.2)
    recommender = Recommender(encoder=None, random_state=0, validation=0.0)
    comparison = compare_lists(train, test, items, recommender=recommender, k=K)
    settings = {"data": "synthetic <240 users>", "k": K, "split": "temporal"}
    report = build_report(comparison, recommender, items, k=K, settings=settings,
                          diversities=(0.0, 0.3, 0.8))
    return comparison, recommender, report


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def reference_ndcg(lists: np.ndarray, test, train, k: int) -> np.ndarray:
    """Per-user ndcg@k in float64 by the textbook definition, one user at a time."""
    out = []
    for u in range(lists.shape[0]):
        relevant = set(test[u].indices.tolist())
        seen = set(train[u].indices.tolist())
        ranked = []
        for item in lists[u]:
            if item >= 0 and item not in seen and item not in ranked:
                ranked.append(int(item))
        ranked = ranked[:k]
        dcg = sum(1.0 / math.log2(j + 2) for j, item in enumerate(ranked) if item in relevant)
        idcg = sum(1.0 / math.log2(j + 2) for j in range(min(len(relevant), k)))
        out.append(dcg / idcg)
    return np.array(out)


def test_images_are_embedded_pngs(evaluated):
    from matplotlib.image import imread

    _, _, report = evaluated
    page = parse(report.html)
    assert len(page.images) == 3
    for source in page.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        data = base64.b64decode(source[len(prefix):], validate=True)
        assert data.startswith(PNG_MAGIC)
        pixels = imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert "http://" not in report.html and "https://" not in report.html  # self-contained


def test_model_table_holds_the_evaluations_numbers(evaluated):
    comparison, _, report = evaluated
    page = parse(report.html)
    rows = page.tables["models"]
    assert page.headers["models"][:5] == ["model", *(f"{m}@{K}" for m in METRICS)]
    assert [r[0][0] for r in rows] == list(comparison.table.index)
    for row, (_, expected) in zip(rows, comparison.table.iterrows()):
        for (text, value), metric in zip(row[1:], METRICS):
            assert float(value) == expected[metric]          # exactly the evaluation's
            assert text == f"{expected[metric]:.4f}"         # and shown rounded


def test_diversity_curve_starts_at_the_models_ranking(evaluated):
    comparison, _, report = evaluated
    rows = parse(report.html).tables["diversity"]
    assert [float(r[0][1]) for r in rows] == [0.0, 0.3, 0.8]
    shown = {name: [float(r[j][1]) for r in rows] for j, name in enumerate(report.diversity.columns)}
    np.testing.assert_array_equal(shown["ndcg"], report.diversity["ndcg"])
    # diversity 0 is the Recommender's own ranking, scored the same way
    assert shown["ndcg"][0] == comparison.table.loc["Recommender", "ndcg"]
    assert all(0.0 <= d <= 1.0 for d in shown["intra-list diversity"])


def test_activity_groups_match_an_independent_ndcg(evaluated):
    comparison, _, report = evaluated
    rows = parse(report.html).tables["activity"]
    assert len(rows) == len(report.activity)
    counts = np.diff(comparison.train.indptr)
    users_seen = 0
    for (group, users, model, ndcg, _), (_, expected) in zip(rows, report.activity.iterrows()):
        assert float(ndcg[1]) == expected["ndcg"]
        low, high = (int(x) for x in group[0].split("–"))
        chosen = comparison.rows[(counts[comparison.rows] >= low) & (counts[comparison.rows] <= high)]
        assert len(chosen) == int(users[1])
        lists = comparison.lists[model[0]][chosen]
        reference = reference_ndcg(lists, comparison.test[chosen], comparison.train[chosen], K).mean()
        assert abs(float(ndcg[1]) - reference) <= metric_tolerance(len(chosen), K)
        if model[0] == "popularity":
            users_seen += len(chosen)
    assert users_seen == len(comparison.rows)  # the groups split the evaluated users


def test_settings_are_shown_escaped(evaluated):
    _, _, report = evaluated
    page = parse(report.html)
    assert ("data", "synthetic <240 users>") in {(r[0][0], r[1][0]) for r in page.tables["settings"]}
    assert "<240 users>" not in report.html  # escaped in the source


def test_written_atomically_and_bad_paths_refused(evaluated, tmp_path):
    _, _, report = evaluated
    target = tmp_path / "report.html"
    target.write_text("old")
    write_report(target, report.html)
    assert target.read_text(encoding="utf-8") == report.html
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    with pytest.raises(IsADirectoryError):
        check_report_path(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_report_path(tmp_path / "missing" / "r.html")
    with pytest.raises(TypeError):
        check_report_path(42)


def test_bad_diversities_refused(evaluated):
    comparison, recommender, _ = evaluated
    with pytest.raises(ValueError, match="diversities"):
        build_report(comparison, recommender, __import__("pandas").DataFrame({"item_id": []}),
                     k=K, settings={}, diversities=(0.2, 1.5))
