"""The "cold" signal: a per-user kernel ridge regression in text space that ranks items
without interactions from the user's own history.

For user u with history items h among the landmarks (the ``MAX_LANDMARKS``
most-interacted fitted items, with kernel inputs X_L: their unit text vectors, or the
unit rows of [text vector ; β · hashed words of their text], :func:`features`), the
indicator q_u ∈ {0, 1}^m of those items is regressed on them with the kernel
k(x, y) = exp((x·y − 1)/τ), and an item c without interactions is scored by the
prediction at its x_c:

    s(u, c) = q_uᵀ (K + μI)⁻¹ k(x_c) = q_u · z_c,   K = k(X_L, X_L)

(kernel ridge regression, e.g. Schölkopf & Smola, "Learning with Kernels", 2002, §4;
as a content-based cold-start model it is the kernel form of the attribute-to-feature
regressions of Gantner et al., "Learning Attribute-to-Feature Mappings for Cold-Start
Recommendations", ICDM 2010, fitted per user instead of per factor). Where the
Recommender's behaviour signal scores a cold item by the user's ALS vector against
text-predicted factors (64 numbers per user), this one reads the user's exact items
nearest in text to the new one. It is full-rank on purpose: truncating (K + μI)⁻¹ to
its top 256 eigenvectors lost 0.01 ndcg@10 on MovieLens cold items (bench/RESULTS.md,
"Issue 14, eleventh session").

Serving: each item without interactions keeps z_c − z̄ (m values, int8 codes and a
scale, :class:`ColdRows`; items with interactions share one zero row), computed when it
is added (or at fit); a request builds q_u from the history (O(m)) and the native
re-scorer adds w·q_u·(z_c − z̄)/σ(u) for the candidates, σ(u)² = v̄·|q_u| the spread
of the user's scores over reference cold items (v̄ the mean variance of their z entries,
z̄ their mean). Items fitted with interactions score 0 in it; so does an item that had
none at fit or was added since, from its first clicks on: they re-solve its factors
(:mod:`.updates`), which rank it from then, and its row is read again if its clickers
are all forgotten. Kept on, the term lifted every clicked new item far above the items
that have interactions (its z-scores reach 10 spreads and more for a user's best new
items, and it no longer carried the shift below): on MovieLens with a random fifth
of the items added after the fit and 5 % of the test clicks fed, ndcg@10 over the whole
catalogue fell to 0.20 / 0.16 (seeds 0 / 2) against 0.26 / 0.25 without it, with 20 % /
41 % of the list slots on new items (bench/RESULTS.md, "Fifteenth session"). The price
is on a "new arrivals" shelf (ranked among the new items alone) with 1 % of the clicks
fed: the few clicked items, scored by factors from one or two clicks, fall below
unclicked ones scored by their text (0.40 / 0.44 → 0.32 / 0.29); from 5 % on it is
about even. Where items without clicks stand against the others in a full ranking is
one more fitted constant, w·δ on each (:mod:`.cold_shift`).

β, τ, μ and the weight w are chosen at fit on a cold-item validation of the training
data (:func:`fit_cold_kernel`): in each of ``FOLDS`` folds a fifth of the landmarks held
out as if new, ALS refitted on the rest, and the held-out items ranked by the behaviour
signal plus w times this one. The words carry what a sentence encoder blurs in a short
catalogue text: on MovieLens ("Title (1995). Genres: Comedy, Drama") the genre names
and the year, exactly.

A learned part makes the kernel's inner product collaborative: a linear map W from an
item's text row x to its unit ALS factors, fitted on the landmarks by ridge regression
(W = X_Lᵀ(X_L X_Lᵀ + λI)⁻¹ V̂_L, V̂_L their unit factors, λ = ``MAP_RIDGE``), and the
kernel input becomes the unit rows of [x ; α · unit(xW)] for a new item and
[x_l ; α · v̂_l] for a landmark (its own factors, which fit knows). Two titles are then
close where their text is close and where the text predicts that the same people take
them (a learned metric on the text: xᵀW Wᵀy is a ridge estimate of the collaborative cosine
v̂_iᵀv̂_j from text, in the manner of bilinear similarity learning, e.g. Chechik et al.,
"Large Scale Online Learning of Image Similarity Through Ranking", JMLR 2010, here in
closed form). α ∈ ``FACTORS`` is chosen at the β the text alone chose (0: the text
alone). On MovieLens cold items the signal with it ranks at ndcg@10 0.361 / 0.374 / 0.365
(three splits) where the text alone gave 0.335 / 0.345 / 0.356 (bench/RESULTS.md,
"Thirteenth session").
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec._arrays import appended
from llmrec._checks import as_float_matrix
from llmrec.recommender.scoring import unit_rows
from llmrec.recommender.text_prior import MAX_LANDMARKS

WIDTHS = (0.2, 0.4)               # τ (0.3 was never chosen on MovieLens)
RIDGES = (1.0, 3.0, 10.0)         # μ (the signal alone on MovieLens chose 1–3)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)  # w, against the behaviour signal at 1
WORDS = (0.0, 0.5, 1.0)           # β: weight of the hashed words beside the text vector
# α: weight of the text-predicted unit factors (the learned part), chosen at the best β:
# MovieLens cold items (cold_item_split, seeds 0–2) rank at 0.3611 / 0.3741 / 0.3654 with
# it, 0.3348 / 0.3453 / 0.3557 without. Where new items stand against the others in a
# full ranking is fitted apart (:mod:`.cold_shift`): the weight chosen here alone lifted
# them too high (temporal_split(0.2), seed 0: 0.2832 → 0.2728, back to 0.2832 shifted).
FACTORS: tuple[float, ...] = (0.0, 1.0, 1.5)
MAP_RIDGE = 3.0                   # λ of the ridge map from text rows to unit factors
MAX_FACTORS = 100.0               # the largest α a saved model may hold
MAX_SHIFT = 1e6                   # the largest |δ| (:mod:`.cold_shift`) a saved model may hold
HASH_DIMS = 1024                  # hashed word features
MAX_WORDS = 100.0                 # the largest β a saved model may hold
FOLDS = 3                         # disjoint validation folds of HOLD_OUT landmarks each (5: see RESULTS)
SPREAD_ROWS = 128                 # reference rows that estimate v̄
HOLD_OUT = 0.2                    # share of the landmarks held out as cold in the validation
VALIDATION_USERS = 5000           # users sampled for the validation (bounded cost)
_BLOCK = 1024


@dataclass(frozen=True)
class ColdKernel:
    """The fitted signal (see the module docstring); build with :func:`fit_cold_kernel`."""

    landmark_rows: np.ndarray  # int64 (m,) item rows of the landmarks, ascending
    landmarks: np.ndarray      # float32 (m, d or d + HASH_DIMS) their kernel input rows (:func:`features`)
    inverse: np.ndarray        # float32 (m, m) (K + μI)⁻¹
    mean: np.ndarray           # float32 (m,) z̄
    spread: float              # v̄: σ(u)² = v̄ · (the user's landmarks)
    width: float               # τ
    words: float = 0.0         # β, the words' weight (0: the text vectors alone)
    factors: float = 0.0       # α, the learned part's weight (0: none)
    projection: np.ndarray | None = None  # float32 (d [+ HASH_DIMS], f) W, only where α > 0

    def rows(self, E: Any, texts: list[str] | None) -> np.ndarray:
        """z − z̄ (float32, (n, m)) for items with unit text vectors ``E`` (n, d) and
        ``texts`` (n strings; read only where the signal uses words)."""
        d = self.landmarks.shape[1] - (HASH_DIMS if self.words else 0) - (
            0 if self.projection is None else self.projection.shape[1])
        X = as_float_matrix(E, "E", dim=d, allow_empty=True)
        if self.words:
            if texts is None or len(texts) != len(X):
                raise ValueError(f"texts must give one text per row of E ({len(X)}): this signal reads words")
            X = features(X, texts, self.words).astype(np.float32)
        if self.projection is not None:
            X = with_factors(X, X @ self.projection, self.factors).astype(np.float32)
        out = np.empty((len(X), len(self.mean)), dtype=np.float32)
        for start in range(0, len(X), _BLOCK):
            K = X[start:start + _BLOCK] @ self.landmarks.T
            np.exp((K - 1.0) / np.float32(self.width), out=K)
            out[start:start + _BLOCK] = K @ self.inverse - self.mean
        return out

    def queries(self, histories: list[np.ndarray]) -> np.ndarray:
        """q_u / σ(u) (float32, (n, m)) for item-row ``histories`` (every item the
        user took, liked or not); zero rows for users with none of the landmarks."""
        out = np.zeros((len(histories), len(self.mean)), dtype=np.float32)
        for row, history in enumerate(histories):
            h = np.asarray(history, dtype=np.int64)
            at = np.searchsorted(self.landmark_rows, h)
            hit = at < len(self.landmark_rows)
            hit[hit] = self.landmark_rows[at[hit]] == h[hit]
            out[row, at[hit]] = 1.0
        sigma = np.sqrt(out.sum(axis=1, dtype=np.float64) * self.spread)
        out *= (1.0 / np.where(sigma > 0, sigma, np.inf)).astype(np.float32)[:, None]
        return out


class ColdRows:
    """z − z̄ of the items without interactions as int8 codes with a scale per row,
    stored where ``slots`` (int32 per item) says; row 0 is zero and shared by every item
    with interactions (and items without text), which ``applies`` (uint8 per item,
    ``slots`` > 0) lets the re-scorer skip: a request pays m multiply-adds only for the
    candidates that have a row. ``shift``: what the items with a row and no interactions
    yet add to the signal (δ of :mod:`.cold_shift`, in the signal's units: w·δ in a blend
    of weight w); ``fresh`` (float32 (rows, 1)) says which rows those are: 1 until the
    item's first clicks (:meth:`mark_fresh`), 0 for the shared zero row. A row counts
    only while fresh: ``live_scales`` (what the re-scorer and :meth:`__getitem__` read)
    are the scales times ``fresh``, 0 once the item is clicked (see the module's
    docstring); ``scales`` keep the row for when its clicks are forgotten."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray, slots: np.ndarray,
                 applies: np.ndarray | None = None, shift: float = 0.0, fresh: np.ndarray | None = None,
                 live_scales: np.ndarray | None = None) -> None:
        self.codes, self.scales, self.slots, self.shift = codes, scales, slots, float(shift)
        self.applies = (slots > 0).view(np.uint8) if applies is None else applies
        if fresh is None:
            fresh = np.ones((len(scales), 1), dtype=np.float32)
            fresh[0] = 0.0
        self.fresh = fresh
        if live_scales is None:
            live_scales = (scales * fresh[:, 0]).astype(np.float32)
        self.live_scales = live_scales

    @classmethod
    def build(cls, n_items: int, width: int, rows: np.ndarray, values: np.ndarray, shift: float = 0.0) -> ColdRows:
        """Rows for ``n_items`` items: item ``rows[i]`` gets ``values[i]``, the rest zero."""
        codes, scales = _encode(np.vstack([np.zeros((1, width), np.float32), values]))
        slots = np.zeros(n_items, dtype=np.int32)
        slots[rows] = np.arange(1, len(rows) + 1, dtype=np.int32)
        return cls(codes, scales, slots, shift=shift)

    def mark_fresh(self, rows: np.ndarray, fresh: np.ndarray) -> None:
        """Items ``rows`` have no interactions (``fresh`` True) or have some, in place: a
        request reading a row meanwhile sees the old value or the new of each of its two
        floats (the shift's flag and the row's live scale)."""
        at = self.slots[np.asarray(rows, dtype=np.int64)]
        keep = at > 0
        at, fresh = at[keep], np.asarray(fresh, dtype=bool)[keep]
        self.fresh[at, 0] = fresh
        self.live_scales[at] = np.where(fresh, self.scales[at], 0.0)

    def appended(self, values: np.ndarray | None, count: int) -> ColdRows:
        """These rows and ``count`` new items after them, with ``values`` (None: zero
        rows); in spare capacity, O(new items) (earlier snapshots keep seeing their own
        rows)."""
        if values is None:
            codes, scales, fresh, slots = self.codes, self.scales, self.fresh, np.zeros(count, np.int32)
            live = self.live_scales
        else:
            new_codes, new_scales = _encode(values)
            slots = np.arange(len(self.scales), len(self.scales) + count, dtype=np.int32)
            codes, scales = appended(self.codes, new_codes), appended(self.scales, new_scales)
            fresh = appended(self.fresh, np.ones((count, 1), dtype=np.float32))
            live = appended(self.live_scales, new_scales)
        return ColdRows(codes, scales, appended(self.slots, slots), appended(self.applies, (slots > 0).view(np.uint8)),
                        self.shift, fresh, live)

    def __getitem__(self, rows: Any) -> np.ndarray:
        """Decoded rows of items ``rows`` as served (zero once an item is clicked)."""
        at = self.slots[rows]
        return self.codes[at].astype(np.float32) * self.live_scales[at][..., None]


