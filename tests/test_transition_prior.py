"""The next-item factors' text prior (:func:`llmrec.recommender.training.fit_transitions`
with ``E``): off without text or priors, the text's guess for items without pairs, and
a sparse item pulled toward what its text says; in the Recommender, items added later
get the same guess, their clicks shrink toward it, and the maps are saved."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec import Recommender
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.recommender.training import fit_transitions
from recommender_helpers import WordEncoder, assert_crafted_arrays_refused, small_data
from tolerances import UNIT64, assert_within, dot_tolerance, gamma, solve_tolerance

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
    np.testing.assert_array_equal(plain.P, no_prior.P)
    np.testing.assert_array_equal(plain.Q, no_prior.Q)
    assert plain.text_maps is None and no_prior.text_maps is None
    with_prior = fit_transitions(SETTINGS, 5.0, histories, 41, 0, E)
    assert not np.allclose(plain.Q, with_prior.Q)  # the prior does something
    assert [W.shape for W in with_prior.text_maps] == [(24, 8), (24, 8)]


def test_items_without_pairs_get_the_texts_guess():
    """Without text an item never taken has zero rows; with text, rows that depend on
    its text alone (two such items with the same text get the same rows)."""
    rng = np.random.default_rng(1)
    n_items = 42
    histories, E = _histories(rng, n_items - 1), _text(rng, n_items)
    E[41] = E[40]
    taken = np.unique(np.concatenate(histories))
    assert 40 not in taken and 41 not in taken
    P, Q, _ = fit_transitions(SETTINGS, 5.0, histories, n_items, 0)
    assert not P[40:].any() and not Q[40:].any()
    P, Q, (W_from, W_to) = fit_transitions(SETTINGS, 5.0, histories, n_items, 0, E)
    assert np.abs(Q[40]).sum() > 0 and np.abs(P[40]).sum() > 0
    # exactly the maps' guess (float64 reference of the float32 product)
    for rows, W in ((P, W_from), (Q, W_to)):
        assert_within(rows[40:], E[40:].astype(np.float64) @ W.astype(np.float64), dot_tolerance(E[40:], W))
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
        P, Q, _ = fit_transitions(dict(SETTINGS, prior_strength=strength), 5.0, histories, n_items, 0, E)
        scores = P[: n_items - 1].astype(np.float64) @ Q[rare].astype(np.float64)
        groups = np.arange(n_items - 1) % 4
        return float(scores[groups == 0].mean() - scores[groups == 1].mean())

    leans = [lean_to_group_0(strength) for strength in (0.0, 1.0, 3.0, 10.0)]
    assert leans[0] < 0  # the one observed pair says group 1
    assert all(a < b for a, b in zip(leans, leans[1:])), leans
    assert leans[-1] > 0, leans


# --- in the Recommender: items that come after the fit ---------------------------------

UNSEEN_TEXT = "quiet harbour words"


@pytest.fixture(scope="module")
def fitted():
    """A text model whose catalogue holds an item nobody took (text ``UNSEEN_TEXT``)."""
    interactions, items, _ = small_data(120, 150, seed=3)
    items = pd.concat([items, pd.DataFrame({"item_id": [10_001], "text": [UNSEEN_TEXT]})], ignore_index=True)
    return Recommender(encoder=WordEncoder(), random_state=0, factors=8, iterations=3, validation=0.0,
                       regularization=10.0).fit(interactions, items=items)


def _copy(rec, tmp_path, name="m"):
    rec.save(tmp_path / name)
    return Recommender.load(tmp_path / name, encoder=WordEncoder())


def _guess_reference(rec, row):
    """float64 E·W of ``row`` for (P, Q), and the float32 product's bound."""
    E = np.asarray(rec._items.E[[row]], dtype=np.float32)
    return [(E.astype(np.float64) @ W.astype(np.float64), dot_tolerance(E, W)) for W in rec._state.transition_maps]


def test_an_item_added_later_gets_the_rows_of_an_item_fitted_without_pairs(fitted, tmp_path):
    rec = _copy(fitted, tmp_path)
    unseen = rec._item_map.rows([10_001], "i")[0]
    gram_P = rec._state.grams["P"].copy()
    rec.add_items(pd.DataFrame({"item_id": [20_001], "text": [UNSEEN_TEXT]}))
    added = rec._item_map.rows([20_001], "i")[0]
    np.testing.assert_array_equal(rec._items.E[added], rec._items.E[unseen])
    for rows, (guess, bound) in zip((rec._items.P, rec._items.Q), _guess_reference(rec, added)):
        assert np.abs(guess).sum() > 0
        assert_within(rows[added], guess[0], bound[0])  # what add_items wrote
        assert_within(rows[unseen], guess[0], bound[0])  # what the fit gave the same text
    # stage 1's behaviour channel holds the new "to" row too, and the Gramian the late
    # items' solves read follows the new rows (float64 sums of float32 products)
    P = rec._items.P[added].astype(np.float64)
    assert_within(rec._state.grams["P"], gram_P + np.outer(P, P), gamma(4, UNIT64) * (np.abs(gram_P) + P @ P))


