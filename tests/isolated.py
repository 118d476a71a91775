"""Run a snippet in a fresh interpreter, so that a crash (a signal) fails the test
instead of killing pytest: for inputs that once crashed the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_isolated(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``script`` (dedented) in a new Python process; it must exit 0."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, (f"exit {result.returncode} (negative: killed by a signal)\n"
                                    f"{result.stdout}\n{result.stderr[-2000:]}")
    return result


def assert_raises_isolated(prelude: str, code: str, exception: str, pattern: str) -> None:
    """After ``prelude``, the one-line ``code`` must raise ``exception`` (a name in scope)
    with ``pattern`` in its message, in a fresh process: not crash, not return."""
    script = textwrap.dedent(prelude) + textwrap.dedent(f"""
        try:
            {code}
        except {exception} as error:
            assert {pattern!r} in str(error), str(error)
            print("raised:", error)
        else:
            raise SystemExit("no {exception} raised")
        """)
    assert "raised:" in run_isolated(script).stdout
