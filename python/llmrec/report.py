"""An evaluation as one self-contained HTML page: ``llmrec evaluate --report FILE.html``.

The page holds, each as a table of the numbers and a chart of them (PNG, embedded as
base64, so the file can be mailed or archived alone):

* the models side by side (:func:`llmrec.comparison.compare_lists`): ndcg, recall
  and coverage at k as bars;
* the accuracy–diversity curve: the Recommender's lists re-ranked with each
  ``diversity`` value, ndcg@k against intra-list diversity (1 − cosine of the items'
  genre vectors, or of the model's item vectors where items have no genres);
* the metrics by user activity: evaluated users split into quartiles of their number
  of training interactions, ndcg@k and recall@k of every model per group;
* the run's settings.

Charts use matplotlib (the ``report`` extra), imported only here and drawn on
figures of their own (the Agg canvas, no pyplot): the caller's matplotlib backend and
state are left alone. The file is written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from llmrec.comparison import METRICS, Comparison
from llmrec.evaluation import ranking_metrics

DEFAULT_DIVERSITIES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
_BAR_METRICS = ("ndcg", "recall", "coverage")


class Report(NamedTuple):
    """The page and the numbers drawn in it (each table of the page, as a frame)."""

    html: str
    models: pd.DataFrame      # one row per model: METRICS at k, seconds
    diversity: pd.DataFrame   # one row per diversity value: ndcg, recall, coverage, diversity
    activity: pd.DataFrame    # one row per (group, model): users, interactions range, ndcg, recall


def require_matplotlib() -> None:
    """Raise ImportError with the install line when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError('the HTML report needs matplotlib: pip install "llmrec[report]"')


def check_report_path(path: str | os.PathLike[str]) -> Path:
    """The report's path, refused early (before any fitting) if it cannot be written."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"report must be a file path, got {type(path).__name__}")
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"report {str(target)!r} is a directory; give a file name")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"report {str(target)!r}: directory {str(target.parent)!r} does not exist")
    return target


# --------------------------------------------------------------------------- numbers
def _item_features(items: pd.DataFrame, recommender: Any, item_index: pd.Index
                   ) -> tuple[np.ndarray, str]:
    """Vectors for intra-list diversity: genres one-hot where items have genres."""
    if "genres" in items.columns:
        genres = items.set_index("item_id").loc[item_index, "genres"]
        vocabulary = sorted({g for row in genres for g in (row if isinstance(row, list) else [])})
        if vocabulary:
            position = {g: j for j, g in enumerate(vocabulary)}
            features = np.zeros((len(item_index), len(vocabulary)), dtype=np.float32)
            for i, row in enumerate(genres):
                for g in (row if isinstance(row, list) else []):
                    features[i, position[g]] = 1.0
            return features, "1 − cosine of the items' genre vectors"
    snapshot_items = recommender._items  # the model's own vectors, in its catalogue order
    vectors = snapshot_items.E if snapshot_items.E is not None else snapshot_items.Vn
    rows = recommender._item_map.rows(list(item_index), "items")
    return np.asarray(vectors)[rows], "1 − cosine of the model's item vectors"


def diversity_curve(comparison: Comparison, recommender: Any, features: np.ndarray, k: int,
                    diversities: Sequence[float]) -> pd.DataFrame:
    """The Recommender's lists at each ``diversity``: ndcg, recall, coverage, diversity."""
    user_ids = comparison.user_index.to_numpy()[comparison.rows]
    rows = []
    for value in diversities:
        ids = np.asarray(recommender.recommend(user_ids, k, exclude_seen=True, diversity=value).ids)
        lists = np.full((len(comparison.user_index), k), -1, dtype=np.int64)
        lists[comparison.rows] = comparison.item_index.get_indexer(ids.ravel()).reshape(ids.shape)
        metrics = ranking_metrics(lists, comparison.test, k, train=comparison.train,
                                  item_features=features)
        rows.append({"diversity setting": float(value), "ndcg": metrics["ndcg"],
                     "recall": metrics["recall"], "coverage": metrics["coverage"],
                     "intra-list diversity": metrics["diversity"]})
    return pd.DataFrame(rows)


def activity_groups(comparison: Comparison, k: int) -> pd.DataFrame:
    """ndcg@k and recall@k per model for quartiles of users' training interactions."""
    counts = np.diff(comparison.train.indptr)[comparison.rows]
    edges = np.unique(np.floor(np.quantile(counts, [0.25, 0.5, 0.75])).astype(np.int64))
    group = np.searchsorted(edges, counts, side="left")  # group g: counts in (edges[g-1], edges[g]]
    out = []
    for g in np.unique(group):
        chosen = comparison.rows[group == g]
        low, high = int(counts[group == g].min()), int(counts[group == g].max())
        for model, lists in comparison.lists.items():
            metrics = ranking_metrics(lists[chosen], comparison.test[chosen], k,
                                      train=comparison.train[chosen])
            out.append({"group": f"{low}–{high}", "users": int(len(chosen)), "model": model,
                        "ndcg": metrics["ndcg"], "recall": metrics["recall"]})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- charts
