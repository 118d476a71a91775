"""The server's allocator setting (llmrec.serve.memory): with it, large blocks freed after
the adaptive mmap threshold has grown go back to the system instead of staying resident
(what kept a replaced model's pages in the server after a reload under load)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
import numpy as np
from llmrec.serve.memory import map_large_blocks

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

applied = map_large_blocks() if sys.argv[1] == "on" else None
big = np.ones(30 << 20, np.uint8)  # freed: glibc's adaptive threshold grows past 4 MiB
del big
start = rss_mb()
blocks = [np.ones(4 << 20, np.uint8) for _ in range(40)]  # 160 MiB in 4 MiB blocks
pins = [np.ones(256, np.uint8) for _ in range(40)]         # small blocks after them
grown = rss_mb() - start
del blocks
print(applied, round(grown), round(rss_mb() - start))
"""


def _run(mode: str) -> tuple[str, float, float]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return out[-3], float(out[-2]), float(out[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_large_blocks_freed_go_back_to_the_system():
    applied, grown, kept = _run("on")
    if applied != "True":
        pytest.skip("not glibc: map_large_blocks does nothing here")
    assert grown >= 150  # the blocks were resident
    assert kept < 20, f"{kept} MB of 160 freed stayed resident"
