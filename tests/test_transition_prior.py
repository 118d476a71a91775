"""The next-item factors' text prior (:func:`llmrec.recommender.training.fit_transitions`
with ``E``): off without text or priors, the text's guess for items without pairs, and
a sparse item pulled toward what its text says."""

from __future__ import annotations

import numpy as np

from llmrec.recommender.training import fit_transitions

SETTINGS = {"factors": 16, "alpha": 2.0, "iterations": 10, "prior_strength": 1.0, "num_threads": 1}


def _histories(rng: np.random.Generator, n_items: int, n_users: int = 120) -> list[np.ndarray]:
    """Users walking through one of four item groups (0..n_items-2 by residue), so each
    group's items follow one another; the last item is never taken."""
    out = []
    for _ in range(n_users):
        group = rng.integers(4)
        pool = np.arange(group, n_items - 1, 4)
        out.append(rng.choice(pool, size=min(len(pool), 8), replace=False))
    return out


def _text(rng: np.random.Generator, n_items: int, dim: int = 24) -> np.ndarray:
    """Text vectors that say each item's group (plus noise)."""
    centres = rng.normal(size=(4, dim))
    E = centres[np.arange(n_items) % 4] + 0.2 * rng.normal(size=(n_items, dim))
    return (E / np.linalg.norm(E, axis=1, keepdims=True)).astype(np.float32)


def test_off_without_text_or_prior():
    rng = np.random.default_rng(0)
    histories, E = _histories(rng, 41), _text(rng, 41)
    plain = fit_transitions(SETTINGS, 5.0, histories, 41, 0)
    no_prior = fit_transitions(dict(SETTINGS, prior_strength=0.0), 5.0, histories, 41, 0, E)
    for a, b in zip(plain, no_prior):
        np.testing.assert_array_equal(a, b)
    with_prior = fit_transitions(SETTINGS, 5.0, histories, 41, 0, E)
    assert not np.allclose(plain[1], with_prior[1])  # the prior does something


def test_items_without_pairs_get_the_texts_guess():
    """Without text an item never taken has zero rows; with text, rows that depend on
    its text alone (two such items with the same text get the same rows)."""
    rng = np.random.default_rng(1)
    n_items = 42
    histories, E = _histories(rng, n_items - 1), _text(rng, n_items)
    E[41] = E[40]
    taken = np.unique(np.concatenate(histories))
    assert 40 not in taken and 41 not in taken
    P, Q = fit_transitions(SETTINGS, 5.0, histories, n_items, 0)
    assert not P[40:].any() and not Q[40:].any()
    P, Q = fit_transitions(SETTINGS, 5.0, histories, n_items, 0, E)
    assert np.abs(Q[40]).sum() > 0 and np.abs(P[40]).sum() > 0
    np.testing.assert_allclose(P[40], P[41], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(Q[40], Q[41], rtol=1e-5, atol=1e-7)
    assert np.abs(Q[taken]).sum(axis=1).min() > 0
    assert P.dtype == Q.dtype == np.float32 and P.flags.c_contiguous and Q.flags.c_contiguous


def test_sparse_item_pulled_toward_its_text():
    """An item taken once, after a group-1 item, whose text says group 0: with the text
    prior, group-0 items lead to it more (P·Q) relative to group-1 items than without,
    the more so the stronger the prior; a strong one outweighs the single pair."""
    rng = np.random.default_rng(2)
    n_items = 41
    histories, E = _histories(rng, n_items), _text(rng, n_items)
    rare = 40
    E[rare] = E[0]
    histories.append(np.array([1, 5, 9, rare]))

    def lean_to_group_0(strength: float) -> float:
        P, Q = fit_transitions(dict(SETTINGS, prior_strength=strength), 5.0, histories, n_items, 0, E)
        scores = P[: n_items - 1].astype(np.float64) @ Q[rare].astype(np.float64)
        groups = np.arange(n_items - 1) % 4
        return float(scores[groups == 0].mean() - scores[groups == 1].mean())

    leans = [lean_to_group_0(strength) for strength in (0.0, 1.0, 3.0, 10.0)]
    assert leans[0] < 0  # the one observed pair says group 1
    assert all(a < b for a, b in zip(leans, leans[1:])), leans
    assert leans[-1] > 0, leans
