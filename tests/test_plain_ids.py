"""Error messages and explanations print ids as plain values (7001), never numpy reprs
(np.int64(7001), np.str_('a')), whatever array type the ids came in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec import Recommender, UnknownIdError
from llmrec._checks import plain
from llmrec.datasets import to_csr


def _no_numpy_repr(message: str) -> None:
    assert "np." not in message and "numpy" not in message, message


def test_plain_converts_numpy_scalars_and_containers():
    assert plain(np.int64(7001)) == 7001 and type(plain(np.int64(7001))) is int
    assert type(plain(np.str_("a"))) is str and type(plain(np.float32(0.5))) is float
    assert plain(np.array([1, 2])) == [1, 2] and repr(plain((np.int64(1), "x"))) == "(1, 'x')"
    assert plain("a") == "a" and plain(None) is None


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    interactions = pd.DataFrame({"user_id": rng.integers(7000, 7020, 300),
                                 "item_id": rng.integers(100, 160, 300)})
    return Recommender(encoder=None, random_state=0, validation=0.0, factors=4,
                       iterations=2).fit(interactions)


def test_recommender_messages(model):
    for call in (lambda: model.recommend(np.int64(123456)),
                 lambda: model.recommend(np.array([7001, 123456])),
                 lambda: model.similar_items(np.int64(99999)),
                 lambda: model.recommend_for_history(np.array([100, 99999])),
                 lambda: model.explain(np.int64(7001), np.int64(99999))):
        with pytest.raises(UnknownIdError) as info:
            call()
        _no_numpy_repr(str(info.value))
        assert type(info.value.id) is int
    with pytest.raises(ValueError) as info:
        model.add_items(pd.DataFrame({"item_id": np.array([100], dtype=np.int64), "text": ["x"]}))
    _no_numpy_repr(str(info.value))
    assert "item id 100 already exists" in str(info.value)


def test_fit_messages():
    interactions = pd.DataFrame({"user_id": np.array([1, 2], dtype=np.int64),
                                 "item_id": np.array([7001, 7002], dtype=np.int64)})
    items = pd.DataFrame({"item_id": np.array([7002, 7002], dtype=np.int64), "text": ["a", "b"]})
    with pytest.raises(ValueError, match="duplicate item id 7002") as info:
        Recommender(encoder=None).fit(interactions, items=items)
    _no_numpy_repr(str(info.value))
    items = pd.DataFrame({"item_id": np.array([7002], dtype=np.int64), "text": ["a"]})
    with pytest.raises(ValueError, match="item id 7001, which has no row") as info:
        Recommender(encoder=None).fit(interactions, items=items)
    _no_numpy_repr(str(info.value))
    items = pd.DataFrame({"item_id": np.array([7001, 7002], dtype=np.int64), "text": ["a", " "]})
    with pytest.raises(ValueError, match="item 7002 has no text") as info:
        Recommender(encoder=None).fit(interactions, items=items)
    _no_numpy_repr(str(info.value))


def test_dataset_messages():
    frame = pd.DataFrame({"user_id": np.array([1, 2]), "item_id": np.array([7001, 7002])})
    with pytest.raises(ValueError, match="duplicate id 3") as info:
        to_csr(frame, user_index=np.array([3, 3]))
    _no_numpy_repr(str(info.value))
    with pytest.raises(ValueError, match=r"e\.g\. 7002") as info:
        to_csr(frame, item_index=np.array([7001]))
    _no_numpy_repr(str(info.value))
    strings = pd.DataFrame({"user_id": np.array(["a", "b"]), "item_id": np.array(["x", "y"])})
    with pytest.raises(ValueError) as info:
        to_csr(strings, item_index=np.array(["x"]))
    _no_numpy_repr(str(info.value))
    assert "'y'" in str(info.value)
