"""llmrec.distributed: ShardedIndex and recommend_all against one ExactIndex over all items.

The merge of per-shard top-k lists is tested without Ray on its own; everything else
starts a local Ray on loopback (see ray_local.py) and one test a simulated three-node
cluster.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import llmrec
import llmrec.distributed
from llmrec.distributed.merge import merge_topk, shard_bounds, split_exclusions
from ray_local import actor_ids, require_loopback_only, start_local, wait_until_no_live_actors
from reference import assert_topk_matches, reference_scores
from tolerances import score_tolerance


# ---------------------------------------------------------------- merge (no Ray)
def _per_shard(scores, bounds, k):
    """Each shard's own sorted top-k (ties by smaller id), global ids, -1/-inf padded."""
    ids_out, scores_out = [], []
    for s in range(len(bounds) - 1):
        start, stop = bounds[s], bounds[s + 1]
        width = min(k, stop - start)
        block = scores[:, start:stop]
        order = np.lexsort((np.broadcast_to(np.arange(stop - start), block.shape), -block), axis=1)
        order = order[:, :width]
        ids_out.append(order.astype(np.int64) + start)
        scores_out.append(np.take_along_axis(block, order, axis=1))
    return ids_out, scores_out


@pytest.mark.parametrize("n,num_shards,k", [(10, 1, 3), (10, 3, 4), (10, 10, 12), (37, 4, 37),
                                            (37, 5, 50)])
def test_merge_equals_one_sorted_list(rng, n, num_shards, k):
    # Small integer scores: many ties, which must break by smaller global id.
    scores = rng.integers(-3, 4, size=(6, n)).astype(np.float32)
    bounds = shard_bounds(n, num_shards)
    ids, merged = merge_topk(*_per_shard(scores, bounds, k), k)
    order = np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=1)[:, :k]
    want_ids = np.full((6, k), -1, dtype=np.int64)
    want_scores = np.full((6, k), -np.inf, dtype=np.float32)
    want_ids[:, :min(k, n)] = order
    want_scores[:, :min(k, n)] = np.take_along_axis(scores, order, axis=1)
    np.testing.assert_array_equal(ids, want_ids)  # exact: ids and copied scores
    np.testing.assert_array_equal(merged, want_scores)
    assert ids.dtype == np.int64 and merged.dtype == np.float32


def test_merge_keeps_padding_last_and_zero_signs_tied():
    # Shard 0 has one real item and padding; shard 1 scores -0.0 and 0.0 (equal scores).
    ids = [np.array([[4, -1, -1]]), np.array([[7, 9, -1]])]
    scores = [np.array([[-1.0, -np.inf, -np.inf]], np.float32),
              np.array([[-0.0, 0.0, -np.inf]], np.float32)]
    got_ids, got_scores = merge_topk(ids, scores, 5)
    np.testing.assert_array_equal(got_ids, [[7, 9, 4, -1, -1]])
    np.testing.assert_array_equal(got_scores[0, 3:], [-np.inf, -np.inf])


def test_bounds_and_exclusion_split(rng):
    bounds = shard_bounds(10, 3)
    np.testing.assert_array_equal(bounds, [0, 3, 6, 10])
    assert all(np.diff(shard_bounds(7, 7)) == 1)
    matrix = sp.random(5, 10, density=0.4, random_state=1, format="csr")
    matrix.sort_indices()
    parts = split_exclusions(matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64), bounds)
    for s, (indptr, ids) in enumerate(parts):
        local = sp.csr_matrix((np.ones(ids.size), ids, indptr), shape=(5, bounds[s + 1] - bounds[s]))
        np.testing.assert_array_equal(local.toarray() != 0,
                                      matrix[:, bounds[s]:bounds[s + 1]].toarray() != 0)


# ---------------------------------------------------------------- on Ray
ray = None


@pytest.fixture(scope="module")
def _ray_module():
    global ray
    ray = pytest.importorskip("ray", reason="llmrec.distributed needs the [ray] extra")
    require_loopback_only()
    yield ray
    _KEPT.clear()
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def local_ray(_ray_module):
    """A running local Ray (restarted if a test shut it down)."""
    start_local(_ray_module)
    return _ray_module


_KEPT = {}  # the shared index of integer_index: (session, index)


