"""What this build of llmrec can do: SIMD levels, threads, CUDA."""

from __future__ import annotations

from typing import Any

from llmrec import _core


def build_info() -> dict[str, Any]:
    """Describe the installed build and the machine it runs on.

    Returns a dict with ``version``, ``simd_compiled`` (levels built into the wheel),
    ``simd_supported`` (those this CPU can run), ``simd_active`` (the level in use,
    which ``LLMREC_SIMD=scalar|avx2|avx512`` can force lower), ``default_threads``
    (what ``num_threads=0`` means), ``cuda_compiled`` and ``cuda_available`` (both
    False: llmrec builds no CUDA module; the keys stay so that callers can test them).
    """
    from llmrec import __version__
    return {
        "version": __version__,
        "simd_compiled": list(_core.compiled_simd_levels()),
        "simd_supported": list(_core.supported_simd_levels()),
        "simd_active": _core.active_simd_level(),
        "default_threads": int(_core.hardware_threads()),
        "cuda_compiled": False,
        "cuda_available": False,
    }
