"""The serving towers are trained again when their early stop left them far below the
validation towers the blend weight was fitted on (towers_signal.fit_serving_towers)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from llmrec.recommender import towers_signal
from llmrec.recommender.towers_signal import COLLAPSE_RATIO, fit_serving_towers


def _stub(monkeypatch, scores):
    """fit_towers replaced by a recorder whose k-th fit reports held-out ndcg scores[k]."""
    calls = []

    def fake(params, histories, n_items, E, **fit_args):
        calls.append(dict(params))
        return SimpleNamespace(validation_ndcg_=scores[len(calls) - 1], best_epoch_=len(calls))

    monkeypatch.setattr(towers_signal, "fit_towers", fake)
    return calls


@pytest.mark.parametrize("share", [0.1, COLLAPSE_RATIO - 0.01])
def test_a_collapsed_serving_fit_is_trained_again_for_the_reference_epochs(monkeypatch, share):
    calls = _stub(monkeypatch, [share * 0.12, math.nan])
    towers, refit = fit_serving_towers({"epochs": "auto", "validation": 0.3, "dim": 8}, [np.arange(3)], 5,
                                       None, (30, 0.12))
    assert refit and len(calls) == 2
    assert calls[1] == {"epochs": 31, "validation": 0.0, "dim": 8}  # the reference's count, no early stop
    assert towers.best_epoch_ == 2  # the second fit is the one served


@pytest.mark.parametrize("reference, score, params", [
    ((30, 0.12), COLLAPSE_RATIO * 0.12 + 1e-6, {"epochs": "auto"}),  # normal: at or above the ratio
    ((30, 0.12), 0.2, {"epochs": "auto"}),
    (None, 0.001, {"epochs": "auto"}),                               # no reference (sampled grid, no validation)
    ((30, math.nan), 0.001, {"epochs": "auto"}),                     # the reference has no held-out score
    ((30, 0.12), math.nan, {"epochs": "auto"}),                      # neither has the serving fit
    ((30, 0.12), 0.001, {"epochs": 5}),                              # epochs given by the user: kept
    ((30, 0.12), 0.001, {}),                                         # "auto" by default: refit
])
def test_other_serving_fits_are_kept(monkeypatch, reference, score, params):
    calls = _stub(monkeypatch, [score, score])
    _, refit = fit_serving_towers(params, [np.arange(3)], 5, None, reference)
    expected = not params and reference is not None
    assert refit is expected and len(calls) == 1 + expected


def test_recommender_refits_collapsed_towers(monkeypatch):
    """In a fit: the serving towers that stop on a dip are replaced by towers trained on
    every history for the validation towers' best epoch count; the report says so."""
    pytest.importorskip("torch")
    from llmrec import Recommender
    from recommender_helpers import WordEncoder, small_data

    interactions, items, _ = small_data()
    real = towers_signal.fit_towers
    fits = []

    def collapsing(params, histories, n_items, E, **fit_args):
        towers = real(params, histories, n_items, E, **fit_args)
        fits.append((dict(params), towers))
        if len(fits) == 1:  # the first serving fit: as if it had stopped on a dip
            towers.validation_ndcg_ = 0.0
        return towers

    monkeypatch.setattr(towers_signal, "fit_towers", collapsing)
    spec = {"dim": 8, "layers": 1, "max_history": 10, "num_threads": 1, "patience": 1}
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, regularization=10.0,
                      towers=spec).fit(interactions, items=items)
    report = rec.validation_
    assert report["towers_refit"] is True and len(fits) == 2
    assert fits[1][0]["validation"] == 0.0 and fits[1][0]["epochs"] == report["towers_best_epoch"] + 1
    served = rec._publisher.current.towers
    assert served is fits[1][1] and len(served.history_) == report["towers_best_epoch"] + 1


def test_recommender_keeps_serving_towers_that_train_normally():
    pytest.importorskip("torch")
    from llmrec import Recommender
    from recommender_helpers import WordEncoder, small_data

    interactions, items, _ = small_data()
    spec = {"dim": 16, "layers": 1, "max_history": 10, "num_threads": 1, "patience": 3}
    rec = Recommender(encoder=WordEncoder(), random_state=0, num_threads=1, regularization=10.0,
                      towers=spec).fit(interactions, items=items)
    served = rec._publisher.current.towers
    assert rec.validation_["towers_refit"] is False
    assert served.validation_ndcg_ >= COLLAPSE_RATIO * rec.validation_["towers_validation_ndcg"]
    assert rec.validation_["towers_validation_ndcg"] > 0
