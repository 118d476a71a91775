"""IdMap: caller ids ↔ rows, with many small additions (a dict reference alongside)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.exceptions import UnknownIdError
from llmrec.recommender.ids import IdMap

from recommender_helpers import assert_crafted_copy_refused


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


@pytest.mark.parametrize("kind", ["int", "str"])
def test_removals_additions_and_readditions_match_a_dict(rng, kind):
    """forget() masks rows without rebuilding the hash index until many are pending:
    every lookup (one id, many ids, contains, gone) agrees with a dict reference while
    rows are forgotten one at a time (across the merge threshold), new ids are added,
    and forgotten ids come back as new rows."""
    make = (lambda v: int(v)) if kind == "int" else (lambda v: f"id{v}")
    start = rng.choice(10**6, 9000, replace=False)
    ids = IdMap(np.array([make(v) for v in start], dtype=object if kind == "str" else np.int64), "item")
    live = {make(v): row for row, v in enumerate(start)}
    gone: set[int] = set()
    n = len(start)
    for step in range(1500):  # 1,500 removals > the 1,024 pending that trigger a merge
        key = list(live)[int(rng.integers(len(live)))]
        row = live.pop(key)
        ids.forget(np.array([row]))
        gone.add(row)
        if step % 5 == 0:  # the removed id comes back: a new row
            live[key] = int(ids.add([key], "items")[0])
            n += 1
        with pytest.raises(UnknownIdError):
            ids.rows([make(2 * 10**6 + step)], "p")
        probe = list(live)[int(rng.integers(len(live)))]
        assert ids.rows([probe], "p").tolist() == [live[probe]]  # one-id path
        if key not in live:
            with pytest.raises(UnknownIdError):
                ids.rows([key], "p")
            with pytest.raises(UnknownIdError):
                ids.rows([probe, key], "p")
    everything = list(live)
    np.testing.assert_array_equal(ids.rows(everything, "all"), [live[k] for k in everything])
    mask = np.zeros(n, np.uint8)
    mask[sorted(gone)] = 1
    np.testing.assert_array_equal(ids.gone, mask)
    absent = [make(v) for v in start if make(v) not in live][:50]
    assert not ids.contains(absent).any()


def test_pickles_round_trip_with_pending_removals():
    import pickle

    ids = IdMap(np.arange(100) * 3, "item")
    ids.forget(np.array([4, 7]))
    back = pickle.loads(pickle.dumps(ids))
    assert back.contains([12, 21, 24]).tolist() == [False, False, True]
    older = IdMap(np.arange(100) * 3, "item").__dict__.copy()
    older["_tables"] = older["_tables"][:3]  # the state an earlier llmrec pickled
    revived = IdMap.__new__(IdMap)
    revived.__setstate__(older)
    np.testing.assert_array_equal(revived.rows(list(np.arange(100) * 3), "p"), np.arange(100))


@pytest.mark.parametrize("kind", ["int", "str"])
def test_short_lists_agree_with_the_array_path(rng, kind):
    """Lists of up to 32 ids are looked up one id at a time (the serving path); every
    answer and every error agrees with the general path's (the same ids as an array),
    over live, recently added, forgotten, unknown and wrongly typed ids, with rows
    masked by forget() both pending and merged."""
    make = (lambda v: int(v)) if kind == "int" else (lambda v: f"id{v}")
    start = rng.choice(10**6, 3000, replace=False)
    ids = IdMap(np.array([make(v) for v in start], dtype=object if kind == "str" else np.int64), "item")
    added = [make(v) for v in rng.choice(np.arange(10**6, 2 * 10**6), 40, replace=False)]
    ids.add(added, "items")
    pool = ([make(v) for v in start] + added + [make(3 * 10**6 + i) for i in range(20)]
            + [True, 2.5, None] + ([np.int64(start[0]), "7"] if kind == "int" else [7]))

    def answer(lookup):
        try:
            return lookup().tolist()
        except (UnknownIdError, TypeError) as error:
            return type(error)

    for forgotten in (50, 1100):  # pending in a small array, then merged (row positions)
        ids.forget(rng.choice(len(start), forgotten, replace=False))
        for size in list(range(1, 34)) * 20:
            probe = [pool[i] for i in rng.integers(len(pool), size=size)]
            expected = answer(lambda: ids.rows(np.array(probe + [None], dtype=object)[:-1], "p"))
            assert answer(lambda: ids.rows(probe, "p")) == expected, probe


def test_item_id_minus_one_is_refused_it_pads_rankings():
    """Rankings pad short lists with id -1 (score -inf): an item may not be called -1,
    at construction, in add() or in a saved file; other negative ids, user id -1 and the
    string "-1" are ordinary ids."""
    with pytest.raises(ValueError, match="item id -1 is reserved"):
        IdMap(np.array([3, -1, 5]), "item")
    ids = IdMap(np.array([3, -2, 5]), "item")
    with pytest.raises(ValueError, match="item id -1 in items is reserved"):
        ids.add([7, -1], "items")
    assert len(ids) == 3 and not ids.contains([7]).any()  # nothing half-added
    assert IdMap(np.array([-1, 4]), "user").rows([-1], "u").tolist() == [0]
    assert IdMap(np.array(["-1", "a"], dtype=object), "item").rows(["-1"], "i").tolist() == [0]


def test_a_recommender_refuses_item_id_minus_one_in_fit_add_items_and_files(tmp_path):
    import pandas as pd

    from llmrec import Recommender
    from llmrec._fileformat import load_arrays, save_arrays

    def interactions(items):
        users = np.repeat(np.arange(30), 4)
        return pd.DataFrame({"user_id": users, "item_id": np.resize(items, len(users))})

    with pytest.raises(ValueError, match="item id -1 is reserved"):
        Recommender(encoder=None, random_state=0).fit(interactions([-1, 2, 3, 4, 5, 6]))
    rec = Recommender(encoder=None, random_state=0).fit(interactions([1, 2, 3, 4, 5, 6, 7]))
    with pytest.raises(ValueError, match="item id -1"):
        rec.add_items(pd.DataFrame({"item_id": [-1], "text": ["x"]}))
    assert -1 not in rec.item_ids_.tolist()
    ids, scores = rec.recommend(0, k=20)  # more than the catalogue: padded
    assert (ids[np.isneginf(scores)] == -1).all() and (ids[np.isfinite(scores)] >= 1).all()
    rec.save(tmp_path / "m")

    def rename_item_3_to_minus_1(directory):
        path = directory / "recommender.llmrec"
        meta, arrays, version = load_arrays(path, "Recommender", max_kind_version=99)
        arrays["item_ids"] = np.where(arrays["item_ids"] == 3, -1, arrays["item_ids"])
        save_arrays(path, "Recommender", version, meta, arrays)

    assert_crafted_copy_refused(tmp_path / "m", tmp_path, rename_item_3_to_minus_1, match="item id -1 is reserved")
