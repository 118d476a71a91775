"""grow_rows: amortised row growth that never changes what earlier views see."""

from __future__ import annotations

import numpy as np

from llmrec._arrays import grow_rows


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


def test_one_dimensional_object_and_read_only_arrays(rng):
    ids = np.array(["a", "b"], dtype=object)
    grown = grow_rows(ids, 3)
    assert grown.dtype == object and grown[:2].tolist() == ["a", "b"]
    frozen = np.zeros((4, 2))[:2]
    frozen.base.flags.writeable = False
    out = grow_rows(frozen, 3)  # a read-only buffer is never written: copied instead
    assert not np.shares_memory(out, frozen) and out.shape == (3, 2)
