"""Tests for llmrec.evaluation: splits, ranking metrics, AUC, evaluate, implicit adapter.

Every metric is checked against a plain-Python reference written from the textbook
definition, on random data (hypothesis) and on hand-made known answers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from movielens import MOVIELENS, needs_movielens
from tolerances import metric_tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrec.evaluation import (ImplicitAdapter, auc, cold_item_split, cold_user_split, evaluate, leave_last_k,
                               random_split, ranking_metrics, temporal_split)

REPO = Path(__file__).resolve().parents[1]
KEYS = ("precision", "recall", "f1", "ndcg", "map", "mrr", "hit_rate", "coverage")


# --------------------------------------------------------------------------- references
def reference_metrics(recommended, test_sets, k, n_items, train_sets=None, features=None):
    """Plain-Python ranking metrics, one user at a time, from the definitions."""
    per_user = {key: [] for key in KEYS if key != "coverage"}
    covered, diversities = set(), []
    for u, row in enumerate(recommended):
        relevant = test_sets[u]
        if not relevant:
            continue
        ranked, seen = [], set()
        for item in row:
            item = int(item)
            if item >= 0 and item in seen:
                item = -1                      # a repeat counts once, at its first place
            if item >= 0:
                seen.add(item)
            if train_sets is not None and item >= 0 and item in train_sets[u]:
                continue                       # training items are removed
            ranked.append(item)
        ranked = (ranked + [-1] * k)[:k]
        covered.update(i for i in ranked if i >= 0)
        gains = [1 if i in relevant else 0 for i in ranked]
        hits = sum(gains)
        precision, recall = hits / k, hits / len(relevant)
        per_user["precision"].append(precision)
        per_user["recall"].append(recall)
        per_user["f1"].append(2 * precision * recall / (precision + recall) if hits else 0.0)
        dcg = sum(g / math.log2(j + 2) for j, g in enumerate(gains))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(relevant), k)))
        per_user["ndcg"].append(dcg / idcg)
        found, total = 0, 0.0
        for j, g in enumerate(gains):
            if g:
                found += 1
                total += found / (j + 1)
        per_user["map"].append(total / min(len(relevant), k))
        per_user["mrr"].append(next((1 / (j + 1) for j, g in enumerate(gains) if g), 0.0))
        per_user["hit_rate"].append(1.0 if hits else 0.0)
        if features is not None:
            items = [i for i in ranked if i >= 0]
            pairs = [(a, b) for x, a in enumerate(items) for b in items[x + 1:]]
            if pairs:
                def cos(a, b):
                    fa, fb = features[a], features[b]
                    na, nb = math.sqrt(sum(v * v for v in fa)), math.sqrt(sum(v * v for v in fb))
                    return sum(x * y for x, y in zip(fa, fb)) / (na * nb) if na and nb else 0.0
                diversities.append(sum(1 - cos(a, b) for a, b in pairs) / len(pairs))
    result = {key: sum(v) / len(v) for key, v in per_user.items()}
    result["coverage"] = len(covered) / n_items
    if features is not None:
        result["diversity"] = sum(diversities) / len(diversities) if diversities else float("nan")
    result["n_users"] = len(per_user["precision"])
    return result


def reference_auc(scores, test_sets, train_sets=None):
    values = []
    for u, positives in enumerate(test_sets):
        excluded = train_sets[u] if train_sets is not None else set()
        negatives = [i for i in range(scores.shape[1]) if i not in positives and i not in excluded]
        if not positives or not negatives:
            continue
        wins = sum((scores[u, p] > scores[u, n]) + 0.5 * (scores[u, p] == scores[u, n])
                   for p in positives for n in negatives)
        values.append(wins / (len(positives) * len(negatives)))
    return sum(values) / len(values)


def row_sets(matrix):
    matrix = sp.csr_matrix(matrix)
    return [set(matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]][
        matrix.data[matrix.indptr[u]:matrix.indptr[u + 1]] != 0].tolist())
        for u in range(matrix.shape[0])]


def random_case(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(1, 25)), int(rng.integers(1, 30))
    width, k = int(rng.integers(1, 16)), int(rng.integers(1, 16))
    test = sp.random(n_users, n_items, density=rng.uniform(0.05, 0.6), format="csr",
                     random_state=seed)
    train = sp.random(n_users, n_items, density=rng.uniform(0.0, 0.6), format="csr",
                      random_state=seed + 1)
    # mostly small ids so that repeats, hits and training items all occur
    recommended = rng.integers(-1, n_items, size=(n_users, width))
    return rng, test, train, recommended, k


# --------------------------------------------------------------------------- metrics
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_ranking_metrics_match_reference(seed, with_train):
    rng, test, train, recommended, k = random_case(seed)
    if test.nnz == 0:
        with pytest.raises(ValueError, match="no interactions"):
            ranking_metrics(recommended, test, k)
        return
    features = rng.normal(size=(test.shape[1], 3))
    features[rng.random(test.shape[1]) < 0.1] = 0.0  # zero vectors: cosine 0
    got = ranking_metrics(recommended, test, k, train=train if with_train else None,
                          item_features=features)
    expected = reference_metrics(recommended, row_sets(test), k, test.shape[1],
                                 row_sets(train) if with_train else None, features.tolist())
    assert got["n_users"] == expected["n_users"]
    for key in (*KEYS, "diversity"):
        if math.isnan(expected[key]):
            assert math.isnan(got[key])
        else:
            # float64 on both sides, summed in other orders; diversity's cosines add 2d + 6
            bound = 2 * metric_tolerance(test.shape[0], max(k, recommended.shape[1]) + 2 * 3 + 6)
            assert got[key] == pytest.approx(expected[key], abs=bound), key


def test_known_answer():
    # user 0: test {1, 3}; list [3, 0, 1] at k=3 → hits at ranks 1 and 3
    # user 1: test {2};    list [0, 4, 2] at k=2 → no hit (2 is at rank 3)
    # user 2: no test items → skipped
    test = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]))
    recommended = np.array([[3, 0, 1], [0, 4, 2], [1, 2, 3]])
    m = ranking_metrics(recommended, test, k=2)
    assert m["n_users"] == 2
    approx = lambda value: pytest.approx(value, abs=2 * metric_tolerance(2, 3))  # noqa: E731
    assert m["precision"] == approx((1 / 2 + 0) / 2)
    assert m["recall"] == approx((1 / 2 + 0) / 2)
    assert m["hit_rate"] == approx(0.5)
    assert m["mrr"] == approx(0.5)
    assert m["ndcg"] == approx((1 / (1 + 1 / math.log2(3))) / 2)
    assert m["map"] == approx((1 / 2) / 2)
    assert m["coverage"] == approx(3 / 5)  # {3, 0, 4}
    m3 = ranking_metrics(recommended, test, k=3)
    assert m3["map"] == approx(((1 + 2 / 3) / 2 + (1 / 3) / 1) / 2)
    assert m3["ndcg"] == approx(((1 + 1 / 2) / (1 + 1 / math.log2(3))
                                        + (1 / 2) / 1) / 2)


def test_user_without_test_items_is_skipped():
    test = sp.csr_matrix(np.array([[1, 0], [0, 0]]))
    perfect = ranking_metrics(np.array([[0], [1]]), test, k=1)
    assert perfect["n_users"] == 1 and perfect["precision"] == 1.0
    assert perfect["coverage"] == 0.5  # only evaluated users' lists count


def test_k_larger_than_list_pads_with_misses():
    test = sp.csr_matrix(np.array([[1, 1, 0, 0]]))
    m = ranking_metrics(np.array([[0, 1]]), test, k=5)
    approx = lambda value: pytest.approx(value, abs=2 * metric_tolerance(1, 5))  # noqa: E731
    assert m["precision"] == approx(2 / 5)
    assert m["recall"] == 1.0 and m["ndcg"] == approx(1.0) and m["map"] == 1.0


def test_duplicates_count_once():
    test = sp.csr_matrix(np.array([[1, 1, 0, 0]]))
    m = ranking_metrics(np.array([[0, 0, 0, 1]]), test, k=4)
    approx = lambda value: pytest.approx(value, abs=2 * metric_tolerance(1, 4))  # noqa: E731
    assert m["precision"] == approx(2 / 4)
    assert m["recall"] == 1.0
    assert m["map"] == approx((1 + 2 / 4) / 2)
    assert m["coverage"] == approx(2 / 4)


def test_train_items_are_removed_before_the_cut():
    test = sp.csr_matrix(np.array([[0, 0, 1, 0]]))
    train = sp.csr_matrix(np.array([[1, 1, 0, 0]]))
    lists = np.array([[0, 1, 2, 3]])
    assert ranking_metrics(lists, test, k=1)["precision"] == 0.0
    assert ranking_metrics(lists, test, k=1, train=train)["precision"] == 1.0


def test_stored_zeros_are_not_relevant():
    test = sp.csr_matrix((np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 2])), shape=(1, 3))
    assert ranking_metrics(np.array([[0, 1]]), test, k=2)["recall"] == 1.0
    assert ranking_metrics(np.array([[0, 2]]), test, k=2)["hit_rate"] == 0.0


def test_scale_100k_users_runs_and_matches_reference_sample():
    rng = np.random.default_rng(7)
    n_users, n_items = 100_000, 5_000

    def random_csr(per_user):
        n = n_users * per_user
        matrix = sp.csr_matrix((np.ones(n), (rng.integers(0, n_users, n), rng.integers(0, 400, n))),
                               shape=(n_users, n_items))
        matrix.sum_duplicates()
        return matrix

    test, train = random_csr(4), random_csr(20)
    recommended = rng.integers(0, 300, size=(n_users, 12))
    got = ranking_metrics(recommended, test, k=10, train=train)
    sample = np.arange(0, n_users, 97)
    expected = reference_metrics(recommended[sample], row_sets(test[sample]), 10, n_items,
                                 row_sets(train[sample]))
    sub = ranking_metrics(recommended[sample], test[sample], k=10, train=train[sample])
    for key in KEYS:
        assert sub[key] == pytest.approx(expected[key], abs=2 * metric_tolerance(len(sample), 12))
    assert got["n_users"] == int((np.diff(test.indptr) > 0).sum())


@pytest.mark.parametrize("recommended, test, kwargs, error, words", [
    (np.zeros((2, 3), int), sp.csr_matrix((2, 4)), {}, ValueError, "no interactions"),
    (np.zeros((3, 3), int), sp.eye(2, 4, format="csr"), {}, ValueError, "rows"),
    (np.full((2, 3), 4), sp.eye(2, 4, format="csr"), {}, ValueError, "outside"),
    (np.full((2, 3), -2), sp.eye(2, 4, format="csr"), {}, ValueError, "outside"),
    (np.zeros((2, 3)), sp.eye(2, 4, format="csr"), {}, TypeError, "integer"),
    (np.zeros(3, int), sp.eye(2, 4, format="csr"), {}, ValueError, "2-D"),
    (np.zeros((2, 3), int), np.eye(2, 4), {}, TypeError, "test"),
    (np.zeros((2, 3), int), sp.eye(2, 4, format="csr"), {"k": 0}, ValueError, "k"),
    (np.zeros((2, 3), int), sp.eye(2, 4, format="csr"), {"k": 2.0}, TypeError, "k"),
    (np.zeros((2, 3), int), sp.eye(2, 4, format="csr"), {"train": sp.eye(3, 4)}, ValueError,
     "train"),
    (np.zeros((2, 3), int), sp.eye(2, 4, format="csr"), {"item_features": np.ones((3, 2))},
     ValueError, "item_features"),
    (np.zeros((2, 3), int), sp.eye(2, 4, format="csr"),
     {"item_features": np.full((4, 2), np.nan)}, ValueError, "NaN"),
])
def test_ranking_metrics_bad_input(recommended, test, kwargs, error, words):
    with pytest.raises(error, match=words):
        ranking_metrics(recommended, test, **kwargs)


# --------------------------------------------------------------------------- auc
@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans(), st.integers(1, 5))
def test_auc_matches_reference(seed, with_train, batch_size):
    rng, test, train, _, _ = random_case(seed)
    scores = rng.integers(0, 4, size=test.shape).astype(np.float64)  # many ties
    tests, trains = row_sets(test), row_sets(train) if with_train else None
    evaluable = [u for u, positives in enumerate(tests)
                 if positives and any(i not in positives and (trains is None or i not in trains[u])
                                      for i in range(test.shape[1]))]
    if test.nnz == 0:
        with pytest.raises(ValueError, match="no interactions"):
            auc(scores, test)
        return
    if not evaluable:
        with pytest.raises(ValueError, match="negative"):
            auc(scores, test, train if with_train else None)
        return
    got = auc(scores, test, train if with_train else None, batch_size=batch_size)
    # per user a ratio of integer counts, then a float64 mean over the users
    assert got == pytest.approx(reference_auc(scores, tests, trains),
                                abs=2 * metric_tolerance(test.shape[0], 2))


def test_auc_known_answers():
    test = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1]]))
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    approx = lambda value: pytest.approx(value, abs=2 * metric_tolerance(2, 2))  # noqa: E731
    assert auc(scores, test) == approx((1.0 + 0.0) / 2)
    assert auc(np.ones((2, 4)), test) == approx(0.5)
    # excluding the item that outranks user 1's positive… still below two others
    train = sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 0, 0, 0]]))
    assert auc(scores, test, train) == approx((1.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="shape"):
        auc(np.ones((2, 3)), test)
    with pytest.raises(ValueError, match="NaN"):
        auc(np.full((2, 4), np.nan), test)
    with pytest.raises(TypeError, match="dense"):
        auc(sp.csr_matrix(scores), test)


# --------------------------------------------------------------------------- splits
def interaction_frames():
    return st.integers(0, 2**31 - 1).map(_frame_from_seed)


def _frame_from_seed(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    frame = pd.DataFrame({
        "user_id": rng.integers(0, int(rng.integers(1, 30)), size=n),
        "item_id": rng.integers(0, int(rng.integers(1, 50)), size=n),
        "timestamp": rng.integers(0, 20, size=n),  # plenty of ties
    })
    frame.index = frame.index * 3 + 5  # a non-default index must survive
    return frame


def check_partition(frame, train, test):
    assert len(train) + len(test) == len(frame)
    assert set(train.index).isdisjoint(test.index)
    assert set(train.index) | set(test.index) == set(frame.index)
    pd.testing.assert_frame_equal(pd.concat([train, test]).loc[frame.index], frame)
    assert set(test["user_id"]) <= set(train["user_id"])


@settings(max_examples=60, deadline=None)
@given(interaction_frames(), st.floats(0.05, 0.95))
def test_random_and_temporal_split_properties(frame, frac):
    counts = frame.groupby("user_id").size()
    expected = np.minimum(np.floor(frac * counts + 0.5), counts - 1).astype(int)
    for train, test in (random_split(frame, frac, random_state=1), temporal_split(frame, frac)):
        check_partition(frame, train, test)
        got = test.groupby("user_id").size().reindex(counts.index, fill_value=0)
        assert (got == expected).all()
    train, test = temporal_split(frame, frac)
    latest_train = train.groupby("user_id")["timestamp"].max()
    earliest_test = test.groupby("user_id")["timestamp"].min()
    assert (earliest_test >= latest_train.reindex(earliest_test.index)).all()


@settings(max_examples=60, deadline=None)
@given(interaction_frames(), st.integers(1, 4))
def test_leave_last_k_properties(frame, k):
    train, test = leave_last_k(frame, k)
    check_partition(frame, train, test)
    counts = frame.groupby("user_id").size()
    got = test.groupby("user_id").size().reindex(counts.index, fill_value=0)
    assert (got == np.minimum(k, counts - 1)).all()
    latest_train = train.groupby("user_id")["timestamp"].max()
    earliest_test = test.groupby("user_id")["timestamp"].min()
    assert (earliest_test >= latest_train.reindex(earliest_test.index)).all()


@settings(max_examples=60, deadline=None)
@given(interaction_frames(), st.floats(0.05, 0.95))
def test_cold_item_split_properties(frame, frac):
    train, test = cold_item_split(frame, frac, random_state=3)
    assert set(train.index).isdisjoint(test.index)
    assert set(test["item_id"]).isdisjoint(train["item_id"])
    assert set(test["user_id"]) <= set(train["user_id"])
    n_items = frame["item_id"].nunique()
    n_cold = int(np.floor(frac * n_items + 0.5))
    assert frame["item_id"].nunique() - train["item_id"].nunique() == n_cold
    # only rows of users without any train row are dropped
    dropped = frame.loc[~frame.index.isin(train.index) & ~frame.index.isin(test.index)]
    assert not set(dropped["user_id"]) & set(train["user_id"])


@settings(max_examples=60, deadline=None)
@given(interaction_frames(), st.floats(0.05, 0.5), st.integers(1, 3))
def test_cold_user_split_properties(frame, frac, n_known):
    counts = frame.groupby("user_id").size()
    n_cold = int(np.floor(frac * len(counts) + 0.5))
    if n_cold > int((counts > n_known).sum()):
        with pytest.raises(ValueError, match="n_known"):
            cold_user_split(frame, frac, n_known, random_state=3)
        return
    train, known, test = cold_user_split(frame, frac, n_known, random_state=3)
    parts = [set(train.index), set(known.index), set(test.index)]
    assert sum(map(len, parts)) == len(frame) and len(set.union(*parts)) == len(frame)
    cold = set(known["user_id"])
    assert len(cold) == n_cold and set(test["user_id"]) == cold
    assert cold.isdisjoint(train["user_id"])
    assert (known.groupby("user_id").size() == n_known).all()
    # known rows are each cold user's earliest (numpy reference: stable sort by time)
    for user in cold:
        rows = frame[frame["user_id"] == user]
        first = rows.index.to_numpy()[np.argsort(rows["timestamp"].to_numpy(), kind="stable")][:n_known]
        assert set(first) == set(known.index[known["user_id"] == user])


def test_cold_user_split_same_users_for_every_n_known_and_seeded():
    frame = _frame_from_seed(4)
    frame = frame[frame.groupby("user_id")["item_id"].transform("size") > 3]
    groups = [set(cold_user_split(frame, 0.3, n, random_state=7)[1]["user_id"]) for n in (1, 2, 3)]
    assert groups[0] == groups[1] == groups[2]
    assert {tuple(sorted(cold_user_split(frame, 0.3, 1, random_state=s)[1]["user_id"]))
            for s in range(5)}.__len__() > 1


def test_temporal_split_ties_keep_row_order_and_latest_go_to_test():
    frame = pd.DataFrame({"user_id": [1, 1, 1, 1, 1], "item_id": [10, 11, 12, 13, 14],
                          "timestamp": [50, 10, 50, 30, 20]})
    train, test = temporal_split(frame, 0.4)
    assert test["item_id"].tolist() == [10, 12]
    train, test = leave_last_k(frame, 3)
    assert sorted(test["item_id"]) == [10, 12, 13]


def test_random_split_is_seeded():
    frame = _frame_from_seed(11)
    a = random_split(frame, 0.3, random_state=5)[1]
    b = random_split(frame, 0.3, random_state=np.random.default_rng(5))[1]
    pd.testing.assert_frame_equal(a, b)
    many = {tuple(random_split(frame, 0.3, random_state=s)[1].index) for s in range(5)}
    assert len(many) > 1


@pytest.mark.parametrize("call, error, words", [
    (lambda f: random_split(f, 0.0), ValueError, "frac"),
    (lambda f: random_split(f, 1.0), ValueError, "frac"),
    (lambda f: temporal_split(f, "0.2"), TypeError, "frac"),
    (lambda f: leave_last_k(f, 0), ValueError, "k"),
    (lambda f: cold_item_split(f, 0.2, random_state="x"), TypeError, "random_state"),
    (lambda f: cold_user_split(f, 0.2, 0), ValueError, "n_known"),
    (lambda f: cold_user_split(f, 0.2, 1.5), TypeError, "n_known"),
    (lambda f: cold_user_split(f, 0.99, 10**6), ValueError, "n_known"),
    (lambda f: cold_user_split(f.drop(columns="timestamp")), ValueError, "timestamp"),
    (lambda f: temporal_split(f.drop(columns="timestamp")), ValueError, "timestamp"),
    (lambda f: random_split(f.iloc[:0]), ValueError, "empty"),
    (lambda f: random_split(f.to_numpy()), TypeError, "DataFrame"),
])
def test_split_bad_input(call, error, words):
    with pytest.raises(error, match=words):
        call(_frame_from_seed(1))


# --------------------------------------------------------------------------- evaluate
class Oracle:
    """Recommends each user's test items first (optionally ignoring exclude_seen)."""

    def __init__(self, test, *, leak_train=None):
        self.test, self.leak_train, self.calls = sp.csr_matrix(test), leak_train, []

    def recommend(self, user_ids, user_items, k, exclude_seen=True):
        self.calls.append((np.array(user_ids), user_items.shape, k, exclude_seen))
        ids = np.full((len(user_ids), k), -1, dtype=np.int64)
        for r, u in enumerate(user_ids):
            row = list(self.test[u].indices)
            if self.leak_train is not None:
                row = list(self.leak_train[u].indices) + row
            row = row[:k]
            ids[r, :len(row)] = row
        return ids, np.zeros(ids.shape, dtype=np.float32)


