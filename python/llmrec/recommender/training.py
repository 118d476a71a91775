"""Fitting the Recommender's parts: the ALS models and the blend on a validation slice."""

from __future__ import annotations

import logging
from functools import cache, partial
from typing import Any

import numpy as np

from llmrec._log import stage
from llmrec.als import ALS
from llmrec.index import ExactIndex
from llmrec.recommender import scoring
from llmrec.recommender.fusion import DEFAULT_WEIGHTS, fit_weights
from llmrec.recommender.history import Histories, transitions, weighted_rows
from llmrec.recommender.partitioned import AUTO_FLAT_ITEMS, log_index
from llmrec.recommender.rows import inverse_norms, resolve_text_storage
from llmrec.recommender.state import build_items
from llmrec.recommender.calibration import fit_calibration
from llmrec.recommender.cold_kernel import ColdKernel, ColdRows, fit_cold_kernel
from llmrec.recommender.popularity import MIN_USERS, fit_table, mean_user
from llmrec.recommender.text_prior import TextPrior, fit_text_prior
from llmrec.recommender.towers_signal import fit_towers, user_vectors as towers_user_vectors
from llmrec.recommender.users import behaviour_vectors, sequence_vectors, text_vectors

log = logging.getLogger(__name__)

REGULARIZATION_GRID = (5.0, 10.0, 20.0, 40.0)
VALIDATION_USERS = 2000  # users sampled to fit the blend (enough for stable weights)
# Up to this many items the validation ranks the whole catalogue; above it, the union
# of each signal's top VALIDATION_CANDIDATES (a held-out item outside it is a miss for
# every weight alike). Full ranking of 3,000 items for 2,000 users made the weight
# search cost a minute; the union keeps it to seconds.
FULL_RANKING_ITEMS = 2048
MAX_COLD_ITEMS = 100_000  # items without interactions at fit beyond which the cold signal is off
VALIDATION_CANDIDATES = 200


def prior_features(s: dict[str, Any], E: np.ndarray | None) -> np.ndarray | None:
    """The features the factor models are pulled toward: the text vectors ``E`` where
    there are some and ``prior_strength`` > 0, else None (no text priors)."""
    return E if E is not None and s["prior_strength"] > 0 else None


def fit_als(s: dict[str, Any], regularization: float, histories: list[np.ndarray], n_items: int,
            E: np.ndarray | None, random_state: Any, show_progress: bool = False,
            weights: list[np.ndarray] | None = None) -> ALS:
    """Implicit ALS on the histories (liked items), item factors pulled toward the text
    map; each interaction's value is its confidence multiplier (1 without ``weights``),
    so c = 1 + alpha·m."""
    rows = weighted_rows(histories, n_items, 0.0, weights)
    if weights is None:
        rows.data[:] = 1.0
    params = dict(factors=s["factors"], regularization=regularization, alpha=s["alpha"],
                  iterations=s["iterations"], prior_strength=max(s["prior_strength"], 1e-12),
                  random_state=random_state)
    with stage(log, "Recommender.fit: ALS", users=rows.shape[0], items=n_items,
               interactions=int(rows.nnz), factors=s["factors"]):
        return _fit(s, params, rows, item_features=prior_features(s, E), show_progress=show_progress)


def fit_items_prior(s: dict[str, Any], als: ALS, E: np.ndarray | None,
                    widths: tuple[float, ...] | None = None) -> TextPrior | None:
    """The kernel text prior of items without interactions (:mod:`.text_prior`), fitted
    on ``als``'s items with interactions, and those without any given its factors (in
    place of F·W); None without text or priors (``prior_strength`` 0). ``widths``: the
    kernel widths to choose from (default: :data:`.text_prior.WIDTHS`)."""
    E = prior_features(s, E)
    if E is None:
        return None
    counts = np.diff(als.user_items_.tocsc().indptr)
    with stage(log, "Recommender.fit: text prior", items=int((counts > 0).sum())):
        prior = fit_text_prior(E, als.item_factors_, counts, als.user_factors_,
                               **({} if widths is None else {"widths": widths}))
    unfitted = np.flatnonzero(counts == 0)
    if prior is not None and len(unfitted):
        als.set_item_rows(unfitted, prior.factors(E[unfitted]))
    return prior


