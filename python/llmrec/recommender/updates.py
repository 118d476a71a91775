"""Online updates of a fitted Recommender: new interactions (:func:`update`), new items
(:func:`add_items`), and the late items they teach (:func:`refresh_items`).

Each writer holds the model's writer lock and publishes a new snapshot (see
:mod:`.snapshot` for what is copied and what is written in place); removals and
erasures are in :mod:`.catalogue`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec import _core
from llmrec._arrays import appended, grow_rows
from llmrec._checks import plain
from llmrec.recommender import catalogue, scoring
from llmrec.recommender import feedback as fb
from llmrec.recommender.history import weighted_rows
from llmrec.recommender.ids import IdMap, check_known
from llmrec.recommender.inputs import item_texts
from llmrec.recommender.late_items import mark_fresh, solve_late_factors
from llmrec.recommender.rows import Int8Rows, inverse_norms
from llmrec.recommender.snapshot import Snapshot, fork, with_rows, write_rows
from llmrec.recommender.towers_signal import new_item_vectors
from llmrec.recommender.users import signal_vectors

if TYPE_CHECKING:
    import pandas as pd

    from llmrec.recommender.model import Recommender
    from llmrec.recommender.state import Fitted

# How long an update that re-solves items waits for the running requests to finish (new
# ones held back) so as to write the rows in place; past it, it copies the item matrices
# (tens of ms and MB per update at 100k items, what a server under load would pay on
# every update).
IN_PLACE_WAIT_S = 0.05


def update(model: Recommender, user_id: Any, item_ids: Any, weights: Any, event: Any, ratings: Any,
           profile: Any = None) -> None:
    """See :meth:`Recommender.update`."""
    model._check_fitted()
    new_profile = None if profile is None else model._profile_vector(profile)  # None: blank
    if np.ndim(user_id) != 0:
        raise TypeError("user_id must be a single id")
    rows = model._state.item_map.rows(list(np.atleast_1d(np.asarray(item_ids, dtype=object))), "item_ids")
    m, disliked, rated, events = fb.update_feedback(len(rows), model._state.settings,
                                                     model.event_weights_, weights, event, ratings)
    with model._lock:
        state = model._state
        snap = state.publisher.current
        check_known(rows, snap.n_items, state.item_map, "item_ids")
        new_user = not state.user_map.contains([user_id])[0]
        user = snap.n_users if new_user else int(state.user_map.rows([user_id], "user_id")[0])
        previous = state.histories.get(user)
        record = fb.Feedback.merged(state.feedback.get(user), {
            "items": rows, "weight": m.astype(np.float32), "disliked": disliked,
            "rating": rated.astype(np.float32),
            "event": np.array([state.feedback.code(e) for e in events], dtype=np.int32)})
        liked = ~record["disliked"]
        history, like_weights = record["items"][liked], record["weight"][liked]
        dislikes = (record["items"][~liked], record["weight"][~liked])
        touched = state.late_items.record(user, rows[~disliked], previous)
        if len(touched):  # removed items are not re-solved
            touched = touched[catalogue.drop_removed(touched, snap.removed) >= 0]
        patch = refresh_items(state, touched, snap, {user: history}) if len(touched) else None
        if patch is not None:  # stage 1 searches their new rows from now on
            snap.items.index.update_behaviour(patch["rows"], patch["V"], patch["Q"])
        users, n_users = snap.users, max(snap.n_users, user + 1)
        if n_users > snap.n_users:  # room first (past every published row): no reader sees it
            users = {name: _grown_rows(v, n_users) for name, v in users.items()}
        stored = state.profile
        if stored is None and profile is not None:  # the first profile of a model without any
            stored = np.zeros((0, snap.items.E.shape[1]), dtype=np.float32)
        if stored is not None:  # profiles are read by writers only: written in place
            stored = grow_rows(stored, n_users)
            if profile is not None:  # the given profile, a zero row for a blank one
                stored[user] = 0.0 if new_profile is None else new_profile[0]
            if stored is not state.profile:
                state = model._state = replace(state, profile=stored)
        profile_row = None if state.profile is None else state.profile[[user]]
        fresh = signal_vectors(state.settings, snap.items, snap.als, snap.towers, [history], profile_row, patch,
                               weights=[like_weights], dislikes=[dislikes])
        if new_user:
            added = int(state.user_map.add([user_id], "user_id")[0])
            assert added == user, "the user map and the published users disagree"

        def publish(items: scoring.Items, als: Any = snap.als) -> None:  # under the publish lock
            state.histories.set(user, history)
            state.feedback.set(user, record)
            mark_fresh(items, state.late_items, touched)  # clicked: no longer shifted as new
            for name, v in fresh.items():
                rows = users[name]
                if v is not None and rows is not None:
                    rows[user] = v[0]
            state.publisher.current = snap._replace(items=items, als=als, users=users, n_users=n_users)

        # The served factors V are the ALS model's item factors (one array): re-solved
        # rows are its rows too, its Gramian kept current (ALS.set_item_rows).
        with state.publisher.lock:
            # A few rows change: rather than copy whole item matrices under load, let
            # the running requests finish (a request's time, new ones held back meanwhile).
            if patch is None or state.publisher.drain(IN_PLACE_WAIT_S):
                if patch is not None:  # no request is reading any item row: in place
                    snap.als.set_item_rows(patch["rows"], patch["V"], into=snap.items.V)
                    write_rows(snap.items, patch)
                publish(snap.items)
                return
        items = with_rows(snap.items, patch)  # requests still running keep the old rows
        als = fork(snap.als).set_item_rows(patch["rows"], patch["V"], into=items.V)
        with state.publisher.lock:
            publish(items, als)


def refresh_items(state: Fitted, rows: np.ndarray, snap: Snapshot,
                  pending: dict[int, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Re-solve late items (see :class:`.late_items.LateItems`): their factors from the
    clicks they received since the fit, against those users' ALS vectors (a plain
    fold-in for users who arrived after the fit), shrunk toward the text prior; their
    next-item factors from what their clickers took just before and after them.
    Returns the new rows (nothing is written: :func:`update` publishes them);
    ``pending``: histories of this update, not yet published."""
    clicks, users = state.late_items.interactions(rows)
    als, items = snap.als, snap.items
    vectors = np.empty((len(users), als.item_factors_.shape[1]), dtype=np.float32)
    fitted = users < als.n_users_
    vectors[fitted] = als.user_factors_[users[fitted]]
    if not fitted.all():
        later = weighted_rows([pending.get(int(u), state.histories.get(u)) for u in users[~fitted]],
                              len(items.V), 0.0)
        vectors[~fitted] = als.fold_in(later)
    priors = np.zeros((len(rows), vectors.shape[1]), dtype=np.float32)
    if items.E is not None and state.text_prior is not None:
        priors = state.text_prior.factors(np.asarray(items.E[rows], dtype=np.float32))
    elif items.E is not None and als.item_prior_weights_ is not None:  # models saved before it
        priors = items.E[rows] @ als.item_prior_weights_
    V = solve_late_factors(clicks, vectors, priors, alpha=als.alpha,
                           shrinkage=als.regularization + als.prior_strength)
    # Next-item factors from what the clickers took just before ("to" side, against
    # the "from" factors) and just after ("from" side), as the transition fit does.
    before, after = state.late_items.transitions(rows, len(items.V))
    none = np.zeros((len(rows), items.Q.shape[1]), dtype=np.float32)
    Q = solve_late_factors(before, items.P, none, alpha=als.alpha,
                           shrinkage=als.regularization, gram=_gram(state, items, "P"))
    P = solve_late_factors(after, items.Q, none, alpha=als.alpha,
                           shrinkage=als.regularization, gram=_gram(state, items, "Q"))
    for name, new in (("P", P), ("Q", Q)):
        old = getattr(items, name)[rows].astype(np.float64)
        state.grams[name] += new.astype(np.float64).T @ new - old.T @ old
    # update() rewrites their stage-1 rows too (Stage1.update_behaviour).
    return {"rows": rows, "V": V, "inv_norm": inverse_norms(V, np.ones(len(V))), "P": P, "Q": Q}


