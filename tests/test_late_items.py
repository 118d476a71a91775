"""Late items (no interactions at fit): click bookkeeping and the shrunk least squares."""

import numpy as np
import scipy.sparse as sp

from llmrec.recommender.late_items import LateItems, solve_late_factors
from tolerances import UNIT64, assert_within, gamma, solve_tolerance


def float64_solve_bound(A, x, abs_A, abs_b, n_terms):
    """solve_late_factors works in float64 and rounds to float32 at the end: the float64
    assembly and solve (tolerances.solve_tolerance at u64), then the rounding."""
    g = gamma(n_terms, UNIT64)
    return solve_tolerance(A, x, g * abs_A, g * abs_b)


def test_solve_late_factors_is_a_ridge_toward_the_prior(rng):
    f, m = 6, 9
    users = rng.standard_normal((m, f)).astype(np.float32)
    priors = rng.standard_normal((3, f)).astype(np.float32)
    clicks = sp.csr_matrix(np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1],
                                     [0] * m,
                                     [0, 0, 0, 0, 0, 0, 0, 1, 0]], dtype=np.float32))
    got = solve_late_factors(clicks, users, priors, alpha=2.0, shrinkage=2.0)
    for row in range(3):
        who = clicks[row].indices
        # min Σ 3 (1 − y·v)² + 2‖v − prior‖² as stacked ordinary least squares
        A = np.vstack([np.sqrt(3.0) * users[who].astype(np.float64), np.sqrt(2.0) * np.eye(f)])
        b = np.concatenate([np.sqrt(3.0) * np.ones(len(who)), np.sqrt(2.0) * priors[row]])
        x = np.linalg.lstsq(A, b, rcond=None)[0]
        if len(who):
            y = np.abs(users[who].astype(np.float64))
            bound = float64_solve_bound(A.T @ A, x, 3 * y.T @ y + 2 * np.eye(f),
                                        3 * y.sum(0) + 2 * np.abs(priors[row]), len(who) + 3)
            assert_within(got[row], x, bound)
    np.testing.assert_array_equal(got[1], priors[1])  # no clicks: exactly the prior


def test_late_items_bookkeeping_and_rebuild_from_histories():
    """Clicks, neighbours (Σ 1/distance, window 3) and the same state rebuilt from the
    saved histories."""
    state = LateItems(np.array([2, 5, 7]))
    none = np.zeros(0, dtype=np.int64)
    # user 0 takes 1, 2, 7 then 8; user 3 takes 4 then 7; user 4 takes 1, 3
    assert state.record(0, np.array([1, 2, 7]), none).tolist() == [2, 7]
    assert state.record(0, np.array([8]), np.array([1, 2, 7])).tolist() == [2, 7]  # 8 follows them
    assert state.record(3, np.array([4, 7]), none).tolist() == [7]
    assert state.record(4, np.array([1, 3]), none).tolist() == []
    rows = np.array([7, 2, 5])
    matrix, users = state.interactions(rows)
    assert users.tolist() == [0, 3]
    np.testing.assert_array_equal(matrix.toarray(), [[1, 1], [1, 0], [0, 0]])
    before, after = state.transitions(rows, 10)
    expected_before = np.zeros((3, 10))
    expected_before[0, [1, 2, 4]] = [1 / 2, 1.0, 1.0]   # 7 after 1 (d 2), 2 (d 1); after 4 (d 1)
    expected_before[1, 1] = 1.0                          # 2 after 1
    expected_after = np.zeros((3, 10))
    expected_after[0, 8] = 1.0                           # 8 right after 7
    expected_after[1, [7, 8]] = [1.0, 1 / 2]             # 7 then 8 after 2
    # exact: sums of 1 and 1/2, exact in binary floating point
    np.testing.assert_array_equal(before.toarray(), expected_before)
    np.testing.assert_array_equal(after.toarray(), expected_after)

    indptr = np.array([0, 4, 4, 4, 6, 8])
    items = np.array([1, 2, 7, 8, 4, 7, 1, 3])
    rebuilt = LateItems.from_histories(np.array([2, 5, 7]), indptr, items)
    again, again_users = rebuilt.interactions(rows)
    assert again_users.tolist() == [0, 3]
    np.testing.assert_array_equal(again.toarray(), matrix.toarray())
    for got, want in zip(rebuilt.transitions(rows, 10), (before, after)):
        np.testing.assert_array_equal(got.toarray(), want.toarray())