def fit_cold(s: dict[str, Any], regularization: float, feedback: Any, als: ALS,
             E: np.ndarray | None, texts: list[str] | None, random_state: Any,
             prior: TextPrior | None = None) -> tuple[ColdKernel, float, dict[str, Any]] | None:
    """The cold signal (:mod:`.cold_kernel`) and its weight, chosen on a cold-item
    validation with ALS refitted (λ = ``regularization``) on the rest as the fit does
    (every item taken, at its multiplier) and the behaviour signal as served (likes at
    their multipliers, dislikes pushing away); None without text or priors.
    ``feedback``: the users' records (:class:`.feedback.Feedback`); ``texts``: the item
    texts (their words); ``prior``: the fit's text prior, whose width the folds' priors
    keep (one eigendecomposition each instead of four). The signal's learned part maps
    text to ``als``'s item factors (:func:`.cold_kernel.fit_cold_kernel`). Off (None) where more than
    ``MAX_COLD_ITEMS`` items have no interactions at fit: each keeps m + 5 bytes (up to
    2 KB), and a mostly empty catalogue (a synthetic scale test) would hold gigabytes."""
    E = prior_features(s, E)
    if E is None:
        return None
    counts = np.diff(als.user_items_.tocsc().indptr)
    if int((counts == 0).sum()) > MAX_COLD_ITEMS:
        log.info("Recommender.fit: no cold-item signal: %d items without interactions (> %d)",
                 int((counts == 0).sum()), MAX_COLD_ITEMS)
        return None

    records = [feedback.get(u) for u in range(len(feedback))]

    def kept(items: np.ndarray, values: np.ndarray, mapping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = mapping[items]
        return rows[rows >= 0], values[rows >= 0]

    def factors(mapping: np.ndarray, users: np.ndarray, n_items: int, texts: np.ndarray) -> ALS:
        side = [kept(*item_side_rows(records[u]), mapping) for u in users]
        model = fit_als(s, regularization, [r[0] for r in side], n_items, texts, random_state,
                        weights=[r[1] for r in side])
        model.drop_item_priors()
        fit_items_prior(s, model, texts, None if prior is None else (prior.width,))
        return model

    def behaviour(model: ALS, mapping: np.ndarray, users: np.ndarray) -> np.ndarray:
        likes, dislikes = [], []
        for u in users:
            r = records[u]
            likes.append(kept(r["items"][~r["disliked"]], r["weight"][~r["disliked"]], mapping))
            dislikes.append(kept(r["items"][r["disliked"]], r["weight"][r["disliked"]], mapping))
        return behaviour_vectors(model, [h for h, _ in likes], model.item_factors_.shape[0], s["recency"],
                                 weights=[w for _, w in likes], dislikes=dislikes)

    taken = [records[u]["items"] for u in range(len(records))]
    with stage(log, "Recommender.fit: cold-item signal", items=int((counts > 0).sum())):
        return fit_cold_kernel(E, texts, taken, counts, factors, behaviour, random_state, als.item_factors_)


def cold_rows(kernel: ColdKernel | None, E: np.ndarray | None, texts: list[str] | None,
              counts: np.ndarray, shift: float = 0.0) -> ColdRows | None:
    """The cold signal's item rows for a fit's catalogue: items without interactions
    (``counts`` 0) get theirs, the rest the shared zero row; ``shift``: their δ
    (:mod:`.cold_shift`)."""
    if kernel is None or E is None:
        return None
    cold = np.flatnonzero(np.asarray(counts) == 0)
    return ColdRows.build(len(counts), len(kernel.mean), cold,
                          kernel.rows(E[cold], None if texts is None else [texts[i] for i in cold]), shift)


def _fit(s: dict[str, Any], params: dict[str, Any], matrix: Any, **fit_args: Any) -> ALS:
    """An ALS fit here, or on Ray where ``s["cluster"]`` says so (the same model: the
    distributed fit equals the local one, see :mod:`llmrec.distributed.als`)."""
    if s.get("cluster") != "ray":
        return ALS(**params, num_threads=s["num_threads"]).fit(matrix, **fit_args)
    from llmrec.distributed.als import ALS as RayALS, default_num_blocks

    model = RayALS(**params, num_threads=1, num_blocks=default_num_blocks(matrix.shape)
                   ).fit(matrix, **fit_args).to_local()
    model.num_threads = s["num_threads"]  # its searches run here, with the model's threads
    model._settings_used["num_threads"] = s["num_threads"]
    return model


def fit_transitions(s: dict[str, Any], regularization: float, histories: list[np.ndarray],
                    n_items: int, random_state: Any, E: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Next-item factors: implicit ALS of the item → later-item matrix
    (:func:`~llmrec.recommender.history.transitions`), f/2 dims. Returns (P, Q): a
    history item's "from" side and a candidate's "to" side.

    With text vectors ``E`` (and ``prior_strength`` > 0) both sides are pulled toward
    a ridge map of the items' text, as the item factors are (:class:`~llmrec.als.ALS`
    with ``item_features`` and ``user_features``): an item's next-item pairs are far
    sparser than its interactions, so its text says more about them (MovieLens warm
    ndcg@10 0.2832 / 0.2883 / 0.2846 → 0.2894 / 0.2884 / 0.2871, seeds 0–2; the text
    gain over ``encoder=None`` +0.0007 / +0.0070 / +0.0008 → +0.0069 / +0.0071 /
    +0.0033; bench/RESULTS.md, "Fourteenth session"). Items without any pair get the
    map's guess from their text, as their item factors do (zero rows without text)."""
    ft = max(s["factors"] // 2, 1)
    matrix = transitions(histories, n_items)
    if matrix.nnz == 0:
        zeros = np.zeros((n_items, ft), dtype=np.float32)
        return zeros, zeros.copy()
    params = dict(factors=ft, regularization=regularization, alpha=s["alpha"],
                  iterations=s["iterations"], random_state=random_state)
    features = prior_features(s, E)
    if features is not None:
        params["prior_strength"] = s["prior_strength"]
    with stage(log, "Recommender.fit: next-item ALS", items=n_items, pairs=int(matrix.nnz),
               factors=ft, text_prior=features is not None):
        als = _fit(s, params, matrix, item_features=features, user_features=features)
    return (np.ascontiguousarray(als.user_factors_, dtype=np.float32),
            np.ascontiguousarray(als.item_factors_, dtype=np.float32))


def unit_factors(als: ALS) -> np.ndarray:
    """Unit-length item factors; zero for items without interactions (their
    text-predicted direction is too noisy for the sequence cosine)."""
    Vn = scoring.unit_rows(als.item_factors_)
    Vn[np.diff(als.user_items_.tocsc().indptr) == 0] = 0.0
    return Vn


def fit_items(s: dict[str, Any], random_state: Any, als: ALS, E: np.ndarray | None, P: np.ndarray,
              Q: np.ndarray, towers: Any = None, cold: ColdKernel | None = None,
              texts: list[str] | None = None, cold_shift: float = 0.0) -> tuple[scoring.Geometry, scoring.Items]:
    """The catalogue's geometry and the items (matrices, stage-1 indexes) of a fit, from
    its ALS models, text vectors ``E`` (of ``texts``), ``towers`` and the ``cold`` signal
    (its items shifted by ``cold_shift``, :mod:`.cold_shift`)."""
    V = als.item_factors_  # the ALS model's own array: the factors are held once (see updates)
    # Items without interactions have only a text-predicted position: its direction is
    # too noisy for the cosine of the sequence signal (cold-item ndcg@10 0.31 → 0.21
    # on MovieLens with it), so they get none (neutral, the catalogue's average).
    Vn = unit_factors(als)
    G = None if towers is None else np.ascontiguousarray(towers.item_vectors(), dtype=np.float32)
    geometry = scoring.make_geometry(V, Vn, E, Q, G)
    storage = resolve_text_storage(s.get("text_storage", "float32"), len(V), AUTO_FLAT_ITEMS)
    items = build_items(s, random_state, geometry, V, inverse_norms(V, np.any(Vn != 0, axis=1)),
                        scoring.stored_text(E, storage), P, Q, G, search_text=E)
    log_index(items.index, len(V))
    return geometry, items._replace(Z=cold_rows(cold, E, texts, np.diff(als.user_items_.tocsc().indptr), cold_shift))


def fit_blend(s: dict[str, Any], histories: Histories, n_items: int, E: np.ndarray | None,
              profile: np.ndarray | None, random_state: Any, keep: dict[str, Any] | None = None,
              feedback: Any = None, towers_text: Any = None, catalogue: int | None = None
              ) -> tuple[dict[str, float], float, dict[str, Any]]:
    """Hold out the latest ``validation`` share of each sampled user's history, and
    for each ALS λ of the grid fit the models on the rest and the blend weights on the
    held-out items (ndcg@10). Returns (weights, λ, report). ``keep`` (a dict, when
    given) receives the best λ's validation data (raw signals, histories, held-out
    items, score matrices) for calibration and per-scenario weights.

    With ``feedback`` (:class:`.feedback.Feedback`; ``histories`` are its likes) the
    models see the likes' multipliers and the users' dislikes; the held-out items are
    the latest likes, and dislikes are never candidates. ``towers_text``: the item
    texts and encoder for towers with ``text="finetune"`` (a ``TowersText``).
    ``catalogue``: the full catalogue's size when ``n_items`` is a sample's (the
    popularity prior's calibrations stand for all of its items)."""
    grid = REGULARIZATION_GRID if "regularization" not in s else (s["regularization"],)
    weights = dict(DEFAULT_WEIGHTS)
    if E is None:
        weights["text"] = weights["query"] = 0.0
    if "text_weight" in s:
        weights["text"] = s["text_weight"]
    if s.get("towers") is not None:
        weights["towers"] = 1.0
    fallback = s.get("regularization", 20.0)
    n_users = len(histories)
    lengths = np.array([len(histories.get(u)) for u in range(n_users)])
    eligible = np.flatnonzero(lengths >= 3)
    if s["validation"] == 0 or len(eligible) < 10:
        return weights, fallback, {"skipped": True}
    rng = np.random.default_rng(random_state)
    sample = set(rng.choice(eligible, size=min(len(eligible), VALIDATION_USERS), replace=False).tolist())
    train_h, train_w, held, item_side = [], [], {}, []
    hist_w, hist_bad = [], []
    for u in range(n_users):
        h = histories.get(u)
        record = None if feedback is None else feedback.get(u)
        n_val = 0
        if u in sample:
            n_val = min(max(int(round(s["validation"] * len(h))), 1), len(h) - 1)
            held[u] = h[-n_val:]
            if record is not None:  # the targets: the held-out likes rated >= like_threshold
                strong = feedback_strong(record, s)
                held[u] = held[u][strong[-n_val:]]
                if len(held[u]) == 0:
                    del held[u]
        train_h.append(h[:len(h) - n_val])
        if record is not None:
            # the record before the first held-out like: likes and dislikes then known
            liked = np.flatnonzero(~record["disliked"])
            cut = liked[len(h) - n_val] if n_val else len(record["items"])
            before = {k: v[:cut] for k, v in record.items()}
            train_w.append(before["weight"][~before["disliked"]])
            item_side.append(item_side_rows(before))
            if u in held:
                hist_w.append(train_w[-1])
                hist_bad.append((before["items"][before["disliked"]], before["weight"][before["disliked"]]))
    val_users = np.array(sorted(held))
    hist = [train_h[u] for u in val_users]
    weights_all: list[np.ndarray] | None = None
    als_h = train_h
    like_w: list[np.ndarray] | None = hist_w
    dislikes: list[tuple[np.ndarray, np.ndarray]] | None = hist_bad
    if feedback is None:
        like_w = dislikes = None
        blocked_h = hist
    else:
        als_h, weights_all = [r[0] for r in item_side], [r[1] for r in item_side]
        blocked_h = [np.union1d(h, d[0]) for h, d in zip(hist, hist_bad)]
    fixed = {"query": 0.0}
    if "text_weight" in s or E is None:
        fixed["text"] = weights["text"]
    report: dict[str, Any] = {"users": len(val_users), "ndcg": {}}
    towers = towers_raw = None
    if s.get("towers") is not None:
        # Trained without the held-out items: its weight is fitted on targets it never saw.
        towers = fit_towers(s["towers"], train_h, n_items, E, text=towers_text, profile=profile)
        towers_raw = (towers_user_vectors(towers, hist, None if profile is None else profile[val_users]),
                      towers.item_vectors())
        report["towers_best_epoch"] = int(towers.best_epoch_)
        report["towers_averaged_epochs"] = int(towers.averaged_epochs_)
    best = (-1.0, weights, fallback)
    best_models: tuple[ALS, np.ndarray, np.ndarray, np.ndarray] | None = None
    for regularization in grid:
        als = fit_als(s, regularization, als_h, n_items, E, random_state, weights=weights_all)
        V, Vn = als.item_factors_, unit_factors(als)
        P, Q = fit_transitions(s, regularization, als_h, n_items, random_state, E)
        raw: dict[str, tuple[Any, np.ndarray]] = {
               "behaviour": (behaviour_vectors(als, hist, n_items, s["recency"], weights=like_w,
                                               dislikes=dislikes), V),
               "sequence": (sequence_vectors(Vn, hist, s["sequence_decay"]), Vn),
               "transition": (sequence_vectors(P, hist, s["sequence_decay"]), Q)}
        if E is not None:
            raw["text"] = (text_vectors(E, hist, s["recency"],
                                        None if profile is None else profile[val_users]), E)
        if towers_raw is not None:
            raw["towers"] = towers_raw
        chosen: dict[str, Any] = {}
        signals, relevant, n_relevant = validation_matrices(
            raw, blocked_h, [held[u] for u in val_users], n_items, s["num_threads"],
            cold=~np.any(Vn != 0, axis=1), out=chosen)
        w, value = fit_weights(signals, relevant, n_relevant, fixed=fixed)
        report["ndcg"][regularization] = value
        if value > best[0]:
            best = (value, w, regularization)
            best_models = (als, Vn, P, Q)
            if keep is not None:
                keep.update(raw=raw, hist=hist, held=[held[u] for u in val_users], users=val_users,
                            signals=signals, relevant=relevant, n_relevant=n_relevant,
                            cold=~np.any(Vn != 0, axis=1), fixed=fixed, n_items=n_items,
                            candidates=chosen["candidates"])
    weights.update(best[1])
    report["weights"] = dict(weights)
    if s.get("popularity_prior", True) and best_models is not None:
        with stage(log, "Recommender.fit: popularity prior", users=len(val_users)):
            cut = partial(first_items, s, best_models, hist, like_w, blocked_h, [held[u] for u in val_users],
                          n_items, E, None if profile is None else profile[val_users],
                          None if towers is None or towers_raw is None else (towers, towers_raw[1]))
            report.update(fit_popularity(s, cut, {k: v for k, v in weights.items() if k != "query"}, n_items,
                                         ~np.any(best_models[1] != 0, axis=1), random_state, catalogue))
    return weights, best[2], report


def fit_popularity(s: dict[str, Any], cut: Any, blend: dict[str, float], n_items: int, cold: np.ndarray,
                   random_state: Any, catalogue: int | None) -> dict[str, Any]:
    """The popularity prior's table (:func:`.popularity.fit_table`) and a Platt pair per
    length where it weighs (:mod:`.calibration`), from ``cut(n)``: the validation users
    known by their first n items (:func:`first_items`), under the fitted ``blend``.
    Returns the report's entries: "popularity" (per length), "popularity_lengths",
    "popularity_weights" and "popularity_calibration" ([n, a, b] rows)."""
    cut = cache(cut)  # each length's users serve the weight and the calibration

    def matrices(n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray] | None:
        users = cut(n)
        if users is None:
            return None
        raw, seen, targets = users
        return validation_matrices(raw, seen, targets, n_items, s["num_threads"], cold=cold)

    lengths, table, per_length = fit_table(matrices, blend)
    calibration = []
    for n, weight in zip(lengths, table):
        users = cut(n)
        if weight > 0 and users is not None:
            raw, seen, targets = users
            platt = fit_calibration(raw, {**blend, "popularity": weight}, seen, targets, n_items, cold,
                                    random_state, catalogue=catalogue)
            calibration.append([n, platt.a, platt.b])
    return {"popularity": per_length, "popularity_lengths": lengths, "popularity_weights": table,
            "popularity_calibration": calibration}


def first_items(s: dict[str, Any], models: tuple[ALS, np.ndarray, np.ndarray, np.ndarray],
                hist: list[np.ndarray], like_w: list[np.ndarray] | None, blocked: list[np.ndarray],
                held: list[np.ndarray], n_items: int, E: np.ndarray | None, profile: np.ndarray | None,
                towers: tuple[Any, np.ndarray] | None, n: int
                ) -> tuple[dict[str, tuple[Any, np.ndarray]], list[np.ndarray], list[np.ndarray]] | None:
    """The validation users known by their first ``n`` liked items, as (raw signals with
    a "popularity" one — ū against V, :mod:`.popularity` —, what each user took in
    training, held-out items); None with fewer than ``MIN_USERS`` users having ``n``.
    Their held-out items stay the targets; the rest of ``blocked`` (their whole training
    history and dislikes) is neither target nor candidate. ``models``: the validation's
    (ALS, unit factors, next-item P, Q); ``hist``, ``like_w``, ``profile``: the users'
    training likes, multipliers and profile rows; ``towers``: (model, item vectors)."""
    als, Vn, P, Q = models
    who = [j for j, h in enumerate(hist) if len(h) >= n]
    if len(who) < MIN_USERS:
        return None
    cut = [hist[j][:n] for j in who]
    rows = None if profile is None else profile[who]
    raw: dict[str, tuple[Any, np.ndarray]] = {
        "behaviour": (behaviour_vectors(als, cut, n_items, s["recency"],
                                        weights=None if like_w is None else [like_w[j][:n] for j in who]),
                      als.item_factors_),
        "sequence": (sequence_vectors(Vn, cut, s["sequence_decay"]), Vn),
        "transition": (sequence_vectors(P, cut, s["sequence_decay"]), Q),
        "popularity": (np.tile(mean_user(als), (len(who), 1)), als.item_factors_)}
    if E is not None:
        raw["text"] = (text_vectors(E, cut, s["recency"], rows), E)
    if towers is not None:
        raw["towers"] = (towers_user_vectors(towers[0], cut, rows), towers[1])
    return raw, [blocked[j] for j in who], [held[j] for j in who]


def feedback_strong(record: dict[str, np.ndarray], s: dict[str, Any]) -> np.ndarray:
    """Per like of ``record``: rated at or above ``like_threshold`` (or not rated)."""
    liked = ~record["disliked"]
    rating = record["rating"][liked]
    if s["rating_rule"] == "ignore":
        return np.ones(len(rating), dtype=bool)
    return np.isnan(rating) | (rating >= s["like_threshold"])


def item_side_rows(record: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(items, multipliers) of a user's record for the item-side fits (ALS, next-item)."""
    from llmrec.recommender.feedback import EXPOSURE_WEIGHT

    # Which items go together is learned from everything taken, dislikes included
    # (see the feedback module: dropping them cost 6 % of "watched" ndcg on MovieLens).
    return record["items"], np.where(record["disliked"], EXPOSURE_WEIGHT, record["weight"]).astype(np.float32)


def validation_matrices(raw: dict[str, tuple[np.ndarray, np.ndarray]], hist: list[np.ndarray],
                        held: list[np.ndarray], n_items: int, num_threads: int, cold: np.ndarray,
                        out: dict[str, Any] | None = None
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Spread-normalised signal scores (name → (n, C)) on each validation user's
    candidates — the whole catalogue when small, else the union of each signal's top
    items — with the relevance mask and the held-out counts. Seen items are blocked;
    items without interactions take no part in the text interest, the towers and the
    popularity prior, as when serving."""
    n = len(hist)
    seen_rows = weighted_rows(hist, n_items, 0.0)
    if n_items <= FULL_RANKING_ITEMS:
        candidates = np.broadcast_to(np.arange(n_items), (n, n_items))
    else:
        tops = []
        for vectors, matrix in raw.values():
            index = ExactIndex(matrix, num_threads=num_threads)
            tops.append(index.search(vectors, VALIDATION_CANDIDATES, exclude=seen_rows)[0])
        candidates = np.sort(np.hstack(tops), axis=1)
        candidates[:, 1:][candidates[:, 1:] == candidates[:, :-1]] = -1
    safe = np.maximum(candidates, 0)
    if out is not None:  # the candidates' item rows (-1: none), for per-scenario weights
        out["candidates"] = candidates
    signals = {}
    for name, (vectors, matrix) in raw.items():
        sigma = scoring.spread(vectors, scoring.covariance(matrix))
        if n_items <= FULL_RANKING_ITEMS:  # every item is a candidate: one matrix product
            scores = np.asarray(vectors, dtype=np.float32) @ np.asarray(matrix, dtype=np.float32).T
        else:
            scores = np.empty(candidates.shape, dtype=np.float32)
            for start in range(0, n, 256):
                part = slice(start, start + 256)
                scores[part] = np.einsum("ucd,ud->uc", matrix[safe[part]], vectors[part])
        mean = (vectors.astype(np.float64) @ matrix.mean(axis=0))[:, None]
        scores = (scores - mean) / np.where(sigma > 1e-12, sigma, 1.0)[:, None]
        if name in ("text", "towers", "popularity"):  # neutral for items without interactions, as served
            scores[cold[safe]] = 0.0
        signals[name] = scores.astype(np.float32)
    if n_items <= FULL_RANKING_ITEMS:
        blocked = np.zeros((n, n_items), dtype=bool)
        seen = seen_rows.tocoo()
        blocked[seen.row, seen.col] = True
    else:
        blocked = candidates < 0
        for u in range(n):
            blocked[u] |= np.isin(candidates[u], hist[u])
    for name in signals:
        signals[name][blocked] = -1e9 if name == "behaviour" else 0.0
    relevant = np.zeros(candidates.shape, dtype=bool)
    for u in range(n):
        relevant[u] = np.isin(candidates[u], held[u]) & ~blocked[u]
    return signals, relevant, np.array([len(h) for h in held])
