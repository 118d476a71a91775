"""Shared fixtures: every compiled SIMD level this CPU can run, and the MovieLens path."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec import _core

SIMD_LEVELS = list(_core.supported_simd_levels())


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request):
    """Run the test once per supported SIMD level, restoring the default afterwards."""
    previous = _core.active_simd_level()
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level(previous)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: fresh inputs per test, reproducible runs."""
    return np.random.default_rng(abs(hash(request.node.nodeid)) % (2**32))
