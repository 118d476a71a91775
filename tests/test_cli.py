"""The llmrec command: demo checks itself against numpy; info prints build_info."""

from __future__ import annotations

import json

from llmrec.cli import main


def test_ranker_runs_and_agrees_with_numpy(capsys):
    assert main(["ranker", "--items", "3000", "--dim", "24", "--queries", "16", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "agreement with a float64 numpy reference on 8 queries: 1.000" in out


def test_info_prints_build_info(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["simd_active"] in info["simd_supported"]
