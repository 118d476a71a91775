"""A living catalogue: items taken out and users forgotten while the model serves.

* :func:`remove_items` — the items are unknown from the next call on: stage 1 skips
  them inside its native scans (``index.remove``), the full-catalogue path and every
  candidate list mask them (``Snapshot.removed``), and their ids raise
  :class:`~llmrec.UnknownIdError` wherever an item id is taken (``allow``,
  ``similar_items``, ``explain``, ``update``, ``recommend_for_history``). Histories keep
  them (a removed item is still evidence of taste) but ``explain`` never cites one.
  Their rows stay stored until :func:`compact` (the stage-1 indexes) or the next fit.
* :func:`forget_user` — the user's history, signal vectors, profile text vector, ALS
  factors and interactions, tower vector and id are erased in one published step, and
  the late items they clicked get their click counts again from their other clickers'
  histories; a model saved afterwards holds no trace of them (the id is overwritten, not
  only unindexed). With no request running (they are held back a moment, as ``update``
  does), everything is overwritten where it is stored: O(the user's data) plus one move
  of the ALS interactions after theirs (1M items: 1–3 s with copies → ~10 ms); else
  the erased arrays are copies the running requests do not see.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from llmrec._arrays import grow_rows, marked
from llmrec.exceptions import UnknownIdError
from llmrec.recommender.history import TRANSITION_WINDOW, Histories
from llmrec.recommender.late_items import LateItems, mark_fresh
from llmrec.recommender.snapshot import fork
from llmrec.recommender.updates import IN_PLACE_WAIT_S


def removed_mask(snap: Any, n_items: int) -> np.ndarray | None:
    """uint8 per item row of ``snap`` (1 = removed), or None when nothing is removed."""
    removed = snap.removed
    if removed is None:
        return None
    if len(removed) >= n_items:
        return removed[:n_items]
    out = np.zeros(n_items, dtype=np.uint8)
    out[:len(removed)] = removed
    return out


def drop_removed(candidates: np.ndarray, removed: np.ndarray | None) -> np.ndarray:
    """``candidates`` (rows, -1 = none) with removed rows set to -1. ``removed`` may be
    shorter than the catalogue (a snapshot's mask from before items were added: rows past
    it are not removed), so requests never build an O(catalogue) mask."""
    if removed is None:
        return candidates
    hit = (candidates >= 0) & (candidates < len(removed))
    hit[hit] = removed[candidates[hit]] != 0
    return np.where(hit, -1, candidates)


def _ids_list(ids: Any) -> list[Any]:
    return list(np.atleast_1d(np.asarray(ids, dtype=object)))


def remove_items(model: Any, item_ids: Any) -> None:
    """See :meth:`Recommender.remove_items`."""
    model._check_fitted()
    values = _ids_list(item_ids)
    with model._lock:
        state = model._state
        snap = state.publisher.current
        rows = state.item_map.rows(values, "item_ids")
        if len(np.unique(rows)) != len(rows):
            raise ValueError("item_ids names an item more than once")
        if len(rows) == 0:
            return
        snap.items.index.remove(rows)  # stage 1 (shared with pinned snapshots): skipped in the scan
        state.item_map.forget(rows)
        _publish_removed(state.publisher, snap, rows)


def _publish_removed(publisher: Any, snap: Any, rows: np.ndarray) -> None:
    """Publish ``snap`` with ``rows`` marked removed: in place in its mask when no
    request is running (O(rows); the mask grows in spare capacity), else in a copy that
    the running requests do not see (O(catalogue), as ``update`` copies item rows)."""
    mask = snap.removed
    with publisher.lock:
        if mask is not None and publisher.drain(IN_PLACE_WAIT_S):
            mask = grow_rows(mask, snap.n_items)
            mask[rows] = 1
            publisher.current = snap._replace(removed=mask)
            return
    removed = marked(mask, snap.n_items, rows)
    with publisher.lock:
        publisher.current = snap._replace(removed=removed)


def forget_user(model: Any, user_id: Any) -> None:
    """See :meth:`Recommender.forget_user`."""
    model._check_fitted()
    if np.ndim(user_id) != 0:
        raise TypeError("user_id must be a single id")
    with model._lock:
        state = model._state
        snap = state.publisher.current
        row = int(state.user_map.rows([user_id], "user_id")[0])
        if row >= snap.n_users:
            raise UnknownIdError(f"unknown user id {user_id!r} in user_id", user_id)
        history = state.histories.get(row).copy()
        with state.publisher.lock:
            # Requests copy user rows under this lock but keep views of the stored
            # histories: once none runs, everything of the user is overwritten where it
            # is stored, O(their data) instead of copies of every user's.
            in_place = _writable(state, snap) and state.publisher.drain(IN_PLACE_WAIT_S)
            if in_place:
                _erase_in_place(state, snap, row)
        if in_place:
            # Read by writers only (this lock): no request sees them change.
            if row < snap.als.n_users_:  # users who came after the fit have nothing there
                snap.als.forget_user(row, in_place=True)
            if state.late_items.forget(row, history, state.histories):
                mark_fresh(snap.items, state.late_items, history)
            else:
                _rebuild_late_items(model)
            return
        _forget_by_copies(model, snap, row)


def _writable(state: Any, snap: Any) -> bool:
    """Whether the user rows can be overwritten where they are stored (as ``update``
    writes them: arrays, or int8 rows that write their own arrays)."""
    arrays = [*snap.users.values(), state.profile]
    return all(not isinstance(a, np.ndarray) or a.flags.writeable for a in arrays)


def _erase_in_place(state: Any, snap: Any, row: int) -> None:
    """Zero the user's signal rows and profile, erase their history and feedback where
    they are stored, and erase their id (under the publish lock, no request running)."""
    for rows in snap.users.values():
        if rows is not None:
            rows[row] = 0
    if state.profile is not None:
        state.profile[row] = 0  # read by writers only
    state.histories.erase(row)  # before the feedback: they may share the items array
    state.feedback.erase(row)
    state.user_map.forget(np.array([row]), erase=True)


def _rebuild_late_items(model: Any) -> None:
    """The late items' click counts rebuilt from every remaining history."""
    model._state = replace(model._state, late_items=_late_items(model._state, *model._state.histories.arrays()))
    mark_fresh(model._state.publisher.current.items, model._state.late_items)


