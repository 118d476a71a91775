"""llmrec.distributed.encode against a local TextEncoder, on a tiny random BERT."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import llmrec  # noqa: E402
import llmrec.distributed  # noqa: E402
from llmrec.text import TextEncoder, VectorCache  # noqa: E402
from llmrec.text.testing import WORDS, save_tiny_bert  # noqa: E402
from recommender_helpers import WordEncoder  # noqa: E402
from ray_local import require_loopback_only, start_local, wait_until_no_live_actors  # noqa: E402
from tolerances import assert_within, network_tolerance  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_module():
    ray = pytest.importorskip("ray", reason="llmrec.distributed needs the [ray] extra")
    require_loopback_only()
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def local_ray(ray_module):
    start_local(ray_module)
    return ray_module


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _texts(rng, n):
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]


def _no_encoders_left(ray):
    assert wait_until_no_live_actors(ray, "EncoderWorker") == 0, "encoder actors were left running"


def test_equals_local_encode_in_callers_order(local_ray, tiny_dir, rng):
    texts = _texts(rng, 45)
    texts += [texts[3], texts[0], ""]  # repeats (encoded once) and an empty text
    local = TextEncoder(tiny_dir, device="cpu")
    got = llmrec.distributed.encode(texts, encoder=tiny_dir, num_actors=2, batch_size=7)
    assert got.dtype == np.float32 and got.shape == (48, local.dim)
    # Two float32 evaluations of the same text in different batches: network_tolerance.
    assert_within(got, local.encode(texts), network_tolerance(local._model))
    np.testing.assert_array_equal(got[45], got[3])  # exact: the same vector, copied
    # A TextEncoder travels with its settings (here a query prefix).
    prefixed = TextEncoder(tiny_dir, device="cpu", query_prefix="find: ")
    queries = llmrec.distributed.encode(texts[:10], encoder=prefixed, kind="query", batch_size=4,
                                        num_actors=1)
    assert_within(queries, prefixed.encode(texts[:10], kind="query"),
                  network_tolerance(local._model))
    assert not np.allclose(queries, got[:10])  # the prefix changed the vectors
    empty = llmrec.distributed.encode([], encoder=tiny_dir)
    assert empty.shape == (0, local.dim) and empty.dtype == np.float32
    _no_encoders_left(local_ray)


def test_cache_is_shared_with_local_encoders(local_ray, tiny_dir, tmp_path, rng):
    texts = _texts(rng, 30)
    cache_dir = tmp_path / "cache"
    first = llmrec.distributed.encode(texts, encoder=tiny_dir, num_actors=1, batch_size=8,
                                      cache_dir=cache_dir)
    with VectorCache(cache_dir, dim=first.shape[1]) as cache:
        assert len(cache) == len(set(texts))
    # A local encoder with the same settings finds every vector: bitwise the stored ones.
    local = TextEncoder(tiny_dir, device="cpu", cache_dir=cache_dir)
    np.testing.assert_array_equal(local.encode(texts), first)  # exact: read from the cache
    # New texts encoded locally are found by the next distributed call, old ones too.
    extra = _texts(rng, 5)
    local_extra = local.encode(extra)
    again = llmrec.distributed.encode(extra + texts, encoder=tiny_dir, cache_dir=cache_dir)
    np.testing.assert_array_equal(again, np.vstack([local_extra, first]))  # exact: cached
    _no_encoders_left(local_ray)


def test_bad_input(local_ray, tiny_dir, tmp_path):
    encode = llmrec.distributed.encode
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encode(["a", 3], encoder=tiny_dir)
    with pytest.raises(TypeError, match="texts"):
        encode(None, encoder=tiny_dir)
    with pytest.raises(ValueError, match="batch_size"):
        encode(["a"], encoder=tiny_dir, batch_size=0)
    with pytest.raises(ValueError, match="num_actors"):
        encode(["a"], encoder=tiny_dir, num_actors=0)
    with pytest.raises(ValueError, match="kind"):
        encode(["a"], encoder=tiny_dir, kind="title")
    with pytest.raises(ValueError, match="timeout"):
        encode(["a"], encoder=tiny_dir, timeout=0)
    with pytest.raises(TypeError, match="encoder"):
        encode(["a"], encoder=42)
    with pytest.raises(TypeError, match="cache_dir"):
        encode(["a"], encoder=tiny_dir, cache_dir=3)
    # An encoder of the caller's own encodes, but cannot key the on-disk cache.
    with pytest.raises(ValueError, match="cache_dir needs a TextEncoder"):
        encode(["a"], encoder=WordEncoder(), cache_dir=tmp_path / "cache")
    # The model fails to load in the actors: the caller gets the loader's own error.
    with pytest.raises(FileNotFoundError, match="config.json"):
        encode(["a", "b"], encoder=tmp_path, num_actors=2)
    _no_encoders_left(local_ray)
    with pytest.raises(TimeoutError):
        encode(["a", "b"], encoder=tiny_dir, timeout=1e-4)
    _no_encoders_left(local_ray)


def test_needs_a_running_ray(ray_module, tiny_dir):
    if ray_module.is_initialized():
        ray_module.shutdown()
    with pytest.raises(RuntimeError, match="ray.init"):
        llmrec.distributed.encode(["a"], encoder=tiny_dir)
    assert not ray_module.is_initialized()