def test_evaluate_oracle_is_perfect_and_batches_agree():
    rng = np.random.default_rng(0)
    test = sp.random(50, 40, density=0.05, format="csr", random_state=0)
    train = sp.random(50, 40, density=0.2, format="csr", random_state=1)
    train = train - train.multiply(test != 0)  # disjoint
    done = []
    m1 = evaluate(Oracle(test), train, test, k=5, batch_size=7,
                  callback=lambda d, t: done.append((d, t)))
    n = int((np.diff(test.indptr) > 0).sum())
    bound = 2 * metric_tolerance(n, 5)
    assert m1["n_users"] == n and m1["ndcg"] == pytest.approx(1.0, abs=bound) and m1["recall"] <= 1.0
    assert m1["hit_rate"] == 1.0 and m1["map"] == pytest.approx(1.0, abs=bound)
    assert done[-1] == (n, n) and len(done) == math.ceil(n / 7)
    m2 = evaluate(Oracle(test), train, test, k=5, batch_size=1000)
    assert m1 == m2
    # a model that ignores exclude_seen gets the training items removed: no free hits
    leaky = Oracle(test)
    assert evaluate(leaky, test, test, k=5)["hit_rate"] == 0.0
    assert evaluate(Oracle(test, leak_train=train), train, test, k=5)["recall"] <= m1["recall"]
    model = Oracle(test)
    evaluate(model, train, test, k=3, batch_size=10)
    for user_ids, shape, k, exclude_seen in model.calls:
        assert shape == (len(user_ids), 40) and k == 3 and exclude_seen is True
    del rng