def warm_grams(state: Fitted) -> None:
    """Compute the Gramians the first ``update`` needs (PᵀP and QᵀQ here, the ALS
    model's VᵀV): O(n·f²) each, about 2.4 s at 10M items, paid by a load rather than by
    the first write after it."""
    snap = state.publisher.current
    for name in ("P", "Q"):
        _gram(state, snap.items, name)
    snap.als._item_gram()


def _gram(state: Fitted, items: scoring.Items, name: str) -> np.ndarray:
    """PᵀP or QᵀQ over all items (float64; summed by the native Gramian, float32 within
    chunks of rows, float64 across them), computed once and kept current as late items'
    rows change (writers only)."""
    if name not in state.grams:  # native: no float64 copy of the rows (256 MB at 1M items)
        rows = np.ascontiguousarray(getattr(items, name), dtype=np.float32)
        state.grams[name] = _core.als_gramian(rows, state.settings["num_threads"]).astype(np.float64)
    return state.grams[name]


def add_items(model: Recommender, items: pd.DataFrame) -> np.ndarray:
    """See :meth:`Recommender.add_items`."""
    model._check_fitted()
    ids, texts = item_texts(items)
    _check_new_items(model._state.item_map, ids)
    has_text = model._state.publisher.current.items.E is not None  # fixed at fit
    E_new = model._encode(texts) if has_text else None  # outside the lock: it may be slow
    with model._lock:
        state = model._state
        _check_new_items(state.item_map, ids)
        snap = state.publisher.current
        current = snap.items
        rows = np.arange(snap.n_items, snap.n_items + len(ids))
        als = fork(snap.als)  # requests holding snap keep its ALS as it is
        if E_new is not None and state.text_prior is None and als.item_prior_weights_ is not None:
            als.partial_fit_items(rows, item_features=E_new)  # models saved before the kernel prior
        else:
            als.partial_fit_items(rows)
            if E_new is not None and state.text_prior is not None:
                als.set_item_rows(rows, state.text_prior.factors(E_new))
        V_new = np.ascontiguousarray(als.item_factors_[rows], dtype=np.float32)
        T_new = scoring.text_coordinates(E_new, state.geometry)
        no_transitions = np.zeros((len(ids), current.Q.shape[1]), dtype=np.float32)
        index = current.index.added(V_new, T_new, E_new, no_transitions)
        new_rows = {"V": V_new, "inv_norm": np.zeros(len(ids), dtype=np.float32), "E": E_new,
                    "P": no_transitions, "Q": no_transitions}
        towers = snap.towers
        if towers is not None:  # text-only tower vectors (zero without text), at once
            towers, new_rows["G"] = new_item_vectors(
                towers, E_new, len(ids), model._towers_text(texts) if has_text else None)
        shared = index.text_vectors() if isinstance(current.E, np.ndarray) else None
        grown = {name: (shared if name == "E" and shared is not None
                        else _append_item_rows(getattr(current, name), rows_))
                 for name, rows_ in new_rows.items() if name != "V"}
        grown["V"] = als.item_factors_  # grown by partial_fit_items: one array (see update)
        # New items have no interactions (zero inverse norm): not warm.
        # Appended in spare capacity, as the matrices: a copy of O(catalogue) per call
        # was most of add_items(1) at 300k items.
        warm = _append_item_rows(current.warm, np.zeros(len(ids), dtype=np.uint8))
        kernel = state.cold_kernel
        if current.Z is not None and kernel is not None:  # the cold signal's rows of the new items
            grown["Z"] = current.Z.appended(None if E_new is None else kernel.rows(E_new, texts), len(ids))
        labels = snap.labels
        if labels is not None:
            frame = items if hasattr(items, "columns") else None
            titles = frame["title"] if frame is not None and "title" in frame.columns else texts
            labels = labels.appended(titles)
        state.late_items.add(rows)
        state.item_map.add(ids, "items.item_id")  # found before published: unknown until then
        state.publisher.publish(snap._replace(items=scoring.make_items(index=index, warm=warm, **grown),
                                              als=als, labels=labels, towers=towers))
    return state.item_map.to_ids(rows)


def _check_new_items(item_map: IdMap, ids: Any) -> None:
    known = item_map.contains(ids)
    if known.any():
        raise ValueError(f"item id {plain(ids[np.flatnonzero(known)[0]])!r} already exists")


def _grown_rows(current: Any, n_rows: int) -> Any:
    """``current`` (an array, :class:`.rows.Int8Rows` or None) with zero rows up to
    ``n_rows``, in spare capacity (see :func:`grow_rows`)."""
    if current is None:
        return None
    if isinstance(current, Int8Rows):
        return current.grown(n_rows)
    return grow_rows(current, n_rows)


def _append_item_rows(current: Any, rows: Any) -> Any:
    """``current`` (an array, :class:`.rows.Int8Rows` or None) with ``rows`` appended,
    in spare capacity when there is some (see :func:`grow_rows`); earlier snapshots keep
    seeing their own rows only."""
    if current is None:
        return None
    if isinstance(current, Int8Rows):
        return current.appended(rows)
    return appended(current, rows)
