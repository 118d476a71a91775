"""pytest-benchmark suite for ExactIndex, for tracking regressions between commits.

    pytest bench/test_bench_exact.py --benchmark-only            (not part of the test run)

The side-by-side comparison with faiss and numpy is bench/bench_exact.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import llmrec


@pytest.fixture(scope="module", params=[(200_000, 128), (50_000, 384)], ids=lambda s: f"{s[0]}x{s[1]}")
def index(request):
    n, d = request.param
    items = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    return llmrec.ExactIndex(items, num_threads=2)


@pytest.mark.parametrize("nq", [1, 16, 256])
def test_search(benchmark, index, nq):
    queries = np.random.default_rng(1).standard_normal((nq, index.dim), dtype=np.float32)
    benchmark(index.search, queries, 10)


def test_search_exclude_200(benchmark, index):
    rng = np.random.default_rng(2)
    queries = rng.standard_normal((256, index.dim), dtype=np.float32)
    seen = sp.random(256, len(index), density=200 / len(index), format="csr", random_state=3)
    benchmark(index.search, queries, 10, exclude=seen)