def test_evaluate_matches_ranking_metrics_on_the_same_lists():
    test = sp.random(30, 20, density=0.1, format="csr", random_state=3)
    train = sp.random(30, 20, density=0.2, format="csr", random_state=4)
    lists = np.random.default_rng(2).integers(0, 20, size=(30, 8))

    class Fixed:
        def recommend(self, user_ids, user_items, k, exclude_seen=True):
            return lists[user_ids, :k], np.zeros((len(user_ids), k), np.float32)

    features = np.random.default_rng(1).normal(size=(20, 4))
    assert evaluate(Fixed(), train, test, k=6, item_features=features) == \
        ranking_metrics(lists[:, :6], test, k=6, train=train, item_features=features)


def test_evaluate_bad_input():
    test = sp.eye(3, 4, format="csr")
    with pytest.raises(TypeError, match="recommend"):
        evaluate(object(), test, test)
    with pytest.raises(ValueError, match="train"):
        evaluate(Oracle(test), sp.eye(2, 4, format="csr"), test)

    class Wrong:
        def recommend(self, user_ids, user_items, k, exclude_seen=True):
            return np.zeros((1, k), int), None

    with pytest.raises(ValueError, match="shape"):
        evaluate(Wrong(), test, test)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(Oracle(test), test, test, batch_size=0)


