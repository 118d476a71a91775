"""Regenerate or check ``python/llmrec/_core.pyi`` from the built native module.

The stub is what mypy and editors read for ``llmrec._core``; it is generated, never
edited by hand, so that it lists every bound function with the signature the bindings
really have. After changing a binding (cpp/bindings/), run from the repository root::

    python tools/core_stub.py          # rewrite python/llmrec/_core.pyi
    python tools/core_stub.py --check  # exit 1 with a diff when it is out of date

It imports the installed ``llmrec._core`` (an editable install rebuilds it first) and
needs ``pybind11-stubgen`` (the ``dev`` extra pins its version: another version, or
another pybind11, may write the same signatures differently; regenerate then).
tests/test_core_stub.py runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
from pathlib import Path

STUB = Path(__file__).resolve().parent.parent / "python" / "llmrec" / "_core.pyi"


def generate() -> str:
    """The stub text pybind11-stubgen writes for the built ``llmrec._core``."""
    with tempfile.TemporaryDirectory() as out:
        # A fresh interpreter: the module is imported as a user would import it.
        subprocess.run([sys.executable, "-m", "pybind11_stubgen", "llmrec._core", "--output-dir", out,
                        "--numpy-array-use-type-var", "--exit-code"],
                       check=True, stdout=subprocess.DEVNULL)
        text = (Path(out) / "llmrec" / "_core.pyi").read_text(encoding="utf-8")
    return "".join(_valid_def(line) for line in text.splitlines(keepends=True))


def _valid_def(line: str) -> str:
    """``line`` with the defaults dropped from parameters that precede a required one.

    pybind11 accepts a required argument after defaulted ones (``search_quantized``'s
    ``queries`` after ``vectors=None``), which Python cannot write: such a function is
    only callable by passing those earlier arguments, so the stub requires them.
    """
    if not line.startswith("def ") or "(" not in line:
        return line
    head, rest = line.split("(", 1)
    params, depth, start = [], 0, 0
    for i, char in enumerate(rest):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:  # the parameter list's closing parenthesis
                params.append(rest[start:i])
                tail = rest[i:]
                break
            depth -= 1
        elif char == "," and depth == 0:
            params.append(rest[start:i])
            start = i + 1
    else:
        return line
    positional = params[:params.index(" *")] if " *" in params else params
    required = [i for i, p in enumerate(positional) if "=" not in p]
    if not required or all("=" not in p for p in positional[:required[-1]]):
        return line
    fixed = [p.split(" = ", 1)[0] if i < required[-1] else p for i, p in enumerate(params)]
    return head + "(" + ",".join(fixed) + tail


def difference() -> str:
    """A unified diff from the checked-in stub to the generated one ('' when equal)."""
    current = STUB.read_text(encoding="utf-8") if STUB.exists() else ""
    return "".join(difflib.unified_diff(current.splitlines(keepends=True),
                                        generate().splitlines(keepends=True),
                                        str(STUB), "generated from llmrec._core"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare instead of writing; exit 1 when the stub is out of date")
    args = parser.parse_args()
    if args.check:
        diff = difference()
        if diff:
            sys.stdout.write(diff)
            print(f"\n{STUB} is out of date: run `python tools/core_stub.py`", file=sys.stderr)
            return 1
        return 0
    STUB.write_text(generate(), encoding="utf-8")
    print(f"wrote {STUB}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
