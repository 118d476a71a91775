"""Early stopping of the towers (towers.training.Plateau): it reads the mean held-out
score of the latest epochs, so an early spike does not stop a curve that still climbs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from llmrec.towers.training import Plateau  # noqa: E402


def _stop_epoch(curve, span=5, patience=10):
    """The number of epochs run on ``curve`` before the rule stops (len(curve) if never)."""
    rule = Plateau(span, patience)
    for epoch, value in enumerate(curve):
        rule.update(value)
        if rule.reached():
            return epoch + 1
    return len(curve)


def _reference_stop(curve, span, patience):
    """The rule written out: stop after epoch e when the best trailing mean (window of
    up to ``span`` epochs) was last raised ``patience`` or more epochs before e."""
    means = [float(np.mean(curve[max(0, e - span + 1):e + 1])) for e in range(len(curve))]
    for e in range(len(curve)):
        last_raise = max(j for j in range(e + 1) if means[j] > max(means[:j], default=-np.inf))
        if e - last_raise >= patience:
            return e + 1
    return len(curve)


def test_an_early_spike_does_not_stop_a_climbing_curve():
    rng = np.random.default_rng(0)
    climb = np.linspace(0.06, 0.11, 60) + rng.normal(0, 0.002, 60)
    curve = climb.copy()
    curve[4] = 0.09  # above everything for the next 30 epochs
    raw_stop = next(e + 1 for e in range(len(curve)) if e - int(np.argmax(curve[:e + 1])) >= 10)
    assert raw_stop == 15  # stopping on the raw best would end here
    assert _stop_epoch(curve) == len(curve)


@pytest.mark.parametrize("seed", range(20))
def test_the_rule_matches_its_reference_on_random_curves(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    curve = np.cumsum(rng.normal(0, 0.01, n)) + rng.normal(0, 0.02, n)
    span, patience = int(rng.integers(1, 7)), int(rng.integers(1, 12))
    assert _stop_epoch(curve, span, patience) == _reference_stop(curve, span, patience)


def test_a_falling_curve_stops_after_patience():
    assert _stop_epoch(np.linspace(0.1, 0.0, 100), patience=10) == 11


def test_restart_forgets_the_curve():
    rule = Plateau(3, 2)
    for value in (0.5, 0.1, 0.1):
        rule.update(value)
    assert rule.reached()
    rule.restart()
    rule.update(0.01)
    assert rule.stale == 0 and rule.best == pytest.approx(0.01) and not rule.reached()


def test_towers_fit_stops_where_the_rule_says(monkeypatch):
    """The training loop stops on the rule: a scripted curve with an early spike runs on."""
    from llmrec.towers import SequenceTowers
    import llmrec.towers.training as training

    curve = [0.05, 0.2, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.1, 0.09,
             0.08, 0.07, 0.06, 0.05, 0.04, 0.03]
    values = iter(curve + [0.0] * 10)
    monkeypatch.setattr(training, "validation_ndcg", lambda net, data: next(values))
    rng = np.random.default_rng(1)
    histories = [rng.integers(0, 30, size=int(rng.integers(4, 12))) for _ in range(40)]
    model = SequenceTowers(dim=8, layers=1, max_history=8, patience=3, num_threads=1, text=None,
                           average=0.0, average_epochs=0).fit(histories, n_items=30, encoder=None,
                                                            validation=0.3)
    assert len(model.history_) == _stop_epoch(curve, patience=3) > 4  # the raw best (epoch 1) stops at 4
    assert model.best_epoch_ == 1  # the epoch kept is still the single best