def test_late_items_keep_the_latest_clickers(monkeypatch):
    from llmrec.recommender import late_items

    monkeypatch.setattr(late_items, "CLICKERS", 3)
    state = LateItems(np.array([1, 2, 3]))
    none = np.zeros(0, dtype=np.int64)
    for user in (10, 11, 12, 10, 13):  # 10 clicks again: it becomes the latest
        state.record(user, np.array([1]), none)
    _, users = state.interactions(np.array([1]))
    assert sorted(users.tolist()) == [10, 12, 13]  # 11 was the oldest of four


def test_solve_late_factors_with_a_gram_is_the_implicit_als_step(rng):
    f, m = 5, 30
    vectors = rng.standard_normal((m, f)).astype(np.float32)
    evidence = sp.csr_matrix((np.array([1.0, 0.5, 1 / 3], dtype=np.float32), ([0, 0, 0], [4, 9, 20])),
                             shape=(1, m))
    Y = vectors.astype(np.float64)
    got = solve_late_factors(evidence, vectors, np.zeros((1, f), np.float32), alpha=2.0,
                             shrinkage=0.7, gram=Y.T @ Y)
    # min Σ_all c_j (p_j − y_j·v)² + 0.7‖v‖², p = 1 and c = 1 + 2r on the evidence, else 0 and 1
    p = evidence.toarray().ravel() > 0
    c = 1 + 2.0 * evidence.toarray().ravel().astype(np.float64)  # in float64, as the solver
    A = np.vstack([np.sqrt(c)[:, None] * Y, np.sqrt(0.7) * np.eye(f)])
    b = np.concatenate([np.sqrt(c) * p, np.zeros(f)])
    x = np.linalg.lstsq(A, b, rcond=None)[0]
    y = np.abs(Y)
    assert_within(got[0], x, float64_solve_bound(A.T @ A, x, (y.T * c) @ y + 0.7 * np.eye(f),
                                                  (c * p) @ y, m + 3))


def test_fit_and_load_build_the_same_state(tmp_path):
    """state.build_state is the one builder of fit and load: the late items are the
    catalogue items without interactions (those the ALS model has none for, i.e. the
    items that are not warm), with no clicks yet; a saved and loaded model holds the same
    state field by field."""
    import pandas as pd

    from llmrec import Recommender
    from recommender_helpers import WordEncoder, small_data

    interactions, items, _ = small_data(120, 150, seed=3)
    unseen = pd.DataFrame({"item_id": [10_001, 10_002], "text": ["quiet words", "other words"]})
    items = pd.concat([items, unseen], ignore_index=True)
    rec = Recommender(encoder=WordEncoder(), random_state=0, factors=8, iterations=3).fit(
        interactions, items=items)
    state = rec._state
    never = np.flatnonzero(np.diff(rec._als.user_items_.tocsc().indptr) == 0)
    assert set(state.item_map.rows([10_001, 10_002], "i").tolist()) <= set(never.tolist())
    assert state.late_items._late == set(never.tolist()) == set(np.flatnonzero(rec._items.warm == 0).tolist())
    assert not any(state.late_items.interactions(never)[0].getnnz(axis=1))
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m", encoder=WordEncoder())._state
    assert back.late_items._late == state.late_items._late
    assert back.settings == state.settings and back.profile is None
    assert back.grams.keys() == state.grams.keys() == {"P", "Q"}  # computed at fit and load
    assert all(np.array_equal(back.grams[k], state.grams[k]) for k in state.grams)
    for name in state.geometry._fields:
        a, b = getattr(state.geometry, name), getattr(back.geometry, name)
        assert (a is None and b is None) or np.array_equal(a, b), name
    assert np.array_equal(back.item_map.ids, state.item_map.ids)
    assert np.array_equal(back.user_map.ids, state.user_map.ids)
    assert all(np.array_equal(a, b) for a, b in zip(back.histories.arrays(), state.histories.arrays()))
    now, then = back.publisher.current, state.publisher.current
    assert now.n_users == then.n_users and now.removed is None and then.removed is None
    for name in ("V", "inv_norm", "P", "Q", "warm", "E"):
        assert np.array_equal(getattr(now.items, name), getattr(then.items, name)), name