def _no_shards_left(ray_module):
    kept = _KEPT.get("index")
    ignore = actor_ids(kept[1]._actors) if kept is not None else frozenset()
    assert wait_until_no_live_actors(ray_module, "Shard", ignore=ignore) == 0, \
        "shard actors were left running"


def _integer_data(rng, n, nq, d=6):
    """Small integers: every score is exact in float32, so ids must match exactly."""
    return (rng.integers(-3, 4, size=(n, d)).astype(np.float32),
            rng.integers(-3, 4, size=(nq, d)).astype(np.float32))


@pytest.fixture(scope="module")
def integer_items(_ray_module):
    return _integer_data(np.random.default_rng(41), 41, 9)


@pytest.fixture
def integer_index(local_ray, integer_items):
    """41 items with small integer coordinates over 4 shards (10 or 11 items each), built
    once per Ray session and shared by the tests that only search it."""
    session = start_local(local_ray)
    kept = _KEPT.get("index")
    if kept is None or kept[0] != session or kept[1].closed:
        _KEPT["index"] = (session, llmrec.distributed.ShardedIndex(integer_items[0], num_shards=4))
    return _KEPT["index"][1]


@pytest.mark.ray
def test_search_equals_one_exact_index(local_ray, integer_index, integer_items, rng):
    items, queries = integer_items
    exact = llmrec.ExactIndex(items)
    seen = sp.random(9, 41, density=0.3, random_state=3, format="csr")
    seen_lists = [np.flatnonzero(row) for row in seen.toarray()]
    mask = rng.random(41) < 0.5
    ids_allowed = np.flatnonzero(rng.random(41) < 0.2)
    first_shard_only = np.arange(0, 5)
    assert len(integer_index) == 41 and integer_index.num_shards == 4
    # k within a shard, beyond a shard (10 or 11 items), beyond the catalogue
    for k in (1, 7, 15, 60):
        for kwargs in ({}, {"exclude": seen}, {"exclude": seen_lists}, {"allow": mask},
                       {"allow": ids_allowed}, {"allow": first_shard_only},
                       {"exclude": seen, "allow": mask}, {"allow": np.zeros(0, np.int64)}):
            got = integer_index.search(queries, k, **kwargs)
            want = exact.search(queries, k, **kwargs)
            # exact: integer scores are exact in float32 in both
            np.testing.assert_array_equal(got[0], want[0], err_msg=f"k={k} {kwargs}")
            np.testing.assert_array_equal(got[1], want[1])
            assert got[0].dtype == np.int64 and got[1].dtype == np.float32
    one = integer_index.search(queries[2], 5, exclude=seen_lists[2])
    want = exact.search(queries[2], 5, exclude=seen_lists[2])
    assert one[0].shape == (5,)
    np.testing.assert_array_equal(one[0], want[0])


@pytest.mark.ray
@pytest.mark.parametrize("n,num_shards", [(8, 1), (6, 6)])
def test_one_shard_and_one_item_per_shard(local_ray, rng, n, num_shards):
    items, queries = _integer_data(rng, n, 5)
    seen = sp.random(5, n, density=0.3, random_state=4, format="csr")
    with llmrec.distributed.ShardedIndex(items, num_shards=num_shards) as index:
        for k in (1, 3, n + 2):
            got = index.search(queries, k, exclude=seen)
            want = llmrec.ExactIndex(items).search(queries, k, exclude=seen)
            np.testing.assert_array_equal(got[0], want[0])  # exact: integer scores
            np.testing.assert_array_equal(got[1], want[1])
    _no_shards_left(local_ray)


@pytest.mark.ray
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_search_random_vectors_against_float64(local_ray, rng, metric):
    items = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((12, 16)).astype(np.float32)
    seen = sp.random(12, 300, density=0.1, random_state=5, format="csr")
    with llmrec.distributed.ShardedIndex(items, num_shards=3, metric=metric) as index:
        ids, scores = index.search(queries, 20, exclude=seen)
    reference = reference_scores(items, queries, metric)
    assert_topk_matches(ids, scores, reference, 20, qualifies=seen.toarray() == 0,
                        tol=score_tolerance(items, queries, metric))


