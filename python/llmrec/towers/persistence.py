"""SequenceTowers files: llmrec's versioned format (:mod:`llmrec._fileformat`), no pickle.

Kind ``"SequenceTowers"``, version 1, or 2 for a model with fine-tuned text layers
(``text="finetune"``). Arrays: every tensor of the torch state dict as
``param/<name>`` (float32; the fine-tuned layers under ``param/text_head.``), ``has_id``
(bool, one per item) and, with text, ``item_text_vectors`` (float32 (n_items,
text_dim)). Meta: the constructor parameters, ``n_items``, ``n_id_rows`` (items at fit
time), ``text_dim``, ``uses_timestamps``, ``uses_profiles`` (absent in files written
before profiles: false), the encoder (``"default"``, ``"custom"`` with
its model name, or null) and the training record; version 2 adds ``text_head`` (the
fine-tuned layers' shape: layers, hidden, heads, intermediate, eps, pooling,
normalize) and ``encoder_fingerprint`` (the encoder whose lower layers feed them).
Loading rebuilds the modules from the parameters and checks every array's name, dtype
and shape against them before using it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from llmrec._fileformat import load_arrays, save_arrays
from llmrec._validate import meta_int
from llmrec.exceptions import FormatError

KIND = "SequenceTowers"
KIND_VERSION = 2


def save_towers(model: Any, path: str | os.PathLike[str]) -> None:
    """Write a fitted model to ``path`` (see the module docstring)."""
    meta, arrays = towers_to_arrays(model)
    save_arrays(path, KIND, 2 if meta["text_head"] is not None else 1, meta, arrays)


def towers_to_arrays(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays) of a fitted model: what :func:`save_towers` writes, for embedding
    the towers in another llmrec file (e.g. under a name prefix in a Recommender's)."""
    state = model.module_.state_dict()
    arrays = {f"param/{name}": t.detach().cpu().numpy() for name, t in state.items()}
    arrays["has_id"] = model.has_id_.astype(np.bool_)
    if model.item_text_vectors_ is not None:
        arrays["item_text_vectors"] = model.item_text_vectors_
    spec = model._encoder_spec
    meta = {
        "params": model.get_params(),
        "n_items": int(model.n_items_),
        "n_id_rows": int(model.module_.item.n_id_rows),
        "text_dim": int(model.text_dim_),
        "uses_timestamps": bool(model.uses_timestamps_),
        "uses_profiles": bool(getattr(model, "uses_profiles_", False)),
        "encoder": spec,
        "encoder_name": getattr(model.encoder_, "model_name", None) if spec == "custom" else None,
        "history": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                     for k, v in r.items()} for r in model.history_],
        "best_epoch": int(model.best_epoch_),
        "averaged_epochs": int(getattr(model, "averaged_epochs_", 1)),
        "validation_ndcg": (None if not math.isfinite(model.validation_ndcg_)
                            else float(model.validation_ndcg_)),
        "fit_seconds": float(model.fit_seconds_),
    }
    head = getattr(model.module_, "text_head", None)
    meta["text_head"] = None if head is None else dict(head.settings)
    meta["encoder_fingerprint"] = getattr(model, "_encoder_fingerprint", None)
    return meta, arrays


def load_towers(cls: type, path: str | os.PathLike[str], *, encoder: Any, verify: bool) -> Any:
    """Read a model written by :func:`save_towers`."""
    meta, arrays, _ = load_arrays(path, KIND, max_kind_version=KIND_VERSION, verify=verify)
    return towers_from_arrays(cls, meta, arrays, encoder=encoder, path=path)


