"""Scores of given (user, item) pairs, their calibrated probabilities, and what the
model holds per item: the parts of :class:`~llmrec.recommender.model.Recommender`
that read a fitted model without ranking the catalogue (a mixin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.recommender import scoring
from llmrec.recommender.partitioned import describe

if TYPE_CHECKING:
    from llmrec.recommender.snapshot import Snapshot
    from llmrec.recommender.state import Fitted


def _ids(values: Any, name: str) -> tuple[list[Any], bool]:
    """A list of caller ids and whether ``values`` was one id."""
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        return [values], True
    array = np.asarray(values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one id or a 1-D sequence of ids, got shape {array.shape}")
    if len(array) == 0:
        raise ValueError(f"{name} is empty")
    return list(array), False


class PairScores:
    """Mixed into the Recommender: ``predict``, ``predict_proba``, ``memory_per_item``,
    ``index_info_``."""

    if TYPE_CHECKING:  # provided by the Recommender
        _state: Fitted

        def _check_fitted(self) -> None: ...

        def _weights(self, scenario: Any) -> dict[str, float]: ...

        def _item_rows(self, snap: Snapshot, ids: Any, name: str) -> np.ndarray: ...

        def _users_of(self, snap: Snapshot, users: np.ndarray, name: str, histories: bool,
                      dislikes: bool = False) -> tuple[dict[str, np.ndarray | None], list[np.ndarray] | None]: ...

    def predict(self, user_ids: Any, item_ids: Any, *, scenario: Any = None) -> Any:
        """The blended score of each (user, item) pair — exactly the score
        :meth:`recommend` gives that item for that user under the same ``scenario``
        (None: "home"), computed by the same native re-scoring.

        ``user_ids`` and ``item_ids``: caller ids, one each (a float), or sequences of
        equal length (a float32 array), or one of them a single id paired with every
        id of the other. Unknown ids raise :class:`llmrec.exceptions.UnknownIdError`.
        Scores are on the per-user standardised scale of the blend (0 = the user's
        average over the catalogue); :meth:`predict_proba` maps them to probabilities.
        """
        self._check_fitted()
        scores, _, one = self._pair_scores(user_ids, item_ids, scenario, lengths=False)
        return float(scores[0]) if one else scores

    def _pair_scores(self, user_ids: Any, item_ids: Any, scenario: Any, lengths: bool
                     ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """The pairs' blended scores (n,), each pair's user's history length read from
        the same published state (with ``lengths``; else None), and whether one pair was
        asked (one user id and one item id)."""
        users_in, one_user = _ids(user_ids, "user_ids")
        items_in, one_item = _ids(item_ids, "item_ids")
        if len(users_in) != len(items_in) and 1 not in (len(users_in), len(items_in)):
            raise ValueError(f"user_ids and item_ids must have the same length (or one of them a "
                             f"single id), got {len(users_in)} and {len(items_in)}")
        n = max(len(users_in), len(items_in))
        weights = self._weights(scenario)
        rows = self._state.user_map.rows(users_in, "user_ids")
        unique, inverse = np.unique(rows, return_inverse=True)

        def gather(snap: Snapshot) -> tuple[Any, np.ndarray | None]:
            got = self._users_of(snap, unique, "user_ids", False)
            counts = np.array([len(self._state.histories.get(u)) for u in unique]) if lengths else None
            return got, counts

        with self._state.publisher.pin(gather) as (snap, ((vectors, _), counts)):
            items = self._item_rows(snap, items_in, "item_ids")
            signals = scoring.make_signals(weights, self._state.geometry, **vectors)
            pick = np.broadcast_to(inverse.reshape(-1), (n,)) if len(rows) == n else np.zeros(n, np.int64)
            signals = signals.rows(pick)
            candidates = np.broadcast_to(items.reshape(-1), (n,)).reshape(n, 1).astype(np.int64)
            _, scores = scoring.rescore(snap.items, signals, candidates, 1, self._state.geometry.mean_E,
                                        self._state.settings["num_threads"], self._state.geometry.mean_G,
                                        self._state.geometry.mean_V)
        return scores[:, 0], None if counts is None else counts[pick], one_user and one_item

    def predict_proba(self, user_ids: Any, item_ids: Any) -> Any:
        """P(the user interacts with the item) for each pair: the "home" score of
        :meth:`predict` through Platt scaling fitted on the validation slice at ``fit``
        (:mod:`.calibration`: held-out interactions against uniformly sampled unseen
        items, weighted to the true base rate; users with short histories, whose scores
        carry the popularity prior, by the scaling fitted for their history length).
        Same arguments and shapes as :meth:`predict`. A model fitted with
        ``validation=0`` has no calibration (``ValueError``)."""
        self._check_fitted()
        calibration = self.__dict__.get("calibration_")
        if calibration is None:
            raise ValueError("this Recommender has no calibration: it is fitted on the validation "
                             "slice, so fit with validation > 0 (and enough users)")
        # the lengths from the state the scores came from (an update may run meanwhile)
        scores, lengths, one = self._pair_scores(user_ids, item_ids, None, lengths=bool(calibration.short))
        p = calibration.probability(scores, lengths)
        return float(p[0]) if one else p.astype(np.float64)

    @property
    def index_info_(self) -> str:
        """What stage 1 searches (the index picked, with ``index="auto"`` too)."""
        self._check_fitted()
        snap = self._state.publisher.current
        stage1 = snap.items.index
        return describe(stage1.kind, getattr(stage1, "requested", stage1.kind), snap.n_items,
                        stage1.behaviour)

    def memory_per_item(self) -> dict[str, float]:
        """Bytes held per catalogue item, by part ("total" their sum): the item matrices
        served from (factors, the inverse norms that give the unit factors, next-item
        factors, text vectors — 4·d bytes, or d + 4 with ``text_storage="int8"`` —, tower
        vectors, the cold signal's rows — 5 bytes per item plus m + 12 per item without
        interactions (codes, scale, live scale, freshness), "Z"), each stage-1 channel's
        index, the ALS model's item factors (fold-in reads them; 0 where they are V's
        array, as fit and load make them) and the item ids. Spare capacity kept for
        ``add_items`` is not counted; per-user and per-interaction memory is not either."""
        self._check_fitted()
        snap = self._state.publisher.current
        items, n = snap.items, max(snap.n_items, 1)
        out: dict[str, float] = {}
        shared = items.index.text_vectors() if isinstance(items.E, np.ndarray) else None
        for name in ("V", "inv_norm", "E", "P", "Q", "warm", "G"):
            matrix = getattr(items, name)
            if matrix is not None:
                out[name] = (matrix[:snap.n_items] if isinstance(matrix, np.ndarray) else matrix).nbytes / n
        for name in ("behaviour", "interest", "request"):
            channel = getattr(items.index, name)
            if channel is None:
                continue
            if name == "request" and shared is not None:
                out["stage1." + name] = 0.0  # shares E's rows
            elif hasattr(channel, "memory_bytes"):
                out["stage1." + name] = channel.memory_bytes() / n
            else:
                out["stage1." + name] = len(channel) * channel.dim * 4 / n
        if items.Z is not None:
            out["Z"] = (items.Z.codes.nbytes + items.Z.scales.nbytes + items.Z.live_scales.nbytes
                        + items.Z.fresh.nbytes + 5 * snap.n_items) / n
        factors = snap.als.item_factors_
        out["als.item_factors"] = 0.0 if np.shares_memory(factors, items.V) else factors[:snap.n_items].nbytes / n
        out["item_ids"] = np.asarray(self._state.item_map.ids).nbytes / n
        out["total"] = sum(out.values())
        return out


__all__ = ["PairScores"]
