"""Batch encoding on Ray: a pool of TextEncoder actors, each loading the model once.

The caller's process splits the texts into batches, streams them to the actors (two
batches queued per actor, so none waits for the next one), and writes every returned
batch into the result at the texts' own positions. The on-disk cache is read and written
by the caller's process only, with the keys a local :class:`llmrec.TextEncoder` uses:
actors on other machines need no access to it, and vectors encoded here are found by a
later local ``TextEncoder(..., cache_dir=...)`` with the same settings (and vice versa).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

from llmrec._checks import check_choice, check_int
from llmrec.distributed import _ray
from llmrec.text.encoder import KINDS, _as_text_list

_QUEUED_PER_ACTOR = 2


class EncoderWorker:
    """One TextEncoder in a Ray actor (made remote by :func:`._ray.actor_class`). ``load``
    builds it, so that a failure to load the model reaches the caller as the original
    exception (an error in an actor's constructor only kills the actor)."""

    def __init__(self) -> None:
        self._encoder: Any = None

    def load(self, model: str | None, encoder: Any) -> dict[str, Any]:
        if encoder is None:
            from llmrec.text.encoder import TextEncoder

            encoder = TextEncoder(model)  # type: ignore[arg-type]  # model is set when encoder is not
        self._encoder = encoder
        # Any object with dim and encode(texts, kind=...) encodes; only a TextEncoder
        # (fingerprint, prefixes) can key the on-disk cache.
        return {"dim": int(encoder.dim), "fingerprint": getattr(encoder, "fingerprint", None),
                "document": getattr(encoder, "document_prefix", ""),
                "query": getattr(encoder, "query_prefix", "")}

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        return np.ascontiguousarray(self._encoder.encode(texts, kind=kind), dtype=np.float32)


def encode(texts: Any, *, encoder: Any = "default", num_actors: int | None = None,
           batch_size: int = 256, cache_dir: str | os.PathLike[str] | None = None,
           show_progress: bool = False, timeout: float | None = None,
           kind: str = "document") -> np.ndarray:
    """Encode ``texts`` on a Ray cluster into a float32 array of shape (len(texts), dim).

    Row i is the vector of ``texts[i]``: the same as ``TextEncoder(...).encode(texts)`` in
    one process, up to float32 rounding (a text's vector may differ in its last bits with
    the other texts of its batch, as it does locally with another batch size).

    Parameters
    ----------
    texts
        A sequence or other iterable of str (a single str is a list of one).
    encoder
        ``"default"`` (all-MiniLM-L6-v2), a local model directory or a cached
        HuggingFace id (each actor builds ``TextEncoder(encoder)``), or a
        :class:`llmrec.TextEncoder`, copied to every actor with all its settings, or
        any object with ``dim`` and ``encode(texts, kind=...)`` (shipped as it is; no
        ``cache_dir`` then).
    num_actors
        Actors, each holding one copy of the model; default: the cluster's CPU count,
        at most one per batch.
    batch_size
        Texts per request to an actor (each actor batches further for its forward
        passes as TextEncoder does).
    cache_dir
        The on-disk vector cache (:mod:`llmrec.text.cache`): texts found there are not
        sent to the cluster, and new vectors are written as their batches arrive. Default:
        the ``cache_dir`` of an ``encoder`` given as a TextEncoder, else no cache.
    show_progress
        Show a tqdm bar of texts encoded.
    timeout
        Seconds that loading the model, or any one batch, may take; None means 600 s.
        A wait that times out raises ``TimeoutError``.
    kind
        ``"document"`` or ``"query"``: which of the encoder's prefixes is used.

    Repeated texts are encoded once. The actors are started for this call and killed
    when it returns or fails.

    Raises
    ------
    RuntimeError
        Ray is not running, or an actor died.
    TypeError, ValueError
        Bad texts or arguments; errors loading the model (``OSError``,
        ``FileNotFoundError``, ``ImportError``) are re-raised as they are.
    TimeoutError
        See ``timeout``.
    """
    ray = _ray.require_ray()
    texts = _as_text_list(texts)
    check_choice(kind, "kind", KINDS)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if num_actors is not None:
        num_actors = check_int(num_actors, "num_actors", minimum=1)
    if not isinstance(show_progress, (bool, np.bool_)):
        raise TypeError(f"show_progress must be a bool, got {type(show_progress).__name__}")
    timeout = _ray.resolve_timeout(timeout)
    model, instance, cache_dir = _encoder_spec(encoder, cache_dir)

    unique = list(dict.fromkeys(texts))  # encode each distinct text once
    batches_needed = max(1, -(-len(unique) // batch_size))
    if num_actors is None:
        num_actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    num_actors = min(num_actors, batches_needed)

    actors: list[Any] = []
    with _ray.killed_on_error(actors):
        pool = _Pool(ray, actors, model, instance, timeout)
        info = pool.start(1 if cache_dir is not None else num_actors)
        dim, fingerprint, prefix = info["dim"], info["fingerprint"], info[kind]
        if cache_dir is not None and fingerprint is None:
            raise ValueError("cache_dir needs a TextEncoder (or a model name) as encoder: "
                             f"{type(encoder).__name__} has no fingerprint to key the cache with")
        out = np.empty((len(texts), dim), dtype=np.float32)
        cache = None
        if cache_dir is not None:
            from llmrec.text.cache import VectorCache

            cache = VectorCache(cache_dir, dim=dim)
        try:
            vectors_of: dict[str, np.ndarray] = {}
            todo = unique
            if cache is not None:
                todo = _lookup(cache, fingerprint, prefix, unique, vectors_of)
            if todo:
                pool.start(min(num_actors, max(1, -(-len(todo) // batch_size))))
                _encode_on_pool(pool, todo, kind, batch_size, vectors_of, cache, fingerprint,
                                prefix, show_progress)
        finally:
            if cache is not None:
                cache.close()
        for i, text in enumerate(texts):
            out[i] = vectors_of[text]
    _ray.kill(actors)
    return out


def _encoder_spec(encoder: Any, cache_dir: Any) -> tuple[str | None, Any, Any]:
    """(model name or path for the actors, or a TextEncoder copy to ship; cache dir)."""
    from llmrec.text.encoder import TextEncoder

    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a path or None, got {type(cache_dir).__name__}")
    if isinstance(encoder, TextEncoder):
        shipped = copy.copy(encoder)
        shipped._cache = None  # an open SQLite connection does not travel; the caller caches
        return None, shipped, cache_dir if cache_dir is not None else encoder.cache_dir
    if isinstance(encoder, os.PathLike):
        encoder = os.fspath(encoder)
    if not isinstance(encoder, str):
        if callable(getattr(encoder, "encode", None)) and hasattr(encoder, "dim"):
            return None, encoder, cache_dir  # an encoder of the caller's own, shipped as it is
        raise TypeError(f"encoder must be 'default', a model directory or id, a TextEncoder or "
                        f"an object with dim and encode(texts, kind=...), got {type(encoder).__name__}")
    if encoder != "default" and os.path.exists(os.path.expanduser(encoder)):
        encoder = os.path.abspath(os.path.expanduser(encoder))  # actors may run elsewhere
    return encoder, None, cache_dir


class _Pool:
    """The encoder actors of one call; ``start(n)`` grows it to n loaded actors."""

    def __init__(self, ray: Any, actors: list[Any], model: str | None, instance: Any,
                 timeout: float) -> None:
        self.ray, self.actors, self.timeout = ray, actors, timeout
        self._model = model
        self._instance = None if instance is None else ray.put(instance)

    def start(self, count: int) -> dict[str, Any]:
        worker = _ray.actor_class(EncoderWorker)
        new = [worker.remote() for _ in range(count - len(self.actors))]
        self.actors.extend(new)
        infos = self.wait([actor.load.remote(self._model, self._instance) for actor in new],
                          "loading the model")
        return infos[0] if infos else {}

    def wait(self, refs: list[Any], what: str) -> list[Any]:
        try:
            return _ray.get(refs, timeout=self.timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{what}: an encoder actor did not answer within "
                               f"{self.timeout} s") from exc
        except self.ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"{what}: an encoder actor died "
                               f"({_ray.actor_died_message(exc)})") from exc


def _lookup(cache: Any, fingerprint: str, prefix: str, texts: list[str],
            vectors_of: dict[str, np.ndarray]) -> list[str]:
    """Fill ``vectors_of`` from the cache; return the texts it did not hold."""
    from llmrec.text.cache import text_key

    found, vectors = cache.get_many([text_key(fingerprint, prefix, text) for text in texts])
    for text, hit, vector in zip(texts, found, vectors):
        if hit:
            vectors_of[text] = vector
    return [text for text, hit in zip(texts, found) if not hit]


def _encode_on_pool(pool: _Pool, todo: list[str], kind: str, batch_size: int,
                    vectors_of: dict[str, np.ndarray], cache: Any, fingerprint: str,
                    prefix: str, show_progress: bool) -> None:
    """Stream ``todo`` through the actors, longest texts first (batches of similar
    lengths pad less), filling ``vectors_of`` and the cache as batches return."""
    from llmrec.text.cache import text_key

    order = sorted(range(len(todo)), key=lambda i: -len(todo[i]))
    batches = [[todo[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=len(todo), unit="text", desc="encoding")
    queued: dict[Any, tuple[int, Any]] = {}  # ref -> (batch number, actor)
    next_batch = 0

    def submit(actor: Any) -> None:
        nonlocal next_batch
        if next_batch < len(batches):
            queued[actor.encode.remote(batches[next_batch], kind)] = (next_batch, actor)
            next_batch += 1

    try:
        for _ in range(_QUEUED_PER_ACTOR):
            for actor in pool.actors:
                submit(actor)
        while queued:
            ready, _ = pool.ray.wait(list(queued), num_returns=1, timeout=pool.timeout)
            if not ready:
                raise TimeoutError(f"encoding: no batch came back within {pool.timeout} s")
            number, actor = queued.pop(ready[0])
            vectors = pool.wait(ready, "encoding")[0]
            batch = batches[number]
            if vectors.shape != (len(batch), vectors.shape[1]):
                raise RuntimeError(f"an encoder actor returned shape {vectors.shape} for "
                                   f"{len(batch)} texts")
            for text, vector in zip(batch, vectors):
                vectors_of[text] = vector
            if cache is not None:
                cache.put_many([text_key(fingerprint, prefix, text) for text in batch], vectors)
            if progress is not None:
                progress.update(len(batch))
            submit(actor)
    finally:
        if progress is not None:
            progress.close()
