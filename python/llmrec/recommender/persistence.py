"""Saving and loading a Recommender: a directory written atomically.

Layout of ``directory``::

    recommender.llmrec   llmrec's checksummed array format (kind "Recommender"): item and
                         user vectors, histories, ids, text vectors; JSON metadata holds
                         the parameters, blend weights, scenarios and encoder spec
    als.llmrec           the ALS model (:meth:`llmrec.ALS.save`)

The directory is built beside the target under a temporary name
(``.NAME.llmrec-<pid>-<token>.tmp``) and switched into place in one atomic step where
the system allows it (Linux: ``renameat2(RENAME_EXCHANGE)`` swaps the new directory with
the old one, which is then removed); elsewhere the old directory is first renamed
aside (``.NAME.llmrec-<pid>-<token>.old``) and :func:`load` falls back to it if a kill
left no directory under the real name. Either way a crash or a kill leaves the previous
model or the new one. ``save`` refuses a target that is not a directory, or that holds
anything but an llmrec model, and removes nothing it did not write; the temporaries of
earlier, killed saves are removed by the next save (see :mod:`llmrec._atomic`).
"""

from __future__ import annotations

import os
import re
import threading
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmrec import _atomic
from llmrec._fileformat import MAGIC, load_arrays, save_arrays
from llmrec.als import ALS
from llmrec.recommender import scoring
from llmrec.recommender.history import TRANSITION_WINDOW, Histories
from llmrec.recommender.ids import IdMap
from llmrec.recommender.late_items import LateItems

_KIND = "Recommender"
_KIND_VERSION = 1


def _id_array(ids: IdMap) -> np.ndarray:
    values = ids.ids
    return values.astype(np.int64) if ids.kind == "int" else values.astype(str)


def _encoder_spec(model: Any) -> str | None:
    if model.encoder is None:
        return None
    if isinstance(model.encoder, str):
        return model.encoder
    name = getattr(model.encoder, "model_name", None)
    return None if name is None else str(name)


_FILES = ("recommender.llmrec", "als.llmrec")
# save_arrays' temporaries inside a model directory (left there by a killed save)
_FILE_TEMPORARY = re.compile(r"\.(recommender|als)\.llmrec\.llmrec-\d+-[0-9a-f]+\.tmp")


def save(model: Any, directory: Any) -> None:
    """Write ``model`` to ``directory``; the caller holds the model's writer lock."""
    target = Path(directory)
    if target.is_symlink():  # save where the link points, keep the link
        target = Path(os.path.realpath(target))
    snap = model._publisher.current
    items, users = snap.items, snap.users
    indptr, hist = model._histories.arrays()
    arrays = {"V": items.V, "Vn": items.Vn, "P": items.P, "Q": items.Q, "user_ids": _id_array(model._user_map),
              "item_ids": _id_array(model._item_map), "hist_indptr": indptr, "hist_items": hist}
    n_users = len(model._user_map)
    for name, value in users.items():
        if value is not None:
            arrays[f"user_{name}"] = value[:n_users]
    if items.E is not None:
        arrays["E"] = items.E
    if model._profile is not None:
        arrays["profile"] = model._profile[:n_users]
    g = model._geometry
    arrays.update({"cov_V": g.cov_V, "cov_Vn": g.cov_Vn, "norm_V": np.array([g.norm_V]),
                   "mean_V": g.mean_V, "mean_Vn": g.mean_Vn, "cov_Q": g.cov_Q, "mean_Q": g.mean_Q})
    if g.cov_E is not None:
        arrays.update({"cov_E": g.cov_E, "mean_E": g.mean_E, "text_mean": g.text_mean,
                       "text_basis": g.text_basis})
    if snap.labels is not None:
        arrays["labels"] = np.asarray(snap.labels).astype(str)
    params = {k: v for k, v in model.get_params().items() if k != "encoder"}
    meta = {"params": params, "encoder": _encoder_spec(model), "settings": model._settings_used,
            "scenarios": model.scenarios_, "regularization": model.regularization_,
            "validation": _jsonable(model.validation_), "id_kinds": [model._user_map.kind, model._item_map.kind]}

    def write(folder: Path) -> None:
        save_arrays(folder / "recommender.llmrec", _KIND, _KIND_VERSION, meta, arrays)
        snap.als.save(folder / "als.llmrec")

    write_directory(target, write)


