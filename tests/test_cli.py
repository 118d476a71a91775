"""The llmrec command: demo checks itself against numpy; info prints build_info."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli import main
from movielens import MOVIELENS, needs_movielens

REPO = Path(__file__).resolve().parents[1]


def test_ranker_runs_and_agrees_with_numpy(capsys):
    assert main(["ranker", "--items", "3000", "--dim", "24", "--queries", "16", "-k", "5"]) == 0
    out = capsys.readouterr().out
    assert "agreement with a float64 numpy reference on 8 queries: 1.000" in out


def test_info_prints_build_info(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["simd_active"] in info["simd_supported"]


def test_demo_runs_end_to_end_behaviour_only(capsys):
    from llmrec.demo import run

    assert run(n_users=300, n_items=150, encoder=None, show_progress=False) == 0
    out = capsys.readouterr().out
    for section in ("popularity", "ALS (behaviour only)", "Recommender", "recommended for user",
                    "recommended for that visitor", "added after training", "its most similar items"):
        assert section in out
    assert "search:" not in out  # no encoder, no free-text request


def test_demo_runs_end_to_end_with_a_text_encoder(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from llmrec.demo import run
    from llmrec.text import TextEncoder
    from llmrec.text.testing import save_tiny_bert

    encoder = TextEncoder(str(save_tiny_bert(tmp_path / "bert")))
    assert run(n_users=300, n_items=150, encoder=encoder, show_progress=False) == 0
    out = capsys.readouterr().out
    assert "search: " in out and "demo finished" in out


@needs_movielens
def test_evaluate_on_movielens_behaviour_only(capsys):
    assert main(["evaluate", "--data", str(MOVIELENS), "--encoder", "none"]) == 0
    out = capsys.readouterr().out
    assert "temporal split" in out and "Recommender" in out