def _encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    peak = np.abs(values).max(axis=1) if values.size else np.zeros(len(values), np.float32)
    scales = (peak / 127.0).astype(np.float32)
    codes = np.rint(values / np.where(scales > 0, scales, 1.0)[:, None]).clip(-127, 127).astype(np.int8)
    return codes, scales


def _kernel(X: np.ndarray, Y: np.ndarray, width: float) -> np.ndarray:
    return np.exp((X @ Y.T - 1.0) / width)


def _inverse(eigen: tuple[np.ndarray, np.ndarray], ridge: float) -> np.ndarray:
    """(K + μI)⁻¹ from K's eigendecomposition (float64)."""
    eigenvalues, Q = eigen
    return (Q / (np.maximum(eigenvalues, 0.0) + ridge)) @ Q.T  # K is PSD; round-off may dip below 0


def _reference(eigen: tuple[np.ndarray, np.ndarray], ridge: float) -> tuple[np.ndarray, float]:
    """(z̄, v̄) of the reference cold items, the landmarks themselves, each as if new: z_l
    of the regression without landmark l, which for A = (K + μI)⁻¹ is −A[l, j]/A[l, l]
    at j ≠ l (block inversion; 0 at l). z̄ is their mean; v̄ the mean over j of the
    variance of z_l[j], estimated on ``SPREAD_ROWS`` evenly spaced landmarks: σ(u)² ≈
    v̄·|q_u| is the spread of a user's scores when the terms of q_u·z are uncorrelated.
    O(m²) from K's eigendecomposition."""
    eigenvalues, Q = eigen
    scaled = Q / (np.maximum(eigenvalues, 0.0) + ridge)
    diagonal = np.einsum("ij,ij->i", scaled, Q)  # A[l, l]
    m = len(diagonal)
    mean = (1.0 - scaled @ (Q.T @ (1.0 / diagonal))) / m  # −Σ_l A[l, j]/A[l, l], the −1 at l=j made 0
    sample = np.unique(np.linspace(0, m - 1, min(SPREAD_ROWS, m)).astype(np.int64))
    Z = -(scaled[sample] @ Q.T) / diagonal[sample, None]
    Z[np.arange(len(sample)), sample] = 0.0
    return mean, float(((Z - mean) ** 2).mean())


