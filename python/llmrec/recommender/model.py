"""The Recommender: behaviour and language in one model, served by the native ranker.

Figures for every claim below (MovieLens-100K, ``temporal_split(0.2)``, full ranking
@10: the ablation of the signals, cold items, late items, towers, latency) are in
bench/RESULTS.md, "Recommender" and the sections after it; this docstring keeps the
design only.

How it scores:

* **behaviour** — implicit ALS (native) on the interactions, item factors pulled toward
  a ridge map of the items' text vectors (text priors). An item without interactions
  (a new item with a description, at once) gets the factors of a kernel ridge map of its
  text vector, trained on the fitted items' factors (:mod:`.text_prior`). The user's
  vector is not the one fitted by ALS but a fold-in of the history with confidences
  1 + alpha·(1 + 9p²), p the interaction's relative position in the history (0 oldest,
  1 newest): recent interactions count up to 10× more, which rewards knowing what a
  user did last.
* **sequence** — the short-term signal: cosine, in ALS factor space, between a
  candidate and the user's latest items, weighted decay^r (r = 0 for the newest).
* **transition** — "what people take next": a second ALS, of the item → later-item
  matrix (pairs at distance j ≤ 3 in a history count 1/j), f/2 factors; the user's
  vector is the decay-weighted sum of the "from" factors of the latest items, against
  the items' "to" factors. With item text both sides carry ALS's text prior, as the
  item factors do: an item's next-item pairs are far sparser than its interactions.
* **text** — the user's interest vector (recency-weighted mean of the history's text
  vectors, with the encoded profile text counted as one more item when ``users`` has
  one) against item text vectors. Weak on warm items (its weight is fitted and may be
  0); text earns its place through the rest: new items' factors, ``query``,
  ``search``, and users known only by a profile text (ranked by it). The hot path uses
  cached item vectors; the encoder runs for free-text requests and new items only.
* **query** — an encoded request, against item text vectors, weighted half the sum of
  the personal weights (scenario "home"), or first (scenario "search").
* **cold** — items without interactions only: per user, a kernel ridge regression of
  the items they took on their text (text vector, hashed words and, where chosen, a
  learned map of the text to unit factors), read at a new item's text
  (:mod:`.cold_kernel`). Built at request time from the history; its kernel parameters
  and weight are chosen at fit on a cold-item validation (landmarks held out as if new),
  apart from the blend. Items fitted with interactions score 0 in it, and so do late
  items from their first clicks on (their re-solved factors rank them from then).
* **towers** (opt-in, ``towers=``) — f_u·g_i of a :class:`llmrec.towers.SequenceTowers`
  (causal transformer over the history; item tower = id embedding + MLP over the text
  vectors; with profile texts in ``users``, the user tower reads each user's profile
  too) trained on the histories at fit (:mod:`.towers_signal`). User vectors are
  cached per user (recomputed by ``update``), item vectors kept with the items. Stage 1
  has no towers channel: the term re-scores the other channels' candidates exactly.
  Its weight is fitted on the validation slice by towers trained without the held-out
  items; ``query=`` does not use the towers' request token.
* **popularity** (short histories, ``popularity_prior``) — the mean fitted user's ALS
  vector ū against the factors, at a weight that depends on how many items the user
  has liked (up to 8, fading out by 16), fitted on validation users cut to their first
  items (:mod:`.popularity`), in units of the behaviour weight; neutral for items
  without interactions.

Items without interactions (added with :meth:`Recommender.add_items`) take part in the
behaviour, cold and query signals only: the direction of their text-predicted factors is
noise for the sequence cosine, and the text interest (and the towers term) blurred the
ranking their text-based factors already make. Once such an item is clicked, every
:meth:`Recommender.update` that touches it re-solves its factors and next-item factors
from its clicks so far (:mod:`.updates`, :class:`.late_items.LateItems`), and it joins
the sequence and text signals like any item with interactions; fitted items keep their
factors until the next fit.

Each signal is divided by its spread over the catalogue for that user (exactly, from
the items' covariance), and the blend s = Σ w_k·signal_k/σ_k (minus the catalogue
mean) is fitted by coordinate ascent on a validation slice — the latest
``validation`` share of each user's training interactions — together with ALS's λ (a
small grid); the model is then refit on everything (:mod:`.training`). Serving is
two-stage (:mod:`.ranking` over :mod:`.scoring`): native candidate searches in a
behaviour channel (factors + next-item factors per item) and, when the request has a
text part, a text channel (text PCA coordinates, or the full text vectors for a
request), the union of their candidates; then one native exact re-scoring of those few
hundred candidates with every signal, optionally MMR re-ranking (``diversity``).

State: what fit learns (or load reads) is one :class:`.state.Fitted`, built by
:func:`.state.build_state` for both. Threads: requests pin one published snapshot of
the model at their start and read only it; ``update``, ``add_items``, ``remove_items``
and ``forget_user`` (one at a time) publish new ones without changing what a running
request reads (:mod:`.snapshot`; the stage-1 indexes are shared and rewritten under
their own readers-writer lock, see :mod:`.catalogue`). ``save`` holds the writer lock
while it writes; requests go on meanwhile.
"""

from __future__ import annotations

import logging
import numbers
import pickle
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec._checks import check_choice, check_int, check_k, check_real, plain
from llmrec._estimator import Estimator
from llmrec._types import Id, IdList, Ids, Numbers, PathArg, Texts
from llmrec._log import stage
from llmrec.als import MAX_ALPHA, MAX_PRIOR_STRENGTH, MAX_REGULARIZATION
from llmrec.exceptions import NotFittedError
from llmrec.recommender import scoring
from llmrec.recommender import catalogue, ranking
from llmrec.recommender.explain import Explanation, explain_score
from llmrec.recommender import feedback as fb
from llmrec.recommender import updates
from llmrec.recommender.fusion import check_weights
from llmrec.recommender.history import Histories, seen_matrix, weighted_rows
from llmrec.recommender.ids import IdMap, check_known
from llmrec.recommender.inputs import event_order, interactions_frame, item_texts, user_texts
from llmrec.recommender.grid_sample import sample_for_grid, to_full
from llmrec.recommender.pairs import PairScores
from llmrec.recommender.popularity import prior_for
from llmrec.recommender.partitioned import INDEXES
from llmrec.recommender.scenarios import fit_extras, scenario_lookup
from llmrec.recommender.results import Recommendations
from llmrec.recommender.rows import TEXT_STORAGES
from llmrec.recommender.snapshot import Snapshot
from llmrec.recommender.state import Fitted, Learned, build_state
from llmrec.recommender.towers_signal import TowersText, check_towers, fit_towers
from llmrec.recommender.cold_shift import fit_shift
from llmrec.recommender.training import (fit_als, fit_blend, fit_cold, fit_items, fit_items_prior, fit_transitions,
                                         item_side_rows)