def _late_items(state: Any, indptr: np.ndarray, items: np.ndarray) -> LateItems:
    """The late items' click counts from the histories (``indptr``, ``items``)."""
    return LateItems.from_histories(state.late_items.late(),
                                    indptr, items, TRANSITION_WINDOW)


def _forget_by_copies(model: Any, snap: Any, row: int) -> None:
    """The erasure while requests run: new arrays (the running requests keep the old)."""
    state = model._state
    als = _forget_in_als(snap.als, row)
    users = {}
    for name, rows in snap.users.items():
        if rows is not None:
            rows = rows.copy()  # pinned requests keep the rows they read
            rows[row] = 0
        users[name] = rows
    indptr, items = state.histories.arrays()
    indptr, items = _without_row(indptr, items, row)
    late = _late_items(state, indptr, items)
    profile = state.profile
    if profile is not None:
        profile = profile.copy()
        profile[row] = 0
    record = state.feedback.get(row)
    with state.publisher.lock:
        state.feedback.set(row, {k: v[:0] for k, v in record.items()})  # ratings, events too
        state.user_map.forget(np.array([row]), erase=True)
        model._state = replace(state, histories=Histories(indptr, items), late_items=late, profile=profile)
        state.publisher.current = snap._replace(als=als, users=users)
        mark_fresh(snap.items, late)


def _forget_in_als(als: Any, row: int) -> Any:
    """A fork of ``als`` without the user's factors, prior and interactions (users who
    came after the fit have none there)."""
    twin = fork(als)
    return twin.forget_user(row) if row < twin.n_users_ else twin


def _without_row(indptr: np.ndarray, items: np.ndarray, row: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR histories with ``row``'s items taken out (the row stays, empty)."""
    if row >= len(indptr) - 1:
        return indptr, items
    start, stop = int(indptr[row]), int(indptr[row + 1])
    items = np.concatenate([items[:start], items[stop:]])
    indptr = indptr.copy()
    indptr[row + 1:] -= stop - start
    return indptr, items


def compact(model: Any) -> None:
    """See :meth:`Recommender.compact`."""
    model._check_fitted()
    with model._lock:
        model._state.publisher.current.items.index.compact()
