"""What an interaction means: confidence weights, events and ratings, likes and dislikes.

Every interaction becomes a **confidence multiplier** m > 0 and a **sign** (liked or
disliked). The multiplier is the product of

* the ``weight`` column (any finite value > 0; 1 when absent);
* the event's weight, ``event_weights[event]`` (the ``event`` column; 1 when absent or
  when ``event_weights`` is None), e.g. ``{"view": 1, "cart": 4, "purchase": 10}``.
  ``"auto"`` fits one exponent γ on the validation slice: weight(e) = (n / n_e)^γ
  over the training events, γ from :data:`AUTO_EVENT_EXPONENTS` (0 treats every event
  alike, 1 gives each event kind the same total confidence; rare events — purchases —
  count more). The fitted weights are ``Recommender.event_weights_``;
* the rating's confidence under ``rating_rule`` (the ``rating`` column):

  - ``"threshold"`` (default): ratings must lie in ``rating_scale`` = (low, high)
    (default (1, 5)); one "star" is step = (high − low)/4. A rating r at or below
    ``dislike_threshold`` t (default 1) is a **dislike** of confidence 1 + (t − r)/step;
    any other is a **like** of confidence 1 + LIKE_SLOPE·max(r − ``like_threshold`` +
    step, 0)/step, or LUKEWARM (0.1) below ``like_threshold`` − step: with the
    defaults (like_threshold 4, LIKE_SLOPE 0.5) 1/5 → dislike, 2/5 → 0.1, 3/5 → 1,
    4/5 → 1.5, 5/5 → 2. The validation slice that fits the blend targets the held-out
    likes rated at or above ``like_threshold``: the model is tuned to recommend what
    users will like, not only what they will watch.
  - ``"ignore"``: ratings are checked (finite) and otherwise unused — every row is a
    like of confidence 1 (llmrec before ratings were read).

What each part does:

* Likes feed every signal: ALS's confidence is c = 1 + alpha·m (times the recency
  weight in the user's fold-in); the sequence, next-item and text-interest signals
  read the liked items in time order.
* Dislikes feed none of the personal signals as positives. They are (1) never
  recommended back (excluded even with ``exclude_seen=False``); (2) observations with
  target DISLIKE_TARGET (−1) at confidence 1 + alpha·m in the user's ALS fold-in,
  which solves (YᵀY + Σ_j alpha·m_j y_j y_jᵀ + λI) u = Σ_likes c_j y_j −
  Σ_dislikes c_j y_j: the user's vector is pushed away from each disliked item
  and, through the factors, from its neighbours (with no like at all it points away
  from the dislikes: a user who only said "no horror" is ranked away from horror);
  (3) never cited by ``explain`` as a reason for liking (those that weigh against an
  item are named as such).
* The item side — ALS's item factors and the item → next-item matrix, i.e. which items
  go together — is learned from everything users took, dislikes included at
  confidence multiplier EXPOSURE_WEIGHT (1): a disliked film still says what its
  viewer watches and watches next. Only the personal side reads dislikes as "no".

Measured (bench/bench_recommender.py ``ratings``; MovieLens-100K ``temporal_split(0.2)``,
encoder=None, seeds 0-2, ndcg@10 of ratings used / ignored; the variants in
/work/notes/events-results.md, to go to bench/RESULTS.md): "liked" protocol ≈1.05×,
"watched" ≈0.99×. The two pull apart: ``dislike_threshold=2`` (2/5 a dislike too)
gives liked 1.07× but watched 0.98×, as 17 % of the interactions then no longer say
what a user watches next; dislikes dropped from the item side as well cost 6 % of
"watched"; an item-quality prior (mean rating) lowered both.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec._arrays import constant_view
from llmrec._checks import check_choice, check_real

RATING_RULES = ("threshold", "ignore")
AUTO_EVENT_EXPONENTS = (0.0, 0.5, 1.0)
LIKE_SLOPE = 0.5
LUKEWARM = 0.1
DISLIKE_TARGET = -1.0
EXPOSURE_WEIGHT = 1.0
MAX_CONFIDENCE = 1e4  # one interaction's multiplier; beyond it float32 confidences lose the "1"
MAX_EVENT_NAMES = 1024


# ------------------------------------------------------------------------ settings

def check_rule(s: dict[str, Any], rating_rule: Any, rating_scale: Any, dislike_threshold: Any,
               like_threshold: Any, event_weights: Any) -> None:
    """Validate the feedback parameters into ``s`` (the Recommender's settings)."""
    s["rating_rule"] = check_choice(rating_rule, "rating_rule", RATING_RULES)
    if not isinstance(rating_scale, (tuple, list)) or len(rating_scale) != 2:
        raise TypeError(f"rating_scale must be a pair (low, high), got {rating_scale!r}")
    low, high = (check_real(v, "rating_scale") for v in rating_scale)
    if not low < high:
        raise ValueError(f"rating_scale must have low < high, got ({low:g}, {high:g})")
    s["rating_scale"] = [low, high]
    t = check_real(dislike_threshold, "dislike_threshold")
    if not low <= t < high:
        raise ValueError(f"dislike_threshold must lie in [{low:g}, {high:g}) (rating_scale), got {t:g}")
    s["dislike_threshold"] = t
    like = check_real(like_threshold, "like_threshold")
    if not t < like <= high:
        raise ValueError(f"like_threshold must lie in (dislike_threshold, {high:g}] = ({t:g}, {high:g}], "
                         f"got {like:g}")
    s["like_threshold"] = like
    s["event_weights"] = check_event_weights(event_weights)


def check_event_weights(event_weights: Any) -> Any:
    """None, "auto", or {event name (str): weight > 0}."""
    if event_weights is None or (isinstance(event_weights, str) and event_weights == "auto"):
        return event_weights
    if not isinstance(event_weights, Mapping):
        raise TypeError("event_weights must be None, 'auto' or a mapping of event name -> "
                        f"weight > 0, got {type(event_weights).__name__}")
    if not event_weights or len(event_weights) > MAX_EVENT_NAMES:
        raise ValueError(f"event_weights must name 1 to {MAX_EVENT_NAMES} events, got {len(event_weights)}")
    out = {}
    for name, value in event_weights.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"event_weights keys must be non-empty event names (str), got {name!r}")
        out[name] = check_real(value, f"event_weights[{name!r}]", low=0.0, high=MAX_CONFIDENCE,
                               low_open=True)
    return out