def _png(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _models_chart(table: pd.DataFrame, k: int) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 3.4))
    axes = figure.subplots(1, len(_BAR_METRICS))
    names = list(table.index)
    colours = [f"C{i}" for i in range(len(names))]
    for ax, metric in zip(axes, _BAR_METRICS):
        values = table[metric].to_numpy(dtype=float)
        ax.bar(range(len(names)), values, color=colours)
        ax.set_xticks(range(len(names)), names, rotation=15, ha="right", fontsize=8)
        ax.set_title(f"{metric}@{k}")
        for x, v in enumerate(values):
            ax.annotate(f"{v:.3f}", (x, v), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(values.max() * 1.2, 1e-3))
    return _png(figure)


def _diversity_chart(curve: pd.DataFrame, k: int) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    ax.plot(curve["intra-list diversity"], curve["ndcg"], marker="o")
    for i, (_, row) in enumerate(curve.iterrows()):  # labels above and below in turn
        ax.annotate(f"λ={row['diversity setting']:g}", (row["intra-list diversity"], row["ndcg"]),
                    textcoords="offset points", xytext=(4, 5 if i % 2 == 0 else -12), fontsize=8)
    ax.set_xlabel("intra-list diversity")
    ax.set_ylabel(f"ndcg@{k}")
    ax.set_title("Recommender: accuracy against diversity")
    ax.grid(alpha=0.3)
    return _png(figure)


def _activity_chart(groups: pd.DataFrame, k: int) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.8))
    ax = figure.subplots()
    labels = list(dict.fromkeys(groups["group"]))
    models = list(dict.fromkeys(groups["model"]))
    width = 0.8 / max(len(models), 1)
    for m, model in enumerate(models):
        part = groups[groups["model"] == model].set_index("group").loc[labels]
        ax.bar(np.arange(len(labels)) + m * width, part["ndcg"], width, label=model, color=f"C{m}")
    ax.set_xticks(np.arange(len(labels)) + width * (len(models) - 1) / 2,
                  [f"{g}\n({n} users)" for g, n in zip(labels, groups.drop_duplicates("group")["users"])],
                  fontsize=8)
    ax.set_xlabel("training interactions per user")
    ax.set_ylabel(f"ndcg@{k}")
    ax.legend(fontsize=8)
    return _png(figure)


# --------------------------------------------------------------------------- page
def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f'<td class="num" data-value="{float(value)!r}">{float(value):.4f}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="num" data-value="{int(value)}">{int(value)}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(frame: pd.DataFrame, name: str, index: str | None = None, k: int | None = None) -> str:
    """An HTML table of ``frame``; with ``k``, metric columns are headed ``name@k``."""
    shown = frame.reset_index() if index is not None else frame
    heads = [f"{c}@{k}" if k is not None and c in (*METRICS, "ndcg", "recall") else str(c)
             for c in shown.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in heads)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                   for row in shown.itertuples(index=False, name=None))
    return f'<table id="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _image(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.25em .6em}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%}h2{margin-top:1.6em}"""


def build_report(comparison: Comparison, recommender: Any, items: pd.DataFrame, *, k: int,
                 settings: Mapping[str, Any], diversities: Sequence[float] | None = None) -> Report:
    """Compute the curves and groups from a finished :class:`Comparison` (its
    Recommender fitted) and lay the page out; nothing is written."""
    require_matplotlib()
    values = tuple(DEFAULT_DIVERSITIES if diversities is None else diversities)
    if not values or any(not 0.0 <= float(v) <= 1.0 for v in values):
        raise ValueError(f"diversities must be values in [0, 1], got {list(values)}")
    features, how = _item_features(items, recommender, comparison.item_index)
    models = comparison.table[list(METRICS) + ["seconds"]]
    curve = diversity_curve(comparison, recommender, features, k, values)
    groups = activity_groups(comparison, k)
    settings_frame = pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]})
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>llmrec evaluation</title>
<style>{_STYLE}</style></head><body>
<h1>llmrec evaluation</h1>
<h2>Models at k = {k}</h2>
<p>Every model trained on the same training interactions and ranked over the whole
catalogue; training items excluded. {len(comparison.rows)} users evaluated.</p>
{_table(models, "models", index="model", k=k)}
{_image(_models_chart(models, k), "ndcg, recall and coverage per model")}
<h2>Accuracy against diversity</h2>
<p>The Recommender's lists re-ranked by MMR with each <code>diversity</code> value;
intra-list diversity is {html.escape(how)}.</p>
{_table(curve, "diversity", k=k)}
{_image(_diversity_chart(curve, k), "ndcg against intra-list diversity")}
<h2>By user activity</h2>
<p>Evaluated users in groups (quartiles) of their number of training interactions.</p>
{_table(groups, "activity", k=k)}
{_image(_activity_chart(groups, k), "ndcg per model and user activity group")}
<h2>Settings</h2>
{_table(settings_frame, "settings")}
</body></html>
"""
    return Report(page, models, curve, groups)


def write_report(path: str | os.PathLike[str], page: str) -> Path:
    """Write ``page`` to ``path`` atomically (a temporary beside it, then a rename)."""
    from llmrec import _atomic

    target = check_report_path(path)
    temporary = _atomic.temporary(target, "tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(page)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
        _atomic.done(temporary)
    return target


__all__ = ["DEFAULT_DIVERSITIES", "Report", "activity_groups", "build_report", "check_report_path",
           "diversity_curve", "require_matplotlib", "write_report"]
