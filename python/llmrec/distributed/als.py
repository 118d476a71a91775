"""Alternating least squares on a Ray cluster, equal to :class:`llmrec.ALS` on one machine.

Users and items are cut into ``num_blocks`` contiguous blocks of rows (balanced by
interactions); actor *b* holds user block *b* (its rows of R) and item block *b* (its rows
of Rᵀ) with their factors, and solves them with the same native half-step as
:class:`llmrec.ALS`. One half-step (say the users'):

1. the item factors Y, assembled by the driver, are put in the object store once; every
   actor reads that one copy (zero-copy on its node);
2. the Gramian YᵀY (implicit feedback) is reduced from partial sums: the actors split
   the 2048-row chunks that the native Gramian uses among themselves and return each
   chunk's f×f float32 partial; the driver adds them in float64 in chunk order and
   rounds once — the very arithmetic of the single-process Gramian;
3. each actor solves its user rows (CG or Cholesky, warm-started from the factors it
   holds) and returns its block.

**What can differ from a single-process fit.** Nothing, where every actor runs the same
native build at the same SIMD level as the single-process fit: each row's solve depends
only on that row's interactions, the broadcast factors, the Gramian and its own warm
start, all equal, so the factors are bitwise equal (the tests compare them exactly). An
actor on a node of another SIMD level (``llmrec.build_info()["simd_active"]``: AVX2 next
to AVX-512, say) rounds its rows' sums differently, by float32 rounding only (see the
tolerances of the SIMD tests), and later iterations carry that difference along like any
float32 perturbation of a start point.

**Faults.** After every iteration the factors are the checkpoint (kept by the driver,
and, with ``checkpoint_dir``, written there atomically). When an actor dies (a lost
node, ``ray.kill``, a crash, Ray's memory monitor), Ray restarts it (up to
``max_restarts`` times each); it reloads its interactions from the object store, every
actor reloads its factors from the checkpoint, and the iteration is run again — so the
result equals an undisturbed fit. A fit given a ``checkpoint_dir`` that holds a checkpoint of the same data and
parameters resumes from it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from llmrec import _core
from llmrec._checks import check_int, check_threads
from llmrec._estimator import Estimator
from llmrec._fileformat import load_arrays, save_arrays
from llmrec.als import ALS as LocalALS
from llmrec.als import _as_interactions, _Prior, _require_finite_solution
from llmrec.distributed import _ray
from llmrec.exceptions import NotFittedError

#: Rows per chunk of the native Gramian (``kGramianChunk`` in cpp/src/als/solver.cpp): the
#: partial sums are taken over the same chunks so that their float64 reduction in chunk
#: order is the single-process Gramian bit for bit (tests/test_distributed_als.py checks it).
GRAMIAN_CHUNK_ROWS = 2048

_LOCAL_PARAMS = tuple(p for p in LocalALS._param_names)
_PARAMS = _LOCAL_PARAMS + ("num_blocks", "timeout", "checkpoint_dir", "max_restarts")
_CHECKPOINT_KIND = "ALSCheckpoint"
_CHECKPOINT_FILE = "als-checkpoint.llmrec"


class BlockLost(RuntimeError):
    """An actor that was restarted no longer holds its factors (raised inside the actor)."""


class _Block:
    """One actor: a block of user rows and a block of item rows, their factors, the solver."""

    def __init__(self, user_rows: tuple[Any, ...], item_rows: tuple[Any, ...], settings: dict[str, Any]) -> None:
        self.rows = {"user": user_rows, "item": item_rows}
        self.settings = settings
        self.factors: dict[str, np.ndarray | None] = {"user": None, "item": None}

    def pid(self) -> int:
        return os.getpid()

    def load(self, side: str, block: np.ndarray) -> None:
        # Arrays from the object store are read-only: the solver updates a private copy.
        self.factors[side] = np.array(block, dtype=np.float32, order="C", copy=True)

    def gramian_chunks(self, Y: np.ndarray, first: int, last: int) -> tuple[np.ndarray, float]:
        """The float32 partial Gramians of the chunks ``first``..``last``-1 of Y, and the
        seconds they took."""
        started = time.perf_counter()
        out = np.empty((last - first, Y.shape[1], Y.shape[1]), dtype=np.float32)

        def chunk(c: int) -> None:
            # One chunk is one native task: the call's own float64 reduction of a single
            # partial is exact, so it returns that partial unchanged.
            rows = Y[c * GRAMIAN_CHUNK_ROWS:(c + 1) * GRAMIAN_CHUNK_ROWS]
            out[c - first] = _core.als_gramian(rows, 1)

        threads = min(self.settings["num_threads"], last - first)
        if threads > 1:  # the native call releases the GIL
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(chunk, range(first, last)))
        else:
            for c in range(first, last):
                chunk(c)
        return out, time.perf_counter() - started

    def solve(self, side: str, Y: np.ndarray, gram: np.ndarray | None,
              priors: np.ndarray | None) -> tuple[np.ndarray, float]:
        """The block's new factors of ``side`` and the seconds the solve took."""
        started = time.perf_counter()
        X = self.factors[side]
        if X is None:
            raise BlockLost(f"the {side} factors are gone (the actor was restarted)")
        s = self.settings
        indptr, indices, data, _ = self.rows[side]
        _core.als_solve(indptr, indices, data, Y, X, gram, implicit=s["implicit"],
                        cholesky=s["cholesky"], cg_steps=s["cg_steps"],
                        regularization=s["regularization"], alpha=s["alpha"],
                        reg_exponent=s["reg_exponent"], prior_strength=s["prior_strength"],
                        priors=priors, num_threads=s["num_threads"])
        _require_finite_solution(X, s)
        return X, time.perf_counter() - started


