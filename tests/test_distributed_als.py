"""Distributed ALS on a simulated two-node Ray cluster (loopback only; run inside
``unshare -n sh -c 'ip link set lo up && pytest -m ray'``): equal to the single-process
fit, recovers from a killed actor, refuses bad input without leaving actors behind; the
fitted objects travel through the object store; ``Recommender(cluster="ray")``."""

from __future__ import annotations

import importlib.util
import os
import pickle
import time

import numpy as np
import pytest
import scipy.sparse as sp

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install '.[ray]')")

import llmrec  # noqa: E402
from llmrec import _core  # noqa: E402
from llmrec import distributed as dist  # noqa: E402
from llmrec.distributed import als as dist_als  # noqa: E402
from recommender_helpers import WordEncoder, small_data  # noqa: E402
from tolerances import als_row_system, assert_within, normal_equations_tolerance  # noqa: E402

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CPUS_PER_NODE = 2


@pytest.fixture(scope="module")
def cluster():
    """A head and one worker node, two CPUs each, on 127.0.0.1; torn down at the end."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": CPUS_PER_NODE, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    c.add_node(num_cpus=CPUS_PER_NODE, node_ip_address="127.0.0.1")
    try:
        # The tests' helper modules (the word encoder) must import in Ray's workers too.
        path = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH")) if p)
        ray.init(address=c.address, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
        c.wait_for_nodes()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def counts(rng, n_users, n_items, nnz):
    """Implicit counts with skewed rows, every user and item with at least one entry."""
    users = np.concatenate([np.arange(n_users), rng.zipf(1.6, nnz) % n_users])
    items = np.concatenate([rng.integers(n_items, size=n_users), rng.integers(n_items, size=nnz)])
    items[:n_items] = np.arange(n_items)  # (n_items <= n_users here)
    R = sp.csr_matrix((rng.integers(1, 5, size=len(users)).astype(np.float32), (users, items)),
                      shape=(n_users, n_items))
    R.sum_duplicates()
    return R


def cpus_free_eventually(limit_s: float = 20.0) -> float:
    """The cluster's free CPUs once killed actors have released theirs (bounded wait)."""
    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= total:
            break
        time.sleep(0.2)
    return ray.available_resources().get("CPU", 0)


def local_fit(R, **params):
    return llmrec.ALS(**params).fit(R)


# -------------------------------------------------------------------- without Ray

def test_gramian_partials_reduce_to_the_native_gramian(rng):
    # The distributed Gramian rests on this: the native one adds float32 chunk partials
    # of GRAMIAN_CHUNK_ROWS rows in float64 in chunk order, so the same partials added in
    # the same order give the same bits (exact comparison: same arithmetic).
    chunk = dist_als.GRAMIAN_CHUNK_ROWS
    Y = rng.standard_normal((2 * chunk + 333, 9)).astype(np.float32)
    total = np.zeros((9, 9))
    for c in range(0, len(Y), chunk):
        total += _core.als_gramian(Y[c:c + chunk], 1)
    np.testing.assert_array_equal(total.astype(np.float32), _core.als_gramian(Y, 2))


def test_block_boundaries_cover_every_row(rng):
    for _ in range(50):
        n = int(rng.integers(1, 40))
        lengths = rng.zipf(1.5, n) % 50
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        blocks = int(rng.integers(1, n + 1))
        cuts = dist_als._boundaries(indptr, blocks, int(rng.integers(1, 70)))
        assert cuts[0] == 0 and cuts[-1] == n and len(cuts) == blocks + 1
        assert (np.diff(cuts) >= 1).all()


