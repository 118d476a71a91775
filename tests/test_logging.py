"""Logging under the logger ``llmrec``: the library adds only a NullHandler; fit, encode
and load stages are INFO records with sizes and seconds; transformers' load bar and
messages are hidden unless show_progress=True, and its settings are restored."""

from __future__ import annotations

import importlib.util
import logging
import re

import pytest

import llmrec
from llmrec import Recommender
from recommender_helpers import small_data

STAGE = re.compile(r"\d+\.\d\d s$")


def test_only_a_null_handler():
    import llmrec.datasets  # noqa: F401  (modules that log, imported)
    import llmrec.recommender.model  # noqa: F401

    root = logging.getLogger("llmrec")
    assert root.handlers and all(isinstance(h, logging.NullHandler) for h in root.handlers)
    for name, logger in logging.Logger.manager.loggerDict.items():
        if name.startswith("llmrec.") and isinstance(logger, logging.Logger):
            assert logger.handlers == [], f"{name} has handlers {logger.handlers}"


def test_fit_save_load_stages_are_logged(caplog, tmp_path):
    interactions, items, _ = small_data(60, 80, seed=1)
    with caplog.at_level(logging.INFO, logger="llmrec"):
        model = Recommender(encoder=None, random_state=0, factors=4, iterations=2).fit(interactions)
        model.save(tmp_path / "m")
        Recommender.load(tmp_path / "m")
    by_logger = {}
    for record in caplog.records:
        by_logger.setdefault(record.name, []).append(record.getMessage())
    assert set(by_logger) >= {"llmrec.als", "llmrec.recommender.model", "llmrec.recommender.training",
                              "llmrec.recommender.persistence"}
    fit = [m for m in by_logger["llmrec.recommender.model"] if m.startswith("Recommender.fit: ")]
    n_users, n_items = interactions.user_id.nunique(), interactions.item_id.nunique()
    assert any(f"{n_users} users, {n_items} items, {len(interactions)} interactions" in m for m in fit)
    assert any("blend and regularization" in m for m in fit)
    assert any(m.startswith("ALS.fit: ") for m in by_logger["llmrec.als"])
    assert any(m.startswith("Recommender.load: ") for m in by_logger["llmrec.recommender.persistence"])
    # Every stage record ends with its seconds; the stage-1 index choice is a report, not a stage.
    assert all(STAGE.search(r.getMessage()) for r in caplog.records
               if r.name.startswith("llmrec") and not r.getMessage().startswith("stage-1 index"))
    assert any(r.getMessage().startswith("stage-1 index 'exact'") for r in caplog.records)


def test_nothing_is_printed_without_configuration(capfd):
    interactions, _, _ = small_data(40, 50, seed=2)
    Recommender(encoder=None, random_state=0, factors=4, iterations=2).fit(interactions)
    out, err = capfd.readouterr()
    assert "Recommender.fit" not in out + err and "ALS.fit" not in out + err


def test_load_movielens_is_logged(caplog, tmp_path):
    from llmrec.datasets import load_movielens

    directory = tmp_path / "ml"
    directory.mkdir()
    (directory / "ml.inter").write_text("user_id:token\titem_id:token\n1\t2\n3\t2\n")
    with caplog.at_level(logging.INFO, logger="llmrec"):
        load_movielens(directory)
    assert any(r.name == "llmrec.datasets" and "2 interactions, 1 items, 2 users" in r.getMessage()
               for r in caplog.records)


needs_text = pytest.mark.skipif(importlib.util.find_spec("torch") is None
                                or importlib.util.find_spec("transformers") is None,
                                reason="torch and transformers (llmrec[text]) are not installed")


@needs_text
def test_transformers_load_bar_only_when_asked(tmp_path, capfd, caplog):
    import transformers

    from llmrec.text import TextEncoder
    from llmrec.text.testing import save_tiny_bert

    path = str(save_tiny_bert(tmp_path / "bert"))
    capfd.readouterr()
    hf = transformers.utils.logging
    before = (hf.is_progress_bar_enabled(), hf.get_verbosity())
    with caplog.at_level(logging.DEBUG, logger="llmrec"):
        encoder = TextEncoder(path)
        assert "Loading weights" not in "".join(capfd.readouterr())
        assert (hf.is_progress_bar_enabled(), hf.get_verbosity()) == before  # restored
        assert any(r.getMessage().startswith("TextEncoder: loaded") for r in caplog.records)
        encoder.encode(["one text"])
        encoder.encode([f"text {i}" for i in range(300)])
    levels = [r.levelno for r in caplog.records if r.getMessage().startswith("TextEncoder.encode")]
    assert levels == [logging.DEBUG, logging.INFO]  # a request's text at DEBUG, a catalogue at INFO
    if before[0]:  # transformers shows bars in this process: asking for them shows them
        TextEncoder(path, show_progress=True)
        assert "Loading weights" in "".join(capfd.readouterr())
    assert llmrec.__version__