# ------------------------------------------------------------------------- reading

def _events(values: Any, column: str) -> np.ndarray:
    events = np.asarray(values, dtype=object)
    for value in events:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{column} must hold event names (non-empty str), got {value!r}")
    return events


def auto_event_weights(events: np.ndarray, exponent: float) -> dict[str, float]:
    """weight(e) = (n / n_e)^γ over the events given (see the module docstring)."""
    names, counts = np.unique(events, return_counts=True)
    weights = (len(events) / counts.astype(np.float64)) ** exponent
    return {str(n): float(min(w, MAX_CONFIDENCE)) for n, w in zip(names, weights)}


def event_multipliers(events: np.ndarray, weights: Mapping[str, float], column: str) -> np.ndarray:
    """The weight of each event name; an unknown name raises ValueError naming it."""
    out = np.empty(len(events), dtype=np.float64)
    names, inverse = np.unique(events, return_inverse=True)
    for at, name in enumerate(names):
        if name not in weights:
            raise ValueError(f"{column} has event {name!r}, which event_weights does not name "
                             f"(known: {sorted(weights)})")
        out[inverse == at] = weights[name]
    return out


def rating_feedback(ratings: np.ndarray, s: dict[str, Any], column: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(confidence multiplier, disliked) of each rating under ``s``'s rule."""
    r = np.asarray(ratings, dtype=np.float64)
    if s["rating_rule"] == "ignore":
        return np.ones(len(r)), np.zeros(len(r), dtype=bool)
    low, high = s["rating_scale"]
    bad = ~((r >= low) & (r <= high))
    if bad.any():
        raise ValueError(f"{column} holds {r[np.flatnonzero(bad)[0]]:g}, outside rating_scale "
                         f"[{low:g}, {high:g}] (set rating_scale, or rating_rule='ignore')")
    t, good = s["dislike_threshold"], s["like_threshold"]
    step = (high - low) / 4.0  # one star on a 1-5 scale
    disliked = r <= t
    like = np.where(r < good - step, LUKEWARM, 1.0 + LIKE_SLOPE * np.maximum(r - good + step, 0.0) / step)
    dislike = 1.0 + (t - r) / step
    return np.where(disliked, dislike, like), disliked


def interaction_feedback(frame: pd.DataFrame, s: dict[str, Any], event_weights: Any,
                         prefix: str = "interactions.", names: Mapping[str, str] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``frame``: (multiplier m > 0, disliked, rating or NaN, event name or None).
    ``event_weights``: a resolved mapping, or None (events unweighted). Errors name the
    column as ``prefix`` + ``names.get(column, column)``."""
    names = dict(names or {})
    label = {c: prefix + names.get(c, c) for c in ("weight", "event", "rating")}
    n = len(frame)
    m = np.ones(n, dtype=np.float64)
    disliked = np.zeros(n, dtype=bool)
    ratings = np.full(n, np.nan)
    events = np.full(n, None, dtype=object)
    if "weight" in frame.columns:
        w = frame["weight"].to_numpy(dtype=np.float64)
        bad = ~((w > 0) & (w <= MAX_CONFIDENCE))
        if bad.any():
            raise ValueError(f"{label['weight']} holds {w[np.flatnonzero(bad)[0]]:g}: weights must be in "
                             f"(0, {MAX_CONFIDENCE:g}] (a dislike is a low rating, not a weight)")
        m *= w
    if "event" in frame.columns:
        events = _events(frame["event"].to_numpy(), label["event"])
        if event_weights is not None:
            m *= event_multipliers(events, event_weights, label["event"])
    if "rating" in frame.columns:
        ratings = frame["rating"].to_numpy(dtype=np.float64)
        r_m, disliked = rating_feedback(ratings, s, label["rating"])
        m *= r_m
    return np.minimum(m, MAX_CONFIDENCE), disliked, ratings, events


# --------------------------------------------------------------------------- store

class Feedback:
    """Each user's interactions as the model knows them, oldest first, the latest event
    of each (user, item) pair only: item rows, multipliers, disliked flags, ratings
    (NaN: none), event codes (-1: none; names in ``event_names``).

    CSR arrays from ``fit`` plus a dict of users changed since; a user's record is
    replaced whole, never modified, like :class:`.history.Histories`. A column with one
    value throughout (plain clicks: no rating, no event, weight 1, no dislike) is held
    as that value repeated, without memory per interaction (:func:`.constant_view`)."""

    FIELDS = ("items", "weight", "disliked", "rating", "event")

    def __init__(self, indptr: np.ndarray, columns: dict[str, np.ndarray], event_names: list[str]) -> None:
        self._indptr = np.asarray(indptr, dtype=np.int64)
        self._columns = {name: values if name == "items" else constant_view(values)
                         for name, values in columns.items()}
        self.event_names = list(event_names)
        self._codes = {name: i for i, name in enumerate(self.event_names)}
        self._changed: dict[int, dict[str, np.ndarray]] = {}
        self._n = len(self._indptr) - 1

    @classmethod
    def empty(cls, n_users: int) -> Feedback:
        return cls(np.zeros(n_users + 1, dtype=np.int64), _empty_columns(), [])

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, order: np.ndarray, n_users: int,
                    weight: np.ndarray, disliked: np.ndarray, ratings: np.ndarray,
                    events: np.ndarray) -> Feedback:
        """Build from event arrays (``order`` sorts them in time, ties keep row order)."""
        key = np.lexsort((np.arange(len(order)), order, users))
        u, i = users[key].astype(np.int64), items[key].astype(np.int64)
        pair = u * (int(i.max(initial=0)) + 1) + i
        _, latest_from_end = np.unique(pair[::-1], return_index=True)
        keep = key[np.sort(len(pair) - 1 - latest_from_end)]
        names = sorted({e for e in events[keep] if e is not None})
        codes = {n: c for c, n in enumerate(names)}
        columns = {"items": items[keep].astype(np.int64),
                   "weight": weight[keep].astype(np.float32),
                   "disliked": disliked[keep].astype(bool),
                   "rating": ratings[keep].astype(np.float32),
                   "event": np.array([codes.get(e, -1) if e is not None else -1 for e in events[keep]],
                                     dtype=np.int32)}
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users[keep].astype(np.int64), minlength=n_users), out=indptr[1:])
        return cls(indptr, columns, names)

    def __len__(self) -> int:
        return self._n

    def get(self, user: int) -> dict[str, np.ndarray]:
        """The user's record (a dict of the FIELDS arrays), oldest first."""
        changed = self._changed.get(int(user))
        if changed is not None:
            return changed
        if user >= len(self._indptr) - 1:
            return _empty_columns()
        span = slice(self._indptr[user], self._indptr[user + 1])
        return {name: values[span] for name, values in self._columns.items()}

    def likes(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, multipliers) of the user's likes, oldest first."""
        r = self.get(user)
        keep = ~r["disliked"]
        return r["items"][keep], r["weight"][keep]

    def dislikes(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, multipliers) of the user's dislikes, oldest first."""
        r = self.get(user)
        keep = r["disliked"]
        return r["items"][keep], r["weight"][keep]

    def code(self, name: str | None) -> int:
        """The event code of ``name`` (new names are added)."""
        if name is None:
            return -1
        if name not in self._codes:
            self._codes[name] = len(self.event_names)
            self.event_names = [*self.event_names, name]
        return self._codes[name]

    @staticmethod
    def merged(record: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``record`` followed by ``new`` (newest last), each item kept at its latest place."""
        seq = {k: np.concatenate((record[k], new[k])) for k in Feedback.FIELDS}
        items = seq["items"]
        _, first_from_end = np.unique(items[::-1], return_index=True)
        keep = np.sort(len(items) - 1 - first_from_end)
        return {k: v[keep] for k, v in seq.items()}

    def set(self, user: int, record: dict[str, np.ndarray]) -> None:
        self._changed[int(user)] = record
        self._n = max(self._n, int(user) + 1)

    def erase(self, user: int) -> None:
        """Empty the user's record and overwrite its values in the stored columns (no
        copy of them remains; a column of one value throughout holds nothing of theirs).
        O(that record); only while no reader holds a stored record (see
        :meth:`.history.Histories.erase`)."""
        user = int(user)
        if user < len(self._indptr) - 1:
            span = slice(self._indptr[user], self._indptr[user + 1])
            for name, values in self._columns.items():
                if values.strides[0] == 0:  # constant_view: one value for everyone
                    continue
                if not values.flags.writeable:
                    values = self._columns[name] = values.copy()
                values[span] = 0
        self.set(user, _empty_columns())

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(indptr, columns) of all users, changes folded in (for saving)."""
        if not self._changed and self._n == len(self._indptr) - 1:
            return self._indptr, self._columns
        records = [self.get(u) for u in range(self._n)]
        indptr = np.zeros(self._n + 1, dtype=np.int64)
        np.cumsum([len(r["items"]) for r in records], out=indptr[1:])
        columns = {k: (np.concatenate([r[k] for r in records]) if records else v[:0])
                   for k, v in _empty_columns().items()}
        return indptr, columns

    def has_dislikes(self) -> bool:
        return bool(self._columns["disliked"].any()) or any(r["disliked"].any() for r in self._changed.values())


def liked_histories(feedback: Feedback) -> Any:
    """The :class:`.history.Histories` of the likes (what every positive signal reads);
    without dislikes, the feedback's own arrays (no second copy of every interaction)."""
    from llmrec.recommender.history import Histories

    indptr, columns = feedback.arrays()
    if not columns["disliked"].any():
        return Histories(indptr, columns["items"])
    liked = ~columns["disliked"]
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    counts = np.bincount(owner[liked], minlength=len(indptr) - 1)
    out = np.zeros(len(indptr), dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return Histories(out, columns["items"][liked])


def _empty_columns() -> dict[str, np.ndarray]:
    return {"items": np.zeros(0, np.int64), "weight": np.zeros(0, np.float32),
            "disliked": np.zeros(0, bool), "rating": np.zeros(0, np.float32),
            "event": np.zeros(0, np.int32)}


# ------------------------------------------------------------------- ALS fold-in

def fold_in(als: Any, likes: sp.csr_matrix, dislikes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """User vectors from ``likes`` (CSR of confidence values r, c = 1 + alpha·r, as the
    native fold-in) and, per row, ``dislikes`` (item rows, values r): target
    DISLIKE_TARGET at confidence 1 + alpha·r. Rows without dislikes go through the
    native fold-in; the others are solved here in float64 (one f × f system each)."""
    X = als.fold_in(likes)
    rows = [u for u, (items, _) in enumerate(dislikes) if len(items)]
    if not rows:
        return X
    G = als._item_gram().astype(np.float64)
    for u in rows:
        A, b = _system(als, G, likes, u, *dislikes[u])
        X[u] = np.linalg.solve(A, b).astype(np.float32)
    return X


def _system(als: Any, G: np.ndarray, likes: sp.csr_matrix, u: int,
            bad: np.ndarray, bad_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The f × f system of row ``u``; only its items' factor rows are read (float64), never
    the whole catalogue's: this runs in ``update``."""
    s = als._settings_used
    span = slice(likes.indptr[u], likes.indptr[u + 1])
    good, good_r = likes.indices[span], likes.data[span].astype(np.float64)
    idx = np.concatenate((good, bad)).astype(np.int64)
    extra = s["alpha"] * np.concatenate((good_r, np.asarray(bad_r, dtype=np.float64)))
    target = np.concatenate((np.ones(len(good)), np.full(len(bad), DISLIKE_TARGET)))
    n = len(good)  # the native solver's row count: the likes
    reg = s["regularization"] * (float(n) ** s["reg_exponent"]) if n else s["regularization"]
    Y = np.asarray(als.item_factors_[idx], dtype=np.float64)
    A = G + (Y.T * extra) @ Y + reg * np.eye(Y.shape[1])
    b = ((1.0 + extra) * target) @ Y
    return A, b


def behaviour_terms(als: Any, likes: np.ndarray, like_r: np.ndarray, bad: np.ndarray,
                    bad_r: np.ndarray, item: int) -> tuple[np.ndarray, np.ndarray]:
    """The fold-in score u·y_i split into one term per history item (Hu, Koren & Volinsky
    §5): c_j·p_j·y_iᵀA⁻¹y_j for the likes and for the dislikes. Returns (like terms,
    dislike terms), float64, in the order given."""
    Y = als.item_factors_
    G = als._item_gram().astype(np.float64)
    order = np.argsort(likes, kind="stable")
    row = sp.csr_matrix((np.asarray(like_r, dtype=np.float32)[order], likes[order],
                         np.array([0, len(likes)])), shape=(1, len(Y)))
    A, _ = _system(als, G, row, 0, bad, bad_r)
    z = np.linalg.solve(A, Y[item].astype(np.float64))
    s = als._settings_used
    like_terms = (1.0 + s["alpha"] * np.asarray(like_r, dtype=np.float64)) * (Y[likes].astype(np.float64) @ z)
    bad_terms = DISLIKE_TARGET * (1.0 + s["alpha"] * np.asarray(bad_r, dtype=np.float64)) * (
        Y[bad].astype(np.float64) @ z)
    return like_terms, bad_terms



def event_weight_choices(frame: pd.DataFrame, event_weights: Any) -> list[Any]:
    """The event weights to try at fit: the given ones, or with "auto" one mapping per
    exponent of AUTO_EVENT_EXPONENTS (None when there is no ``event`` column)."""
    if not (isinstance(event_weights, str) and event_weights == "auto"):
        return [event_weights]
    if "event" not in frame.columns:
        return [None]
    events = _events(frame["event"].to_numpy(), "interactions.event")
    return [auto_event_weights(events, g) for g in AUTO_EVENT_EXPONENTS]


def update_feedback(n: int, s: dict[str, Any], event_weights: Any, weights: Any, event: Any,
                    ratings: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``interaction_feedback`` for the arguments of ``Recommender.update`` (each None,
    one value for all ``n`` items, or one per item); errors name the argument."""
    columns = {}
    for column, name, value in (("weight", "weights", weights), ("event", "event", event),
                                ("rating", "ratings", ratings)):
        if value is None:
            continue
        values = np.asarray(value, dtype=object)
        if values.ndim == 0:
            values = np.full(n, values.item(), dtype=object)
        if values.ndim != 1 or len(values) != n:
            raise ValueError(f"{name} must be one value or one per item ({n}), got shape {values.shape}")
        if column != "event":
            for v in values:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(float(v)):
                    raise ValueError(f"{name} must hold finite numbers, got {v!r}")
            values = values.astype(np.float64)
        columns[column] = values
    if not columns:  # plain clicks (the common update): what interaction_feedback gives them
        return np.ones(n), np.zeros(n, dtype=bool), np.full(n, np.nan), np.full(n, None, dtype=object)
    frame = pd.DataFrame(columns, index=np.arange(n))
    return interaction_feedback(frame, s, event_weights, prefix="update(): ",
                                names={"weight": "weights", "rating": "ratings"})


def history_frame(record: dict[str, np.ndarray], item_ids: np.ndarray, event_names: list[str]
                  ) -> pd.DataFrame:
    """``Recommender.history``'s DataFrame of one user's record."""
    names = np.array([*event_names, None], dtype=object)
    return pd.DataFrame({"item_id": item_ids,
                         "weight": record["weight"].astype(np.float64),
                         "disliked": record["disliked"].astype(bool),
                         "rating": record["rating"].astype(np.float64),
                         "event": names[record["event"]]})


__all__ = ["AUTO_EVENT_EXPONENTS", "DISLIKE_TARGET", "EXPOSURE_WEIGHT", "Feedback", "LIKE_SLOPE",
           "LUKEWARM", "RATING_RULES", "auto_event_weights", "behaviour_terms", "check_event_weights",
           "check_rule", "event_weight_choices", "fold_in", "history_frame", "interaction_feedback",
           "liked_histories", "rating_feedback", "update_feedback"]