from llmrec.recommender.labels import Labels
from llmrec.recommender.users import signal_vectors, stored_users

_PARAMS = ("encoder", "factors", "index", "text_weight", "diversity", "random_state",
           "num_threads", "regularization", "alpha", "iterations", "prior_strength", "recency",
           "sequence_decay", "candidates", "validation", "towers", "cluster", "probes",
           "rating_rule", "rating_scale", "dislike_threshold", "like_threshold", "event_weights",
           "text_storage", "popularity_prior")
_INDEXES = INDEXES
# Hyperparameter ceilings (see llmrec.als for alpha, λ and the prior strength: beyond them
# the float32 solvers overflow or lose the unobserved items). The recency weight multiplies
# alpha in each confidence 1 + alpha·(1 + recency·p²); the text weight is relative to the
# other signals' weights, which vanish in float32 beside one 1e6 times larger.
if TYPE_CHECKING:
    import pandas as pd

    from llmrec.text import TextEncoder

log = logging.getLogger(__name__)

MAX_RECENCY = 1e3
MAX_TEXT_WEIGHT = 1e6


class Recommender(PairScores, Estimator):
    """Recommendations from interactions and text together (see the module docstring).

    Parameters (keyword-only, stored as given, checked by :meth:`fit`)
    ----------
    encoder : "default", a :class:`llmrec.TextEncoder`, or None
        Text encoder for item texts, profiles and free-text requests; "default" is
        all-MiniLM-L6-v2 (the ``text`` extra). None: behaviour only.
    factors : int
        ALS dimension.
    index : {"exact", "sq8", "fp16", "ivf-sq8", "ivf-pq4", "auto"}
        Stage-1 search: exact float32, a flat :class:`llmrec.QuantizedIndex` codec, or
        its inverted lists ("ivf-": ≈ 4·√n lists, ``probes`` of them scanned per
        request; for millions of items); candidates are re-scored exactly anyway.
        "auto" picks by catalogue size (exact below 50,000 items, sq8 below 400,000,
        ivf-sq8 above) and says what it picked (``index_info_``, log "llmrec.recommender").
    text_weight : "auto" or float in [0, 1e6]
        Weight of the text-interest signal; "auto" fits it on the validation slice.
    diversity : float in [0, 1]
        Default MMR trade-off: 0 ranks by relevance only; λ > 0 re-ranks the top
        max(5k, 50) candidates by (1 − λ)·relevance − λ·max cosine to the items already
        chosen (native :func:`llmrec.diversity.mmr_rerank`). Scores stay the blended
        relevance, so they need not descend once λ > 0.
    random_state : int or None
        Seeds ALS (fits are reproducible for a fixed thread count).
    num_threads : int
        Native threads (0 = all cores).
    regularization : "auto" or float in [0, 1e6]
        ALS λ; "auto" picks from (5, 10, 20, 40) on the validation slice.
    alpha : float in (0, 1e6]
        ALS confidence slope (c = 1 + alpha·r); larger values overflow the float32
        solvers (``fit`` raises ``ValueError``, never a model that returns only padding).
    iterations : int
        ALS iterations.
    prior_strength : float in [0, 1e6]
        Pull of item factors toward their text map (cold start); 0 disables priors.
    recency : float in [0, 1000]
        w in the history weights 1 + w·p².
    sequence_decay : float in (0, 1)
        Decay of the sequence signal per step back in the history.
    candidates : int
        Stage-1 candidates re-scored exactly (at least 4·k are used).
    validation : float in [0, 0.5]
        Share of each user's latest interactions held out to fit the blend; 0 skips the
        fit (default weights, regularization 20 when "auto").
    towers : None, "auto" or dict
        Adds the signal "towers": f_u·g_i of a :class:`llmrec.towers.SequenceTowers`
        (the ``text`` extra, torch) trained on the histories and the item text vectors
        (ids-only without an encoder). "auto" uses its default parameters; a dict
        overrides some (``random_state`` and ``num_threads`` default to this model's;
        ``{"text": "finetune"}`` trains the encoder's top layer on the item texts too,
        for a BERT-family encoder; ``"epochs"``, ``"validation"`` (0.3 here) and
        ``"validation_items"`` are passed to :meth:`~llmrec.towers.SequenceTowers.fit`).
        Trained twice, like ALS: on the validation split (its weight is fitted there,
        on targets it did not see), then on everything. None (default): off.
    cluster : None or "ray"
        "ray" runs the heavy steps of :meth:`fit` on the connected Ray cluster (extra
        ``[ray]``, ``ray.init()`` first): every ALS fit (:class:`llmrec.distributed.ALS`,
        the same factors as a local fit) and the encoding of item and profile texts
        (:func:`llmrec.distributed.encode`). The fitted model is an ordinary one: it is
        saved, loaded and served on one machine without Ray.
    probes : int or None
        "ivf-" indexes: lists scanned per band searched by each stage-1 channel (None:
        64, :data:`.partitioned.CHANNEL_PROBES`) and by the free-text lists (None: a
        sixteenth of the lists, within [64, 256]); as many as the lists scans all of them.
    rating_rule : {"threshold", "ignore"}
        How the ``rating`` column is read (:mod:`llmrec.recommender.feedback`):
        "threshold" (default) makes ratings at or below ``dislike_threshold`` dislikes
        (negative feedback everywhere) and ratings above it likes whose confidence
        grows with the rating (1/5 dislike; 2/5, 3/5, 4/5, 5/5 likes of confidence
        0.1, 1, 1.5, 2); "ignore" treats every row as a like.
    rating_scale : (low, high)
        The ratings' range, (1, 5) by default; a rating outside it raises ValueError.
    dislike_threshold : float in [low, high)
        Ratings at or below it are dislikes (default 1: 1/5; 2/5 is a weak like).
    like_threshold : float in (dislike_threshold, high]
        Ratings at or above it are the likes the blend is tuned to recommend (the
        validation slice's targets) and weigh more (default 4).
    event_weights : None, "auto" or dict
        Confidence multiplier per value of the ``event`` column, e.g.
        ``{"view": 1, "cart": 4, "purchase": 10}`` (an event it does not name raises
        ValueError); "auto" fits them on the validation slice (``event_weights_``);
        None: events are recorded but weigh alike. The ``weight`` column (> 0)
        multiplies too.
    text_storage : {"auto", "float32", "int8"}
        How the items' text vectors are kept for re-scoring and the users' text
        interest: float32 (4·d bytes per item), or int8 codes with one scale per item
        (d + 4 bytes; :class:`llmrec.recommender.rows.Int8Rows`: each text score moves
        by at most half a code step times the query's L1 norm). "auto": int8 from
        50,000 items on (as ``index="auto"`` leaves the exact scan there).
    popularity_prior : bool
        Adds the catalogue's popularity to the blend of users with short histories,
        with a weight per history length fitted on the validation slice (users cut to
        their first 1, 2, 4, … liked items; :mod:`llmrec.recommender.popularity`). The
        table is ``validation_["popularity_weights"]`` at
        ``validation_["popularity_lengths"]``. False (or ``validation=0``): off.

    Attributes
    ----------
    weights_ : dict, the fitted blend of scenario "home".
    scenarios_ : dict name -> weights; "home" (recommend), "search" (search with a
        user), "similar" (similar_items). Change with :meth:`set_scenario`.
    validation_ : dict, what the validation measured (ndcg@10 per regularization; per
        scenario when the interactions have a ``scenario`` column). With towers:
        ``towers_best_epoch`` and ``towers_averaged_epochs`` of the validation towers
        (the ones the towers weight is fitted on).
    calibration_ : :class:`.calibration.Calibration` or None, the Platt scaling of
        :meth:`predict_proba` (None when the validation was skipped); ``.short`` holds
        the pairs of short histories under the popularity prior.
    index_info_ : str, what stage 1 searches.
    event_weights_ : dict or None, the event weights used (fitted with "auto").
    item_ids_, user_ids_ : read-only arrays of the model's ids, in the model's order.
    """

    _param_names = _PARAMS

    def __init__(self, *, encoder: Any = "default", factors: int = 64, index: str = "exact",
                 text_weight: Any = "auto", diversity: float = 0.0, random_state: Any = None,
                 num_threads: int = 0, regularization: Any = "auto", alpha: float = 1.0,
                 iterations: int = 15, prior_strength: float = 1.0, recency: float = 9.0,
                 sequence_decay: float = 0.6, candidates: int = 256,
                 validation: float = 0.2, towers: Any = None, cluster: str | None = None,
                 probes: Any = None, rating_rule: str = "threshold",
                 rating_scale: Any = (1.0, 5.0), dislike_threshold: float = 1.0,
                 like_threshold: float = 4.0, event_weights: Any = None,
                 text_storage: str = "auto", popularity_prior: bool = True) -> None:
        self.encoder = encoder
        self.factors = factors
        self.index = index
        self.text_weight = text_weight
        self.diversity = diversity
        self.random_state = random_state
        self.num_threads = num_threads
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.prior_strength = prior_strength
        self.recency = recency
        self.sequence_decay = sequence_decay
        self.candidates = candidates
        self.validation = validation
        self.towers = towers
        self.cluster = cluster
        self.probes = probes
        self.rating_rule = rating_rule
        self.rating_scale = rating_scale
        self.dislike_threshold = dislike_threshold
        self.like_threshold = like_threshold
        self.event_weights = event_weights
        self.text_storage = text_storage
        self.popularity_prior = popularity_prior

    def _settings(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "factors": check_int(self.factors, "factors", minimum=1),
            "index": check_choice(self.index, "index", _INDEXES),
            "diversity": check_real(self.diversity, "diversity", low=0.0, high=1.0),
            "num_threads": check_int(self.num_threads, "num_threads", minimum=0),
            "alpha": check_real(self.alpha, "alpha", low=0.0, high=MAX_ALPHA),
            "iterations": check_int(self.iterations, "iterations", minimum=1),
            "prior_strength": check_real(self.prior_strength, "prior_strength", low=0.0, high=MAX_PRIOR_STRENGTH),
            "recency": check_real(self.recency, "recency", low=0.0, high=MAX_RECENCY),
            "sequence_decay": check_real(self.sequence_decay, "sequence_decay", low=0.0, high=1.0),
            "candidates": check_int(self.candidates, "candidates", minimum=1),
            "validation": check_real(self.validation, "validation", low=0.0, high=0.5),
            "text_storage": check_choice(self.text_storage, "text_storage", TEXT_STORAGES),
        }
        if not isinstance(self.popularity_prior, (bool, np.bool_)):
            raise TypeError(f"popularity_prior must be True or False, got {type(self.popularity_prior).__name__}")
        s["popularity_prior"] = bool(self.popularity_prior)
        s["towers"] = check_towers(self.towers, self.random_state, s["num_threads"])
        if self.cluster is not None:  # absent from the settings of local fits (and older files)
            s["cluster"] = check_choice(self.cluster, "cluster", ("ray",))
        s["probes"] = None if self.probes is None else check_int(self.probes, "probes", minimum=1)
        fb.check_rule(s, self.rating_rule, self.rating_scale, self.dislike_threshold,
                      self.like_threshold, self.event_weights)
        if s["alpha"] <= 0:
            raise ValueError(f"alpha must be > 0, got {s['alpha']}")
        if self.text_weight != "auto":
            s["text_weight"] = check_real(self.text_weight, "text_weight", low=0.0, high=MAX_TEXT_WEIGHT)
        if self.regularization != "auto":
            s["regularization"] = check_real(self.regularization, "regularization", low=0.0, high=MAX_REGULARIZATION)
        if self.random_state is not None and not isinstance(self.random_state, numbers.Integral):
            raise TypeError(f"random_state must be an int or None, got {type(self.random_state).__name__}")
        return s

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_") and not name.startswith("_"):
            raise NotFittedError(f"Recommender.{name} is learned by fit: call fit(interactions) first")
        raise AttributeError(f"'Recommender' object has no attribute {name!r}")

    def _check_fitted(self) -> None:
        if "_state" not in self.__dict__:
            raise NotFittedError("this Recommender is not fitted yet: call fit(interactions) first")

    # ------------------------------------------------------------------ encoder
    def _start_encoder(self) -> None:
        """The encoder's lock, and the encoder itself when given as an object (a name is
        built on first use, :meth:`_text_encoder`)."""
        self._encoder_lock = threading.Lock()
        self._encoder_obj = None if isinstance(self.encoder, str) or self.encoder is None else self.encoder

    def _text_encoder(self) -> Any:
        """The encoder object (built lazily from "default" or a saved model path)."""
        with self._encoder_lock:
            if self._encoder_obj is None:
                spec = self.encoder
                if spec is None:
                    raise ValueError("this Recommender has no text encoder (encoder=None): free-text "
                                     "requests and new items' text need one")
                from llmrec.text import TextEncoder

                self._encoder_obj = spec if not isinstance(spec, str) else TextEncoder(spec)
            return self._encoder_obj

    def _towers_text(self, texts: list[str]) -> TowersText:
        """What towers with fine-tuned text read: ``texts`` and this model's encoder."""
        return TowersText(list(texts), self._text_encoder())

    def _encode(self, texts: list[str], kind: str = "document", show_progress: bool = False) -> np.ndarray:
        vectors = self._text_encoder().encode(texts, kind=kind, show_progress=show_progress)
        return scoring.unit_rows(np.asarray(vectors, dtype=np.float32))

    def _encode_for_fit(self, texts: list[str], s: dict[str, Any], show_progress: bool) -> np.ndarray:
        """Documents encoded here, or on Ray where ``cluster="ray"``."""
        if s.get("cluster") != "ray":
            return self._encode(texts, show_progress=show_progress)
        from llmrec import distributed

        spec = self.encoder if isinstance(self.encoder, str) else self._text_encoder()
        vectors = distributed.encode(list(texts), encoder=spec, show_progress=show_progress)
        return scoring.unit_rows(np.asarray(vectors, dtype=np.float32))

    # ------------------------------------------------------------------ fitting
    def fit(self, interactions: pd.DataFrame, *, items: pd.DataFrame | None = None,
            users: pd.DataFrame | None = None, show_progress: bool = False) -> Recommender:
        """Learn from ``interactions`` (DataFrame: ``user_id``, ``item_id``, optional
        ``rating``/``weight``/``event``, ``timestamp``) and optional ``items``
        (``item_id`` + ``text``, or fields for :func:`llmrec.text.item_text`) and
        ``users`` (``user_id`` + ``text``). Every row is one interaction, a like or (a
        low rating) a dislike, with a confidence from its weight, event and rating
        (:mod:`llmrec.recommender.feedback`); ``timestamp`` orders each history (row
        order when absent), and a (user, item) pair's latest row is the one kept.
        Returns self."""
        s = self._settings()
        started = time.perf_counter()
        frame = interactions_frame(interactions)
        self._start_encoder()
        if self.encoder is not None and not isinstance(self.encoder, str) and not callable(
                getattr(self.encoder, "encode", None)):
            raise TypeError(f"encoder must be 'default', a TextEncoder or None, got {type(self.encoder).__name__}")
        use_text = self.encoder is not None and items is not None

        # ids: the catalogue is the items frame's ids (when given), then any others seen.
        texts: list[str] = []
        if items is not None:
            item_ids, texts = item_texts(items)
            item_map = IdMap(item_ids, "item")
            known = item_map.contains(frame["item_id"].to_numpy())
            if not known.all():
                missing = frame["item_id"].to_numpy()[np.flatnonzero(~known)[0]]
                raise ValueError(f"interactions name item id {plain(missing)!r}, which has no row in items")
        else:
            item_map = IdMap(frame["item_id"].drop_duplicates().to_numpy(), "item")
        user_map = IdMap(frame["user_id"].drop_duplicates().to_numpy(), "user")
        profiles = user_texts(users) if self.encoder is not None else None
        if users is not None and "user_id" in getattr(users, "columns", ()):
            extra = users["user_id"].to_numpy()
            extra = extra[~user_map.contains(extra)]
            if len(extra):
                user_map.add(extra, "users.user_id")
        n_users, n_items = len(user_map), len(item_map)
        u_rows = user_map.rows(frame["user_id"].to_numpy(), "interactions.user_id")
        i_rows = item_map.rows(frame["item_id"].to_numpy(), "interactions.item_id")
        order = event_order(frame)
        event_choices = fb.event_weight_choices(frame, s["event_weights"])

        def build(event_weights: Any) -> tuple[Any, Histories]:
            m, disliked, ratings, events = fb.interaction_feedback(frame, s, event_weights)
            record = fb.Feedback.from_events(u_rows, i_rows, order, n_users, m, disliked, ratings, events)
            return record, fb.liked_histories(record)

        feedback, histories = build(event_choices[0])

        with stage(log, "Recommender.fit: encode item texts", items=len(texts) if use_text else 0):
            E = self._encode_for_fit(texts, s, show_progress) if use_text else None
        profile = None
        if profiles is not None and E is not None:
            profile = np.zeros((n_users, E.shape[1]), dtype=np.float32)
            rows = user_map.rows(profiles[0], "users.user_id")
            has = np.array([bool(t.strip()) for t in profiles[1]])
            if has.any():
                profile[rows[has]] = self._encode_for_fit([t for t, h in zip(profiles[1], has) if h],
                                                          s, show_progress)

        labels = None
        if items is not None:
            frame_items = items if hasattr(items, "columns") else None
            titles = frame_items["title"] if frame_items is not None and "title" in frame_items.columns else texts
            labels = Labels.of(titles)
        lookup = scenario_lookup(frame, u_rows, i_rows, order, n_items)
        chosen: tuple[Any, ...] | None = None
        with stage(log, "Recommender.fit: blend and regularization on the validation slice",
                   users=n_users, items=n_items, validation=s["validation"]):
            for event_weights in event_choices:  # one, or the "auto" candidates
                if event_weights is not event_choices[0]:
                    feedback, histories = build(event_weights)
                kept: dict[str, Any] = {}
                sample, grid_line = sample_for_grid(histories, n_items, E, profile, self.random_state)
                # A sampled grid (large catalogues) sees the sampled users' likes only.
                grid_histories, grid_items, grid_E, grid_profile = (
                    (histories, n_items, E, profile) if sample is None else sample[:4])
                result = fit_blend(s, grid_histories, grid_items, grid_E, grid_profile, self.random_state,
                                   keep=kept, feedback=feedback if sample is None else None, catalogue=n_items,
                                   towers_text=None if not use_text else self._towers_text(
                                       texts if sample is None else [texts[i] for i in sample.items]))
                value = max(result[2].get("ndcg", {}).values(), default=-1.0)
                if chosen is None or value > chosen[0]:
                    chosen = (value, event_weights, feedback, histories, result, kept, sample, grid_line)
        assert chosen is not None  # event_choices is never empty
        (_, event_weights, feedback, histories, (weights, regularization, report), kept, sample,
         grid_line) = chosen
        report["grid"] = grid_line
        to_full(kept, sample, n_items)
        if len(event_choices) > 1:
            report["event_weights"] = dict(event_weights)
        all_histories = [histories.get(u) for u in range(n_users)]
        all_weights = [feedback.likes(u)[1] for u in range(n_users)]
        all_dislikes = [feedback.dislikes(u) for u in range(n_users)]
        item_side = [item_side_rows(feedback.get(u)) for u in range(n_users)]
        als = fit_als(s, regularization, [r[0] for r in item_side], n_items, E, self.random_state,
                      show_progress=show_progress, weights=[r[1] for r in item_side])
        als.drop_item_priors()  # E·W: n × f floats that only ALS.loss reads
        text_prior = fit_items_prior(s, als, E)
        cold = fit_cold(s, regularization, feedback, als, E, texts if use_text else None,
                        self.random_state, text_prior)
        cold_shift = 0.0
        if cold is not None:
            report["cold"] = cold[2]
            assert E is not None  # the cold signal needs text
            cold_shift, report["cold"]["new_items"] = fit_shift(cold[0], cold[1], weights, kept, E,
                                                                texts if use_text else None)
        P, Q = fit_transitions(s, regularization, [r[0] for r in item_side], n_items, self.random_state, E)
        towers = None
        if s["towers"] is not None:
            towers = fit_towers(s["towers"], all_histories, n_items, E, show_progress=show_progress,
                                text=self._towers_text(texts) if use_text else None, profile=profile)
        with stage(log, "Recommender.fit: item matrices and stage-1 indexes", items=n_items):
            geometry, items_built = fit_items(s, self.random_state, als, E, P, Q, towers,
                                              None if cold is None else cold[0], texts if use_text else None,
                                              cold_shift)
        with stage(log, "Recommender.fit: user vectors", users=n_users):
            users = signal_vectors(s, items_built, als, towers, all_histories, profile,
                                   weights=all_weights, dislikes=all_dislikes)
            users = stored_users(users, items_built)
        popularity = (None if "popularity_lengths" not in report else
                      prior_for(als, geometry.cov_V, report["popularity_lengths"], report["popularity_weights"]))
        fitted = build_state(settings=s, geometry=geometry, user_map=user_map, item_map=item_map,
                             histories=histories, feedback=feedback, profile=profile, items=items_built,
                             als=als, users=users, labels=labels, towers=towers, text_prior=text_prior,
                             cold_kernel=None if cold is None else cold[0], popularity=popularity)
        home = dict(weights)
        # A request weighs half as much as the personal signals together: it moves the
        # ranking toward what was asked while staying personal, whatever their count.
        personal = sum(v for k, v in home.items() if k != "query")
        home["query"] = 0.5 * personal
        scenarios = {
            "home": home,
            # search(query, user_id): the request first, the user's taste at half its weight
            "search": {**{k: 0.5 * v / max(personal, 1e-12) for k, v in home.items()}, "query": 1.0},
            "similar": {"behaviour": 0.0, "sequence": 1.0, "transition": 0.5,
                        "text": 0.5 if E is not None else 0.0, "query": 0.0},
        }
        if cold is not None:  # only items without interactions: not in the query's share
            home["cold"] = cold[1]
            scenarios["search"]["cold"] = 0.5 * cold[1] / max(personal, 1e-12)
        extras = fit_extras(kept, lookup, home, self.random_state)
        del kept
        calibration = extras.calibration
        if calibration is not None and popularity is not None and report.get("popularity_calibration"):
            # short histories: their own Platt pairs, the warm one where the prior ends
            end = ((float(popularity.lengths[-1]), calibration.a, calibration.b),)
            short = tuple((float(n), float(a), float(b)) for n, a, b in report["popularity_calibration"])
            calibration = calibration._replace(short=short + end)
        scenarios.update(extras.scenarios)
        if cold is not None:  # fitted on its own validation: every personal blend keeps it
            for name in extras.scenarios:
                scenarios[name]["cold"] = cold[1]
            if "weights" in report:  # the blend's report (absent where validation is skipped)
                report["weights"]["cold"] = cold[1]
        if extras.report:
            report["scenarios"] = extras.report
        self._install(fitted, Learned(scenarios, regularization, report, calibration, event_weights))
        log.info("Recommender.fit: %d users, %d items, %d interactions, text %s: %.2f s",
                 n_users, n_items, len(frame), "yes" if E is not None else "no",
                 time.perf_counter() - started)
        return self

    def _install(self, fitted: Fitted, learned: Learned) -> None:
        """Make ``fitted`` (from :func:`.state.build_state`) this model's state, with a new
        writer lock and the learned attributes."""
        self._state = fitted
        self._lock = threading.Lock()  # one writer at a time (update, add_items, save)
        self.scenarios_ = learned.scenarios
        self.weights_ = learned.scenarios["home"]
        self.regularization_ = learned.regularization
        self.validation_ = learned.validation
        self.calibration_ = learned.calibration
        self.event_weights_ = learned.event_weights
        updates.warm_grams(fitted)  # the first update after a fit or load is then not O(n·f²)

    # Read-only views of the state and of the current snapshot, for tests, benchmarks,
    # the server's introspection and debugging; requests pin one snapshot instead (see
    # :mod:`.snapshot`).
    _publisher = property(lambda self: self._state.publisher)
    _settings_used = property(lambda self: self._state.settings)
    _geometry = property(lambda self: self._state.geometry)
    _user_map = property(lambda self: self._state.user_map)
    _item_map = property(lambda self: self._state.item_map)
    _histories = property(lambda self: self._state.histories)
    _feedback = property(lambda self: self._state.feedback)
    _profile = property(lambda self: self._state.profile)
    _late_items = property(lambda self: self._state.late_items)
    _items = property(lambda self: self._state.publisher.current.items)
    _als = property(lambda self: self._state.publisher.current.als)
    _users = property(lambda self: self._state.publisher.current.users)
    _labels = property(lambda self: self._state.publisher.current.labels)

    # ------------------------------------------------------------------ ranking
    def _weights(self, scenario: Any) -> dict[str, float]:
        name = "home" if scenario is None else scenario
        if not isinstance(name, str):
            raise TypeError(f"scenario must be a scenario name (str), got {type(name).__name__}")
        if name not in self.scenarios_:
            raise ValueError(f"unknown scenario {name!r}; known: {sorted(self.scenarios_)}")
        return self.scenarios_[name]

    def _query_vectors(self, query: Any, n: int) -> np.ndarray | None:
        if query is None:
            return None
        queries = [query] if isinstance(query, str) else list(query) if isinstance(query, (list, tuple)) else None
        if queries is None or not all(isinstance(q, str) for q in queries):
            raise TypeError(f"query must be a str or a list of str, got {type(query).__name__}")
        if len(queries) not in (1, n):
            raise ValueError(f"query must be one string or one per user ({n}), got {len(queries)}")
        for i, q in enumerate(queries):
            if not q.strip():  # it would encode to an arbitrary direction: arbitrary items
                where = "query" if isinstance(query, str) else f"query[{i}]"
                raise ValueError(f"{where} is empty or whitespace only: give a request in words "
                                 "(or query=None)")
        if self._state.publisher.current.items.E is None:  # fixed at fit
            raise ValueError("this Recommender was fitted without item text, so it cannot "
                             "match a free-text query")
        vectors = self._encode(queries, kind="query")
        return np.repeat(vectors, n, axis=0) if len(queries) == 1 and n != 1 else vectors

    def _profile_vector(self, profile: Any) -> np.ndarray | None:
        """A visitor's profile text as the (1, d) row fit would store (None for none)."""
        if profile is None:
            return None
        if not isinstance(profile, str):
            raise TypeError(f"profile must be a str or None, got {type(profile).__name__}")
        if self._state.publisher.current.items.E is None:  # fixed at fit
            raise ValueError("this Recommender was fitted without item text, so it cannot "
                             "read a profile text")
        if not profile.strip():
            return None  # a blank profile is no profile, as in fit's users frame
        return self._encode([profile])

    # ------------------------------------------------------------------ snapshots
    def _item_rows(self, snap: Snapshot, ids: Any, name: str) -> np.ndarray:
        """Rows of caller item ids in ``snap``'s catalogue: an id that ``add_items`` is
        adding right now (its row beyond the snapshot) is unknown to this request."""
        rows = self._state.item_map.rows(ids, name)
        check_known(rows, snap.n_items, self._state.item_map, name)
        return rows

    def _users_of(self, snap: Snapshot, users: np.ndarray, name: str, histories: bool,
                  dislikes: bool = False) -> tuple[dict[str, np.ndarray | None], list[np.ndarray] | None]:
        """The users' signal rows (and histories: liked items, plus the disliked ones
        with ``dislikes``) as of ``snap``; called under the publish lock, under which
        ``update`` rewrites them."""
        check_known(users, snap.n_users, self._state.user_map, name)
        vectors = {n: (None if v is None else v[users]) for n, v in snap.users.items()}
        kernel, prior = self._state.cold_kernel, self._state.popularity
        liked = ([self._state.histories.get(u) for u in users]
                 if histories or kernel is not None or prior is not None else [])
        taken: list[np.ndarray] = []  # every item each user took, liked or not
        if kernel is not None or (histories and dislikes):
            taken = [np.union1d(h, self._state.feedback.dislikes(u)[0]) for h, u in zip(liked, users)]
        if kernel is not None:  # from every item taken, at request time (O(landmarks) per user)
            vectors["cold"] = kernel.queries(taken)
        if prior is not None:  # by the length of each history now (updates included)
            vectors["popularity"] = prior.queries([len(h) for h in liked])
        if not histories:
            return vectors, None
        return vectors, taken if dislikes else liked

    def _user_rows(self, users: np.ndarray) -> dict[str, np.ndarray | None]:
        """The users' signal vectors, all taken from one published state."""
        with self._state.publisher.pin(lambda snap: self._users_of(snap, users, "users", False)) as (_, got):
            return got[0]

    def _allow_rows(self, snap: Snapshot, allow: Any) -> np.ndarray | None:
        if allow is None:
            return None
        if isinstance(allow, np.ndarray) and allow.dtype == np.bool_:
            raise TypeError("allow must hold item ids (the caller's), not a boolean mask")
        return np.unique(self._item_rows(snap, list(np.atleast_1d(np.asarray(allow, dtype=object))), "allow"))

    def _check_k(self, k: Any) -> int:
        """k in [1, max(n_items, 1024)]: results keep width k (padded with -1/-inf), but a
        k beyond both the catalogue and 1024 could only allocate padding (ValueError)."""
        return check_k(k, self._state.publisher.current.n_items)

    def _diversity(self, diversity: Any) -> float:
        if diversity is None:
            return self._state.settings["diversity"]
        return check_real(diversity, "diversity", low=0.0, high=1.0)

    # ------------------------------------------------------------------ public API
    def recommend(self, user_ids: Ids, k: int = 10, *, exclude_seen: bool = True, query: Texts | None = None,
                  diversity: float | None = None, allow: IdList | None = None,
                  scenario: str | None = None) -> Recommendations:
        """Top-k items for known users.

        ``user_ids``: one caller id (1-D results) or a sequence (results (n, k)).
        ``exclude_seen`` drops every item the model knows each user interacted with,
        updates included; disliked items are dropped whatever it says. ``query``: a
        free-text request (one, or one per user) that shifts the ranking toward it while
        staying personal. ``diversity``: MMR
        trade-off in [0, 1] (None: the constructor's). ``allow``: caller item ids the
        results are restricted to. ``scenario``: a blend name from ``scenarios_``
        (None: "home"). Unknown ids raise :class:`llmrec.exceptions.UnknownIdError`.
        Results are k wide (padded with -1/-inf); ``k`` is at most
        ``max(n_items, 1024)``, as in every ranking method here.
        Safe to call from many threads while others call ``update`` or ``add_items``:
        each call sees the model as of one moment.
        """
        self._check_fitted()
        k = self._check_k(k)
        single = _one_id(user_ids)
        users = self._state.user_map.rows(user_ids if not single else [user_ids], "user_ids")
        weights = self._weights(scenario)
        diversity = self._diversity(diversity)
        query_vectors = self._query_vectors(query, len(users))
        gather = lambda snap: (self._users_of(snap, users, "user_ids", exclude_seen, True)  # noqa: E731
                               if exclude_seen else self._users_of(snap, users, "user_ids", False) +
                               ([self._state.feedback.dislikes(u)[0] for u in users],))
        with self._state.publisher.pin(gather) as (snap, got):
            vectors, seen = got[0], got[1]
            if not exclude_seen and any(len(d) for d in got[2]):
                seen = got[2]  # dislikes are never recommended back
            allow_rows = self._allow_rows(snap, allow)
            exclude = None
            if seen is not None:  # id lists for a few users skip building a sparse matrix
                exclude = ([np.sort(h) for h in seen] if len(users) <= 16
                           else seen_matrix(seen, snap.n_items))
            ids, scores = ranking.rank(self._state, snap, vectors, weights, k, exclude, allow_rows, diversity,
                                     query_vectors)
        return self._result(ids, scores, single, self._state.user_map.ids[users], snap.labels)

    def _result(self, ids: np.ndarray, scores: np.ndarray, single: bool, user_ids: Any = None,
                labels: Any = None) -> Recommendations:
        """Results of item rows ``ids``; ``labels``: the snapshot's labels (decoded when read)."""
        out = self._state.item_map.to_ids(ids)
        source = None if labels is None else (labels, ids[0] if single else ids)
        if single:
            return Recommendations(out[0], scores[0], None if user_ids is None else user_ids[0], source)
        return Recommendations(out, scores, user_ids, source)

    def recommend_for_history(self, item_ids: IdList, k: int = 10, *, query: str | None = None,
                              profile: str | None = None, exclude_seen: bool = True,
                              diversity: float | None = None,
                              scenario: str | None = None) -> Recommendations:
        """Top-k for a visitor not in the model, from the items they interacted with
        (oldest first); nothing is stored. Returns 1-D results.

        ``profile``: the visitor's profile text, read as a fitted user's ``users`` text
        is (by the text signal and by towers fitted with profiles); it needs a model
        fitted with item text, and is read with at least one item: on MovieLens-100K a
        profile alone (age, gender, occupation) ranks far below the most popular items
        (ndcg@10 0.05–0.16 against 0.51–0.54; bench/RESULTS.md, "Sixteenth session").

        An empty history has no signal of its own: with ``query`` the
        ranking is the request's alone (as :meth:`search`, under ``scenario``'s query
        weight); without one it is the most popular items — those most users have in
        their histories (updates included; dislikes do not count), ties broken by
        catalogue order — with each item's number of users as its score (``diversity``
        does not apply to this list).
        """
        self._check_fitted()
        k = self._check_k(k)
        weights, diversity = self._weights(scenario), self._diversity(diversity)
        query_vectors = self._query_vectors(query, 1)
        profile_vector = self._profile_vector(profile)
        with self._state.publisher.pin() as (snap, _):
            rows = self._item_rows(snap, list(np.atleast_1d(np.asarray(item_ids, dtype=object))), "item_ids")
            if len(rows) == 0:
                if query_vectors is None:
                    return self._result(*ranking.popular(self._state.histories, snap.n_items, k), True,
                                        labels=snap.labels)
                if weights.get("query", 0.0) <= 0:
                    raise ValueError(f"item_ids is empty and scenario {scenario or 'home'!r} gives the "
                                     "query no weight: nothing to rank by")
                vectors = dict.fromkeys(("behaviour", "sequence", "transition", "text"))
                ids, scores = ranking.rank(self._state, snap, vectors, weights, k, None, None, diversity, query_vectors)
                return self._result(ids, scores, True, labels=snap.labels)
            _, first_from_end = np.unique(rows[::-1], return_index=True)
            history = rows[np.sort(len(rows) - 1 - first_from_end)]
            vectors = signal_vectors(self._state.settings, snap.items, snap.als, snap.towers, [history],
                                     profile_vector)
            if self._state.cold_kernel is not None:
                vectors["cold"] = self._state.cold_kernel.queries([history])
            if self._state.popularity is not None:
                vectors["popularity"] = self._state.popularity.queries([len(history)])
            exclude = weighted_rows([history], snap.n_items, 0.0) if exclude_seen else None
            ids, scores = ranking.rank(self._state, snap, vectors, weights, k, exclude, None, diversity, query_vectors)
        return self._result(ids, scores, True, labels=snap.labels)

    def search(self, query: str, k: int = 10, *, user_id: Id | None = None) -> Recommendations:
        """Items matching a free-text request; with ``user_id``, blended with that
        user's taste (scenario "search"). Nothing is excluded. Returns 1-D results. An
        empty or whitespace-only ``query`` raises ``ValueError`` (it names no items)."""
        self._check_fitted()
        k = self._check_k(k)
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        query_vectors = self._query_vectors(query, 1)
        gather = None
        if user_id is not None:
            users = self._state.user_map.rows([user_id], "user_id")
            gather = lambda snap: self._users_of(snap, users, "user_id", False)[0]  # noqa: E731
        with self._state.publisher.pin(gather) as (snap, vectors):
            if vectors is None:
                vectors = {"behaviour": None, "sequence": None, "transition": None, "text": None}
            ids, scores = ranking.rank(self._state, snap, vectors, self._weights("search"), k, None, None, 0.0,
                                     query_vectors)
        return self._result(ids, scores, True, labels=snap.labels)

    def similar_items(self, item_ids: Ids, k: int = 10) -> Recommendations:
        """Items most like each given item (scenario "similar": factor cosine plus text
        cosine), the item itself excluded. One id gives 1-D results."""
        self._check_fitted()
        k = self._check_k(k)
        single = _one_id(item_ids)
        with self._state.publisher.pin() as (snap, _):
            rows = self._item_rows(snap, item_ids if not single else [item_ids], "item_ids")
            items = snap.items
            vectors = {"behaviour": None, "sequence": items.Vn[rows], "transition": items.P[rows],
                       "text": None if items.E is None else items.E[rows]}
            exclude = weighted_rows([np.array([r]) for r in rows], snap.n_items, 0.0)
            ids, scores = ranking.rank(self._state, snap, vectors, self._weights("similar"), k, exclude, None,
                                       0.0, None)
        return self._result(ids, scores, single, labels=snap.labels)

    def set_scenario(self, name: str, weights: dict[str, float]) -> Recommender:
        """Add or replace a named blend ({signal: weight} over "behaviour", "sequence",
        "text", "query"); returns self."""
        self._check_fitted()
        if not isinstance(name, str) or not name:
            raise TypeError("scenario name must be a non-empty str")
        self.scenarios_ = {**self.scenarios_, name: check_weights(weights, "weights")}
        return self

    def update(self, user_id: Id, item_ids: Ids, *, weights: Numbers | None = None,
               event: Texts | None = None, ratings: Numbers | None = None,
               profile: str | None = None) -> Recommender:
        """Record new interactions (oldest first); they take effect at once (fold-in).
        An unknown ``user_id`` becomes a new user. Items that had no interactions at fit
        time (added later, or never seen) are re-solved from their clicks so far.
        ``weights`` (> 0), ``event`` (names) and ``ratings`` (one per item, or one for
        all) are read as the columns of the same names at fit (``rating_rule``,
        ``event_weights_``): a low rating records a dislike, which is never recommended
        back and pushes the user's vector away from the item. An item's latest
        interaction replaces earlier ones (a like rated 1/5 later becomes a dislike).
        ``profile``: the user's profile text, as in fit's ``users`` frame (a model fitted
        with item text; a blank text removes it; None keeps the stored one); it is read
        from this update on. Concurrent requests see the update whole or not at all.
        Returns self."""
        updates.update(self, user_id, item_ids, weights, event, ratings, profile)
        return self

    def add_items(self, items: pd.DataFrame) -> np.ndarray:
        """Add items (``item_id`` + ``text``, or fields for :func:`llmrec.text.item_text`);
        they are recommendable at once: their factors are predicted from their text
        (:mod:`.text_prior`; models saved before it: the ALS priors' F·W; zero without an
        encoder). Concurrent requests see the catalogue before
        or after the addition, never a mix. Returns their caller ids."""
        return updates.add_items(self, items)

    def explain(self, user_id: Id, item_id: Id) -> Explanation:
        """Why ``item_id`` scores as it does for ``user_id``: the history items and the
        text evidence behind the score, in words (``str(explanation)``) and numbers."""
        self._check_fitted()
        users = self._state.user_map.rows([user_id], "user_id")
        gather = lambda snap: (self._users_of(snap, users, "user_id", True),  # noqa: E731
                               self._state.feedback.get(int(users[0])))
        with self._state.publisher.pin(gather) as (snap, ((vectors, history), record)):
            item = int(self._item_rows(snap, [item_id], "item_id")[0])
            cited = catalogue.drop_removed(history[0], snap.removed)
            return explain_score(self._state, self.scenarios_["home"], snap, vectors, cited[cited >= 0],
                                 item, record)

    # ------------------------------------------------------------------ a living catalogue
    def remove_items(self, item_ids: Ids) -> Recommender:
        """Take items out of the catalogue: from the next call on no method recommends,
        returns or cites them (recommend, recommend_for_history, search, similar_items,
        explain), and their ids are unknown (:class:`llmrec.UnknownIdError`), also after
        save and load. Stage 1 skips them inside its native scans. They stay in the
        histories (still evidence of the users' taste) until the next fit; their index
        storage is reclaimed by :meth:`compact`, all of it by the next fit. An id added
        again later with :meth:`add_items` is a new item. Unknown (or already removed)
        ids raise ``UnknownIdError`` and nothing is removed. Returns self."""
        catalogue.remove_items(self, item_ids)
        return self

    def forget_user(self, user_id: Id) -> Recommender:
        """Erase a user at once: history, signal vectors, profile text vector, ALS
        factors and interactions, tower vector and the id itself (overwritten, not only
        unindexed), and the late items' click counts are rebuilt without them. A model
        saved afterwards holds no trace of the user. The id is then unknown; it may come
        back later as a new user. Unknown ids raise :class:`llmrec.UnknownIdError`.
        Returns self."""
        catalogue.forget_user(self, user_id)
        return self

    def compact(self) -> Recommender:
        """Reclaim the stage-1 index storage of removed items (the item matrices keep
        their rows until the next fit). Requests go on meanwhile. Returns self."""
        catalogue.compact(self)
        return self

    # ------------------------------------------------------------------ introspection
    @property
    def item_ids_(self) -> np.ndarray:
        """The model's item ids in its row order (a read-only array; items added by
        ``add_items`` included, items taken out by ``remove_items`` left out)."""
        self._check_fitted()
        return _live_ids(self._state.item_map, self._state.publisher.current.n_items)

    @property
    def user_ids_(self) -> np.ndarray:
        """The model's user ids in its row order (a read-only array; users added by
        ``update`` included, users erased by ``forget_user`` left out)."""
        self._check_fitted()
        return _live_ids(self._state.user_map, self._state.publisher.current.n_users)

    def history(self, user_id: Id) -> pd.DataFrame:
        """What the model knows about ``user_id``: a DataFrame of its interactions,
        oldest first, the latest of each item only — ``item_id``, ``weight`` (the
        confidence multiplier: weight × event weight × the rating's confidence),
        ``disliked``, ``rating`` (NaN: none), ``event`` (None: none). Unknown ids raise
        :class:`llmrec.exceptions.UnknownIdError`."""
        self._check_fitted()
        if np.ndim(user_id) != 0:
            raise TypeError("user_id must be a single id")
        user = int(self._state.user_map.rows([user_id], "user_id")[0])
        def gather(snap: Snapshot) -> dict[str, np.ndarray]:
            check_known(np.array([user]), snap.n_users, self._state.user_map, "user_id")
            return self._state.feedback.get(user)

        with self._state.publisher.pin(gather) as (_, record):
            return fb.history_frame(record, self._state.item_map.to_ids(record["items"]),
                                    self._state.feedback.event_names)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle support, at any time: a fitted model is captured under the writer lock
        (no ``update`` or ``add_items`` half done) and nested as bytes; locks, the
        publish state and an encoder built from a name are rebuilt on unpickling."""
        state = self.__dict__.copy()
        lock = state.pop("_lock", None)
        state.pop("_encoder_lock", None)
        if isinstance(self.encoder, str) or self.encoder is None:
            state.pop("_encoder_obj", None)  # rebuilt lazily from the name
        if lock is None:
            return state
        with lock:
            return {"pickled": pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "pickled" in state:
            state = pickle.loads(state["pickled"])
        self.__dict__.update(state)
        if "_state" in state:
            self._lock = threading.Lock()
            self._encoder_lock = threading.Lock()
            if "_encoder_obj" not in state:
                self._encoder_obj = None
            snap = self._state.publisher.current
            shared = snap.items.index.text_vectors()  # E and the request channel: one copy again
            if (shared is not None and isinstance(snap.items.E, np.ndarray)
                    and shared.shape == snap.items.E.shape):
                self._state.publisher.current = snap._replace(items=snap.items._replace(E=shared))

    # ------------------------------------------------------------------ files
    def warm_up(self) -> Recommender:
        """Build now what the first requests would otherwise build on their own time: the
        text encoder named by the model (``"default"`` or a saved path: seconds, the
        model's weights loaded) and the towers' single-user forward. A server calls it
        on a freshly loaded model before serving it (``llmrec serve`` does, on every
        load). Returns self."""
        self._check_fitted()
        snap = self._state.publisher.current
        if self.encoder is not None and snap.items.E is not None:
            self._text_encoder()
        if snap.towers is not None and snap.towers.n_items_:
            snap.towers.user_vectors([np.zeros(1, dtype=np.int64)])
        return self

    def save(self, directory: PathArg) -> None:
        """Write the model to ``directory``, switched into place atomically: a crash or a
        kill leaves the previous model or the new one, never a mix. ``directory`` must
        not exist, or be empty, or hold an llmrec model: anything else raises
        ``FileExistsError`` and is left untouched. Temporaries of earlier, killed saves
        are removed. Requests keep running meanwhile; updates wait."""
        self._check_fitted()
        from llmrec.recommender.persistence import save

        with self._lock:
            save(self, directory)

    @classmethod
    def load(cls, directory: PathArg, *, encoder: TextEncoder | str | None = "saved") -> Recommender:
        """Read a model written by :meth:`save`. ``encoder``: "saved" re-creates the
        saved encoder spec lazily (a model name or path), or give a TextEncoder / None."""
        from llmrec.recommender.persistence import load

        return load(cls, directory, encoder)


def _live_ids(ids: IdMap, n: int) -> np.ndarray:
    """The first ``n`` ids of ``ids`` without the removed or forgotten ones, read-only."""
    values, gone = ids.ids[:n], ids.gone
    if gone is not None:
        values = values[gone[:n] == 0]
    return _read_only(values)


def _read_only(values: np.ndarray) -> np.ndarray:
    out = values.view()
    out.flags.writeable = False
    return out


def _one_id(ids: Any) -> bool:
    """Whether ``ids`` is one caller id (1-D results) rather than a sequence of them."""
    return bool(np.ndim(ids) == 0)
