"""Every minimal reproducer the fuzz harness recorded (fuzz/known.py, fuzz/FINDINGS.md)
stays fixed: each runs in a fresh interpreter and must end in a clear error or a correct
result, never a signal, a hang or another exception."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds fuzz/
from fuzz import known  # noqa: E402


@pytest.mark.parametrize("case_id", sorted(known.CASES))
def test_reproducer_stays_fixed(case_id):
    outcome = known.run(case_id)
    if outcome.startswith("SKIPPED"):
        pytest.skip(outcome)  # e.g. a case only the sanitizer build (tests/sanitize.sh) can see
    assert outcome.startswith("FIXED"), f"{case_id} ({known.CASES[case_id][1]}): {outcome}"