def test_needs_a_running_ray(monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(RuntimeError, match="ray.init"):
        dist.ALS(factors=2, iterations=1).fit(sp.eye(4, format="csr"))


# -------------------------------------------------------------------- equal to local

@pytest.mark.parametrize("num_blocks, threads, solver, feedback", [
    (2, 2, "cg", "implicit"), (3, 1, "cholesky", "implicit"), (4, 1, "cholesky", "explicit")])
def test_equals_the_single_process_fit(cluster, rng, num_blocks, threads, solver, feedback):
    # More than two Gramian chunks on each side, so the partials come from several actors.
    R = counts(rng, 5000, 4500, 30000)
    params = dict(factors=6, iterations=3, solver=solver, feedback=feedback,
                  regularization=0.05, alpha=2.0, random_state=7)
    model = dist.ALS(num_blocks=num_blocks, num_threads=threads, timeout=120, **params).fit(R)
    expected = local_fit(R, num_threads=2, **params)
    # Exact: every row is solved by the same code from the same inputs, and the Gramian
    # is reduced in the native order (see the module docstring and the test above).
    np.testing.assert_array_equal(model.user_factors_, expected.user_factors_)
    np.testing.assert_array_equal(model.item_factors_, expected.item_factors_)
    assert cpus_free_eventually() == ray.cluster_resources()["CPU"]  # actors gone
    # What moved: the other side's factors once, one f×f partial per Gramian chunk, the blocks.
    stats = model.fit_stats_
    assert sum(stats["user_rows"]) == 5000 and sum(stats["item_nnz"]) == R.nnz
    for step in stats["half_steps"]:
        n_side, n_other = (5000, 4500) if step["side"] == "user" else (4500, 5000)
        assert step["broadcast_bytes"] == n_other * 6 * 4 and step["block_bytes"] == n_side * 6 * 4
        chunks = -(-n_other // dist_als.GRAMIAN_CHUNK_ROWS) if feedback == "implicit" else 0
        assert step["gram_bytes"] == chunks * 6 * 6 * 4
        assert len(step["solve_seconds"]) == num_blocks


def test_text_priors_and_row_blocks_equal_the_single_process_fit(cluster, rng):
    R = counts(rng, 300, 200, 1500)
    R = sp.vstack([R, sp.csr_matrix((5, 200), dtype=np.float32)], format="csr")  # cold users
    R = sp.hstack([R, sp.csr_matrix((305, 4), dtype=np.float32)], format="csr")  # cold items
    Fi = rng.standard_normal((204, 5)).astype(np.float32)
    Fu = rng.standard_normal((305, 3)).astype(np.float32)
    params = dict(factors=4, iterations=2, random_state=3, prior_strength=0.5)
    blocks = [R[:100], R[100:101], R[101:]]
    model = dist.ALS(num_blocks=2, num_threads=1, timeout=120, **params).fit(
        blocks, item_features=Fi, user_features=Fu)
    # One thread like the distributed model's, whose local copy searches with it: the exact
    # search's layout follows each thread's share of the queries (rows or panels), and on
    # AVX2 the two round differently (the factors themselves do not depend on threads).
    expected = llmrec.ALS(num_threads=1, **params).fit(R, item_features=Fi, user_features=Fu)
    for name in ("user_factors_", "item_factors_", "user_prior_weights_", "item_prior_weights_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(expected, name), err_msg=name)
    local = model.to_local()
    assert isinstance(local, llmrec.ALS)
    users = np.arange(10)
    for a, b in zip(local.recommend(users, k=5), expected.recommend(users, k=5)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(local.recommend_for_history(R[:3], k=4), expected.recommend_for_history(R[:3], k=4)):
        np.testing.assert_array_equal(a, b)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.user_factors_, model.user_factors_)


def test_each_row_solves_its_normal_equations(cluster, rng):
    # Independent of the local code: one Cholesky iteration, each user row against the
    # float64 normal equations of the initial item factors, each item row against those
    # of the distributed fit's own user factors (the same float32 inputs).
    R = counts(rng, 120, 90, 700)
    params = dict(factors=5, iterations=1, solver="cholesky", regularization=0.1, alpha=1.5,
                  random_state=11)
    model = dist.ALS(num_blocks=3, num_threads=1, timeout=120, **params).fit(R)
    init = np.random.default_rng(11)
    init.random((120, 5), dtype=np.float32)
    Y0 = init.random((90, 5), dtype=np.float32) * 0.01
    X, Y = model.user_factors_, model.item_factors_
    for side, rows, other, factors in (("user", R, Y0, X), ("item", R.T.tocsr(), X, Y)):
        for u in rng.choice(rows.shape[0], size=12, replace=False):
            row = rows[u]
            A, b, abs_A, abs_b, n = als_row_system(other, row.indices, row.data, implicit=True,
                                                   alpha=1.5, reg=0.1)
            exact = np.linalg.solve(A, b)
            assert_within(factors[u], exact, normal_equations_tolerance(A, exact, abs_A, abs_b, n),
                          err_msg=f"{side} {u}")


# -------------------------------------------------------------------- faults

def test_a_killed_actor_is_restarted_and_the_fit_resumes(cluster, rng, tmp_path):
    R = counts(rng, 400, 300, 3000)
    params = dict(factors=6, iterations=4, random_state=5)
    model = dist.ALS(num_blocks=3, num_threads=1, timeout=120, checkpoint_dir=tmp_path, **params)
    killed = []

    def kill_one(iteration, elapsed):
        if iteration == 1:
            victim = model._actors[1]
            killed.append(ray.get(victim.pid.remote(), timeout=60))
            ray.kill(victim, no_restart=False)  # Ray restarts it (max_restarts)

    model.fit(R, callback=kill_one)
    expected = local_fit(R, **params)
    assert killed and model.n_recoveries_ >= 1
    np.testing.assert_array_equal(model.user_factors_, expected.user_factors_)
    np.testing.assert_array_equal(model.item_factors_, expected.item_factors_)
    assert (tmp_path / "als-checkpoint.llmrec").is_file()
    assert cpus_free_eventually() == ray.cluster_resources()["CPU"]


def test_a_dead_actor_without_restarts_fails_the_fit_cleanly(cluster, rng):
    R = counts(rng, 100, 80, 500)
    model = dist.ALS(factors=3, iterations=3, num_blocks=2, num_threads=1, timeout=120,
                     max_restarts=0)

    def kill_one(iteration, elapsed):
        if iteration == 0:
            ray.kill(model._actors[0], no_restart=True)

    with pytest.raises(RuntimeError, match="max_restarts"):
        model.fit(R, callback=kill_one)
    assert cpus_free_eventually() == ray.cluster_resources()["CPU"]


def test_a_fit_resumes_from_its_checkpoint_dir(cluster, rng, tmp_path):
    R = counts(rng, 200, 150, 1200)
    params = dict(factors=4, random_state=2)
    dist.ALS(iterations=2, num_blocks=2, num_threads=1, timeout=120, checkpoint_dir=tmp_path,
             **params).fit(R)
    seen = []
    model = dist.ALS(iterations=5, num_blocks=2, num_threads=1, timeout=120,
                     checkpoint_dir=tmp_path, **params).fit(R, callback=lambda i, t: seen.append(i))
    assert model.n_iterations_resumed_ == 2 and seen == [2, 3, 4]
    expected = local_fit(R, iterations=5, **params)
    np.testing.assert_array_equal(model.item_factors_, expected.item_factors_)
    # Other data: the checkpoint is not theirs, the fit starts from scratch.
    other = dist.ALS(iterations=1, num_blocks=2, num_threads=1, timeout=120,
                     checkpoint_dir=tmp_path, **params).fit(R[::-1])
    assert other.n_iterations_resumed_ == 0


# -------------------------------------------------------------------- bad input

def test_bad_input_is_refused_by_name(cluster, rng):
    R = counts(rng, 30, 20, 100)
    with pytest.raises(ValueError, match="num_blocks"):
        dist.ALS(num_blocks=0).fit(R)
    with pytest.raises(ValueError, match="num_blocks must be at most"):
        dist.ALS(num_blocks=21).fit(R)
    with pytest.raises(TypeError, match="num_blocks"):
        dist.ALS(num_blocks=2.5).fit(R)
    with pytest.raises(ValueError, match="same number of columns"):
        dist.ALS().fit([R[:10], R[10:, :15]])
    with pytest.raises(ValueError, match="empty list"):
        dist.ALS().fit([])
    with pytest.raises(ValueError, match="item_features"):
        dist.ALS(iterations=1).fit(R, item_features=np.ones((19, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="timeout"):
        dist.ALS(timeout=-1).fit(R)
    with pytest.raises(ValueError, match="max_restarts"):
        dist.ALS(max_restarts=-1).fit(R)
    with pytest.raises(ValueError, match="factors"):
        dist.ALS(factors=0).fit(R)
    assert cpus_free_eventually() == ray.cluster_resources()["CPU"]


def test_an_actor_that_raises_is_named_and_every_actor_is_killed(cluster, rng):
    R = counts(rng, 60, 40, 300)
    R.data[:] = 3e38  # confidences overflow float32: the solve gives inf/NaN factors
    with pytest.raises(ValueError, match=r"ALS block \d \(user half-step\) failed: ALS solve gave NaN"):
        dist.ALS(factors=3, iterations=2, alpha=1e6, solver="cholesky", num_blocks=2, num_threads=1,
                 timeout=120).fit(R)
    assert cpus_free_eventually() == ray.cluster_resources()["CPU"]


def test_no_wait_outlasts_its_timeout(cluster, rng):
    R = counts(rng, 60, 40, 300)
    # More CPUs than the cluster has: the actors can never start.
    with pytest.raises(TimeoutError, match=r"ALS block 0 \(start\): no answer .* within 1.5 s"):
        dist.ALS(factors=3, num_blocks=2, num_threads=64, timeout=1.5).fit(R)
    assert cpus_free_eventually() == ray.cluster_resources()["CPU"]


# -------------------------------------------------------------------- objects travel

@ray.remote
def _answer(obj, kind, queries):
    if kind == "als":
        return obj.recommend(np.arange(4), k=5)
    if kind == "recommender":
        return obj.recommend(queries, k=5)[:2]
    return obj.search(queries, k=5)


def test_fitted_objects_travel_through_the_object_store(cluster, rng):
    R = counts(rng, 80, 60, 600)
    als = llmrec.ALS(factors=4, iterations=2, random_state=0).fit(R)
    als.recommend(np.arange(4), k=5)  # queried: caches a search index
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    exact = llmrec.ExactIndex(vectors)
    exact.search(queries, k=5)
    quantized = llmrec.QuantizedIndex(vectors, codec="sq8")
    quantized.search(queries, k=5)
    interactions, items, _ = small_data(60, 80)
    rec = llmrec.Recommender(encoder=WordEncoder(), factors=8, iterations=2, random_state=0,
                             validation=0).fit(interactions, items=items)
    users = interactions["user_id"].unique()[:3]
    rec.recommend(users, k=5)
    for obj, kind, q in ((als, "als", None), (exact, "index", queries), (quantized, "index", queries),
                         (rec, "recommender", users)):
        ref = ray.put(obj)
        remote = ray.get(_answer.remote(ref, kind, q), timeout=120)
        here = _answer._function(obj, kind, q)
        for a, b in zip(remote, here):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=kind)


# -------------------------------------------------------------------- Recommender

def test_recommender_fitted_on_ray_is_served_locally(cluster, tmp_path):
    interactions, items, _ = small_data(120, 90, seed=4)
    params = dict(encoder=None, factors=6, iterations=3, random_state=1, validation=0,
                  regularization=10.0)  # two ALS fits (behaviour, transitions), not ten
    on_ray = llmrec.Recommender(cluster="ray", **params).fit(interactions)
    local = llmrec.Recommender(**params).fit(interactions)
    np.testing.assert_array_equal(on_ray._als.user_factors_, local._als.user_factors_)
    users = interactions["user_id"].unique()[:6]
    path = tmp_path / "model.llmrec"
    on_ray.save(path)
    served = llmrec.Recommender.load(path)  # plain, on this machine: no Ray used
    for a, b in zip(served.recommend(users, k=5), local.recommend(users, k=5)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="cluster"):
        llmrec.Recommender(cluster="spark", **params).fit(interactions)


@pytest.mark.skipif(importlib.util.find_spec("llmrec.distributed.encoding") is None,
                    reason="llmrec.distributed.encode (distributed/encoding.py) is not merged yet")
def test_recommender_with_text_on_ray_equals_local(cluster):
    interactions, items, _ = small_data(100, 80, seed=5)
    params = dict(encoder=WordEncoder(), factors=6, iterations=2, random_state=1, validation=0)
    on_ray = llmrec.Recommender(cluster="ray", **params).fit(interactions, items=items)
    local = llmrec.Recommender(**params).fit(interactions, items=items)
    users = interactions["user_id"].unique()[:5]
    for a, b in zip(on_ray.recommend(users, k=5), local.recommend(users, k=5)):
        np.testing.assert_array_equal(a, b)