def test_evaluate_with_progress_bar(capsys):
    pytest.importorskip("tqdm")
    test = sp.eye(3, 4, format="csr")
    evaluate(Oracle(test), sp.csr_matrix((3, 4)), test, k=2, show_progress=True)
    assert "evaluate" in capsys.readouterr().err


def test_implicit_adapter():
    implicit_als = pytest.importorskip("implicit.als", reason="implicit is not installed")
    rng = np.random.default_rng(0)
    train = sp.random(60, 12, density=0.5, format="csr", dtype=np.float32, random_state=0)
    train.data[:] = 1.0
    test = sp.random(60, 12, density=0.1, format="csr", random_state=1)
    model = ImplicitAdapter(implicit_als.AlternatingLeastSquares(
        factors=4, iterations=3, random_state=0, num_threads=1)).fit(train)
    users = np.array([0, 5, 7])
    ids, scores = model.recommend(users, train[users], 12)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (3, 12)
    for r, u in enumerate(users):
        seen = set(train[u].indices)
        valid = ids[r][ids[r] >= 0]
        assert not seen & set(valid.tolist())
        assert len(valid) == 12 - len(seen)
        assert np.all(np.isneginf(scores[r][ids[r] < 0]))
        assert np.all(np.diff(scores[r][ids[r] >= 0]) <= 0)
    metrics = evaluate(model, train, test, k=5)
    assert set(KEYS) <= set(metrics) and 0 <= metrics["ndcg"] <= 1
    with pytest.raises(TypeError, match="implicit"):
        ImplicitAdapter(object())
    del rng


