"""ALS, ExactIndex, QuantizedIndex and Recommender pickle at any time (before fit, after
fit, after queries, after updates) and the copies answer exactly as the originals;
once through a spawned multiprocessing worker."""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec import ALS, ExactIndex, NotFittedError, QuantizedIndex, Recommender

from recommender_helpers import WordEncoder, small_data


def _copy(obj):
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _same(a, b) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------- ALS
def test_als_pickles_at_any_time(rng):
    R = sp.random(60, 40, density=0.15, format="csr", dtype=np.float32, random_state=rng)
    R.data[:] = 1.0
    model = ALS(factors=6, iterations=3, random_state=0, num_threads=1)
    unfitted = _copy(model)
    assert unfitted.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        unfitted.recommend(np.arange(2))
    model.fit(R)
    users = np.arange(5)
    _same(_copy(model).recommend(users, k=5), model.recommend(users, k=5))
    model.similar_items(np.arange(3), k=4)  # caches a Gramian and a search index
    model.recommend(users, k=5)
    copy = _copy(model)
    _same(copy.recommend(users, k=5), model.recommend(users, k=5))
    _same(copy.similar_items(np.arange(3), k=4), model.similar_items(np.arange(3), k=4))
    row = sp.csr_matrix(np.eye(1, 40, 7, dtype=np.float32))
    model.partial_fit_users([60], row)
    model.partial_fit_items([40])
    copy = _copy(model)
    np.testing.assert_array_equal(copy.user_factors_, model.user_factors_)
    np.testing.assert_array_equal(copy.item_factors_, model.item_factors_)
    _same(copy.recommend([60], k=5), model.recommend([60], k=5))
    # The copy goes on learning like the original.
    for m in (model, copy):
        m.partial_fit_users([3], sp.csr_matrix(np.eye(1, 41, 2, dtype=np.float32)))
    np.testing.assert_array_equal(copy.user_factors_, model.user_factors_)


# ----------------------------------------------------------------- indexes
def test_exact_index_pickles_at_any_time(rng, tmp_path):
    x = rng.standard_normal((200, 12)).astype(np.float32)
    q = rng.standard_normal((5, 12)).astype(np.float32)
    for index in (ExactIndex(x), ExactIndex(x, metric="cosine")):
        _same(_copy(index).search(q, 7), index.search(q, 7))
        index.search(q, 3)
        index.add(x[:10])
        copy = _copy(index)
        _same(copy.search(q, 7), index.search(q, 7))
        for i in (index, copy):
            i.add(x[20:25])
        _same(copy.search(q, 7), index.search(q, 7))
    index.save(tmp_path / "x.llmrec")
    mapped = ExactIndex.load(tmp_path / "x.llmrec", mmap=True)
    mapped.search(q, 3)
    copy = _copy(mapped)
    assert not isinstance(copy.vectors, np.memmap)
    _same(copy.search(q, 7), mapped.search(q, 7))


@pytest.mark.parametrize("options", [dict(codec="sq8"), dict(codec="fp16"), dict(codec="pq4"),
                                     dict(codec="sq8", partitions=4), dict(codec="fp16", partitions=4),
                                     dict(codec="pq4", partitions=3, keep_vectors=False)],
                         ids=lambda o: "-".join(str(v) for v in o.values()))
def test_quantized_index_pickles_at_any_time(rng, options, tmp_path):
    x = rng.standard_normal((300, 16)).astype(np.float32)
    q = rng.standard_normal((6, 16)).astype(np.float32)
    index = QuantizedIndex(x, random_state=0, num_threads=1, **options)
    _same(_copy(index).search(q, 8), index.search(q, 8))
    index.save(tmp_path / "q.llmrec")
    mapped = QuantizedIndex.load(tmp_path / "q.llmrec", mmap=True)
    _same(_copy(mapped).search(q, 8), index.search(q, 8))
    index.search(q, 3)
    index.add(x[:20] * 0.5)
    copy = _copy(index)
    _same(copy.search(q, 8), index.search(q, 8))
    for i in (index, copy):
        i.add(x[50:60])
    _same(copy.search(q, 8), index.search(q, 8))


# ----------------------------------------------------------------- Recommender
@pytest.fixture(scope="module")
def data():
    return small_data(150, 120)


def _fit(data) -> Recommender:
    interactions, items, _ = data
    return Recommender(encoder=WordEncoder(), random_state=0, validation=0.0, regularization=10.0,
                       factors=8, iterations=3, num_threads=1).fit(interactions, items=items)


def _answers(rec: Recommender) -> list:
    users = list(rec._user_map.ids[:20])
    item = rec._item_map.ids[3]
    return [*rec.recommend(users, 10)[:2], *rec.recommend_for_history([item], 5)[:2],
            *rec.similar_items([item], 5)[:2], *rec.search("chef kitchen", 5)[:2]]


def test_recommender_pickles_at_any_time(data):
    unfitted = _copy(Recommender(encoder=None, factors=9))
    assert unfitted.factors == 9
    with pytest.raises(NotFittedError):
        unfitted.recommend(0)
    rec = _fit(data)
    _same(_answers(_copy(rec)), _answers(rec))
    _answers(rec)  # queries: encoder built, ALS caches filled
    _same(_answers(_copy(rec)), _answers(rec))
    new_item = 70_000
    rec.add_items(pd.DataFrame({"item_id": [new_item], "text": ["a chef story"]}))
    rec.update(0, [new_item, rec._item_map.ids[1]])  # re-solves the new item
    rec.update(5_000, [new_item])  # a new user
    copy = _copy(rec)
    _same(_answers(copy), _answers(rec))
    assert np.shares_memory(copy._items.E, copy._items.index.request.vectors)
    # The copy goes on taking updates like the original, and saves.
    for r in (rec, copy):
        r.update(5_001, [new_item, rec._item_map.ids[2]])
        r.add_items(pd.DataFrame({"item_id": [70_001], "text": ["another story"]}))
    _same(_answers(copy), _answers(rec))
    _same(copy.recommend(5_001, 10), rec.recommend(5_001, 10))


def _recommend_in_worker(blob: bytes) -> list:
    rec = pickle.loads(blob)
    return _answers(rec)


def test_recommender_through_a_spawned_worker(data):
    rec = _fit(data)
    rec.update(1, [rec._item_map.ids[9]])
    _answers(rec)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        # The object itself travels (pickled by the pool), and its pickle as bytes.
        remote = pool.apply(_answers, (rec,), )
        again = pool.apply(_recommend_in_worker, (pickle.dumps(rec),))
    _same(remote, _answers(rec))
    _same(again, _answers(rec))
