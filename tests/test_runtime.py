"""build_info, SIMD level selection and the native thread pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import llmrec
from llmrec import _core


def test_build_info_describes_the_build():
    info = llmrec.build_info()
    assert set(info) >= {"version", "simd_compiled", "simd_supported", "simd_active",
                         "default_threads", "cuda_compiled", "cuda_available"}
    assert info["version"] == llmrec.__version__
    assert info["simd_compiled"][0] == "scalar"
    assert set(info["simd_supported"]) <= set(info["simd_compiled"])
    assert info["simd_active"] in info["simd_supported"]
    assert info["default_threads"] == os.cpu_count() or info["default_threads"] >= 1
    assert info["cuda_available"] is False or info["cuda_compiled"] is True


def _active_level_with(env_value: str) -> str:
    env = dict(os.environ, LLMREC_SIMD=env_value)
    out = subprocess.run([sys.executable, "-c", "import json, llmrec; print(json.dumps(llmrec.build_info()))"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["simd_active"]


def test_llmrec_simd_env_forces_a_lower_level_only():
    supported = _core.supported_simd_levels()
    assert _active_level_with("scalar") == "scalar"
    # Asking for more than the CPU supports, or nonsense, keeps the best supported level.
    assert _active_level_with("avx512") == supported[-1]
    assert _active_level_with("bogus") == supported[-1]
    if "avx2" in supported:
        assert _active_level_with("avx2") == "avx2"


def test_set_simd_level_rejects_unknown_or_unsupported():
    with pytest.raises(ValueError, match="level must be"):
        _core.set_simd_level("sse9")
    unsupported = set(_core.compiled_simd_levels()) - set(_core.supported_simd_levels())
    for level in unsupported:
        with pytest.raises(ValueError, match="not supported"):
            _core.set_simd_level(level)


@pytest.mark.parametrize("n_tasks,threads", [(0, 2), (1, 4), (7, 1), (1000, 0), (333, 3)])
def test_parallel_for_runs_every_task_once(n_tasks, threads):
    assert _core._parallel_task_sum(n_tasks, threads) == n_tasks * (n_tasks - 1) // 2


@pytest.mark.parametrize("threads", [1, 2, 0])
def test_worker_exceptions_reach_the_caller(threads):
    with pytest.raises(RuntimeError, match="task 57 failed"):
        _core._parallel_task_sum(200, threads, fail_task=57)
    assert _core._parallel_task_sum(10, threads) == 45  # the pool still works afterwards


def test_concurrent_searches_equal_serial(rng):
    items = rng.standard_normal((60_000, 32)).astype(np.float32)
    index = llmrec.ExactIndex(items, num_threads=2)
    batches = [rng.standard_normal((int(rng.integers(1, 40)), 32)).astype(np.float32) for _ in range(24)]
    serial = [index.search(b, k=10) for b in batches]
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(offset, len(batches), 8):
                results[i] = index.search(batches[i], k=10)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # exact by contract: a query's result does not depend on who else is searching
    for i, (ids, scores) in enumerate(serial):
        np.testing.assert_array_equal(results[i][0], ids)
        np.testing.assert_array_equal(results[i][1], scores)


def test_search_concurrent_with_add_sees_a_consistent_snapshot(rng):
    index = llmrec.ExactIndex(rng.standard_normal((1000, 8)).astype(np.float32))
    stop = threading.Event()
    errors: list[BaseException] = []

    def searcher() -> None:
        try:
            while not stop.is_set():
                ids, _ = index.search(np.ones(8, np.float32), k=5)
                assert ids.min() >= 0
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=searcher)
    t.start()
    for _ in range(200):
        index.add(rng.standard_normal((7, 8)).astype(np.float32))
    stop.set()
    t.join()
    assert not errors and len(index) == 1000 + 1400


def test_submodules_load_lazily_on_attribute_access():
    import subprocess
    import sys

    code = ("import sys, llmrec\n"
            "lazy = ('llmrec.datasets', 'llmrec.diversity', 'llmrec.evaluation', 'llmrec.recommender')\n"
            "assert not any(m in sys.modules for m in lazy), [m for m in lazy if m in sys.modules]\n"
            "assert callable(llmrec.diversity.mmr_rerank) and callable(llmrec.datasets.synthetic)\n"
            "assert llmrec.Recommender.__name__ == 'Recommender'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