# --------------------------------------------------------------------------- real data
@needs_movielens
def test_movielens_popularity_anchor():
    from llmrec.datasets import load_movielens, to_csr

    interactions, _, _ = load_movielens(MOVIELENS)
    train_df, test_df = temporal_split(interactions, 0.2)
    assert len(test_df) == 20_000  # every ml-100k user has ≥ 20 ratings
    users = np.sort(interactions["user_id"].unique())
    items = np.sort(interactions["item_id"].unique())
    train, _, _ = to_csr(train_df, user_index=users, item_index=items)
    test, _, _ = to_csr(test_df, user_index=users, item_index=items)
    popularity = np.asarray(train.sum(axis=0)).ravel()
    order = np.argsort(-popularity, kind="stable")  # ties by smaller index
    lists = np.tile(order[:200], (train.shape[0], 1))
    metrics = ranking_metrics(lists, test, k=10, train=train)
    # a known answer quoted to three decimals (half a unit of the last: 0.0005)
    assert metrics["ndcg"] == pytest.approx(0.121, abs=0.0005)
    assert metrics["n_users"] == 943


def test_evaluate_llmrec_als():
    from llmrec import ALS

    train = sp.random(80, 30, density=0.3, format="csr", dtype=np.float32, random_state=5)
    train.data[:] = 1.0
    test = sp.random(80, 30, density=0.05, format="csr", random_state=6)
    test = test - test.multiply(train != 0)
    test.eliminate_zeros()
    model = ALS(factors=4, iterations=3, random_state=0, num_threads=1).fit(train)
    metrics = evaluate(model, train, test, k=5, batch_size=16)
    assert 0.0 <= metrics["ndcg"] <= 1.0 and metrics["n_users"] == int((np.diff(test.indptr) > 0).sum())
    ids, _ = model.recommend(np.arange(80), train, 5)
    assert metrics == ranking_metrics(ids, test, k=5, train=train)