def word_vectors(texts: list[str]) -> np.ndarray:
    """The words of each text (lower-cased runs of letters and digits), hashed into
    ``HASH_DIMS`` binary features (Weinberger et al., "Feature Hashing for Large Scale
    Multitask Learning", ICML 2009: no vocabulary to keep), unit rows (zero without a
    word); float64 (n, HASH_DIMS)."""
    out = np.zeros((len(texts), HASH_DIMS))
    for row, text in enumerate(texts):
        for word in set(re.findall(r"\w+", str(text).lower())):
            out[row, zlib.crc32(word.encode()) % HASH_DIMS] = 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def _combine(E: np.ndarray, words: np.ndarray | None, weight: float) -> np.ndarray:
    """Unit rows of [E ; weight · words] (E alone at weight 0 or without words)."""
    E = np.asarray(E, dtype=np.float64)
    if words is None or weight == 0:
        return E
    X = np.hstack([E, weight * words])
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def with_factors(X: Any, factors: Any, weight: float) -> np.ndarray:
    """Unit rows (float64) of [X ; weight · unit(factors)]: kernel input rows ``X`` with
    the learned part (``factors``: the items' factors, own or text-predicted)."""
    X = np.asarray(X, dtype=np.float64)
    return unit_rows(np.hstack([X, weight * unit_rows(np.asarray(factors, dtype=np.float64), np.float64)]), np.float64)