def _boundaries(indptr: np.ndarray, num_blocks: int, f: int) -> np.ndarray:
    """Row boundaries of ``num_blocks`` contiguous blocks of near-equal work (a row costs
    its interactions plus ~f for its dense f×f part), each holding at least one row."""
    n = len(indptr) - 1
    work = indptr.astype(np.float64) + f * np.arange(n + 1, dtype=np.float64)
    targets = work[-1] * np.arange(1, num_blocks) / num_blocks
    cuts = np.searchsorted(work, targets).astype(np.int64)
    for i in range(len(cuts)):  # at least one row per block, on both sides of each cut
        low = cuts[i - 1] + 1 if i else 1
        cuts[i] = min(max(cuts[i], low), n - (num_blocks - 1 - i))
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


def _rows(R: sp.csr_matrix, begin: int, end: int) -> tuple[Any, ...]:
    block = R[begin:end]
    return (np.ascontiguousarray(block.indptr, dtype=np.int64),
            np.ascontiguousarray(block.indices, dtype=np.int32),
            np.ascontiguousarray(block.data, dtype=np.float32), R.shape[1])


def _stack(user_items: Any) -> sp.csr_matrix:
    """One canonical CSR matrix from a matrix or a list of CSR row blocks."""
    if isinstance(user_items, (list, tuple)):
        if not user_items:
            raise ValueError("user_items is an empty list of row blocks")
        blocks = [_as_interactions(b, f"user_items[{i}]") for i, b in enumerate(user_items)]
        widths = {b.shape[1] for b in blocks}
        if len(widths) != 1:
            raise ValueError(f"the row blocks of user_items must have the same number of columns "
                             f"(items), got {[b.shape[1] for b in blocks]}")
        return sp.vstack(blocks, format="csr", dtype=np.float32)
    return _as_interactions(user_items, "user_items")


def _fingerprint(R: sp.csr_matrix, features: list[np.ndarray | None]) -> str:
    digest = hashlib.sha256()
    digest.update(np.asarray(R.shape, dtype=np.int64).tobytes())
    for array in (R.indptr.astype(np.int64), R.indices.astype(np.int32), R.data):
        digest.update(np.ascontiguousarray(array).tobytes())
    for F in features:
        digest.update(b"-" if F is None else np.ascontiguousarray(F).tobytes())
    return digest.hexdigest()


def default_num_blocks(shape: tuple[int, int]) -> int:
    """One block per CPU of the connected cluster, at most one per row of either side."""
    cpus = int(_ray.require_ray().cluster_resources().get("CPU", 1))
    return max(1, min(cpus, int(shape[0]), int(shape[1])))


