"""The fuzz targets by name: ``core.<fn>`` for every function of llmrec._core, ``api.*``
for the public classes and functions, ``files.*`` for the loaders."""

from __future__ import annotations

from collections.abc import Callable

from fuzz.gen import G

FILE_TARGETS = {"files.exact_index", "files.quantized_index", "files.als", "files.recommender",
                "files.fifo", "files.datasets"}


def api_targets() -> dict[str, Callable[[G], object]]:
    from fuzz import targets_api as a
    from fuzz import targets_files as f

    return {
        "api.exact_index": a.exact_index,
        "api.quantized_index": a.quantized_index,
        "api.als": a.als,
        "api.diversity": a.diversity,
        "api.evaluation": a.evaluation,
        "api.recommender": a.recommender,
        "files.exact_index": f.exact_index_file,
        "files.quantized_index": f.quantized_index_file,
        "files.als": f.als_file,
        "files.recommender": f.recommender_file,
        "files.fifo": f.fifo_file,
        "files.datasets": f.datasets,
    }


def all_targets() -> list[str]:
    from fuzz.targets_core import core_functions

    return [f"core.{n}" for n in core_functions()] + sorted(api_targets())


def runner(name: str) -> Callable[[G], object]:
    if name.startswith("core."):
        from fuzz import targets_core

        fn = name[len("core."):]
        return lambda g: targets_core.run_case(fn, g)
    return api_targets()[name]
