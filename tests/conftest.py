"""Shared fixtures: every compiled SIMD level this CPU can run, and the MovieLens path."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

from llmrec import _core

SIMD_LEVELS = list(_core.supported_simd_levels())


@pytest.fixture(autouse=True)
def _simd_level_restored():
    """Every test leaves the process at the SIMD level it found (LLMREC_SIMD may have
    lowered it): a leak would run the rest of the suite, and the workers it spawns, at
    different levels from each other."""
    before = _core.active_simd_level()
    yield
    after = _core.active_simd_level()
    if after != before:
        _core.set_simd_level(before)
        pytest.fail(f"the test left the SIMD level at {after}, it found {before}")


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request):
    """Run the test once per supported SIMD level, restoring the default afterwards."""
    previous = _core.active_simd_level()
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level(previous)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: different inputs for every test, the same on
    every run (str hashes are salted per process, so crc32 rather than hash()). Set
    LLMREC_TEST_SEED to draw a different set of inputs."""
    salt = int(os.environ.get("LLMREC_TEST_SEED", "0"))
    return np.random.default_rng([zlib.crc32(request.node.nodeid.encode()), salt])


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "torch: runs a torch model (torch's own BLAS: OPENBLAS_CORETYPE and "
        "LLMREC_SIMD do not reach it)")
    config.addinivalue_line(
        "markers", "every_simd_level: parametrized by the simd_level fixture, so it sets each "
        "level itself whatever LLMREC_SIMD says")
    config.addinivalue_line(
        "markers", "ray: starts a local Ray cluster on loopback (skips without the [ray] extra)")
    config.addinivalue_line(
        "markers", "serve: starts the HTTP server on 127.0.0.1 (skips without the [serve] extra)")
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium against a test server (skips without it)")


def pytest_collection_modifyitems(config, items):
    """Mark what the extra CI runs (.ci/run) may leave out, see tests/README.md."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and getattr(module, "torch", None) is not None:
            item.add_marker(pytest.mark.torch)
        if "simd_level" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.every_simd_level)
