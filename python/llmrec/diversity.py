"""Diversity: maximal-marginal-relevance (MMR) re-ranking and intra-list diversity.

:func:`mmr_rerank` re-orders each query's candidate list (for example the top 100 of an
:class:`~llmrec.ExactIndex` search) so that the first k trade some relevance for items
unlike the ones already chosen; the greedy selection runs in native SIMD code, one
query per task on the thread pool. :func:`intra_list_diversity` measures the result:
the mean pairwise cosine distance within each list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec import _core
from llmrec._checks import as_float32, check_id_range, check_int, check_k, check_real, check_threads

__all__ = ["mmr_rerank", "intra_list_diversity"]


def mmr_rerank(candidates: Any, relevance: Any, item_vectors: Any, k: int, lambda_: float, *,
               num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pick k items per query from its candidates by maximal marginal relevance.

    Greedy selection (Carbonell & Goldstein, 1998): with S the items chosen so far,
    each step takes the remaining candidate i maximising ::

        mmr(i) = (1 − λ) · rel(i) − λ · max_{j ∈ S} cos(v_i, v_j)

    with the max over an empty S taken as 0 and ``v_i = item_vectors[i]``. Vectors
    need not be normalised: cosine is computed from the raw rows (a zero row has
    cosine 0 with everything). Ties go to the higher relevance, then the smaller id.

    * λ = 0: plain relevance order (item vectors are not read at all);
    * λ = 1: the most relevant item first, then always the candidate least similar to
      the chosen ones, whatever its relevance.

    Relevance and similarity enter on their own scales, so λ means most when
    relevance spans a range comparable to cosine (e.g. cosine or min-max scaled
    scores). Cost per query: O(C·d) to gather and normalise the candidate rows plus
    O(C·k·d) for the similarity updates (one pass over the remaining candidates per
    pick).

    Parameters
    ----------
    candidates : int array (n_queries, C) or (C,)
        Item ids (rows of ``item_vectors``) per query; -1 marks an empty slot, as in
        the padding of search results. Ids must be unique within a query.
    relevance : float array, same shape as ``candidates``
        Relevance of each candidate, e.g. the search scores. Values in -1 slots are
        ignored (search pads them with -inf); all others must be finite.
    item_vectors : float array (n_items, d)
        float32 C-contiguous input is used without a copy. Only the rows of the
        candidates are read (and must be finite).
    k : int ≥ 1
        Items to select per query; may exceed C, up to max(n_items, 1024) (the cap on
        padded result widths of the searches).
    lambda_ : float in [0, 1]
        Weight of diversity (the Recommender's ``diversity``).
    num_threads : int
        Threads for a batch of queries; 0 means all cores.

    Returns
    -------
    ids : int64 array (n_queries, k), or (k,) for 1-D input
        The chosen items in selection order; -1 where fewer than k candidates exist.
    relevance : float32 array of the same shape
        The *original* relevance of each chosen item (not its MMR score), -inf in
        padded slots. It is not necessarily descending once λ > 0.

    Raises
    ------
    TypeError
        Non-integer ids, non-numeric relevance or vectors, non-numeric λ.
    ValueError
        Shapes that do not agree, ids outside [-1, n_items), duplicate ids within a
        query (found by the native pass), NaN/inf relevance or candidate vectors, k < 1
        or k > max(n_items, 1024), λ outside [0, 1], num_threads outside [0, 1024].

    Examples
    --------
    >>> index = ExactIndex(vectors, metric="cosine")
    >>> cand, scores = index.search(query, k=100)
    >>> ids, rel = mmr_rerank(cand, scores, vectors, k=10, lambda_=0.3)
    """
    check_int(k, "k", minimum=1)
    lambda_ = check_real(lambda_, "lambda_", low=0.0, high=1.0)
    num_threads = check_threads(num_threads)
    vectors = _as_vectors(item_vectors)
    k = check_k(k, vectors.shape[0])
    ids, single = _as_candidates(candidates, vectors.shape[0])
    rel = _as_relevance(relevance, ids, single)
    try:
        out_ids, out_rel = _core.mmr_rerank(ids, rel, vectors, k, lambda_, num_threads)
    except ValueError as error:
        if single and str(error).startswith("candidates[0] "):  # no query index for 1-D input
            raise ValueError("candidates " + str(error)[len("candidates[0] "):]) from None
        raise
    return (out_ids[0], out_rel[0]) if single else (out_ids, out_rel)


def intra_list_diversity(ids: Any, item_vectors: Any) -> np.ndarray | float:
    """Mean pairwise cosine distance within each list.

    For a list L with m ≥ 2 valid entries (id ≥ 0; -1 slots are skipped) this is
    ``Σ_{i ≠ j} (1 − cos(v_i, v_j)) / (m (m − 1))`` over pairs of positions (a repeated
    id counts as a pair at distance 0); lists with fewer than two entries give NaN.
    Computed in float64. The mean over lists is what
    :func:`llmrec.evaluation.ranking_metrics` reports as ``diversity`` (after its own
    clean-up of the lists).

    Parameters
    ----------
    ids : int array (n_lists, L) or (L,)
        Item ids per list, e.g. the ids returned by :func:`mmr_rerank`.
    item_vectors : float array (n_items, d)

    Returns
    -------
    float64 array (n_lists,), or a float for 1-D input.
    """
    from llmrec.evaluation import _list_diversity  # pandas loads on first use only

    vectors = _as_vectors(item_vectors)
    lists, single = _as_candidates(ids, vectors.shape[0], name="ids")
    used = lists[lists >= 0]
    if used.size and not np.isfinite(vectors[np.unique(used)]).all():
        raise ValueError("item_vectors contains NaN or infinite values in rows used by ids")
    result = _list_diversity(lists, vectors)
    return float(result[0]) if single else result


def _as_vectors(values: Any) -> np.ndarray:
    # Finiteness is checked on the rows actually read, not on the whole catalogue:
    # scanning 100,000 x 64 floats per call would cost more than the re-ranking.
    array = as_float32(values, "item_vectors")
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"item_vectors must be a 2-D array of shape (n_items, d) with d ≥ 1, "
                         f"got shape {array.shape}")
    return array


def _as_candidates(values: Any, n_items: int, name: str = "candidates") -> tuple[np.ndarray, bool]:
    if sp.issparse(values):
        raise TypeError(f"{name} must be a dense int array, got a scipy sparse matrix")
    array = np.asarray(values)
    if array.size == 0 and array.dtype == np.float64:  # [] or np.empty((b, 0))
        array = array.astype(np.int64)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer item ids, got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (C,) or (n_queries, C), got shape {array.shape}")
    single = array.ndim == 1
    array = np.ascontiguousarray(array[None, :] if single else array, dtype=np.int64)
    check_id_range(array, name, n_items, padded=True)
    return array, single


def _as_relevance(values: Any, ids: np.ndarray, single: bool) -> np.ndarray:
    with np.errstate(over="ignore"):  # values beyond float32 become inf, rejected below
        array = as_float32(values, "relevance")
    expected = ids.shape[1:] if single else ids.shape
    if array.shape != expected:
        raise ValueError(f"relevance must have the shape of candidates {expected}, got {array.shape}")
    array = np.ascontiguousarray(array.reshape(ids.shape))
    if not np.isfinite(array).all() and not np.isfinite(array[ids >= 0]).all():
        raise ValueError("relevance contains NaN or infinite values (or values beyond float32) "
                         "for candidates that are not -1")
    return array