def fit_projection(X: np.ndarray, factors: np.ndarray, ridge: float = MAP_RIDGE) -> np.ndarray:
    """W (float64, (D, f)): the ridge regression of the unit ``factors`` (n, f) on the
    kernel input rows ``X`` (n, D), solved in its n × n dual form, Xᵀ(XXᵀ + λI)⁻¹V̂."""
    X = np.asarray(X, dtype=np.float64)
    gram = X @ X.T
    gram[np.diag_indices_from(gram)] += ridge
    return X.T @ np.linalg.solve(gram, unit_rows(np.asarray(factors, dtype=np.float64), np.float64))


def features(E: Any, texts: list[str] | None, words: float) -> np.ndarray:
    """The kernel's input rows (float64) of items with unit text vectors ``E`` and
    ``texts`` (their words at weight ``words``; None: no words)."""
    E = np.asarray(E, dtype=np.float64)
    if texts is None or words == 0:
        return E
    return _combine(E, word_vectors(texts), words)


def landmark_rows(counts: np.ndarray) -> np.ndarray:
    """The landmarks: the ``MAX_LANDMARKS`` items with most interactions (> 0), ascending."""
    counts = np.asarray(counts)
    fitted = np.flatnonzero(counts > 0)
    return np.sort(fitted[np.argsort(-counts[fitted], kind="stable")][:MAX_LANDMARKS])


