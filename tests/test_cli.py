"""The llmrec command: demo checks itself against numpy; info prints build_info."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from llmrec.cli import build_parser, main
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
def test_evaluate_on_movielens_behaviour_only(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    report = tmp_path / "report.html"
    assert main(["evaluate", "--data", str(MOVIELENS), "--encoder", "none",
                 "--report", str(report), "--diversity", "0", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "temporal split" in out and "Recommender" in out and "report written" in out
    page = report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3 and "943 users evaluated" in page


def test_evaluate_refuses_bad_input_before_fitting(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    assert main(["evaluate", "--data", str(tmp_path), "--report", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    monkeypatch.setenv("LLMREC_DATA", str(tmp_path / "nowhere"))
    assert main(["evaluate", "--encoder", "none"]) == 2
    assert "llmrec data fetch movielens-100k" in capsys.readouterr().err
    for bad in ("1.5", "x"):
        with pytest.raises(SystemExit):
            main(["evaluate", "--diversity", "0", bad])
        assert "--diversity" in capsys.readouterr().err


def _parsers(parser: argparse.ArgumentParser, path: str = "llmrec"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_has_help_and_no_raw_markup():
    parsers = list(_parsers(build_parser()))
    assert {"llmrec data fetch", "llmrec evaluate", "llmrec demo"} <= {p for p, _ in parsers}
    for path, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest}: no help text"
                continue
            assert action.help and action.help.strip(), f"{path} {action.option_strings or action.dest}: no help"
        text = parser.format_help()
        for markup in ("``", ":func:", ":mod:", ":class:", ":meth:", "%(", "\\", "<", "*"):
            assert markup not in text, f"{path} --help shows {markup!r}"


def test_version(capsys):
    import llmrec

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmrec {llmrec.__version__}"
