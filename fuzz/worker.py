"""The child process: runs cases round-robin over its targets and reports each one on a
pipe (fd given by the parent), so that the parent knows which input a crash came from.

Lines: ``B <target> <seed>`` before a case, ``N <text>`` for each choice the generator
logs (written at once, so they survive a crash), ``E <target> <seed> <json outcome>``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
import warnings
import zlib


def case_rng_seed(target: str, seed: int) -> list[int]:
    return [seed, zlib.crc32(target.encode())]


def classify(target: str, exc: BaseException) -> dict:
    from fuzz import checks

    frames = traceback.extract_tb(exc.__traceback__)
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    lib = [f for f in frames if f"{os.sep}llmrec{os.sep}" in f.filename and not f.filename.startswith(here)]
    top = lib[-1] if lib else None
    where = f"{os.path.basename(top.filename)}:{top.lineno} {top.name}" if top else ""
    if target.startswith("core.") and (not where or frames[-1].filename.startswith(here)):
        where = f"_core.{target[5:]}"
    if isinstance(exc, checks.Garbage):
        return {"outcome": "garbage", "type": "Garbage", "message": str(exc)[:2000], "where": where}
    if not lib and frames and frames[-1].filename.startswith(here) and not target.startswith("core."):
        # Raised by the harness itself before reaching llmrec: a bug in fuzz/, not in llmrec.
        return {"outcome": "harness", "type": type(exc).__name__, "message": str(exc)[:2000],
                "where": f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}",
                "traceback": "".join(traceback.format_exception(exc))[-4000:]}
    if checks.allowed_exception(exc, files=target.startswith("files.")):
        return {"outcome": "rejected", "type": type(exc).__name__}
    return {"outcome": "exception", "type": type(exc).__name__, "message": str(exc)[:2000], "where": where,
            "traceback": "".join(traceback.format_exception(exc))[-4000:]}


def run_one(target: str, seed: int, emit=None) -> dict:
    """Run one case in this process; returns its outcome."""
    import numpy as np

    from fuzz.gen import G
    from fuzz.registry import runner
    from llmrec import _core

    g = G(0)
    g.r = np.random.default_rng(case_rng_seed(target, seed))
    g.seed = seed
    g.p = float(g.r.choice([0.0, 0.1, 0.3, 0.6]))
    if emit is not None:
        note = g.note

        def streamed(text: str) -> None:
            note(text)
            emit("N " + text.replace("\n", "\\n")[:500])
        g.note = streamed  # type: ignore[method-assign]
    levels = list(_core.supported_simd_levels())
    level = levels[int(g.r.integers(len(levels)))]
    g.note(f"simd={level} hostility={g.p}")
    previous = _core.active_simd_level()
    _core.set_simd_level(level)
    try:
        runner(target)(g)
        out = {"outcome": "ok"}
    except BaseException as exc:  # noqa: BLE001 - classifying everything is the point
        if isinstance(exc, KeyboardInterrupt):
            raise
        out = classify(target, exc)
    finally:
        try:
            _core.set_simd_level(previous)
        except Exception:
            pass
    out["log"] = g.log[-60:]
    return out


def limit_memory(gib: float) -> None:
    if "asan" in os.environ.get("LD_PRELOAD", "") or gib <= 0:
        return  # ASan reserves terabytes of address space
    limit = int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    plan = json.loads(sys.argv[1])  # {"targets": {name: next_seed}, "deadline": t, "slices": {name: s}, "fd": fd}
    pipe = os.fdopen(plan["fd"], "w", buffering=1)

    def emit(line: str) -> None:
        pipe.write(line + "\n")
        pipe.flush()

    warnings.simplefilter("ignore")
    import faulthandler
    faulthandler.enable()  # a Python traceback of the crashing call goes to stderr, into the reproducer
    os.environ.setdefault("LLMREC_FUZZ_TMP", plan.get("tmp", ""))
    limit_memory(plan.get("mem_gib", 4))
    import llmrec  # noqa: F401  (import cost outside the cases)
    if any(t.startswith("core.") for t in plan["targets"]):
        from fuzz.targets_core import collect_seeds
        collect_seeds(plan.get("seeds"))
    emit("R")
    seeds = dict(plan["targets"])
    deadline = plan["deadline"]
    while time.time() < deadline and seeds:
        for target in list(seeds):
            stop = min(deadline, time.time() + plan["slices"][target])
            while time.time() < stop:
                seed = seeds[target]
                emit(f"B {target} {seed}")
                out = run_one(target, seed, emit)
                seeds[target] = seed + 1
                out.pop("log", None) if out["outcome"] in ("ok", "rejected") else None
                emit(f"E {target} {seed} {json.dumps(out)}")
            if time.time() >= deadline:
                break
    emit("D")


if __name__ == "__main__":
    main()