def test_a_clicked_late_item_is_shrunk_toward_its_text_guess(fitted, tmp_path):
    """A new item clicked after other items: its "to" side Q is the implicit ALS step
    against the "from" factors, shrunk toward E·W_to (float64 reference); its "from" side,
    with nothing taken after it yet, is exactly its guess."""
    rec = _copy(fitted, tmp_path)
    rec.add_items(pd.DataFrame({"item_id": [20_001], "text": [UNSEEN_TEXT]}))
    row = rec._item_map.rows([20_001], "i")[0]
    guess_P = rec._items.P[row].copy()
    for user in rec._user_map.ids[:6]:
        rec.update(user, [20_001])
    np.testing.assert_array_equal(rec._items.P[row], guess_P)
    items, als = rec._items, rec._als
    before, _ = rec._late_items.transitions(np.array([row]), len(items.V))
    assert before.nnz >= 6
    Y = items.P[before.indices].astype(np.float64)
    c = 1.0 + als.alpha * before.data.astype(np.float64)
    P_all = items.P[:len(items.V)].astype(np.float64)
    mu = als.regularization + als.prior_strength
    (_, _), (guess_Q, guess_bound) = _guess_reference(rec, row)
    A = P_all.T @ P_all + (Y.T * (c - 1.0)) @ Y + mu * np.eye(Y.shape[1])
    b = c @ Y + mu * guess_Q[0]
    x = np.linalg.solve(A, b)
    aP, aY = np.abs(P_all), np.abs(Y)
    # the kept Gramian: float32 products summed over the catalogue; the rest float64
    dA = gamma(len(P_all)) * aP.T @ aP + gamma(len(c) + 3, UNIT64) * ((aY.T * c) @ aY + mu)
    db = gamma(len(c) + 2, UNIT64) * (c @ aY + mu * np.abs(guess_Q[0])) + mu * guess_bound[0]
    assert_within(items.Q[row], x, solve_tolerance(A, x, dA, db))
    assert not np.allclose(items.Q[row], guess_Q[0], atol=1e-3)  # the clicks moved it


def test_the_maps_are_saved_and_older_files_load_without_them(fitted, tmp_path):
    back = _copy(fitted, tmp_path)
    for a, b in zip(back._state.transition_maps, fitted._state.transition_maps):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "m" / "recommender.llmrec"
    meta, arrays, version = load_arrays(path, "Recommender", max_kind_version=12)
    assert version == 12 and {"transition_map_from", "transition_map_to"} <= set(arrays)
    save_arrays(path, "Recommender", 11, meta, {n: np.array(a) for n, a in arrays.items()
                                                if not n.startswith("transition_map_")})
    old = Recommender.load(tmp_path / "m", encoder=WordEncoder())
    assert old._state.transition_maps is None
    old.add_items(pd.DataFrame({"item_id": [20_001], "text": [UNSEEN_TEXT]}))
    row = old._item_map.rows([20_001], "i")[0]
    assert not old._items.P[row].any() and not old._items.Q[row].any()  # as version 11 did
    old.update(old._user_map.ids[0], [20_001])
    assert np.isfinite(old._items.Q[row]).all()


@pytest.mark.parametrize("craft, match", [
    (lambda a: a.pop("transition_map_to"), "saved together"),
    (lambda a: a.update(transition_map_from=a["transition_map_from"][:, :-1]), "transition_map_from"),
    (lambda a: a.update(transition_map_to=np.full_like(a["transition_map_to"], np.nan)), "transition_map_to"),
    (lambda a: a.update(transition_map_to=np.full_like(a["transition_map_to"], 1e9)), "beyond"),
    (lambda a: a.update(transition_map_from=a["transition_map_from"].astype(np.float64)), "transition_map_from"),
])
def test_damaged_maps_are_refused(fitted, tmp_path, craft, match):
    fitted.save(tmp_path / "m")
    assert_crafted_arrays_refused(tmp_path / "m", tmp_path, craft, match=match)


def test_a_model_without_text_priors_keeps_no_maps(tmp_path):
    interactions, items, _ = small_data(80, 100, seed=4)
    for rec in (Recommender(encoder=None, random_state=0, factors=8, iterations=2, validation=0.0,
                            regularization=10.0).fit(interactions, items=items),
                Recommender(encoder=WordEncoder(), random_state=0, factors=8, iterations=2, validation=0.0,
                            regularization=10.0, prior_strength=0.0).fit(interactions, items=items)):
        assert rec._state.transition_maps is None
        rec.save(tmp_path / "m")
        arrays = load_arrays(tmp_path / "m" / "recommender.llmrec", "Recommender", max_kind_version=12)[1]
        assert not any(n.startswith("transition_map_") for n in arrays)
