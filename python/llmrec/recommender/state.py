"""The fitted state of a Recommender: what :meth:`~.model.Recommender.fit` learns and
:func:`.persistence.load` reads, built in one place (:func:`build_state`) for both.

:class:`Fitted` holds the model's parts that outlive one request; what requests read is
the published :class:`.snapshot.Snapshot` inside its ``publisher``. The id maps,
histories, feedback and late items change in place under the writer lock (``update``,
``add_items``, ``remove_items``); a writer that replaces a part (``forget_user``, a
profile grown by a new user) publishes a new :class:`Fitted` (``dataclasses.replace``).
:class:`Learned` is what becomes the estimator's public attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from llmrec._arrays import spare_rows
from llmrec.recommender import scoring
from llmrec.recommender.feedback import Feedback
from llmrec.recommender.history import TRANSITION_WINDOW, Histories
from llmrec.recommender.ids import IdMap
from llmrec.recommender.late_items import LateItems, mark_fresh
from llmrec.recommender.rows import Int8Rows
from llmrec.recommender.snapshot import Publisher, Snapshot
from llmrec.recommender.cold_kernel import ColdKernel
from llmrec.recommender.popularity import PopularityPrior
from llmrec.recommender.text_prior import TextPrior


@dataclass(frozen=True)
class Fitted:
    """Everything a fitted Recommender holds besides its parameters and locks."""

    settings: dict[str, Any]       # the checked parameters fit used (saved with the model)
    geometry: scoring.Geometry     # catalogue statistics fixed at fit
    user_map: IdMap                # caller ids ↔ rows (update adds, forget_user erases)
    item_map: IdMap                # (add_items adds, remove_items forgets)
    histories: Histories           # liked item rows per user, oldest first
    feedback: Feedback             # every interaction's multiplier, dislike, rating, event
    profile: np.ndarray | None     # encoded profile text per user (fit with users' text)
    late_items: LateItems          # items fitted without interactions: their clicks since
    publisher: Publisher           # the current Snapshot, which requests pin
    grams: dict[str, np.ndarray] = field(default_factory=dict)  # PᵀP, QᵀQ for late items' solves
    text_prior: TextPrior | None = None  # factors of items without interactions (None: F·W)
    cold_kernel: ColdKernel | None = None  # the "cold" signal's user side (None: off)
    popularity: PopularityPrior | None = None  # the popularity prior of short histories (None: off)


class Learned(NamedTuple):
    """What fit learned besides the state: the estimator's public attributes."""

    scenarios: dict[str, dict[str, float]]  # scenarios_ ("home" is weights_)
    regularization: float                   # regularization_
    validation: dict[str, Any]              # validation_
    calibration: Any                        # calibration_
    event_weights: dict[str, float] | None  # event_weights_


def build_items(settings: dict[str, Any], random_state: Any, geometry: scoring.Geometry,
                V: np.ndarray, inv_norm: np.ndarray, E: Any, P: np.ndarray, Q: np.ndarray,
                G: np.ndarray | None, removed: np.ndarray | None = None,
                search_text: np.ndarray | None = None, index: scoring.Stage1 | None = None) -> scoring.Items:
    """The item matrices and their stage-1 indexes. ``E``: the text vectors as kept
    (float32, :class:`.rows.Int8Rows` or None); stage 1 indexes ``search_text`` (float
    rows; default: ``E``, read in blocks where it is int8). Items ``removed`` (uint8 per row) are skipped there.
    ``index``: a stage 1 read from a saved model (its removed items already marked),
    used instead of building one. An int8 ``E`` comes back laid out as the request
    channel reads it (:meth:`.scoring.Stage1.lay_out_text`)."""
    if index is None:
        if search_text is None:
            search_text = E  # an Int8Rows is read in blocks (no float copy of the text)
        T = scoring.text_coordinates(search_text, geometry)
        index = scoring.Stage1(V, T, search_text, Q, settings["index"], settings["num_threads"],
                               random_state, settings.get("probes"), text_codes=isinstance(E, Int8Rows))
        if removed is not None:
            index.remove(np.flatnonzero(removed))
    return scoring.make_items(V, inv_norm, index.lay_out_text(E), P, Q, index, G=G)


def build_state(*, settings: dict[str, Any], geometry: scoring.Geometry, user_map: IdMap,
          item_map: IdMap, histories: Histories, feedback: Feedback, profile: np.ndarray | None,
          items: scoring.Items, als: Any, users: dict[str, np.ndarray | None],
          labels: Any, towers: Any, text_prior: TextPrior | None = None,
          cold_kernel: ColdKernel | None = None, popularity: PopularityPrior | None = None) -> Fitted:
    """The state of a fitted or loaded model, its first snapshot published. The late
    items are those the ALS model has no interactions for; their clicks since are read
    from the histories. ``text_prior``: the map of their text to factors (None: the ALS
    model's linear prior); ``cold_kernel``: the cold signal (its item rows are the
    items' Z); ``popularity``: the popularity prior of short histories."""
    late = np.flatnonzero(np.diff(als.user_items_.tocsc().indptr) == 0)
    items, labels = _with_spare_rows(items, als, labels)
    indptr, hist = histories.arrays()
    snapshot = Snapshot(items, als, labels, users, len(user_map), towers, item_map.gone)
    late_items = LateItems.from_histories(late, indptr, hist, TRANSITION_WINDOW)
    mark_fresh(items, late_items)
    return Fitted(settings, geometry, user_map, item_map, histories, feedback, profile,
                  late_items, Publisher(snapshot), text_prior=text_prior, cold_kernel=cold_kernel,
                  popularity=popularity)


def _with_spare_rows(items: scoring.Items, als: Any, labels: Any) -> tuple[scoring.Items, Any]:
    """The item arrays that ``add_items`` appends to, moved into storage with spare rows
    (:func:`llmrec._arrays.spare_rows`): the first call after a fit or a load then
    appends in place, where it copied the whole catalogue (about 3 s at 1M items). V
    stays the ALS model's own array. Float32 text is left as it is: a small catalogue's
    exact stage 1 shares it."""
    V = items.V
    if als.item_factors_ is V:  # as fit and load leave it; else V is left as it is
        V = spare_rows(V)
        als.set_item_rows(np.zeros(0, np.int64), np.zeros((0, V.shape[1]), np.float32), into=V)
    E = items.E.with_spare_rows() if isinstance(items.E, Int8Rows) else items.E
    G = None if items.G is None else spare_rows(items.G)
    items = items._replace(V=V, inv_norm=spare_rows(items.inv_norm), E=E, P=spare_rows(items.P),
                           Q=spare_rows(items.Q), warm=spare_rows(items.warm), G=G)
    return items, None if labels is None else labels.with_spare_rows()

