"""Length-sorted batch planning and padding (numpy only)."""

import numpy as np
import pytest

from llmrec.text.batching import pad_batch, plan_batches, token_lengths


@pytest.mark.parametrize("batch_size, max_tokens", [(1, None), (4, None), (64, None),
                                                    (64, 40), (3, 1), (8, 1000)])
def test_batches_cover_everything_once_longest_first(batch_size, max_tokens):
    lengths = np.random.default_rng(batch_size).integers(1, 30, size=101)
    batches = list(plan_batches(lengths, batch_size, max_tokens))
    covered = np.concatenate(batches)
    assert sorted(covered.tolist()) == list(range(101))
    assert all(0 < b.size <= batch_size for b in batches)
    assert np.all(np.diff(lengths[covered]) <= 0)  # non-increasing across and within batches
    if max_tokens is not None:
        assert all(b.size == 1 or b.size * lengths[b[0]] <= max_tokens for b in batches)


def test_token_cap_makes_long_texts_run_in_smaller_batches():
    lengths = np.array([100] * 10 + [10] * 100)
    sizes = [b.size for b in plan_batches(lengths, 64, 400)]
    assert sizes[:4] == [4, 4, 4, 40]


def test_equal_lengths_keep_input_order():
    batches = list(plan_batches(np.array([5, 5, 5, 5, 5]), 2))
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]


def test_bad_sizes_and_empty():
    assert list(plan_batches(np.array([], dtype=np.int64), 4)) == []
    with pytest.raises(ValueError):
        list(plan_batches(np.array([1]), 0))
    with pytest.raises(ValueError):
        list(plan_batches(np.array([1]), 4, 0))


def test_pad_batch_right_pads_to_the_longest():
    ids = [[1, 2, 3], [4], [5, 6]]
    lengths = token_lengths(ids)
    assert lengths.tolist() == [3, 1, 2]
    input_ids, mask = pad_batch(ids, lengths, np.array([0, 2, 1]), pad_id=9)
    assert input_ids.tolist() == [[1, 2, 3], [5, 6, 9], [4, 9, 9]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 0]]
    assert input_ids.dtype == np.int64 and mask.dtype == np.int64