def _check_target(target: Path) -> None:
    """Refuse a target that exists and is not a directory, or that holds anything but
    an llmrec model (its two files and their temporaries)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory: refusing to replace it "
                              "with a saved Recommender")
    for entry in target.iterdir():
        ours = (entry.name in _FILES and entry.is_file() and _starts_with_magic(entry)) or (
            _FILE_TEMPORARY.fullmatch(entry.name) is not None and entry.is_file())
        if not ours:
            raise FileExistsError(f"{target} is not empty and not an llmrec model directory (it holds "
                                  f"{entry.name!r}): refusing to replace it; save to a new or "
                                  "empty directory")


def _starts_with_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def write_directory(target: Path, write: Callable[[Path], None]) -> None:
    """Build a directory with ``write(folder)`` and switch it into place at ``target``
    (see the module docstring)."""
    _check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic.clean_stale(target, ("tmp",))  # first: a killed save's temporary may hold gigabytes
    tmp = _atomic.temporary(target, "tmp")
    try:
        os.mkdir(tmp)
        write(tmp)
        _atomic.fsync_directory(tmp)
        _check_target(target)  # again: it may have changed while the model was written
        if not target.exists():
            os.rename(tmp, target)
        elif _atomic.exchange(tmp, target):
            shutil.rmtree(tmp)  # the old model, swapped out
        else:
            old = _atomic.temporary(target, "old")
            try:
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old)
            finally:
                _atomic.done(old)
        _atomic.fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours, whichever model it holds now
        raise
    finally:
        _atomic.done(tmp)
    _atomic.clean_stale(target)  # after the switch: an old copy aside is obsolete only now


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _id_map(values: np.ndarray, kind: str, what: str) -> IdMap:
    ids = IdMap(np.zeros(0, dtype=np.int64), what)
    if len(values):
        ids = IdMap(values.astype(np.int64) if kind == "int" else values.astype(str).astype(object), what)
    ids.kind = kind
    return ids


def load(cls: Any, directory: Any, encoder: Any) -> Any:
    directory = _atomic.recover_directory(Path(directory))  # a save killed mid-switch
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a saved Recommender directory")
    meta, arrays, _ = load_arrays(directory / "recommender.llmrec", _KIND, max_kind_version=_KIND_VERSION)
    spec = meta["encoder"] if isinstance(encoder, str) and encoder == "saved" else encoder
    model = cls(encoder=spec, **meta["params"])
    model._settings_used = dict(meta["settings"])
    model._encoder_lock = threading.Lock()
    model._encoder_obj = None if isinstance(spec, str) or spec is None else spec
    als = ALS.load(directory / "als.llmrec")
    user_kind, item_kind = meta["id_kinds"]
    model._user_map = _id_map(arrays["user_ids"], user_kind, "user")
    model._item_map = _id_map(arrays["item_ids"], item_kind, "item")
    model._histories = Histories(arrays["hist_indptr"], arrays["hist_items"])
    # Items the ALS fitted without interactions are the late ones (see LateItems).
    late = np.flatnonzero(np.diff(als._user_items.tocsc().indptr) == 0)
    late_items = LateItems.from_histories(late, arrays["hist_indptr"], arrays["hist_items"],
                                          TRANSITION_WINDOW)
    model._profile = arrays.get("profile")
    labels = arrays["labels"].astype(object) if "labels" in arrays else None
    V = np.ascontiguousarray(arrays["V"])
    E = arrays.get("E")
    Vn = np.ascontiguousarray(arrays["Vn"])
    model._geometry = scoring.Geometry(arrays["cov_V"], arrays["cov_Vn"], arrays.get("cov_E"),
                                       float(arrays["norm_V"][0]), arrays["mean_V"], arrays["mean_Vn"],
                                       arrays.get("mean_E"), arrays.get("text_mean"),
                                       arrays.get("text_basis"), arrays["cov_Q"], arrays["mean_Q"])
    P, Q = np.ascontiguousarray(arrays["P"]), np.ascontiguousarray(arrays["Q"])
    T = scoring.text_coordinates(E, model._geometry)
    s = model._settings_used
    index = scoring.Stage1(V, T, E, Q, s["index"], s["num_threads"], model.random_state)
    users = {name: arrays.get(f"user_{name}") for name in ("behaviour", "sequence", "transition", "text")}
    model._install(scoring.make_items(V, Vn, E, T, P, Q, index), als, users, labels, late_items)
    model.scenarios_ = meta["scenarios"]
    model.weights_ = model.scenarios_["home"]
    model.regularization_ = meta["regularization"]
    model.validation_ = meta["validation"]
    return model