class ALS(Estimator):
    """:class:`llmrec.ALS` fitted by Ray actors (see the module docstring).

    Parameters (keyword-only, stored as given, checked by :meth:`fit`)
    ----------
    factors, regularization, alpha, iterations, feedback, solver, cg_steps,
    prior_strength, regularization_exponent, random_state
        As for :class:`llmrec.ALS`; the fit equals that model's with the same values.
    num_threads : int
        Native threads per actor; each actor asks Ray for that many CPUs (0: one thread,
        one CPU).
    num_blocks : int
        Number of actors, each holding one block of users and one of items; at least 1
        and at most min(n_users, n_items).
    timeout : float or None
        Seconds any single wait on the cluster may take (None: no limit); a wait that
        runs out raises ``TimeoutError`` and the actors are killed.
    checkpoint_dir : str, path or None
        A directory where every finished iteration's factors are written atomically
        (``als-checkpoint.llmrec``); a later fit of the same data and parameters resumes
        from it. None keeps the checkpoint in the driver's memory only.
    max_restarts : int
        How many times Ray restarts each actor; a fit re-runs at most max_restarts ×
        num_blocks iterations after actor failures before it gives up (``RuntimeError``).

    Attributes
    ----------
    user_factors_, item_factors_ : float32 (n_users, f), (n_items, f)
    user_prior_weights_, item_prior_weights_ : float32 (m, f) or None
    n_iterations_resumed_ : int, iterations taken from ``checkpoint_dir`` (0: none)
    n_recoveries_ : int, iterations re-run after an actor failed
    fit_stats_ : dict, each block's rows and interactions per side, and per half-step the
        bytes moved (``broadcast_bytes``: the other side's factors put once;
        ``gram_bytes``: the partial Gramians returned; ``block_bytes``: the solved blocks
        returned; ``prior_bytes``) and the seconds (whole half-step, each actor's solve and
        Gramian work)
    """

    _param_names = _PARAMS

    def __init__(self, *, factors: int = 64, regularization: float = 0.01, alpha: float = 1.0,
                 iterations: int = 15, feedback: str = "implicit", solver: str = "cg",
                 cg_steps: int = 3, prior_strength: float = 1.0,
                 regularization_exponent: float | None = None, random_state: Any = None,
                 num_threads: int = 0, num_blocks: int = 2, timeout: float | None = _ray.DEFAULT_TIMEOUT,
                 checkpoint_dir: Any = None, max_restarts: int = 3) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.feedback = feedback
        self.solver = solver
        self.cg_steps = cg_steps
        self.prior_strength = prior_strength
        self.regularization_exponent = regularization_exponent
        self.random_state = random_state
        self.num_threads = num_threads
        self.num_blocks = num_blocks
        self.timeout = timeout
        self.checkpoint_dir = checkpoint_dir
        self.max_restarts = max_restarts

    def _local(self) -> LocalALS:
        return LocalALS(**{name: getattr(self, name) for name in _LOCAL_PARAMS})

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_") and not name.startswith("_"):
            raise NotFittedError(f"distributed ALS.{name} is learned by fit: call fit(user_items) first")
        raise AttributeError(f"'ALS' object has no attribute {name!r}")

    # ------------------------------------------------------------------ fitting

    def fit(self, user_items: Any, *, item_features: Any = None, user_features: Any = None,
            show_progress: bool = False,
            callback: Callable[[int, float], Any] | None = None) -> ALS:
        """Learn the factors on the Ray cluster; returns self.

        ``user_items``: a scipy sparse matrix (n_users, n_items) or a list of CSR row
        blocks (stacked in order; they must have the same number of columns).
        ``item_features`` / ``user_features``, ``show_progress`` and ``callback(iteration,
        elapsed_seconds)`` as for :meth:`llmrec.ALS.fit`.
        """
        ray = _ray.require_ray()
        local = self._local()
        s = local._settings()
        timeout = _ray.check_timeout(self.timeout)
        max_restarts = check_int(self.max_restarts, "max_restarts", minimum=0)
        threads = check_threads(self.num_threads) or 1
        s = dict(s, num_threads=threads)
        R = _stack(user_items)
        n_users, n_items = R.shape
        if R.nnz == 0:
            raise ValueError(f"user_items of shape {R.shape} has no interactions")
        num_blocks = check_int(self.num_blocks, "num_blocks", minimum=1)
        if num_blocks > min(n_users, n_items):
            raise ValueError(f"num_blocks must be at most min(n_users, n_items) = "
                             f"{min(n_users, n_items)} (every block needs a row), got {num_blocks}")
        Fi = local._features(item_features, "item_features", n_items, s)
        Fu = local._features(user_features, "user_features", n_users, s)
        f = s["factors"]
        rng = np.random.default_rng(self.random_state)
        X = rng.random((n_users, f), dtype=np.float32) * 0.01  # as llmrec.ALS.fit draws them
        Y = rng.random((n_items, f), dtype=np.float32) * 0.01
        Rt = R.T.tocsr()
        priors = {
            "user": _Prior(Fu, np.diff(R.indptr) > 0, s["prior_strength"], s["regularization"])
            if Fu is not None else None,
            "item": _Prior(Fi, np.diff(Rt.indptr) > 0, s["prior_strength"], s["regularization"])
            if Fi is not None else None}
        bounds = {"user": _boundaries(R.indptr, num_blocks, f),
                  "item": _boundaries(Rt.indptr, num_blocks, f)}
        checkpoint = None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / _CHECKPOINT_FILE
        fingerprint = _fingerprint(R, [Fu, Fi]) if checkpoint is not None else ""
        start_iteration = 0
        if checkpoint is not None:
            resumed = self._read_checkpoint(checkpoint, fingerprint, X.shape, Y.shape)
            if resumed is not None:
                start_iteration, X, Y = resumed
        self.n_iterations_resumed_ = start_iteration
        self.n_recoveries_ = 0

        run = _Run(ray, s, bounds, timeout, priors)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=s["iterations"], initial=start_iteration, desc="ALS (Ray)", unit="it")
        started = time.perf_counter()
        self._actors = run.actors
        try:
            with _ray.killed_on_error(run.actors):
                run.start(R, Rt, max_restarts)
                run.load(X, Y)
                iteration = start_iteration
                while iteration < s["iterations"]:
                    try:
                        X, Y = run.iteration(X, Y)
                    except _recoverable(ray) as exc:
                        self.n_recoveries_ += 1
                        if self.n_recoveries_ > max_restarts * num_blocks:
                            raise RuntimeError(f"distributed ALS: actors failed {self.n_recoveries_} "
                                               f"times, more than max_restarts × num_blocks = "
                                               f"{max_restarts * num_blocks} (last: {exc})") from exc
                        run.reload(X, Y)  # the last finished iteration's factors
                        continue
                    if checkpoint is not None:
                        self._write_checkpoint(checkpoint, fingerprint, iteration + 1, X, Y)
                    iteration += 1
                    if bar is not None:
                        bar.update(1)
                    if callback is not None:
                        callback(iteration - 1, time.perf_counter() - started)
                _ray.kill(run.actors)
        finally:
            self._actors = []
            if bar is not None:
                bar.close()
        self._finish(s, R, X, Y, priors)
        self.fit_stats_ = {"user_rows": np.diff(bounds["user"]).tolist(),
                           "item_rows": np.diff(bounds["item"]).tolist(),
                           "user_nnz": np.diff(R.indptr[bounds["user"]]).tolist(),
                           "item_nnz": np.diff(Rt.indptr[bounds["item"]]).tolist(),
                           "half_steps": run.records}
        return self

    def _finish(self, s: dict[str, Any], R: sp.csr_matrix, X: np.ndarray, Y: np.ndarray,
                priors: dict[str, Any]) -> None:
        """The end of :meth:`llmrec.ALS.fit`: final priors, and rows without interactions
        get them exactly."""
        W: dict[str, Any] = {"user": None, "item": None}
        P: dict[str, Any] = {"user": None, "item": None}
        for side, Z in (("user", X), ("item", Y)):
            prior = priors[side]
            if prior is not None:
                W[side], P[side] = prior.fit(Z)
                Z[~prior.fitted] = P[side][~prior.fitted]
        self.user_factors_, self.item_factors_ = X, Y
        self.user_prior_weights_, self.item_prior_weights_ = W["user"], W["item"]
        self._user_priors, self._item_priors = P["user"], P["item"]
        self._user_items = R
        self._settings_used = dict(
            s, num_threads=self.num_threads,
            user_prior_penalty=None if priors["user"] is None else priors["user"].penalty,
            item_prior_penalty=None if priors["item"] is None else priors["item"].penalty)

    def to_local(self) -> LocalALS:
        """A fitted :class:`llmrec.ALS` with these factors (copies), priors and
        interactions: it recommends, folds in, saves and pickles like any local fit."""
        if "user_factors_" not in self.__dict__:
            raise NotFittedError("this distributed ALS is not fitted yet: call fit(user_items) first")
        model = self._local()
        model._set_fitted(dict(self._settings_used), self.user_factors_.copy(), self.item_factors_.copy(),
                          self.user_prior_weights_, self.item_prior_weights_, self._user_priors,
                          self._item_priors, self._user_items)
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_actors", None)  # handles of a finished (or failed) fit
        return state

    # -------------------------------------------------------------- checkpoints

    def _checkpoint_meta(self, fingerprint: str) -> dict[str, Any]:
        params = {k: v for k, v in self.get_params().items()
                  if k in _LOCAL_PARAMS and k not in ("num_threads", "iterations")}
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = repr(params["random_state"])
        return {"params": params, "data": fingerprint}

    def _write_checkpoint(self, path: Path, fingerprint: str, done: int, X: np.ndarray,
                          Y: np.ndarray) -> None:
        meta = dict(self._checkpoint_meta(fingerprint), iterations_done=done)
        save_arrays(path, _CHECKPOINT_KIND, 1, meta, {"user_factors": X, "item_factors": Y})

    def _read_checkpoint(self, path: Path, fingerprint: str, x_shape: tuple[int, ...], y_shape: tuple[int, ...]
                         ) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(iterations done, X, Y) from a checkpoint of this very fit, else None."""
        if not path.exists():
            return None
        meta, arrays, _ = load_arrays(path, _CHECKPOINT_KIND, max_kind_version=1)
        if {k: meta.get(k) for k in ("params", "data")} != self._checkpoint_meta(fingerprint):
            return None  # another fit's: overwritten by this one's first iteration
        done = meta.get("iterations_done")
        X, Y = arrays.get("user_factors"), arrays.get("item_factors")
        if (not isinstance(done, int) or isinstance(done, bool) or not 0 <= done
                or X is None or Y is None or X.shape != x_shape or Y.shape != y_shape
                or X.dtype != np.float32 or Y.dtype != np.float32
                or not (np.isfinite(X).all() and np.isfinite(Y).all())):
            raise ValueError(f"{path} is not a valid ALS checkpoint for this fit (shapes, "
                             "count or values are wrong)")
        return min(done, int(self.iterations)), np.array(X), np.array(Y)


def _recoverable(ray: Any) -> tuple[type[BaseException], ...]:
    """Failures after which a restarted actor reloads the checkpoint: an actor that died
    or was restarted (killed, node lost, crashed, or killed by Ray's memory monitor)."""
    return (ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError, BlockLost)


class _Run:
    """The actors of one fit and the steps of an iteration."""

    def __init__(self, ray: Any, s: dict[str, Any], bounds: dict[str, np.ndarray],
                 timeout: float | None, priors: dict[str, Any]) -> None:
        self.ray, self.s, self.bounds, self.timeout, self.priors = ray, s, bounds, timeout, priors
        self.actors: list[Any] = []
        self.records: list[dict[str, Any]] = []  # one per half-step run: bytes and seconds
        self.rows_refs: list[Any] = []  # held for the fit: restarted actors read their rows back

    def start(self, R: sp.csr_matrix, Rt: sp.csr_matrix, max_restarts: int) -> None:
        ray = self.ray
        remote = ray.remote(_Block).options(num_cpus=self.s["num_threads"],
                                            max_restarts=max_restarts, max_task_retries=0,
                                            scheduling_strategy="SPREAD")
        ub, ib = self.bounds["user"], self.bounds["item"]
        for b in range(len(ub) - 1):
            # Put once: a restarted actor reads its rows back from the object store.
            user_rows = ray.put(_rows(R, ub[b], ub[b + 1]))
            item_rows = ray.put(_rows(Rt, ib[b], ib[b + 1]))
            self.rows_refs += [user_rows, item_rows]
            self.actors.append(remote.remote(user_rows, item_rows, self.s))
        self.wait([a.pid.remote() for a in self.actors], "start")

    def wait(self, refs: list[Any], what: str) -> list[Any]:
        return _ray.get_each(refs, self.timeout, [f"ALS block {b} ({what})" for b in range(len(refs))])

    def load(self, X: np.ndarray, Y: np.ndarray) -> None:
        refs = []
        for side, Z in (("user", X), ("item", Y)):
            bounds = self.bounds[side]
            for b, actor in enumerate(self.actors):
                refs.append(actor.load.remote(side, Z[bounds[b]:bounds[b + 1]]))
        self.wait(refs, "loading factors")

    def reload(self, X: np.ndarray, Y: np.ndarray) -> None:
        """:meth:`load` once the restarted actors answer again (within the timeout)."""
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else _ray.DEFAULT_TIMEOUT)
        pause = 0.05
        while True:
            try:
                return self.load(X, Y)
            except _recoverable(self.ray) as exc:
                if time.monotonic() + pause > deadline:
                    raise TimeoutError("distributed ALS: the restarted actors did not come back "
                                       "within the timeout") from exc
                time.sleep(pause)
                pause = min(2 * pause, 1.0)

    def gramian(self, Y_ref: Any, n: int, f: int, what: str, record: dict[str, Any]) -> np.ndarray:
        n_chunks = -(-n // GRAMIAN_CHUNK_ROWS)
        cuts = np.linspace(0, n_chunks, len(self.actors) + 1).round().astype(int)
        refs = [actor.gramian_chunks.remote(Y_ref, int(cuts[b]), int(cuts[b + 1]))
                for b, actor in enumerate(self.actors) if cuts[b + 1] > cuts[b]]
        total = np.zeros((f, f), dtype=np.float64)
        answers = self.wait(refs, f"{what} Gramian")
        for partials, _ in answers:
            for partial in partials:  # in chunk order, as the native reduction adds them
                total += partial
        record["gram_bytes"] = sum(p.nbytes for p, _ in answers)
        record["gram_seconds"] = [seconds for _, seconds in answers]
        return total.astype(np.float32)

    def half_step(self, side: str, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """New factors of ``side`` (X) given the other side's (Y)."""
        ray, s = self.ray, self.s
        started = time.perf_counter()
        record: dict[str, Any] = {"side": side, "broadcast_bytes": Y.nbytes, "gram_bytes": 0,
                                  "gram_seconds": []}
        Y_ref = ray.put(Y)
        gram = self.gramian(Y_ref, Y.shape[0], Y.shape[1], side, record) if s["implicit"] else None
        gram_ref = None if gram is None else ray.put(gram)
        P = None
        if self.priors[side] is not None:
            _, P = self.priors[side].fit(X)
        bounds = self.bounds[side]
        refs = [actor.solve.remote(side, Y_ref, gram_ref,
                                   None if P is None else P[bounds[b]:bounds[b + 1]])
                for b, actor in enumerate(self.actors)]
        answers = self.wait(refs, f"{side} half-step")
        out = np.concatenate([block for block, _ in answers])
        record.update(
            gram_broadcast_bytes=0 if gram is None else gram.nbytes,
            prior_bytes=0 if P is None else P.nbytes,
            block_bytes=out.nbytes, solve_seconds=[seconds for _, seconds in answers],
            seconds=time.perf_counter() - started)
        self.records.append(record)
        return out

    def iteration(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self.half_step("user", X, Y)
        Y = self.half_step("item", Y, X)
        return X, Y


__all__ = ["ALS", "BlockLost", "GRAMIAN_CHUNK_ROWS", "default_num_blocks"]