@pytest.mark.ray
def test_quantized_shards_equal_local_shards_merged(local_ray, rng):
    # Each shard trains its own codec: the result is the local indexes of the same
    # slices, seeded alike and searched alike, merged (exactly: the same code on the
    # same inputs with one thread).
    items = rng.standard_normal((400, 16)).astype(np.float32)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    options = {"random_state": 0}
    with llmrec.distributed.ShardedIndex(items, num_shards=3, codec="sq8",
                                         index_options=options) as index:
        got = index.search(queries, 10, rerank=0)
        bounds = index.shard_bounds
    per_ids, per_scores = [], []
    for s in range(3):
        local = llmrec.QuantizedIndex(items[bounds[s]:bounds[s + 1]], codec="sq8", num_threads=1,
                                      **options)
        ids, scores = local.search(queries, 10, rerank=0)
        per_ids.append(np.where(ids >= 0, ids + bounds[s], ids))
        per_scores.append(scores)
    want = merge_topk(per_ids, per_scores, 10)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _als_like(rng, n_users, n_items, f=5):
    class Factors:
        pass
    model = Factors()
    model.user_factors_ = rng.integers(-2, 3, size=(n_users, f)).astype(np.float32)
    model.item_factors_ = rng.integers(-2, 3, size=(n_items, f)).astype(np.float32)
    return model


@pytest.mark.ray
def test_recommend_all_equals_one_exact_index(local_ray, rng):
    model = _als_like(rng, 230, 23)
    seen = sp.random(230, 23, density=0.4, random_state=7, format="lil")
    seen[5, :] = 1.0  # a user who has seen everything: all padding
    seen = seen.tocsr()
    for k, num_shards, batch_size in ((5, 3, 64), (30, 4, 50)):
        ids, scores = llmrec.distributed.recommend_all(model, seen, k=k, num_shards=num_shards,
                                                       batch_size=batch_size)
        want = llmrec.ExactIndex(model.item_factors_).search(model.user_factors_, k, exclude=seen)
        np.testing.assert_array_equal(ids, want[0])  # exact: integer scores
        np.testing.assert_array_equal(scores, want[1])
    assert (ids[5] == -1).all() and np.isneginf(scores[5]).all()
    ids, _ = llmrec.distributed.recommend_all(model, None, k=4, num_shards=2)
    np.testing.assert_array_equal(ids, llmrec.ExactIndex(model.item_factors_).search(
        model.user_factors_, 4)[0])
    _no_shards_left(local_ray)


@pytest.mark.ray
def test_recommend_all_with_a_fitted_als(local_ray, rng):
    R = sp.random(120, 40, density=0.15, random_state=11, format="csr", dtype=np.float32)
    als = llmrec.ALS(factors=8, iterations=3, random_state=0, num_threads=1).fit(R)
    ids, scores = llmrec.distributed.recommend_all(als, R, k=10, num_shards=3, batch_size=40,
                                                   timeout=120)
    U, V = als.user_factors_, als.item_factors_
    assert_topk_matches(ids, scores, reference_scores(V, U), 10, qualifies=R.toarray() == 0,
                        tol=score_tolerance(V, U))
    local_ids, _ = als.recommend(np.arange(120), R, k=10)
    tie_free = np.all(np.diff(scores, axis=1) < 0, axis=1)  # rows without equal scores
    np.testing.assert_array_equal(ids[tie_free], local_ids[tie_free])