def make_cold_kernel(E: np.ndarray, texts: list[str] | None, rows: np.ndarray, width: float, ridge: float,
                     words: float = 0.0, factors: float = 0.0, item_factors: np.ndarray | None = None) -> ColdKernel:
    """The signal over landmark item ``rows`` of ``E`` (unit text vectors) and ``texts``
    (the items' texts, for their words; None: none); with the learned part at weight
    ``factors`` (> 0), fitted to ``item_factors`` (per item, the fit's ALS factors)."""
    X = features(E[rows], None if texts is None else [texts[i] for i in rows], words)
    projection = None
    if factors > 0:
        if item_factors is None:
            raise ValueError("item_factors are needed where factors > 0")
        V = np.asarray(item_factors, dtype=np.float64)[rows]
        projection, X = _f32(fit_projection(X, V)), with_factors(X, V, factors)
    eigen = np.linalg.eigh(_kernel(X, X, width))
    mean, spread = _reference(eigen, ridge)
    return ColdKernel(np.asarray(rows, dtype=np.int64), _f32(X), _f32(_inverse(eigen, ridge)), _f32(mean), spread,
                      float(width), float(words), float(factors) if factors > 0 else 0.0, projection)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class _Fold:
    """One cold-item validation fold: landmarks ``held`` out as new, ALS refitted on the
    rest; the behaviour signal of the held-out items as served, the users' indicators
    over the rest, and the held-out items each user took."""

    def __init__(self, held_out: np.ndarray, rows: np.ndarray, n_items: int, local: list[np.ndarray],
                 users: np.ndarray, E: np.ndarray, fit_factors: Any, behaviour: Any) -> None:
        from llmrec.recommender.fusion import HeldOut

        m = len(E)
        cold = np.zeros(m, dtype=bool)
        cold[held_out] = True
        self.warm_ids, self.cold_ids = np.flatnonzero(~cold), np.flatnonzero(cold)
        n_warm = len(self.warm_ids)
        renumber = np.empty(m, dtype=np.int64)
        renumber[self.warm_ids] = np.arange(n_warm)
        renumber[self.cold_ids] = n_warm + np.arange(len(self.cold_ids))
        train = [renumber[local[u]][~cold[local[u]]] for u in users]
        held = [renumber[local[u]][cold[local[u]]] - n_warm for u in users]
        order = np.concatenate([self.warm_ids, self.cold_ids])
        # item row → row in this fold's fit; the held-out items (rows n_warm..m-1 there) are
        # in nobody's history: the fit gives them its text prior, as to new items
        mapping = np.full(n_items, -1, dtype=np.int64)
        mapping[rows[self.warm_ids]] = np.arange(n_warm)
        als = fit_factors(mapping, users, m, np.ascontiguousarray(E[order], dtype=np.float32))
        V = np.asarray(als.item_factors_, dtype=np.float64)
        self.factors = V[:n_warm]  # the fold's fitted items' factors: the learned part's targets
        b = np.asarray(behaviour(als, mapping, users), dtype=np.float64)
        # the behaviour signal as served: (b·v − b·v̄)/σ_b, its spread σ_b over the items
        # fitted with interactions (the catalogue geometry is fixed at fit, before new items)
        cov = np.cov(V[:n_warm], rowvar=False, bias=True)
        sigma_b = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", b, cov, b), 0.0))
        keep = np.flatnonzero([len(h) > 0 and len(t) > 0 for h, t in zip(held, train)])
        base = b @ V[n_warm:].T - (b @ V[:n_warm].mean(axis=0))[:, None]
        self.base = (base / np.where(sigma_b > 0, sigma_b, 1.0)[:, None])[keep]
        relevant = np.zeros((len(keep), len(self.cold_ids)), dtype=bool)
        for i, u in enumerate(keep):
            relevant[i, held[u]] = True
        # the users' indicators over the fold's fitted items: sparse (a history is a few
        # dozen of m), so q·Q costs the history, not m, per user
        lengths = np.array([len(train[u]) for u in keep], dtype=np.int64)
        self.queries = sp.csr_matrix((np.ones(int(lengths.sum())), np.concatenate([train[u] for u in keep] or [[]]),
                                      np.concatenate([[0], np.cumsum(lengths)])), shape=(len(keep), n_warm))
        self.lengths = lengths
        self.scored = HeldOut(relevant, relevant.sum(axis=1))
        self.users = len(keep)


