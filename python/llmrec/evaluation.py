"""Evaluation: train/test splits, top-k ranking metrics, AUC, and one evaluation loop.

Splits work on interaction frames (``user_id``, ``item_id``, ``timestamp`` columns, as
:mod:`llmrec.datasets` returns them) and return ``(train, test)`` frames that keep the
original index (:func:`cold_user_split` returns ``(train, known, test)``). Metrics work
on matrices: a CSR user × item matrix of held-out items and an (n_users, k) array of
recommended item indices — map frames to matrices with :func:`llmrec.datasets.to_csr`,
passing the same ``user_index``/``item_index`` for train and test so that rows and
columns line up.

Every metric is computed with whole-array numpy operations (no Python loop per user):
100,000 users at k = 10 take 0.1–0.2 s on two cores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec._checks import (INT64_MAX, as_generator, check_id_range, check_int, check_k, check_real,
                            check_sparse_structure)

if TYPE_CHECKING:
    from llmrec.recommender import Recommender

__all__ = ["random_split", "temporal_split", "leave_last_k", "cold_item_split", "cold_user_split",
           "ranking_metrics", "auc", "sampled_auc", "evaluate", "RowRecommender", "ImplicitAdapter",
           "RecommenderAdapter"]

AUC_NEGATIVES = 100  # negatives drawn per user for the sampled AUC of evaluate()

METRIC_KEYS = ("precision", "recall", "f1", "ndcg", "map", "mrr", "hit_rate", "coverage")


# --------------------------------------------------------------------------- helpers
def _check_frame(interactions: Any, *, timestamp: bool = False) -> pd.DataFrame:
    if not isinstance(interactions, pd.DataFrame):
        raise TypeError("interactions must be a pandas DataFrame with columns user_id, item_id"
                        f"{', timestamp' if timestamp else ''}; got {type(interactions).__name__}")
    needed = ["user_id", "item_id"] + (["timestamp"] if timestamp else [])
    missing = [c for c in needed if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions is missing column(s) {missing}; "
                         f"found {list(interactions.columns)}")
    if len(interactions) == 0:
        raise ValueError("interactions is empty")
    return interactions


def _tail_per_user(users: np.ndarray, order_key: np.ndarray, n_test: np.ndarray) -> np.ndarray:
    """Mask of the last ``n_test[u]`` rows of each user when sorted by ``order_key``.

    ``users`` are codes 0..n_users-1; ties in ``order_key`` keep the row order.
    """
    order = np.lexsort((order_key, users))  # stable: ties keep their row order
    counts = np.bincount(users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(users.shape[0], dtype=np.int64)
    rank[order] = np.arange(users.shape[0]) - np.repeat(starts, counts)
    return rank >= (counts - n_test)[users]


def _n_test(counts: np.ndarray, frac: float) -> np.ndarray:
    """round(frac · n) per user (halves up), at most n − 1 so the user stays in train."""
    return np.minimum(np.floor(frac * counts + 0.5).astype(np.int64), counts - 1)


def _split(interactions: pd.DataFrame, mask: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    return interactions[~mask], interactions[mask]


# --------------------------------------------------------------------------- splits
def random_split(interactions: pd.DataFrame, frac: float = 0.2, *,
                 random_state: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``frac`` of each user's interactions.

    Each user with n interactions sends round(frac · n) of them (halves rounded up, at
    most n − 1) to test, chosen uniformly at random; the rest stays in train, so every
    test user is also a train user. Users with a single interaction stay in train.

    Parameters
    ----------
    interactions : DataFrame with ``user_id`` and ``item_id`` columns.
    frac : float in (0, 1)
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    train, test : DataFrames, the rows of ``interactions`` (original index and order).
    """
    frame = _check_frame(interactions)
    frac = check_real(frac, "frac", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = as_generator(random_state)
    users = pd.factorize(frame["user_id"])[0]
    counts = np.bincount(users)
    mask = _tail_per_user(users, rng.random(len(frame)), _n_test(counts, frac))
    return _split(frame, mask)


def temporal_split(interactions: pd.DataFrame, frac: float = 0.2
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the latest ``frac`` of each user's interactions.

    Each user's rows are ordered by ``timestamp`` (equal timestamps keep their row
    order, so the split is deterministic); the last round(frac · n) of them (halves up,
    at most n − 1) go to test. Every test user keeps at least one train interaction.

    Returns
    -------
    train, test : DataFrames, the rows of ``interactions`` (original index and order).
    """
    frame = _check_frame(interactions, timestamp=True)
    frac = check_real(frac, "frac", low=0.0, high=1.0, low_open=True, high_open=True)
    users = pd.factorize(frame["user_id"])[0]
    counts = np.bincount(users)
    mask = _tail_per_user(users, frame["timestamp"].to_numpy(), _n_test(counts, frac))
    return _split(frame, mask)


def leave_last_k(interactions: pd.DataFrame, k: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's ``k`` latest interactions (by ``timestamp``).

    Users with k or fewer interactions send n − 1 to test and keep the oldest in train
    (a user with one interaction stays wholly in train). Ties in time keep row order.

    Returns
    -------
    train, test : DataFrames, the rows of ``interactions`` (original index and order).
    """
    frame = _check_frame(interactions, timestamp=True)
    k = check_int(k, "k", minimum=1, maximum=INT64_MAX)
    users = pd.factorize(frame["user_id"])[0]
    counts = np.bincount(users)
    mask = _tail_per_user(users, frame["timestamp"].to_numpy(), np.minimum(k, counts - 1))
    return _split(frame, mask)


def cold_item_split(interactions: pd.DataFrame, frac: float = 0.2, *,
                    random_state: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out every interaction of a random ``frac`` of the items (cold-start items).

    round(frac · n_items) distinct items are drawn uniformly; all their interactions
    go to test and none to train, so they are unseen in training. The test rows of
    users left with no train interaction at all are dropped (they could not be
    evaluated as known users), so every test user is a train user.

    Returns
    -------
    train, test : DataFrames, the rows of ``interactions`` (original index and order).
    """
    frame = _check_frame(interactions)
    frac = check_real(frac, "frac", low=0.0, high=1.0, low_open=True, high_open=True)
    rng = as_generator(random_state)
    items, unique_items = pd.factorize(frame["item_id"])
    n_cold = int(np.floor(frac * len(unique_items) + 0.5))
    cold = np.zeros(len(unique_items), dtype=bool)
    cold[rng.choice(len(unique_items), size=n_cold, replace=False)] = True
    in_test = cold[items]
    users = pd.factorize(frame["user_id"])[0]
    has_train = np.bincount(users[~in_test], minlength=users.max() + 1) > 0
    train = frame[~in_test]
    test = frame[in_test & has_train[users]]
    return train, test


def cold_user_split(interactions: pd.DataFrame, frac: float = 0.2, n_known: int = 1, *,
                    random_state: Any = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``frac`` of the users entirely (cold-start users), each known
    only by their first ``n_known`` interactions.

    round(frac · n_users) distinct users with more than ``n_known`` interactions are
    drawn uniformly (users with fewer stay in train). None of their rows is in train;
    their ``n_known`` earliest rows (by ``timestamp``, ties in row order) are what a
    model may read of them (e.g. ``Recommender.recommend_for_history``) and the rest
    is what it must rank. Where every user has more than ``n_known`` interactions, the
    held-out users depend on ``random_state`` only, so n_known = 1, 3, 5 compare one
    group of users.

    Returns
    -------
    train, known, test : DataFrames, the rows of ``interactions`` (original index and
    order).
    """
    frame = _check_frame(interactions, timestamp=True)
    frac = check_real(frac, "frac", low=0.0, high=1.0, low_open=True, high_open=True)
    n_known = check_int(n_known, "n_known", minimum=1)
    rng = as_generator(random_state)
    users = pd.factorize(frame["user_id"])[0]
    counts = np.bincount(users)
    order = rng.permutation(len(counts))  # drawn before filtering: same users for any n_known
    eligible = order[counts[order] > n_known]
    n_cold = int(np.floor(frac * len(counts) + 0.5))
    if n_cold > len(eligible):
        raise ValueError(f"frac={frac} asks for {n_cold} cold users but only {len(eligible)} "
                         f"have more than n_known={n_known} interactions")
    cold = np.zeros(len(counts), dtype=bool)
    cold[eligible[:n_cold]] = True
    held = cold[users]
    later = _tail_per_user(users, frame["timestamp"].to_numpy(), counts - n_known)
    return frame[~held], frame[held & ~later], frame[held & later]


# --------------------------------------------------------------------------- matrices
def _as_csr(matrix: Any, name: str, shape: tuple[int, int] | None = None) -> sp.csr_matrix:
    """``matrix`` as canonical CSR (sorted, no duplicates, no stored zeros); no copy if it is."""
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse matrix (n_users, n_items), "
                        f"got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_users, n_items), got shape {matrix.shape}")
    if shape is not None and matrix.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {matrix.shape}")
    check_sparse_structure(matrix, name)  # scipy trusts indptr/indices: out of range, it crashes
    if (matrix.format == "csr" and matrix.has_canonical_format
            and not (matrix.data == 0).any()):
        return matrix
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()  # also sorts indices
    csr.eliminate_zeros()
    return csr


def _distinct_entries(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first occurrence of every valid id in each row of ``ids``, row by row.

    Returns (flat positions in ``ids``, item ids, count per row), each row's entries
    sorted by item id — the layout of a canonical CSR row. One stable argsort per row
    serves both the de-duplication and the sorting.
    """
    n_rows, width = ids.shape
    order = np.argsort(ids, axis=1, kind="stable")
    ordered = np.take_along_axis(ids, order, axis=1)
    keep = ordered >= 0
    keep[:, 1:] &= ordered[:, 1:] != ordered[:, :-1]
    order += (np.arange(n_rows, dtype=np.int64) * width)[:, None]
    return order[keep], ordered[keep], keep.sum(axis=1)


def _member(entries: tuple[np.ndarray, np.ndarray, np.ndarray], shape: tuple[int, int],
            rows: np.ndarray, csr: sp.csr_matrix) -> np.ndarray:
    """Flat mask over the ids behind ``entries``: is the id a stored entry of ``csr``
    in row ``rows[r]``?

    The entries are laid out as a canonical sparse matrix whose values are flat
    positions + 1; its element-wise product with ``csr`` (scipy's merge of sorted
    rows, in C++) keeps exactly the members, and the values say where they sit.
    """
    positions, columns, counts = entries
    member = np.zeros(shape[0] * shape[1], dtype=bool)
    if csr.nnz == 0 or positions.size == 0:
        return member.reshape(shape)
    per_row = np.zeros(csr.shape[0], dtype=np.int64)
    per_row[rows] = counts
    indptr = np.concatenate(([0], np.cumsum(per_row)))
    lists = sp.csr_matrix((positions.astype(np.float64) + 1.0, columns, indptr),
                          shape=csr.shape)
    lists.has_canonical_format = True
    pattern = sp.csr_matrix((np.ones(csr.nnz, dtype=np.int8), csr.indices, csr.indptr),
                            shape=csr.shape, copy=False)
    pattern.has_canonical_format = True
    found = lists.multiply(pattern).tocsr()
    member[found.data[found.data > 0].astype(np.int64) - 1] = True
    return member.reshape(shape)


def _compact(keep: np.ndarray, width: int, *arrays: np.ndarray, fill: tuple[Any, ...]) -> list[np.ndarray]:
    """Per row, move the entries marked in ``keep`` left (order kept) into ``width``
    columns; the rest of each output row takes the matching ``fill`` value."""
    column = np.cumsum(keep, axis=1) - 1
    keep = keep & (column < width)
    row_index = np.nonzero(keep)[0]
    out = []
    for array, value in zip(arrays, fill):
        result = np.full((keep.shape[0], width), value, dtype=array.dtype)
        result[row_index, column[keep]] = array[keep]
        out.append(result)
    return out


def _check_recommended(recommended: Any, n_items: int) -> np.ndarray:
    if sp.issparse(recommended):
        raise TypeError("recommended must be a dense (n_users, k) array of item indices")
    array = np.asarray(recommended)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"recommended must hold integer item indices, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"recommended must be a 2-D array (n_users, k), got shape {array.shape}")
    array = array.astype(np.int64, copy=False)
    check_id_range(array, "recommended", n_items, padded=True, what="item index")
    return array


def ranking_metrics(recommended: Any, test: Any, k: int = 10, *, train: Any = None,
                    item_features: Any = None) -> dict[str, float]:
    """Top-k ranking metrics of recommendation lists against held-out items.

    Binary relevance: item i is relevant to user u when ``test[u, i]`` is non-zero.
    Only users with at least one test item are evaluated (``n_users`` in the result
    says how many); each metric is the mean over them. For user u let T_u be the test
    items, L_u the first k entries of row u (after the clean-up below) and
    rel_j = 1 when the j-th entry (j = 1..k) is in T_u:

    * ``precision`` = Σ_j rel_j / k — always divided by k, even for short lists;
    * ``recall`` = Σ_j rel_j / |T_u|;
    * ``f1`` = 2 · precision_u · recall_u / (precision_u + recall_u) per user (0 when
      both are 0), then averaged;
    * ``ndcg`` = DCG / IDCG with DCG = Σ_j rel_j / log2(j + 1) and IDCG the DCG of
      min(|T_u|, k) relevant items at the top;
    * ``map`` = (1 / min(|T_u|, k)) · Σ_j rel_j · precision@j (precision@j = hits in
      the first j / j) — the mean of average precision at k;
    * ``mrr`` = 1 / (rank of the first relevant entry), 0 when none in the top k;
    * ``hit_rate`` = 1 when any of the top k is relevant, else 0;
    * ``coverage`` = distinct items recommended (top k, evaluated users) / n_items;
    * ``diversity`` (only with ``item_features``) = mean over users of the mean over
      pairs of distinct recommended items of 1 − cosine(features_i, features_j);
      users with fewer than two items are left out of this mean.

    These are the standard definitions (as in RecBole and Microsoft Recommenders), not
    implicit's variants (whose precision divides by min(|T_u|, k)).

    Clean-up of each list, in order: entries -1 are empty slots (never relevant); an
    item repeated in a list counts once, at its first position (later copies become
    empty slots); if ``train`` is given, items the user has in ``train`` are removed
    and the list closes up; then the first k entries are kept (a list shorter than k
    is padded with empty slots — precision still divides by k).

    Parameters
    ----------
    recommended : int array (n_users, L)
        Item indices, row u for user u (row order of ``test``), best first; -1 = none.
    test : scipy sparse matrix (n_users, n_items)
        Held-out items (non-zero entries).
    k : int ≥ 1
    train : scipy sparse matrix (n_users, n_items), optional
        Items to drop from the lists before cutting at k.
    item_features : float array (n_items, d), optional
        Enables ``diversity``.

    Returns
    -------
    dict with the keys above (floats) and ``n_users`` (int).

    Raises
    ------
    ValueError
        Shapes that do not agree, indices out of range, or a test matrix without any
        interaction.
    """
    check_int(k, "k", minimum=1)
    test = _as_csr(test, "test")
    n_users, n_items = test.shape
    k = check_k(k, n_items)  # lists are padded to k columns: capped as search results are
    if test.nnz == 0:
        raise ValueError("test holds no interactions: nothing to evaluate")
    ids = _check_recommended(recommended, n_items)
    if ids.shape[0] != n_users:
        raise ValueError(f"recommended has {ids.shape[0]} rows but test has {n_users} users: "
                         "row u of recommended must be user u of test")
    test_counts = np.diff(test.indptr)
    users = np.flatnonzero(test_counts > 0)
    ids = ids[users] if train is not None else ids[users, :k]
    entries = _distinct_entries(ids)
    first = np.zeros(ids.size, dtype=bool)
    first[entries[0]] = True
    ids = np.where(first.reshape(ids.shape), ids, -1)
    hits = _member(entries, ids.shape, users, test)
    if train is not None:
        train = _as_csr(train, "train", test.shape)
        seen = _member(entries, ids.shape, users, train)
        ids, hits = _compact(~seen, k, ids, hits, fill=(-1, False))
    elif ids.shape[1] >= k:
        ids, hits = ids[:, :k], hits[:, :k]
    else:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        hits = np.pad(hits, ((0, 0), (0, pad)), constant_values=False)

    n_relevant = test_counts[users].astype(np.float64)
    gains = hits.astype(np.float64)
    n_hits = gains.sum(axis=1)
    precision = n_hits / k
    recall = n_hits / n_relevant
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator),
                   where=denominator > 0)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal_depth = np.minimum(test_counts[users], k)
    ndcg = (gains @ discount) / np.cumsum(discount)[ideal_depth - 1]
    precision_at = np.cumsum(gains, axis=1)
    precision_at *= gains
    precision_at /= np.arange(1, k + 1, dtype=np.float64)
    average_precision = precision_at.sum(axis=1) / ideal_depth
    any_hit = n_hits > 0
    reciprocal_rank = np.where(any_hit, 1.0 / (np.argmax(hits, axis=1) + 1.0), 0.0)
    valid = ids >= 0
    coverage = np.count_nonzero(np.bincount(ids[valid], minlength=n_items)) / n_items

    result = {
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "ndcg": float(ndcg.mean()),
        "map": float(average_precision.mean()),
        "mrr": float(reciprocal_rank.mean()),
        "hit_rate": float(any_hit.mean()),
        "coverage": float(coverage),
    }
    if item_features is not None:
        result["diversity"] = _diversity(ids, item_features, n_items)
    result["n_users"] = int(users.shape[0])
    return result


def _diversity(ids: np.ndarray, item_features: Any, n_items: int,
               chunk: int = 4096) -> float:
    """Mean intra-list diversity: mean over pairs of 1 − cosine, then over users."""
    if sp.issparse(item_features):
        raise TypeError("item_features must be a dense (n_items, d) array")
    features = np.asarray(item_features)
    if not (np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)):
        raise TypeError(f"item_features must be numeric, got dtype {features.dtype}")
    if features.ndim != 2 or features.shape[0] != n_items:
        raise ValueError(f"item_features must have shape ({n_items}, d), got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("item_features contains NaN or infinite values")
    per_list = _list_diversity(ids, features, chunk)
    counted = ~np.isnan(per_list)
    return float(per_list[counted].mean()) if counted.any() else float("nan")


def _list_diversity(ids: np.ndarray, features: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per row of ids: mean over pairs of valid (≥ 0) positions of 1 − cosine, in float64;
    NaN for rows with fewer than two valid entries. Only the rows listed are read."""
    out = np.full(ids.shape[0], np.nan)
    if features.shape[0] == 0:  # then every entry is padding (-1): no row to gather
        return out
    for begin in range(0, ids.shape[0], chunk):
        block = ids[begin:begin + chunk]
        valid = block >= 0
        vectors = features[np.maximum(block, 0)].astype(np.float64)
        norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
        vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
        vectors *= valid[..., None]
        gram = np.einsum("uid,ujd->uij", vectors, vectors)
        m = valid.sum(axis=1).astype(np.float64)
        # Σ_{i≠j} cos = Σ gram − Σ diag; diag is 1 for a non-zero vector, 0 for zero.
        off_diagonal = gram.sum(axis=(1, 2)) - np.einsum("uii->u", gram)
        pairs = m * (m - 1)
        ok = pairs > 0
        out[begin:begin + block.shape[0]][ok] = 1.0 - off_diagonal[ok] / pairs[ok]
    return out


# --------------------------------------------------------------------------- auc
def auc(scores: Any, test: Any, train: Any = None, *, batch_size: int | None = None) -> float:
    """Full-ranking AUC per user, averaged over users with test items.

    For user u, positives P_u are the test items and negatives N_u all other items
    except those in ``train`` (when given). AUC_u is the fraction of (positive,
    negative) pairs in which the positive scores higher, ties counting one half:
    AUC_u = Σ_{p∈P_u} Σ_{n∈N_u} [s_p > s_n] + ½[s_p = s_n], divided by |P_u| · |N_u|.
    Users with no test item or no negative are left out. Computed from average ranks
    over each row (no loop per user).

    Parameters
    ----------
    scores : float array (n_users, n_items), finite.
    test : scipy sparse matrix (n_users, n_items) of held-out items.
    train : scipy sparse matrix (n_users, n_items), optional; excluded from negatives.
    batch_size : int, optional; rows per batch (default: about 16 M scores per batch).
    """
    from scipy.stats import rankdata

    test = _as_csr(test, "test")
    if test.nnz == 0:
        raise ValueError("test holds no interactions: nothing to evaluate")
    if sp.issparse(scores):
        raise TypeError("scores must be a dense (n_users, n_items) array")
    values = np.asarray(scores)
    if values.dtype == np.bool_ or not (np.issubdtype(values.dtype, np.floating)
                                        or np.issubdtype(values.dtype, np.integer)):
        raise TypeError(f"scores must be numeric, got dtype {values.dtype}")
    if values.shape != test.shape:
        raise ValueError(f"scores must have the shape of test {test.shape}, got {values.shape}")
    if train is not None:
        train = _as_csr(train, "train", test.shape)
    n_items = test.shape[1]
    if batch_size is None:
        batch_size = max(1, (1 << 24) // max(n_items, 1))
    batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=INT64_MAX)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    total, counted = 0.0, 0
    for begin in range(0, users.shape[0], batch_size):
        rows = users[begin:begin + batch_size]
        block = values[rows].astype(np.float64)
        if not np.isfinite(block).all():
            raise ValueError("scores contains NaN or infinite values")
        positive = test[rows].toarray() != 0
        n_masked = np.zeros(rows.shape[0], dtype=np.float64)
        if train is not None:
            masked = (train[rows].toarray() != 0) & ~positive
            block[masked] = -np.inf  # below every positive: subtracted again below
            n_masked = masked.sum(axis=1).astype(np.float64)
        ranks = rankdata(block, axis=1)
        n_pos = positive.sum(axis=1).astype(np.float64)
        n_neg = n_items - n_pos - n_masked
        wins = (ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2 - n_pos * n_masked
        ok = n_neg > 0
        total += float((wins[ok] / (n_pos[ok] * n_neg[ok])).sum())
        counted += int(ok.sum())
    if counted == 0:
        raise ValueError("no user has both a test item and a negative item")
    return total / counted


# --------------------------------------------------------------------------- evaluate
def sampled_auc(score_pairs: Callable[[np.ndarray, np.ndarray], Any], train: Any, test: Any, *,
                negatives: int = AUC_NEGATIVES, random_state: Any = 0) -> float:
    """AUC per user over sampled negatives, averaged over users with test items.

    For user u, positives are the test items; ``negatives`` items are drawn uniformly
    without replacement among the items in neither ``train`` nor ``test`` for u (all of
    them when fewer remain). AUC_u is the fraction of (positive, negative) pairs in
    which the positive scores higher, ties counting one half. ``score_pairs(rows,
    cols)`` returns the model's scores of the (user row, item column) pairs. Users
    without a negative are left out. Cheaper than :func:`auc`'s full ranking, which
    needs every score: with m negatives a user's estimate has a standard deviation of
    at most 1/(2√m) (0.05 at m = 100) around their full-ranking AUC, which averages
    out over users. ``random_state`` seeds the draws.
    """
    negatives = check_int(negatives, "negatives", minimum=1, maximum=1 << 20)
    test = _as_csr(test, "test")
    train = _as_csr(train, "train", test.shape)
    if test.nnz == 0:
        raise ValueError("test holds no interactions: nothing to evaluate")
    rng = as_generator(random_state)
    n_items = test.shape[1]
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    positive: list[np.ndarray] = []
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    kept: list[int] = []
    for u in users:
        pos = np.unique(test.indices[test.indptr[u]:test.indptr[u + 1]])
        blocked = np.union1d(pos, train.indices[train.indptr[u]:train.indptr[u + 1]])
        free = n_items - len(blocked)
        if free <= 0:
            continue
        if free <= negatives:
            neg = np.setdiff1d(np.arange(n_items), blocked)
        else:  # rejection sampling: draws beyond the blocked items, distinct
            neg = np.zeros(0, dtype=np.int64)
            while len(neg) < negatives:
                draw = rng.integers(0, n_items, 2 * negatives + len(blocked))
                neg = np.unique(np.concatenate([neg, draw[~np.isin(draw, blocked)]]))
            neg = rng.permutation(neg)[:negatives]
        slot = len(kept)
        kept.append(int(u))
        for values, flag in ((pos, True), (neg, False)):
            rows.append(np.full(len(values), u))
            cols.append(values)
            owner.append(np.full(len(values), slot))
            positive.append(np.full(len(values), flag))
    if not kept:
        raise ValueError("no user has both a test item and a negative item")
    rows_a, cols_a = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    scores = np.asarray(score_pairs(rows_a, cols_a), dtype=np.float64).reshape(-1)
    if scores.shape != rows_a.shape or not np.isfinite(scores).all():
        raise ValueError(f"score_pairs must return {len(rows_a)} finite scores, got shape {scores.shape}")
    owner_a, positive_a = np.concatenate(owner), np.concatenate(positive)
    total = 0.0
    for slot in range(len(kept)):
        mine = owner_a == slot
        s, p = scores[mine], positive_a[mine]
        pos, neg = s[p], np.sort(s[~p])
        below = np.searchsorted(neg, pos, side="left")
        ties = np.searchsorted(neg, pos, side="right") - below
        total += float((below + 0.5 * ties).sum()) / (len(pos) * len(neg))
    return total / len(kept)


@runtime_checkable
class RowRecommender(Protocol):
    """The one interface :func:`evaluate` asks of a model: it ranks the columns of a
    user × item matrix for some of its rows.

    ``recommend(user_ids, user_items, k, *, exclude_seen=True)`` is given ``user_ids``
    (int64 row numbers), ``user_items`` (those users' rows of the training matrix, CSR,
    one row per entry of ``user_ids`` in that order) and ``k``, and returns ``(ids,
    scores)``: int64 column numbers and float32 scores of shape (len(user_ids), k), best
    first, ties broken by the smaller column, padded with -1 / -inf; with
    ``exclude_seen`` the columns of ``user_items`` are left out.

    :class:`llmrec.ALS` has it as is. A :class:`llmrec.Recommender` works in the
    caller's ids and keeps its own history (``Recommender.recommend(user_ids, k)``
    returns ``Recommendations(ids, scores)`` of item ids): :class:`RecommenderAdapter`
    maps it onto matrix rows and columns, and :func:`evaluate` applies it by itself
    when given a Recommender with ``user_index`` and ``item_index``.
    :class:`ImplicitAdapter` gives it to the ``implicit`` library's models.
    """

    def recommend(self, user_ids: np.ndarray, user_items: sp.csr_matrix, k: int = 10, *,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k columns and scores of the rows ``user_ids`` (see the class docstring)."""
        ...


def evaluate(model: RowRecommender | Recommender, train: Any, test: Any, k: int = 10, *,
             batch_size: int = 1000, item_features: Any = None, show_progress: bool = False,
             callback: Callable[[int, int], Any] | None = None,
             auc_negatives: int = AUC_NEGATIVES, random_state: Any = 0,
             user_index: Any = None, item_index: Any = None) -> dict[str, float]:
    """Evaluate any recommender on held-out items with :func:`ranking_metrics`.

    ``model`` is a :class:`RowRecommender`: one method, ``recommend(user_ids,
    user_items, k, exclude_seen=True)`` returning ``(ids, scores)`` arrays of shape
    (len(user_ids), k) — :class:`llmrec.ALS`, implicit's models through
    :class:`ImplicitAdapter` — or a fitted :class:`llmrec.Recommender` together with
    ``user_index`` and ``item_index`` (then seen through :class:`RecommenderAdapter`).
    It is asked, in batches, for the top k of every user with test items, given that
    user's rows of ``train`` as ``user_items`` and ``exclude_seen=True``. Training items
    that slip through are removed before scoring (``ranking_metrics(..., train=train)``),
    so a model that ignores ``exclude_seen`` gets shorter lists rather than free hits.

    Parameters
    ----------
    model : a :class:`RowRecommender`, or a :class:`llmrec.Recommender`.
    train, test : scipy sparse matrices (n_users, n_items), same shape.
    k : int ≥ 1
    batch_size : int ≥ 1, users per ``recommend`` call.
    item_features : optional (n_items, d) array, enables ``diversity``.
    show_progress : bool, show a tqdm bar over batches.
    callback : callable(done_users, total_users), optional, called after each batch.

    auc_negatives, random_state : for a model that also scores given pairs
        (``predict_pairs(rows, cols)``, e.g. a Recommender through
        :class:`RecommenderAdapter`): negatives drawn per user for :func:`sampled_auc`.

    user_index, item_index : for a Recommender only: the caller ids of the rows and
        columns of ``train`` and ``test`` (as :func:`llmrec.datasets.to_csr` returns them).

    Returns
    -------
    The dict of :func:`ranking_metrics`; with ``predict_pairs``, also "auc" (sampled)
    and "auc_negatives" (the negatives drawn per user).
    """
    ranker = _as_row_recommender(model, user_index, item_index)
    if not callable(getattr(ranker, "recommend", None)):
        raise TypeError("model must have a method recommend(user_ids, user_items, k, "
                        f"exclude_seen=True); {type(ranker).__name__} has none")
    check_int(k, "k", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=INT64_MAX)
    test = _as_csr(test, "test")
    train = _as_csr(train, "train", test.shape)
    k = check_k(k, test.shape[1])  # (n_users, k) is allocated below
    if test.nnz == 0:
        raise ValueError("test holds no interactions: nothing to evaluate")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable(done_users, total_users)")
    n_users, n_items = test.shape
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    recommended = np.full((n_users, k), -1, dtype=np.int64)
    batches = range(0, users.shape[0], batch_size)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=users.shape[0], desc="evaluate", unit="user")
    try:
        for begin in batches:
            rows = users[begin:begin + batch_size]
            ids, _ = ranker.recommend(rows, train[rows], k, exclude_seen=True)
            ids = np.asarray(ids)
            if ids.ndim != 2 or ids.shape[0] != rows.shape[0]:
                raise ValueError(f"model.recommend returned ids of shape {ids.shape}; expected "
                                 f"({rows.shape[0]}, {k}) for {rows.shape[0]} users")
            if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
                raise TypeError(f"model.recommend returned ids of dtype {ids.dtype}; "
                                "expected integers")
            width = min(k, ids.shape[1])
            recommended[rows, :width] = ids[:, :width]
            if bar is not None:
                bar.update(rows.shape[0])
            if callback is not None:
                callback(begin + rows.shape[0], users.shape[0])
    finally:
        if bar is not None:
            bar.close()
    metrics = ranking_metrics(recommended, test, k, train=train, item_features=item_features)
    predict_pairs = getattr(ranker, "predict_pairs", None)
    if callable(predict_pairs):
        metrics["auc"] = sampled_auc(predict_pairs, train, test, negatives=auc_negatives,
                                     random_state=random_state)
        metrics["auc_negatives"] = int(auc_negatives)
    return metrics


def _as_row_recommender(model: Any, user_index: Any, item_index: Any) -> RowRecommender:
    from llmrec.recommender import Recommender

    if isinstance(model, Recommender):
        if user_index is None or item_index is None:
            raise TypeError("evaluate(Recommender, ...) needs user_index and item_index: the caller "
                            "ids of the rows and columns of train and test (datasets.to_csr)")
        return RecommenderAdapter(model, user_index, item_index)
    if user_index is not None or item_index is not None:
        raise TypeError("user_index and item_index are for a Recommender; "
                        f"{type(model).__name__} ranks matrix rows and columns itself")
    return model


class RecommenderAdapter:
    """A fitted :class:`llmrec.Recommender` seen through matrices' rows and columns, for
    :func:`evaluate`: ``user_index`` / ``item_index`` are the caller ids of the rows and
    columns (as :func:`llmrec.datasets.to_csr` returns them). ``recommend`` gives
    column numbers (items outside ``item_index`` are dropped from the lists, which
    are padded with -1); ``predict_pairs`` the Recommender's blended scores, so that
    :func:`evaluate` reports a sampled AUC too. Every column must be an item the
    Recommender knows.

    >>> train, users, items = to_csr(train_df)                          # doctest: +SKIP
    >>> evaluate(RecommenderAdapter(rec, users, items), train, test)    # doctest: +SKIP
    """

    def __init__(self, recommender: Any, user_index: Any, item_index: Any) -> None:
        self.recommender = recommender
        self.user_ids = np.asarray(user_index, dtype=object)
        self.item_ids = np.asarray(item_index, dtype=object)
        self._columns = pd.Index(np.asarray(item_index))
        self.recommender._item_map.rows(list(self.item_ids), "item_index")  # UnknownIdError

    def recommend(self, user_ids: Any, user_items: Any = None, k: int = 10, *,  # noqa: ARG002
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k columns and scores of the users at rows ``user_ids`` (the
        Recommender excludes what it saw itself; ``user_items``, part of the
        :class:`RowRecommender` protocol, is not read)."""
        rows = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        out = self.recommender.recommend(list(self.user_ids[rows]), k, exclude_seen=exclude_seen)
        ids = np.asarray(out.ids, dtype=object).reshape(len(rows), -1)
        cols = self._columns.get_indexer(ids.ravel()).reshape(ids.shape).astype(np.int64)
        scores = np.where(cols >= 0, np.asarray(out.scores, dtype=np.float32).reshape(ids.shape), -np.inf)
        order = np.argsort(cols < 0, axis=1, kind="stable")  # dropped entries to the end
        return np.take_along_axis(cols, order, 1), np.take_along_axis(scores, order, 1).astype(np.float32)

    def predict_pairs(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Blended scores of the (row, column) pairs."""
        scores = self.recommender.predict(list(self.user_ids[rows]), list(self.item_ids[cols]))
        return np.atleast_1d(np.asarray(scores, dtype=np.float64))


class ImplicitAdapter:
    """Give an ``implicit`` model the ``recommend(user_ids, user_items, k, exclude_seen)``
    interface that :func:`evaluate` (and llmrec's models) use.

    Returns int64 ids and float32 scores; the already-seen items implicit leaves in
    short lists (score ``-FLT_MAX``) become id -1, score -inf, as llmrec pads.

    >>> from implicit.als import AlternatingLeastSquares            # doctest: +SKIP
    >>> model = ImplicitAdapter(AlternatingLeastSquares(factors=64)).fit(train)
    >>> evaluate(model, train, test, k=10)                           # doctest: +SKIP
    """

    def __init__(self, model: Any) -> None:
        if not callable(getattr(model, "recommend", None)):
            raise TypeError(f"model must be an implicit recommender, got {type(model).__name__}")
        self.model = model

    def fit(self, user_items: Any, **kwargs: Any) -> ImplicitAdapter:
        """Fit the wrapped model on a CSR user × item matrix; returns self."""
        kwargs.setdefault("show_progress", False)
        self.model.fit(sp.csr_matrix(user_items, dtype=np.float32), **kwargs)
        return self

    def recommend(self, user_ids: Any, user_items: Any, k: int = 10, *,
                  exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids int64, scores float32), each (len(user_ids), k), best first."""
        check_int(k, "k", minimum=1)
        user_ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        items = sp.csr_matrix(user_items, dtype=np.float32)
        k = check_k(k, items.shape[1])
        ids, scores = self.model.recommend(user_ids.astype(np.int32), items, N=k,
                                           filter_already_liked_items=exclude_seen)
        ids = np.asarray(ids, dtype=np.int64).reshape(user_ids.shape[0], -1)
        scores = np.asarray(scores, dtype=np.float32).reshape(user_ids.shape[0], -1)
        empty = (ids < 0) | ~(scores > np.finfo(np.float32).min)
        ids[empty] = -1
        scores[empty] = -np.inf
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids, scores