@pytest.mark.ray
def test_bad_input(local_ray, integer_index, rng):
    dist = llmrec.distributed
    items, queries = _integer_data(rng, 10, 3)
    with pytest.raises(ValueError, match="num_shards"):
        dist.ShardedIndex(items, num_shards=11)
    with pytest.raises(ValueError, match="num_shards"):
        dist.ShardedIndex(items, num_shards=0)
    with pytest.raises(TypeError, match="num_shards"):
        dist.ShardedIndex(items, num_shards=2.0)
    with pytest.raises(ValueError, match="vectors"):
        dist.ShardedIndex(items[:, :0])
    with pytest.raises(ValueError, match="NaN"):
        dist.ShardedIndex(np.full((4, 2), np.nan, np.float32), num_shards=2)
    with pytest.raises(ValueError, match="codec"):
        dist.ShardedIndex(items, codec="int3")
    with pytest.raises(ValueError, match="timeout"):
        dist.ShardedIndex(items, timeout=-1)
    with pytest.raises(ValueError, match="index_options"):
        dist.ShardedIndex(items, index_options={"partitions": 2})
    index = integer_index
    with pytest.raises(ValueError, match="dimension"):
        index.search(queries[:, :3], 2)
    with pytest.raises(ValueError, match="k must be"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="exclude"):
        index.search(queries, 2, exclude=sp.csr_matrix((3, 9)))
    with pytest.raises(ValueError, match="outside"):
        index.search(queries, 2, allow=[41])
    with pytest.raises(ValueError, match="probes"):
        index.search(queries, 2, probes=2)
    assert index.search(queries, 2)[0].shape == (3, 2)  # still usable
    model = _als_like(rng, 6, 10)
    with pytest.raises(ValueError, match="user_items"):
        dist.recommend_all(model, sp.csr_matrix((5, 10)), k=2, num_shards=2)
    with pytest.raises(ValueError, match="user_items"):
        dist.recommend_all(model, [[1]] * 5, k=2, num_shards=2)
    with pytest.raises(ValueError, match="num_shards"):
        dist.recommend_all(model, None, k=2, num_shards=11)
    with pytest.raises(ValueError, match="batch_size"):
        dist.recommend_all(model, None, k=2, batch_size=0)
    model.user_factors_ = model.user_factors_[:, :3]
    with pytest.raises(ValueError, match="factors"):
        dist.recommend_all(model, None, k=2, num_shards=2)
    with pytest.raises(TypeError, match="user_factors_"):
        dist.recommend_all(object(), None)
    with pytest.raises(llmrec.NotFittedError):
        dist.recommend_all(llmrec.ALS(), None)
    closed = dist.ShardedIndex(items, num_shards=2)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.search(queries, 2)


@pytest.mark.ray
def test_a_shard_that_fails(local_ray, rng):
    dist = llmrec.distributed
    items = rng.standard_normal((40, 8)).astype(np.float32)
    # pq4 needs 16 vectors per shard: shard construction raises in the actors, the
    # caller gets the ValueError and no actor survives.
    with pytest.raises(ValueError, match="16 training vectors"):
        dist.ShardedIndex(items, num_shards=4, codec="pq4")
    _no_shards_left(local_ray)
    # A shard that dies between searches: the next search says so, the others are killed.
    index = dist.ShardedIndex(items, num_shards=3)
    local_ray.kill(index._actors[1], no_restart=True)
    with pytest.raises(RuntimeError, match="died"):
        index.search(items[:2], 5)
    assert index.closed
    _no_shards_left(local_ray)
    # A wait longer than the timeout: TimeoutError, nothing left running.
    with pytest.raises(TimeoutError, match="did not answer"):
        dist.recommend_all(_als_like(rng, 50, 12), None, k=3, num_shards=3, timeout=1e-4)
    _no_shards_left(local_ray)


@pytest.mark.ray
def test_needs_a_running_ray(_ray_module, rng):
    if _ray_module.is_initialized():
        _ray_module.shutdown()
    items, _ = _integer_data(rng, 10, 1)
    with pytest.raises(RuntimeError, match="ray.init"):
        llmrec.distributed.ShardedIndex(items)
    with pytest.raises(RuntimeError, match="ray.init"):
        llmrec.distributed.recommend_all(_als_like(rng, 3, 10), None, k=2)
    assert not _ray_module.is_initialized()  # nothing started Ray behind the caller's back


@pytest.mark.ray
def test_shards_spread_over_a_three_node_cluster(_ray_module, rng):
    from ray.cluster_utils import Cluster

    if _ray_module.is_initialized():
        _ray_module.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                            "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        _ray_module.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes(timeout=120)
        items, queries = _integer_data(rng, 60, 8)
        seen = sp.random(8, 60, density=0.3, random_state=2, format="csr")
        # Ray's SPREAD is best effort (a node whose resources the scheduler has not seen
        # yet gets nothing: seen once in a full run): a CPU held per shard on 1-CPU nodes
        # makes the spread certain, through the actor_options users pass for the same end.
        options = {"num_cpus": 1, "scheduling_strategy": "SPREAD"}
        with llmrec.distributed.ShardedIndex(items, num_shards=3, actor_options=options) as index:
            nodes = {node for node, _ in index.locations()}
            got = index.search(queries, 25, exclude=seen)
        assert len(nodes) == 3, "three shards holding a CPU each share a 1-CPU node"
        want = llmrec.ExactIndex(items).search(queries, 25, exclude=seen)
        np.testing.assert_array_equal(got[0], want[0])  # exact: integer scores
        np.testing.assert_array_equal(got[1], want[1])
    finally:
        _ray_module.shutdown()
        cluster.shutdown()