def fit_cold_kernel(E: np.ndarray, texts: list[str] | None, taken: list[np.ndarray], counts: np.ndarray,
                    fit_factors: Any, behaviour: Any, random_state: Any, item_factors: np.ndarray | None = None
                    ) -> tuple[ColdKernel, float, dict[str, Any]] | None:
    """(signal, weight w, report), (β, α, τ, μ, w) chosen on a cold-item validation of
    ``FOLDS`` disjoint folds (mean ndcg@10 over their users); None with fewer than 10
    landmarks or no user with two of them. ``item_factors``: the fit's ALS item factors,
    which the learned part maps text to (None: α stays 0).

    ``E``: unit text vectors per item; ``texts``: the items' texts (None: no word
    features); ``taken``: every item row each user took; ``counts``: interactions per
    item; ``fit_factors(mapping, users, n, E)``: ALS fitted on ``users``' interactions
    with items whose ``mapping`` (item row → row in 0..n-1, or -1: left out) is set,
    its kernel text prior applied to the n rows without interactions (text ``E``);
    ``behaviour(als, mapping, users)``: those users' behaviour vectors as served, from
    their items mapped (the held-out ones are not)."""
    rows = landmark_rows(counts)
    m = len(rows)
    if m < 10:
        return None
    rng = np.random.default_rng(random_state)
    local = [np.searchsorted(rows, np.unique(h[np.isin(h, rows)])) for h in taken]
    users = np.flatnonzero(np.array([len(h) >= 2 for h in local]))
    if len(users) == 0:
        return None
    users = np.sort(rng.choice(users, size=min(len(users), VALIDATION_USERS), replace=False))
    size = max(int(round(HOLD_OUT * m)), 1)
    order = rng.permutation(m)
    E_L = np.asarray(E[rows], dtype=np.float64)
    word_rows = None if texts is None else word_vectors([texts[i] for i in rows])
    folds = [_Fold(order[k * size:(k + 1) * size], rows, len(counts), local, users, E_L, fit_factors, behaviour)
             for k in range(FOLDS)]
    total = sum(fold.users for fold in folds)
    if total == 0:
        return None
    values: dict[tuple[float, float, float, float, float], float] = {}

    def evaluate(grid: list[tuple[float, float]]) -> None:
        """Add every (β, α) of ``grid``, with each τ, μ and w, to ``values``."""
        for fold in folds:
            for words, factors in grid:
                X = _combine(E_L, word_rows, words)
                Xw, Xc = X[fold.warm_ids], X[fold.cold_ids]
                if factors > 0:  # the map is fitted on the fold's fitted items only
                    Xw, Xc = (with_factors(Xw, fold.factors, factors),
                              with_factors(Xc, Xc @ fit_projection(Xw, fold.factors), factors))
                for width in WIDTHS:
                    eigen = np.linalg.eigh(_kernel(Xw, Xw, width))
                    # q·(A k_c − z̄) = (qQ) diag(1/(λ + μ)) (k_c Q)ᵀ − q·z̄: no m × m product per μ
                    left, right = fold.queries @ eigen[1], _kernel(Xc, Xw, width) @ eigen[1]
                    for ridge in RIDGES:
                        mean, spread = _reference(eigen, ridge)
                        shrink = 1.0 / (np.maximum(eigen[0], 0.0) + ridge)
                        sigma = np.sqrt(fold.lengths * spread)
                        signal = ((left * shrink) @ right.T - (fold.queries @ mean)[:, None]) / sigma[:, None]
                        for weight in WEIGHTS:
                            key = (words, factors, width, ridge, weight)
                            score = fold.scored.ndcg(fold.base + weight * signal) * fold.users
                            values[key] = values.get(key, 0.0) + score

    def best() -> tuple[float, float, float, float, float]:
        return max(values, key=lambda key: (values[key], -key[4], -key[1]))  # ties: the smaller weights

    # β first, at the first α (0 by default: the text alone); then the other α at that β
    # (eigendecompositions per fold for β and τ, then α and τ, instead of β × α × τ)
    factors_grid = FACTORS if item_factors is not None else (0.0,)
    evaluate([(words, factors_grid[0]) for words in (WORDS if word_rows is not None else (0.0,))])
    evaluate([(best()[0], factors) for factors in factors_grid[1:]])
    words, factors, width, ridge, weight = best()
    report: dict[str, Any] = {"users": total, "held_out_items": FOLDS * size, "folds": FOLDS,
                              "words": words, "factors": factors, "width": width, "ridge": ridge,
                              "weight": weight, "best": round(values[words, factors, width, ridge, weight] / total, 4),
                              "without": round(values[(words, factors, width, ridge, 0.0)] / total, 4)}
    plain = [key for key in values if key[1] == 0.0]
    if factors > 0 and plain:  # the best without the learned part, for the record
        report["text_alone"] = round(max(values[key] for key in plain) / total, 4)
    return make_cold_kernel(E, texts, rows, width, ridge, words, factors, item_factors), weight, report


__all__ = ["ColdKernel", "ColdRows", "fit_cold_kernel", "landmark_rows", "make_cold_kernel"]
