"""Where new items stand in a full ranking (llmrec.recommender.cold_shift): the shift
chosen on validation data against a float64 reference (its own ndcg, the cold signal by
brute force), and in a Recommender: the shift moves the items with a cold row and only
them, leaves their order among themselves alone, travels through save/load and is
refused when damaged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec import Recommender
from llmrec.recommender.cold_kernel import make_cold_kernel
from llmrec.recommender.cold_shift import SHIFTS, fit_shift
from recommender_helpers import WordEncoder, assert_crafted_arrays_refused
from tolerances import EPS32
from test_cold_kernel import _fitted, _reference, _unit


def _ndcg(scores, relevant, n_relevant, k=10):
    """Mean ndcg@k, float64, from a full sort (ties: the relevant item first, as HeldOut counts)."""
    out = []
    for row in range(len(scores)):
        order = np.lexsort((~relevant[row], -scores[row]))[:k]
        dcg = (relevant[row, order] / np.log2(np.arange(2, len(order) + 2))).sum()
        ideal = (1.0 / np.log2(np.arange(2, min(n_relevant[row], k) + 2))).sum()
        out.append(dcg / ideal)
    return float(np.mean(out))


def _validation(seed, cold_taste):
    """A validation slice of 40 users over 60 items, 15 without interactions; users hold
    out items, new ones with probability ``cold_taste``."""
    rng = np.random.default_rng(seed)
    n, C, d = 40, 60, 8
    E = _unit(rng.standard_normal((C, d))).astype(np.float32)
    cold = np.zeros(C, dtype=bool)
    cold[rng.choice(C, 15, replace=False)] = True
    warm = np.flatnonzero(~cold)
    hist = [np.sort(rng.choice(warm, rng.integers(2, 8), replace=False)) for _ in range(n)]
    relevant = np.zeros((n, C), dtype=bool)
    for u in range(n):
        pool = np.flatnonzero(cold) if rng.random() < cold_taste else np.setdiff1d(warm, hist[u])
        relevant[u, rng.choice(pool, 2, replace=False)] = True
    signals = {"behaviour": rng.standard_normal((n, C)).astype(np.float32),
               "sequence": rng.standard_normal((n, C)).astype(np.float32)}
    for u in range(n):  # seen items blocked, as the validation does
        signals["behaviour"][u, hist[u]] = -1e9
        signals["sequence"][u, hist[u]] = 0.0
    candidates = np.broadcast_to(np.arange(C), (n, C))
    keep = {"candidates": candidates, "full_candidates": candidates, "cold": cold, "full_hist": hist,
            "signals": signals, "relevant": relevant, "n_relevant": relevant.sum(axis=1)}
    kernel = make_cold_kernel(E, None, warm, 0.4, 1.0)
    return keep, kernel, E


@pytest.mark.parametrize("seed, cold_taste", [(0, 0.0), (1, 0.9), (2, 0.3)])
def test_the_shift_is_the_best_of_the_grid_by_a_float64_reference(seed, cold_taste):
    keep, kernel, E = _validation(seed, cold_taste)
    weights, weight = {"behaviour": 1.0, "sequence": 0.5, "query": 3.0}, 0.7
    delta, report = fit_shift(kernel, weight, weights, keep, E, None)
    warm = np.flatnonzero(~keep["cold"])
    cold = np.flatnonzero(keep["cold"])
    expected, _ = _reference(E[warm], 0.4, 1.0, [np.searchsorted(warm, h) for h in keep["full_hist"]], E[cold])
    base = sum(w * keep["signals"][name].astype(np.float64) for name, w in weights.items() if name in keep["signals"])
    values = {}
    for shift in SHIFTS:
        scores = base.copy()
        scores[:, cold] += weight * expected + shift
        values[shift] = _ndcg(scores, keep["relevant"], keep["n_relevant"])
    best = max(values.values())
    chosen = delta * weight
    assert min(SHIFTS, key=lambda s: abs(s - chosen)) == pytest.approx(chosen, abs=1e-12)
    # the chosen shift is a best one, and no best one lies nearer 0 (float32 signals:
    # ndcg values equal in float64 may differ by rounding, hence the 1e-9)
    assert values[chosen] >= best - 1e-9, values
    assert all(abs(s) >= abs(chosen) for s, v in values.items() if v >= best - 1e-9 and v > values[chosen] + 1e-9)
    assert report["shift"] == chosen and report["cold_candidates"] == len(cold)
    if cold_taste == 0.0:  # nobody takes a new item: they go down
        assert chosen < 0
    if cold_taste == 0.9:
        assert chosen >= 0


def test_no_shift_without_the_signal_new_items_or_validation():
    keep, kernel, E = _validation(3, 0.0)
    weights = {"behaviour": 1.0, "sequence": 0.5}
    assert fit_shift(kernel, 0.0, weights, keep, E, None)[0] == 0.0
    assert fit_shift(kernel, 0.7, weights, {}, E, None)[0] == 0.0
    none_cold = {**keep, "cold": np.zeros_like(keep["cold"])}
    assert fit_shift(kernel, 0.7, weights, none_cold, E, None) == (0.0, {"cold_candidates": 0})


@pytest.fixture(scope="module")
def shifted():
    return _fitted()


def _rounding(rec, scores, shift):
    """Bound on the float32 difference of two scorings that differ by a shift of at most
    ``shift`` (signal units): the same terms, a few roundings more (the shift's channel),
    a few ulps of the partial sums, bounded by the scores, w·shift and 1 for the offset
    (a mean of unit-spread signals)."""
    return float(64 * EPS32 * (1 + np.abs(scores).max() + rec.weights_["cold"] * shift))


def _with_shift(rec, shift):
    Z = rec._items.Z
    old, Z.shift = Z.shift, shift
    return old


def test_the_shift_moves_new_items_only(shifted):
    rec, cold, test = shifted
    assert rec.weights_["cold"] > 0 and "new_items" in rec.validation_["cold"]
    user = int(test.user_id.iloc[0])
    new = list(cold.item_id[:5])
    old_items = [i for i in rec.item_ids_[:50] if i not in set(cold.item_id)][:5]
    before_new, before_old = rec.predict(user, new), rec.predict(user, old_items)
    old = _with_shift(rec, rec._items.Z.shift + 2.5)
    try:
        after_new, after_old = rec.predict(user, new), rec.predict(user, old_items)
        tol = _rounding(rec, np.concatenate([before_new, before_old]), abs(old) + 2.5)
        np.testing.assert_allclose(after_new - before_new, 2.5 * rec.weights_["cold"], atol=tol)
        np.testing.assert_allclose(after_old, before_old, atol=tol)
        # explain's parts add up to the score, the shift in the cold part
        why = rec.explain(user, new[0])
        assert why.score == pytest.approx(after_new[0], abs=tol)
        # among new items alone the ranking is the same whatever the shift: the ranked
        # scores move by the shift (items within rounding of each other may swap)
        users = list(np.sort(test.user_id.unique())[:30])
        moved = rec.recommend(users, 10, allow=list(cold.item_id))
    finally:
        _with_shift(rec, old)
    still = rec.recommend(users, 10, allow=list(cold.item_id))
    tol = _rounding(rec, still.scores, abs(old) + 2.5)
    np.testing.assert_allclose(moved.scores - 2.5 * rec.weights_["cold"], still.scores, atol=tol)
    gaps = np.diff(still.scores, axis=1) < -2 * tol  # between places j and j + 1
    ones, zeros = np.ones((len(gaps), 1), bool), np.zeros((len(gaps), 1), bool)
    alone = np.hstack([ones, gaps]) & np.hstack([gaps, zeros])  # no neighbour within rounding
    np.testing.assert_array_equal(moved.ids[alone], still.ids[alone])


def test_the_shift_is_saved_and_loaded(shifted, tmp_path):
    rec, cold, test = shifted
    old = _with_shift(rec, -1.75)
    try:
        rec.save(tmp_path / "m")
        users = list(np.sort(test.user_id.unique())[:20])
        expected = rec.recommend(users, 10)
    finally:
        _with_shift(rec, old)
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert loaded._items.Z.shift == -1.75
    got = loaded.recommend(users, 10)
    np.testing.assert_array_equal(got.ids, expected.ids)
    loaded.add_items(pd.DataFrame({"item_id": [90_500], "text": ["wordaa wordab"]}))
    assert loaded._items.Z.shift == -1.75  # items added later keep it


@pytest.mark.parametrize("craft, match", [
    (lambda a: a.update(cold_shift=np.array([np.nan])), "cold_shift"),
    (lambda a: a.update(cold_shift=np.array([1e300])), "cold_shift"),
    (lambda a: a.update(cold_shift=np.array([1.0, 2.0])), "cold_shift"),
    (lambda a: a.update(cold_shift=np.array(["x"])), "cold_shift"),
])
def test_a_damaged_shift_is_refused(shifted, tmp_path, craft, match):
    rec, _, _ = shifted
    rec.save(tmp_path / "m")
    assert_crafted_arrays_refused(tmp_path / "m", tmp_path, craft, match=match)


def _moves(rec, user, item):
    """How much item's score for user moves when the shift grows by 1 (w where it
    applies), rounded to the float32 bound of the test below (see the one above)."""
    before = rec.predict(user, [item])[0]
    old = _with_shift(rec, rec._items.Z.shift + 1.0)
    try:
        after = rec.predict(user, [item])[0]
    finally:
        _with_shift(rec, old)
    tol = _rounding(rec, np.array([before, after]), abs(old) + 1)
    w = rec.weights_["cold"]
    moved = float(after - before)
    assert abs(moved) <= tol or abs(moved - w) <= tol, (moved, w, tol)
    return 0.0 if abs(moved) <= tol else w


def test_a_new_item_loses_the_shift_with_its_first_clicks_and_regains_it_when_forgotten(tmp_path):
    rec, cold, test = _fitted()
    w = rec.weights_["cold"]
    assert w > 0
    item, clicker, other = int(cold.item_id.iloc[0]), 100_001, int(test.user_id.iloc[0])
    assert _moves(rec, other, item) == w
    rec.update(clicker, [item])
    assert _moves(rec, other, item) == 0.0
    rec.save(tmp_path / "m")  # a load finds the item clicked: no shift
    loaded = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert _moves(loaded, other, item) == 0.0
    for model in (rec, loaded):  # its only clicker forgotten: new again
        model.forget_user(clicker)
        assert _moves(model, other, item) == w
    added = 90_700
    rec.add_items(pd.DataFrame({"item_id": [added], "text": ["wordaa wordab"]}))
    assert _moves(rec, other, added) == w