def towers_from_arrays(cls: type, meta: dict[str, Any], arrays: dict[str, np.ndarray], *,
                       encoder: Any = None, path: Any = "<arrays>") -> Any:
    """Rebuild a model from :func:`towers_to_arrays`' output, checking every field;
    raises :class:`FormatError` (naming ``path``) for anything inconsistent."""
    import torch

    from llmrec.towers.model import Towers

    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
        raise FormatError(f"{path}: missing or invalid 'params' in the towers' metadata")
    try:
        model = cls(**meta["params"])
        s = model._settings()
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: invalid parameters in the file ({exc})") from exc
    n_items = meta_int(meta, "n_items", path, minimum=1)
    n_id_rows = meta_int(meta, "n_id_rows", path, minimum=0)
    text_dim = meta_int(meta, "text_dim", path, minimum=0)
    if n_id_rows > n_items:
        raise FormatError(f"{path}: n_id_rows {n_id_rows} > n_items {n_items}")
    has_id = arrays.get("has_id")
    if has_id is None or has_id.dtype != np.bool_ or has_id.shape != (n_items,):
        raise FormatError(f"{path}: array 'has_id' must be bool of shape ({n_items},)")
    T = arrays.get("item_text_vectors")
    if text_dim:
        if T is None or T.dtype != np.float32 or T.shape != (n_items, text_dim):
            raise FormatError(f"{path}: array 'item_text_vectors' must be float32 of shape "
                              f"({n_items}, {text_dim})")
        T = np.ascontiguousarray(T)
    elif T is not None:
        raise FormatError(f"{path}: item_text_vectors present in a model without text")
    uses_timestamps = bool(meta.get("uses_timestamps", False))
    uses_profiles = meta.get("uses_profiles", False)
    if not isinstance(uses_profiles, bool) or (uses_profiles and not text_dim):
        raise FormatError(f"{path}: 'uses_profiles' must be a bool, and true only with text")
    head = _text_head(meta, path, text_dim, fine_tuned=model.text == "finetune")
    net = Towers(n_id_rows=n_id_rows, text_dim=text_dim, dim=s["dim"], hidden=s["hidden"],
                 layers=s["layers"], heads=s["heads"], max_history=s["max_history"],
                 dropout=s["dropout"], use_gaps=uses_timestamps, text_head=head,
                 use_profiles=uses_profiles)
    expected = net.state_dict()
    given = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    if set(given) != set(expected):
        raise FormatError(f"{path}: weights do not match the parameters (missing "
                          f"{sorted(set(expected) - set(given))}, unexpected "
                          f"{sorted(set(given) - set(expected))})")
    state = {}
    for name, ref in expected.items():
        a = given[name]
        if a.dtype != np.float32 or tuple(a.shape) != tuple(ref.shape):
            raise FormatError(f"{path}: weight {name!r} must be float32 of shape "
                              f"{tuple(ref.shape)}, got {a.dtype} {a.shape}")
        if a.size and not np.isfinite(a).all():
            raise FormatError(f"{path}: weight {name!r} holds NaN or infinite values")
        state[name] = torch.from_numpy(np.array(a))
    net.load_state_dict(state)
    net.eval()
    model.module_ = net
    model.n_items_ = n_items
    model.text_dim_ = text_dim
    model.item_text_vectors_ = T if text_dim else None
    model.has_id_ = np.array(has_id)
    spec = meta.get("encoder")
    if spec not in ("default", "custom", None):
        raise FormatError(f"{path}: unknown encoder entry {spec!r}")
    model._encoder_spec = spec
    fingerprint = meta.get("encoder_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise FormatError(f"{path}: 'encoder_fingerprint' must be a str or null")
    model._encoder_fingerprint = fingerprint
    model.encoder_ = encoder
    try:
        model.history_ = [{k: (float("nan") if v is None else v) for k, v in r.items()}
                          for r in meta.get("history", [])]
        model.best_epoch_ = int(meta.get("best_epoch", 0))
        model.averaged_epochs_ = int(meta.get("averaged_epochs", 1))
        ndcg = meta.get("validation_ndcg")
        model.validation_ndcg_ = float("nan") if ndcg is None else float(ndcg)
        model.fit_seconds_ = float(meta.get("fit_seconds", 0.0))
    except (AttributeError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: invalid training record in the metadata ({exc})") from exc
    model.uses_timestamps_ = uses_timestamps
    model.uses_profiles_ = uses_profiles
    model._touch()
    return model


def _text_head(meta: dict[str, Any], path: Any, text_dim: int, *, fine_tuned: bool) -> Any:
    """The (untrained) TextHead that ``meta['text_head']`` describes, or None; checked
    against the parameters (present exactly with text="finetune") and ``text_dim``."""
    from llmrec.towers.finetune import POOLINGS, TextHead

    spec = meta.get("text_head")
    if spec is None:
        if fine_tuned:
            raise FormatError(f"{path}: a text='finetune' model without its 'text_head'")
        return None
    if not fine_tuned:
        raise FormatError(f"{path}: 'text_head' present in a model without text='finetune'")
    if not isinstance(spec, dict):
        raise FormatError(f"{path}: 'text_head' must be a mapping")
    ints = {name: meta_int(spec, name, path, minimum=1, maximum=high)
            for name, high in (("layers", 32), ("hidden", 1 << 16), ("heads", 256),
                               ("intermediate", 1 << 18))}
    if (ints["hidden"] != text_dim or ints["hidden"] % ints["heads"]
            or ints["intermediate"] > 8 * ints["hidden"]):
        raise FormatError(f"{path}: invalid 'text_head' shape {ints} for text_dim {text_dim}")
    eps, pooling, normalize = spec.get("eps"), spec.get("pooling"), spec.get("normalize")
    if (not isinstance(eps, float) or not 0 < eps < 1 or pooling not in POOLINGS
            or not isinstance(normalize, bool)):
        raise FormatError(f"{path}: invalid 'text_head' eps/pooling/normalize "
                          f"({eps!r}, {pooling!r}, {normalize!r})")
    return TextHead(eps=eps, pooling=pooling, normalize=normalize, **ints)
