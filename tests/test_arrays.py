"""The array primitives: row growth that never changes what earlier views see, and the order of results."""

from __future__ import annotations

import numpy as np

import llmrec._arrays as arrays
from llmrec._arrays import appended, constant_view, grow_rows, reserve_rows, result_order, row_norms


def test_growth_keeps_rows_zeroes_new_ones_and_reuses_capacity(rng):
    a = rng.standard_normal((5, 3)).astype(np.float32)
    b = grow_rows(a, 6)
    assert b.shape == (6, 3) and not np.shares_memory(a, b)
    np.testing.assert_array_equal(b[:5], a)
    np.testing.assert_array_equal(b[5], 0)
    b[5] = 7.0
    c = grow_rows(b, 8)  # within the doubled capacity: same buffer, no copy
    assert np.shares_memory(b, c) and c.shape == (8, 3)
    assert b.shape == (6, 3) and np.all(b[5] == 7.0)  # the earlier view is unchanged
    np.testing.assert_array_equal(c[6:], 0)
    assert grow_rows(c, 4) is c


def test_appended_rows_follow_and_earlier_arrays_keep_theirs(rng):
    a = rng.standard_normal((3, 2)).astype(np.float32)
    new = rng.standard_normal((2, 2)).astype(np.float32)
    b = appended(a, new)
    np.testing.assert_array_equal(b, np.vstack([a, new]))
    c = appended(b, new[:1])  # in b's spare capacity: b itself still shows its 5 rows
    assert np.shares_memory(b, c) and b.shape == (5, 2) and c.shape == (6, 2)
    np.testing.assert_array_equal(c, np.vstack([a, new, new[:1]]))
    ids = appended(np.array(["x"], dtype=object), np.array(["y", "z"], dtype=object))
    assert ids.dtype == object and ids.tolist() == ["x", "y", "z"]


def test_one_dimensional_object_and_read_only_arrays(rng):
    ids = np.array(["a", "b"], dtype=object)
    grown = grow_rows(ids, 3)
    assert grown.dtype == object and grown[:2].tolist() == ["a", "b"]
    frozen = np.zeros((4, 2))[:2]
    frozen.base.flags.writeable = False
    out = grow_rows(frozen, 3)  # a read-only buffer is never written: copied instead
    assert not np.shares_memory(out, frozen) and out.shape == (3, 2)


def test_reserve_rows_reuses_own_storage_and_copies_anything_else(rng):
    rows = rng.standard_normal((5, 3)).astype(np.float32)
    before = rows.copy()
    grown = reserve_rows(None, rows, 7)  # not storage of ours: a copy, rows untouched
    assert grown.shape[0] >= 16 and not np.shares_memory(grown, rows)
    np.testing.assert_array_equal(grown[:5], before)
    np.testing.assert_array_equal(grown[5:], 0)
    np.testing.assert_array_equal(rows, before)
    assert reserve_rows(grown, grown[:5], 16) is grown  # fits: the same buffer
    bigger = reserve_rows(grown, grown[:16], 17)  # full: at least twice as tall
    assert bigger.shape[0] == 32 and not np.shares_memory(bigger, grown)
    np.testing.assert_array_equal(bigger[:5], before)
    read_only = grown.copy()
    read_only.flags.writeable = False
    assert reserve_rows(read_only, read_only[:5], 6) is not read_only
    codes = reserve_rows(None, np.zeros((0, 4), np.uint8), 3, fill=0x80)
    assert codes.dtype == np.uint8 and codes.shape == (16, 4) and (codes == 0x80).all()


def test_result_order_is_score_descending_then_smaller_id(rng):
    n_rows, width = 50, 12
    scores = rng.integers(-3, 3, size=(n_rows, width)).astype(np.float32)  # many ties
    scores[rng.random((n_rows, width)) < 0.1] = -np.inf  # padding
    scores[0, :2] = (-0.0, 0.0)  # equal scores of different signs still tie
    ids = np.stack([rng.permutation(1000)[:width] for _ in range(n_rows)]).astype(np.int64)
    ids[scores == -np.inf] = -1
    order = result_order(ids, scores)
    for row in range(n_rows):  # the reference: Python's sort on (-score, id)
        expected = sorted(range(width), key=lambda j: (-float(scores[row, j]), int(ids[row, j])))
        np.testing.assert_array_equal(ids[row, order[row]], ids[row, expected])
    one = result_order(ids[0], scores[0])  # a single row
    np.testing.assert_array_equal(one, order[0])


def test_constant_view_holds_one_entry_for_a_column_of_one_value(rng):
    for values in (np.ones(50, np.float32), np.full(50, np.nan, np.float32), np.full(50, -1, np.int32),
                   np.zeros(50, bool)):
        view = constant_view(values)
        assert view.strides == (0,) and not view.flags.writeable and not np.shares_memory(view, values)
        np.testing.assert_array_equal(view, values)
        np.testing.assert_array_equal(view[[3, 7]], values[[3, 7]])
    for values in (rng.random(50).astype(np.float32), np.array([1.0, np.nan], np.float32),
                   np.array([np.nan, 1.0], np.float32), np.array([0, 0, 1], np.int32), np.ones(1), np.ones(0)):
        assert constant_view(values) is values


def test_row_norms_are_float64_norms_in_blocks(rng, monkeypatch):
    monkeypatch.setattr(arrays, "NORM_BLOCK_ROWS", 7)  # several blocks and a short last one
    rows = (rng.standard_normal((30, 5)) * rng.uniform(1e-4, 1e4, (30, 1))).astype(np.float32)
    rows[3] = 0.0
    expected = np.sqrt((rows.astype(np.float64) ** 2).sum(axis=1))
    got = row_norms(rows)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=4 * np.finfo(np.float64).eps * 5)
    np.testing.assert_array_equal(got, np.linalg.norm(rows.astype(np.float64), axis=1))  # to the bit
    assert row_norms(rows[:0]).shape == (0,)
