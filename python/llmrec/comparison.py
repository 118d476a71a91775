"""Side-by-side evaluation of the Recommender and its baselines on one split.

Used by ``llmrec demo`` and ``llmrec evaluate``: every model is trained on the same
training interactions and scored with :func:`llmrec.evaluation.ranking_metrics` over
the same catalogue (every item of ``items``), with training items excluded.

Models compared:

* ``popularity`` — items ranked by their number of training interactions;
* ``ALS (behaviour only)`` — llmrec's implicit ALS on the binary training matrix;
* ``Recommender`` — behaviour and text together (:class:`llmrec.Recommender`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .datasets import to_csr
from .evaluation import ranking_metrics

METRICS = ("ndcg", "recall", "precision", "coverage")


def _popularity_lists(train: sp.csr_matrix, users: np.ndarray, k: int) -> np.ndarray:
    from . import ExactIndex

    counts = np.asarray((train != 0).sum(axis=0), dtype=np.float32).ravel()
    index = ExactIndex(counts[:, None])
    ones = np.ones((len(users), 1), dtype=np.float32)
    return index.search(ones, k, exclude=train[users])[0]


def _als_lists(train: sp.csr_matrix, users: np.ndarray, k: int, factors: int,
               random_state: Any, show_progress: bool) -> np.ndarray:
    from . import ALS

    model = ALS(factors=factors, random_state=random_state)
    model.fit(train, show_progress=show_progress)
    return model.recommend(users, train[users], k, exclude_seen=True, user_items_rows="per_user")[0]


def _recommender_lists(recommender: Any, user_ids: np.ndarray, item_index: pd.Index,
                       k: int) -> np.ndarray:
    ids = np.asarray(recommender.recommend(user_ids, k, exclude_seen=True).ids)
    return item_index.get_indexer(ids.ravel()).reshape(ids.shape).astype(np.int64)


class Comparison(NamedTuple):
    """Everything :func:`compare_lists` measured, for reports that look further."""

    table: pd.DataFrame           # what :func:`compare` returns
    lists: dict[str, np.ndarray]  # model -> (n_users, k) item indices (-1: none / no test)
    train: sp.csr_matrix          # users × items, rows in ``user_index`` order
    test: sp.csr_matrix
    user_index: pd.Index
    item_index: pd.Index
    rows: np.ndarray              # the rows (users) with test items


def compare(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame, *,
            recommender: Any, k: int = 10, factors: int = 64, random_state: Any = 0,
            show_progress: bool = False) -> pd.DataFrame:
    """Fit the baselines and ``recommender`` on ``train``; score all on ``test``.

    Parameters
    ----------
    train, test : DataFrames with ``user_id`` and ``item_id`` (as from a split).
    items : DataFrame with ``item_id`` (and the text columns the recommender uses):
        the catalogue every model ranks.
    recommender : an unfitted :class:`llmrec.Recommender`; fitted here on ``train``.
    k : cut-off of the metrics.
    factors, random_state : for the behaviour-only ALS baseline.

    Returns
    -------
    DataFrame, one row per model: ``ndcg``, ``recall``, ``precision``, ``coverage``
    at ``k`` and ``seconds`` (fit plus ranking every test user).
    """
    return compare_lists(train, test, items, recommender=recommender, k=k, factors=factors,
                         random_state=random_state, show_progress=show_progress).table


def compare_lists(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame, *,
                  recommender: Any, k: int = 10, factors: int = 64, random_state: Any = 0,
                  show_progress: bool = False) -> Comparison:
    """:func:`compare`, also returning each model's lists and the matrices they were
    scored against (:class:`Comparison`)."""
    item_index = pd.Index(items["item_id"])
    if not item_index.is_unique:
        raise ValueError("items holds duplicate item_id values")
    user_index = pd.Index(pd.unique(train["user_id"]))
    test = test[test["user_id"].isin(user_index) & test["item_id"].isin(item_index)]
    train_csr = to_csr(train, user_index=user_index, item_index=item_index)[0]
    test_csr = to_csr(test, user_index=user_index, item_index=item_index)[0]
    rows = np.flatnonzero(np.diff(test_csr.indptr) > 0)

    kept: dict[str, np.ndarray] = {}

    def score(name: str, make_lists: Callable[[], np.ndarray]) -> dict[str, Any]:
        start = time.perf_counter()
        lists = np.full((len(user_index), k), -1, dtype=np.int64)
        lists[rows] = make_lists()
        seconds = time.perf_counter() - start
        kept[name] = lists
        metrics = ranking_metrics(lists, test_csr, k, train=train_csr)
        return {"model": name, **{m: metrics[m] for m in METRICS}, "seconds": seconds}

    results = [
        score("popularity", lambda: _popularity_lists(train_csr, rows, k)),
        score("ALS (behaviour only)",
              lambda: _als_lists(train_csr, rows, k, factors, random_state, show_progress)),
    ]

    def fit_and_rank() -> np.ndarray:
        recommender.fit(train, items=items, show_progress=show_progress)
        return _recommender_lists(recommender, user_index.to_numpy()[rows], item_index, k)

    results.append(score("Recommender", fit_and_rank))
    return Comparison(pd.DataFrame(results).set_index("model"), kept, train_csr, test_csr,
                      user_index, item_index, rows)


def format_table(table: pd.DataFrame, k: int) -> str:
    """Render :func:`compare`'s table as aligned text."""
    header = f"{'model':<24}" + "".join(f"{m + '@' + str(k):>13}" for m in METRICS) + f"{'seconds':>10}"
    lines = [header, "-" * len(header)]
    for name, row in table.iterrows():
        lines.append(f"{name:<24}" + "".join(f"{row[m]:>13.4f}" for m in METRICS)
                     + f"{row['seconds']:>10.1f}")
    return "\n".join(lines)
