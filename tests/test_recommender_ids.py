"""IdMap: caller ids ↔ rows, with many small additions (a dict reference alongside)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.exceptions import UnknownIdError
from llmrec.recommender.ids import IdMap


@pytest.mark.parametrize("kind", ["int", "str"])
def test_many_small_additions_match_a_dict(rng, kind):
    make = (lambda v: int(v)) if kind == "int" else (lambda v: f"id{v}")
    start = rng.choice(10**6, 3000, replace=False)
    ids = IdMap(np.array([make(v) for v in start], dtype=object if kind == "str" else np.int64), "item")
    reference = {make(v): row for row, v in enumerate(start)}
    fresh = iter(rng.choice(np.arange(10**6, 2 * 10**6), 5000, replace=False))
    for step in range(700):  # crosses the merge threshold several times
        batch = [make(next(fresh)) for _ in range(1 + step % 7)]
        rows = ids.add(batch, "items")
        assert rows.tolist() == list(range(len(reference), len(reference) + len(batch)))
        reference.update(zip(batch, rows.tolist()))
        probe = [batch[0], make(start[step])]
        assert ids.rows(probe, "p").tolist() == [reference[p] for p in probe]
        assert ids.rows([batch[-1]], "p").tolist() == [reference[batch[-1]]]  # one-id path
    assert len(ids) == len(reference)
    everything = list(reference)
    np.testing.assert_array_equal(ids.rows(everything, "all"), [reference[k] for k in everything])
    assert list(ids.ids) == everything
    assert ids.to_ids(np.array([[0, -1]]))[0, 1] == -1
    assert ids.contains([everything[-1], make(3 * 10**6)]).tolist() == [True, False]


def test_bad_additions_are_rejected():
    ids = IdMap(np.arange(5), "item")
    with pytest.raises(ValueError, match="already exists"):
        ids.add([7, 3], "items")
    with pytest.raises(ValueError, match="duplicate item id 9"):
        ids.add([9, 9], "items")
    with pytest.raises(ValueError, match="duplicate"):
        ids.add(list(range(100, 200)) + [150], "items")
    with pytest.raises(TypeError, match="int ids"):
        ids.add(["a"], "items")
    assert len(ids) == 5  # nothing half-added
    ids.add([5], "items")
    with pytest.raises(UnknownIdError, match="42"):
        ids.rows([42], "x")
