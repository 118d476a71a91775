"""Late items (no interactions at fit): click bookkeeping and the shrunk least squares."""

import numpy as np
import scipy.sparse as sp

from llmrec.recommender.late_items import LateItems, solve_late_factors


def test_solve_late_factors_is_a_ridge_toward_the_prior(rng):
    f, m = 6, 9
    users = rng.standard_normal((m, f)).astype(np.float32)
    priors = rng.standard_normal((3, f)).astype(np.float32)
    clicks = sp.csr_matrix(np.array([[1, 0, 1, 1, 0, 0, 0, 0, 1],
                                     [0] * m,
                                     [0, 0, 0, 0, 0, 0, 0, 1, 0]], dtype=np.float32))
    got = solve_late_factors(clicks, users, priors, confidence=3.0, shrinkage=2.0)
    for row in range(3):
        who = clicks[row].indices
        # min Σ 3 (1 − y·v)² + 2‖v − prior‖² as stacked ordinary least squares
        A = np.vstack([np.sqrt(3.0) * users[who].astype(np.float64), np.sqrt(2.0) * np.eye(f)])
        b = np.concatenate([np.sqrt(3.0) * np.ones(len(who)), np.sqrt(2.0) * priors[row]])
        np.testing.assert_allclose(got[row], np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1], priors[1])  # no clicks: exactly the prior


def test_late_items_bookkeeping_and_rebuild_from_histories():
    state = LateItems(np.array([2, 5]))
    state.add(np.array([7]))
    assert state.record(0, np.array([1, 2, 7, 2])).tolist() == [2, 7]
    assert state.record(3, np.array([7])).tolist() == [7]
    assert state.record(4, np.array([1, 3])).tolist() == []
    matrix, users = state.interactions(np.array([7, 2, 5]))
    assert users.tolist() == [0, 3]
    np.testing.assert_array_equal(matrix.toarray(), [[1, 1], [1, 0], [0, 0]])
    # The same state from saved histories: user 0 saw [1, 2, 7], user 3 [7], user 4 [1, 3].
    indptr = np.array([0, 3, 3, 3, 4, 6])
    items = np.array([1, 2, 7, 7, 1, 3])
    rebuilt = LateItems.from_histories(np.array([2, 5, 7]), indptr, items)
    again, again_users = rebuilt.interactions(np.array([7, 2, 5]))
    assert again_users.tolist() == [0, 3]
    np.testing.assert_array_equal(again.toarray(), matrix.toarray())
