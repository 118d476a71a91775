"""Saving and loading a Recommender: a directory written atomically.

Layout of ``directory``::

    recommender.llmrec   llmrec's checksummed array format (kind "Recommender"): item and
                         user vectors, histories, ids, text vectors; JSON metadata holds
                         the parameters, blend weights, scenarios and encoder spec
    als.llmrec           the ALS model (:meth:`llmrec.ALS.save`)
    stage1*.llmrec       the stage-1 indexes (not for ``index="exact"``), see
                         :mod:`.stage1_files`
    towers.llmrec        only with ``towers`` on: the SequenceTowers (kind "SequenceTowers",
                         :mod:`llmrec.towers.persistence`); its item vectors ``G`` and the
                         users' interest vectors ``user_towers`` are in recommender.llmrec
    writes.jsonl         only under ``llmrec serve``: the writes made through its API since
                         this model was saved (:mod:`llmrec.serve.journal`); a save into
                         the directory replaces it along with the model

Kind versions: 1 (no towers), 2 (towers on: the towers file, the arrays ``G``,
``user_towers``, ``cov_G``, ``mean_G`` and the setting ``towers``), 3 (what each
interaction meant, :mod:`.feedback`: the arrays ``fb_indptr``, ``fb_items``,
``fb_weight``, ``fb_disliked``, ``fb_rating``, ``fb_event``, the metadata
``event_names`` and ``event_weights_fitted``, and the settings ``rating_rule``,
``rating_scale``, ``dislike_threshold``, ``like_threshold``, ``event_weights``), 4 (3
plus ``item_gone`` / ``user_gone``: uint8 per row, 1 for items removed by
``remove_items`` and users erased by ``forget_user``, whose rows stay as gaps), 5 (the
compact item rows, :mod:`.rows`: ``inv_norm``, one float32 per item, 1/‖V_i‖ or 0,
replaces the unit factors ``Vn``; with ``text_storage`` "int8" the text vectors are
``E_codes`` (int8, n × d) and ``E_scales`` (float32 per item) instead of ``E``; the
setting ``text_storage``), 6 (the stage-1 indexes saved beside it, :mod:`.stage1_files`:
the metadata ``stage1`` holds the token of ``stage1.llmrec``, or null for an exact stage
1, which is not saved), 7 (with int8 text, the users' text interest as int8
``user_text_codes`` and ``user_text_scales`` instead of ``user_text``,
:func:`.users.stored_users`; the item labels as UTF-8 ``label_bytes`` and
``label_offsets`` instead of the unicode array ``labels``, :mod:`.labels`), 8 (int8 item
text stored list by list for the request channel, :mod:`.text_lists`: ``E_codes`` and
``E_scales`` in that order and ``E_slots``, int32 per item, where each item's row is
stored — a permutation; without it, as before, row i at i; and the kernel text prior of
items without interactions, :mod:`.text_prior`: ``prior_landmarks``, ``prior_coef``,
``prior_width``, absent without text), 9 (the "cold" signal of items without interactions,
:mod:`.cold_kernel`: ``cold_landmark_rows``, ``cold_landmarks``, ``cold_inverse``,
``cold_mean``, ``cold_spread``, ``cold_width``, ``cold_words``, and the items' rows ``Z_codes``,
``Z_scales``, ``Z_slots``; absent without it), 10 (the cold signal's learned part:
``cold_factors``, its weight α beside the cold arrays, and where α > 0 ``cold_projection``,
the map W (float32, (d [+ 1,024 words], f)) from an item's text row to unit factors; the
landmark rows ``cold_landmarks`` are then f columns wider), 11 (``cold_shift``: δ of the
items with a cold row, :mod:`.cold_shift`), 12 (the popularity prior of short histories,
:mod:`.popularity`: ``popularity_direction`` (f,), ``popularity_lengths`` and
``popularity_weights``; absent where it is off). A model is written as version 12;
versions 1 to 11 load without the popularity prior, as they were fitted; versions 9
and 10 load with δ = 0; version 9 with α = 0 (its landmark rows are text alone); versions 1 to 8
load (without the cold signal); versions 1 to 7
still load (int8 item text is laid out at load; their items without interactions keep
ALS's linear prior F·W, as they were fitted; a float32 ``user_text`` beside int8 item
text is encoded), versions 1 to 5 with their stage 1 rebuilt from the item rows as before
(``Vn`` gives the inverse norms; float32 text; versions 1 and 2: every interaction a
like of weight 1, ``rating_rule="ignore"`` as they were fitted).

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

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmrec import _atomic
from llmrec._checks import MAX_THREADS
from llmrec._fileformat import MAGIC, load_arrays, save_arrays
from llmrec._validate import array, check_csr, fail, meta_int, meta_real, meta_value
from llmrec.als import ALS
from llmrec.recommender import scoring, stage1_files
from llmrec.recommender.fusion import check_weights
from llmrec.recommender.feedback import liked_histories
from llmrec.recommender.ids import IdMap
from llmrec.recommender.labels import Labels
from llmrec.recommender.popularity import MAX_LENGTHS, MAX_WEIGHT, PopularityPrior
from llmrec.recommender.rows import Int8Rows, inverse_norms
from llmrec.recommender.state import Learned, build_items, build_state
from llmrec.recommender.cold_kernel import HASH_DIMS, MAX_FACTORS, MAX_SHIFT, MAX_WORDS, ColdKernel, ColdRows
from llmrec.recommender.text_prior import MAX_COEF, MAX_LANDMARKS, MAX_WIDTH, MIN_WIDTH, TextPrior
from llmrec.recommender.users import stored_users

_KIND = "Recommender"
_KIND_VERSION = 12

log = logging.getLogger(__name__)
_FEEDBACK_DEFAULTS = {"rating_rule": "ignore", "rating_scale": [1.0, 5.0], "dislike_threshold": 1.0,
                      "like_threshold": 4.0, "event_weights": None}
_STORAGE_DEFAULT = "float32"  # kind versions 1 to 4: text vectors in float32


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


_FILES = ("recommender.llmrec", "als.llmrec", "towers.llmrec")
# The write log of `llmrec serve` (llmrec.serve.journal): the writes made since this
# model was saved. It belongs to the model it follows, so a save replaces it with the rest.
WRITE_LOG = "writes.jsonl"
# save_arrays' temporaries inside a model directory (left there by a killed save)
_FILE_TEMPORARY = re.compile(r"\.(recommender|als|towers)\.llmrec\.llmrec-\d+-[0-9a-f]+\.tmp")


def save(model: Any, directory: Any) -> None:
    """Write ``model`` to ``directory``; the caller holds the model's writer lock."""
    target = Path(directory)
    if target.is_symlink():  # save where the link points, keep the link
        target = Path(os.path.realpath(target))
    state = model._state
    snap = state.publisher.current
    items, users = snap.items, snap.users
    indptr, hist = state.histories.arrays()
    arrays = {"V": items.V, "inv_norm": items.inv_norm, "P": items.P, "Q": items.Q,
              "user_ids": _id_array(state.user_map), "item_ids": _id_array(state.item_map),
              "hist_indptr": indptr, "hist_items": hist}
    n_users = len(state.user_map)
    for name, value in users.items():
        if isinstance(value, Int8Rows):
            arrays.update({f"user_{name}_codes": value.codes[:n_users], f"user_{name}_scales": value.scales[:n_users]})
        elif value is not None:
            arrays[f"user_{name}"] = value[:n_users]
    if isinstance(items.E, Int8Rows):
        arrays.update({"E_codes": items.E.codes, "E_scales": items.E.scales})
        if items.E.slots is not None:
            arrays["E_slots"] = items.E.slots
    elif items.E is not None:
        arrays["E"] = items.E
    if items.G is not None:
        arrays["G"] = items.G
    if state.text_prior is not None:
        arrays.update({"prior_landmarks": state.text_prior.landmarks, "prior_coef": state.text_prior.coef,
                       "prior_width": np.array([state.text_prior.width])})
    kernel = state.cold_kernel
    if kernel is not None and items.Z is not None:
        if kernel.projection is not None:
            arrays["cold_projection"] = kernel.projection
        arrays.update({"cold_landmark_rows": kernel.landmark_rows, "cold_landmarks": kernel.landmarks,
                       "cold_inverse": kernel.inverse, "cold_mean": kernel.mean,
                       "cold_spread": np.array([kernel.spread]),
                       "cold_width": np.array([kernel.width]), "cold_words": np.array([kernel.words]),
                       "cold_factors": np.array([kernel.factors]), "cold_shift": np.array([items.Z.shift]),
                       "Z_codes": items.Z.codes,
                       "Z_scales": items.Z.scales, "Z_slots": items.Z.slots})
    if state.profile is not None:
        arrays["profile"] = state.profile[:n_users]
    if state.popularity is not None:
        arrays.update({"popularity_direction": state.popularity.direction,
                       "popularity_lengths": state.popularity.lengths,
                       "popularity_weights": state.popularity.weights})
    g = state.geometry
    arrays.update({"cov_V": g.cov_V, "cov_Vn": g.cov_Vn, "norm_V": np.array([g.norm_V]),
                   "mean_V": g.mean_V, "mean_Vn": g.mean_Vn, "cov_Q": g.cov_Q, "mean_Q": g.mean_Q})
    if g.cov_G is not None:
        arrays.update({"cov_G": g.cov_G, "mean_G": g.mean_G})
    if g.cov_E is not None:
        arrays.update({"cov_E": g.cov_E, "mean_E": g.mean_E, "text_mean": g.text_mean,
                       "text_basis": g.text_basis})
    if snap.labels is not None:
        n_items = len(snap.items.V)
        arrays["label_bytes"] = snap.labels.data[:int(snap.labels.offsets[n_items])]
        arrays["label_offsets"] = snap.labels.offsets[:n_items + 1]
    for name, ids in (("item_gone", state.item_map), ("user_gone", state.user_map)):
        if ids.gone is not None:
            arrays[name] = ids.gone
    fb_indptr, fb_columns = state.feedback.arrays()
    arrays.update({"fb_indptr": fb_indptr, "fb_items": fb_columns["items"],
                   "fb_weight": fb_columns["weight"],
                   "fb_disliked": fb_columns["disliked"].astype(np.uint8),
                   "fb_rating": fb_columns["rating"], "fb_event": fb_columns["event"]})
    params = {k: v for k, v in model.get_params().items() if k != "encoder"}
    meta = {"params": params, "encoder": _encoder_spec(model), "settings": state.settings,
            "scenarios": model.scenarios_, "regularization": model.regularization_,
            "validation": _jsonable(model.validation_), "id_kinds": [state.user_map.kind, state.item_map.kind],
            "event_names": list(state.feedback.event_names), "event_weights_fitted": model.event_weights_}
    calibration = model.__dict__.get("calibration_")
    if calibration is not None:
        meta["calibration"] = calibration.to_json()

    def write(folder: Path) -> None:
        meta["stage1"] = stage1_files.save_stage1(snap.items.index, folder)  # its token, or None
        save_arrays(folder / "recommender.llmrec", _KIND, _KIND_VERSION, meta, arrays)
        snap.als.save(folder / "als.llmrec")
        if snap.towers is not None:
            from llmrec.towers.persistence import save_towers

            save_towers(snap.towers, folder / "towers.llmrec")

    write_directory(target, write)


def _check_target(target: Path) -> None:
    """Refuse a target that exists and is not a directory, or that holds anything but
    an llmrec model (its files, their temporaries and the server's write log)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory: refusing to replace it "
                              "with a saved Recommender")
    for entry in target.iterdir():
        ours = ((entry.name in _FILES or stage1_files.FILE.fullmatch(entry.name) is not None)
                and entry.is_file() and _starts_with_magic(entry)) or (
            (_FILE_TEMPORARY.fullmatch(entry.name) is not None
             or stage1_files.TEMPORARY.fullmatch(entry.name) is not None) and entry.is_file()) or (
            entry.name == WRITE_LOG and entry.is_file())
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


def _id_map(values: np.ndarray, kind: str, what: str, path: Any, gone: np.ndarray | None = None) -> IdMap:
    if (kind == "empty") != (len(values) == 0):
        raise fail(path, f"{what} id kind {kind!r} does not match {len(values)} saved ids")
    ids = IdMap(np.zeros(0, dtype=np.int64), what)
    if len(values):
        try:
            ids = IdMap(values.astype(np.int64) if kind == "int" else values.astype(str).astype(object), what,
                        gone=gone)
        except (TypeError, ValueError) as error:  # duplicates, mixed kinds
            raise fail(path, f"invalid {what} ids ({error})") from None
    ids.kind = kind
    return ids


def _checked_meta(cls: Any, meta: dict[str, Any], path: Any) -> dict[str, Any]:
    """The metadata's fields, each of the right type and range (raises FormatError)."""
    params = meta_value(meta, "params", path, types=dict)
    unknown = sorted(set(params) - set(cls._param_names) | ({"encoder"} & set(params)))
    if unknown:
        raise fail(path, f"unknown Recommender parameters {unknown}")
    settings = dict(meta_value(meta, "settings", path, types=dict))
    settings.setdefault("towers", None)  # kind version 1: no towers
    settings.setdefault("probes", None)  # saved before the partitioned indexes
    settings.setdefault("text_storage", _STORAGE_DEFAULT)
    params.setdefault("text_storage", _STORAGE_DEFAULT)
    settings.setdefault("popularity_prior", False)  # kind versions 1 to 11: fitted without it
    for key, value in _FEEDBACK_DEFAULTS.items():  # kind versions 1, 2: ratings unread
        settings.setdefault(key, value)
    # The settings are what _settings() made of the parameters at fit: checking them with
    # the same code gives the same ranges and types.
    unknown = sorted(set(settings) - set(cls._param_names) | ({"encoder"} & set(settings)))
    if unknown:
        raise fail(path, f"unknown Recommender settings {unknown}")
    try:
        checked = cls(encoder=None, **settings)._settings()
        cls(encoder=None, **params)._settings()
    except (TypeError, ValueError) as error:
        raise fail(path, f"invalid Recommender parameters or settings ({error})") from None
    if set(checked) != set(settings):
        raise fail(path, f"Recommender settings lack {sorted(set(checked) - set(settings))}")
    meta_int(settings, "num_threads", path, minimum=0, maximum=MAX_THREADS)
    scenarios = meta_value(meta, "scenarios", path, types=dict)
    missing = {"home", "search", "similar"} - set(scenarios)
    if missing:
        raise fail(path, f"scenarios lack {sorted(missing)}")
    try:
        scenarios = {str(name): check_weights(w, f"scenarios[{name!r}]") for name, w in scenarios.items()}
    except (TypeError, ValueError) as error:
        raise fail(path, f"invalid scenario ({error})") from None
    kinds = meta_value(meta, "id_kinds", path, types=list)
    if len(kinds) != 2 or not all(k in ("int", "str", "empty") for k in kinds):
        raise fail(path, f"metadata field 'id_kinds' must be two of 'int', 'str', 'empty', got {kinds!r}")
    from llmrec.recommender.feedback import check_event_weights

    names = meta_value(meta, "event_names", path, types=list, default=[])
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise fail(path, "metadata field 'event_names' must list distinct non-empty names")
    try:
        fitted = check_event_weights(meta.get("event_weights_fitted"))
    except (TypeError, ValueError) as error:
        raise fail(path, f"invalid fitted event weights ({error})") from None
    if fitted == "auto":
        raise fail(path, "metadata field 'event_weights_fitted' must be a mapping or null")
    return {"params": params, "settings": checked, "scenarios": scenarios, "id_kinds": kinds,
            "event_names": names, "event_weights_fitted": fitted,
            "encoder": meta_value(meta, "encoder", path, types=(str, type(None)), default=None),
            "regularization": meta_real(meta, "regularization", path, minimum=0.0),
            "validation": meta.get("validation"), "calibration": _calibration(meta, path)}


def _calibration(meta: dict[str, Any], path: Any) -> Any:
    """The saved Platt scaling, or None (saved without one, or before it existed)."""
    if meta.get("calibration") is None:
        return None
    from llmrec.recommender.calibration import Calibration

    try:
        return Calibration.from_json(meta["calibration"])
    except (KeyError, TypeError, ValueError) as error:
        raise fail(path, f"invalid calibration ({error})") from None


def _checked_arrays(arrays: dict[str, np.ndarray], path: Any, kinds: list[str]) -> dict[str, Any]:
    """Every array checked against the others: one row per item or user, the widths of
    the factors (f), next-item factors (ft) and text vectors (d), finite values, the
    histories a CSR of item rows. Returns them by name (absent optional ones: None)."""
    out: dict[str, Any] = {}
    for name, kind in zip(("user_ids", "item_ids"), kinds):
        dtype = {"int": np.int64, "str": "U", "empty": None}[kind]
        out[name] = array(arrays, name, path, dtype=dtype, shape=(0,) if kind == "empty" else (None,))
    n_items = len(out["item_ids"])
    n_users = len(out["user_ids"])
    V = array(arrays, "V", path, dtype=np.float32, shape=(n_items, None), finite=True)
    f = V.shape[1]
    out["V"] = V
    out["inv_norm"] = _inverse_norms(arrays, path, V)
    out["P"] = array(arrays, "P", path, dtype=np.float32, shape=(n_items, None), finite=True)
    ft = out["P"].shape[1]
    out["Q"] = array(arrays, "Q", path, dtype=np.float32, shape=(n_items, ft), finite=True)
    E = out["E"] = _text_rows(arrays, path, n_items)
    d = None if E is None else E.shape[1]
    text = E is not None
    for name, width in (("behaviour", f), ("sequence", f), ("transition", ft)):
        out[f"user_{name}"] = array(arrays, f"user_{name}", path, dtype=np.float32, shape=(n_users, width),
                                    finite=True)
    out["user_text"] = _text_rows(arrays, path, n_users, "user_text", d)
    if text != (out["user_text"] is not None):
        raise fail(path, "the users' text interest 'user_text' must be saved exactly when item text 'E' is")
    out["profile"] = array(arrays, "profile", path, dtype=np.float32, shape=(n_users, d), required=False,
                           finite=True)
    if out["profile"] is not None and not text:
        raise fail(path, "array 'profile' given without item text vectors 'E'")
    for name, shape, dtype in (("cov_V", (f, f), np.float64), ("cov_Vn", (f, f), np.float64),
                               ("norm_V", (1,), np.float64), ("mean_V", (f,), np.float32),
                               ("mean_Vn", (f,), np.float32), ("cov_Q", (ft, ft), np.float64),
                               ("mean_Q", (ft,), np.float32)):
        out[name] = array(arrays, name, path, dtype=dtype, shape=shape, finite=True)
    if not float(out["norm_V"][0]) > 0:
        raise fail(path, "array 'norm_V' must hold a positive mean norm")
    p = None if d is None else min(scoring.TEXT_PCA_DIMS, d)
    for name, shape, dtype in (("cov_E", (d, d), np.float64), ("mean_E", (d,), np.float32),
                               ("text_mean", (d,), np.float32), ("text_basis", (d, p), np.float32)):
        out[name] = array(arrays, name, path, dtype=dtype, shape=shape, required=text, finite=True)
        if out[name] is not None and not text:
            raise fail(path, f"array {name!r} given without item text vectors 'E'")
    indptr = array(arrays, "hist_indptr", path, dtype=np.int64, ndim=1)
    items = array(arrays, "hist_items", path, dtype=np.int64, ndim=1)
    if not 1 <= len(indptr) <= n_users + 1:
        raise fail(path, f"array 'hist_indptr' has {len(indptr)} entries, expected at most {n_users + 1}")
    check_csr(path, "histories", indptr, items, len(indptr) - 1, n_items)
    out["hist_indptr"], out["hist_items"] = indptr, items
    G = out["G"] = array(arrays, "G", path, dtype=np.float32, shape=(n_items, None), required=False,
                         finite=True)
    g = None if G is None else G.shape[1]
    for name, shape, dtype in (("user_towers", (n_users, g), np.float32), ("cov_G", (g, g), np.float64),
                               ("mean_G", (g,), np.float32)):
        out[name] = array(arrays, name, path, dtype=dtype, shape=shape, required=G is not None,
                          finite=True)
        if out[name] is not None and G is None:
            raise fail(path, f"array {name!r} given without item tower vectors 'G'")
    out["labels"] = _labels(arrays, path, n_items)
    out["text_prior"] = _text_prior(arrays, path, d, f)
    out["cold"] = _cold(arrays, path, d, n_items, f)
    out["popularity"] = _popularity(arrays, path, f)
    for name, n in (("item_gone", n_items), ("user_gone", n_users)):
        gone = out[name] = array(arrays, name, path, dtype=np.uint8, shape=(n,), required=False)
        if gone is not None and ((gone != 0) & (gone != 1)).any():
            raise fail(path, f"array {name!r} must hold 0 or 1 per row")
    _checked_feedback(arrays, path, out, n_items)
    return out


def _popularity(arrays: dict[str, np.ndarray], path: Any, f: int) -> PopularityPrior | None:
    """The popularity prior (kind version 12; all three arrays or none): ``direction``
    (f,) finite, ``lengths`` 1 to :data:`.popularity.MAX_LENGTHS` ascending counts ≥ 1,
    ``weights`` as many, each in [0, :data:`.popularity.MAX_WEIGHT`]; None in older files
    and where the prior is off."""
    names = ("popularity_direction", "popularity_lengths", "popularity_weights")
    present = [name in arrays for name in names]
    if not any(present):
        return None
    if not all(present):
        raise fail(path, f"arrays {list(names)} must be saved together")
    direction = array(arrays, "popularity_direction", path, dtype=np.float32, shape=(f,), finite=True)
    lengths = array(arrays, "popularity_lengths", path, dtype=np.float64, shape=(None,), finite=True)
    weights = array(arrays, "popularity_weights", path, dtype=np.float64, shape=(len(lengths),), finite=True)
    if (not 1 <= len(lengths) <= MAX_LENGTHS or lengths[0] < 1 or (np.diff(lengths) <= 0).any()
            or (lengths != np.round(lengths)).any()):
        raise fail(path, f"array 'popularity_lengths' must hold 1 to {MAX_LENGTHS} ascending whole counts >= 1")
    if (weights < 0).any() or (weights > MAX_WEIGHT).any():
        raise fail(path, f"array 'popularity_weights' must hold weights in [0, {MAX_WEIGHT:g}]")
    if float(np.abs(direction).max(initial=0.0)) > MAX_COEF:
        raise fail(path, f"array 'popularity_direction' holds a value beyond ±{MAX_COEF:g}")
    return PopularityPrior(direction, lengths, weights)


def _text_prior(arrays: dict[str, np.ndarray], path: Any, d: int | None, f: int) -> TextPrior | None:
    """The kernel text prior (kind version 8: ``prior_landmarks`` (m, d), ``prior_coef``
    (m, f), ``prior_width`` (1,)), all or none, only beside item text; None in older
    files (their items without interactions keep ALS's linear prior F·W)."""
    names = ("prior_landmarks", "prior_coef", "prior_width")
    present = [name in arrays for name in names]
    if not any(present):
        return None
    if not all(present) or d is None:
        raise fail(path, f"arrays {list(names)} must be saved together, and only with item text 'E'")
    landmarks = array(arrays, "prior_landmarks", path, dtype=np.float32, shape=(None, d), finite=True)
    m = len(landmarks)
    if not 2 <= m <= MAX_LANDMARKS:
        raise fail(path, f"array 'prior_landmarks' has {m} rows, expected 2 to {MAX_LANDMARKS}")
    if float(np.einsum("ij,ij->i", landmarks, landmarks, dtype=np.float64).max()) > (1 + 1e-3) ** 2:
        raise fail(path, "array 'prior_landmarks' must hold unit text vectors (norm at most 1)")
    coef = array(arrays, "prior_coef", path, dtype=np.float32, shape=(m, f), finite=True)
    if float(np.abs(coef).max()) > MAX_COEF:
        raise fail(path, f"array 'prior_coef' holds a value beyond ±{MAX_COEF:g}")
    width = array(arrays, "prior_width", path, dtype=np.float64, shape=(1,), finite=True)
    if not MIN_WIDTH <= float(width[0]) <= MAX_WIDTH:
        raise fail(path, f"array 'prior_width' must hold a kernel width in [{MIN_WIDTH}, {MAX_WIDTH}], "
                   f"got {float(width[0])}")
    return TextPrior(np.ascontiguousarray(landmarks), np.ascontiguousarray(coef), float(width[0]))


_COLD = ("cold_landmark_rows", "cold_landmarks", "cold_inverse", "cold_mean", "cold_spread", "cold_width",
         "cold_words", "Z_codes", "Z_scales", "Z_slots")


def _cold(arrays: dict[str, np.ndarray], path: Any, d: int | None, n_items: int, f: int
          ) -> tuple[ColdKernel, ColdRows] | None:
    """The cold signal and its item rows (kind version 9; all or none, only beside item
    text; its learned part, kind version 10: ``cold_factors``, and ``cold_projection``
    where that weight is > 0, for ``f`` factors; kind version 11: ``cold_shift``, the new
    items' δ); None in older files (no cold signal)."""
    present = [name in arrays for name in _COLD]
    if not any(present):
        if "cold_factors" in arrays or "cold_projection" in arrays or "cold_shift" in arrays:
            raise fail(path, "arrays 'cold_factors', 'cold_projection' and 'cold_shift' given without the cold signal")
        return None
    if not all(present) or d is None:
        raise fail(path, f"arrays {list(_COLD)} must be saved together, and only with item text 'E'")
    rows = array(arrays, "cold_landmark_rows", path, dtype=np.int64, shape=(None,))
    m = len(rows)
    if not 2 <= m <= MAX_LANDMARKS or rows.min() < 0 or rows.max() >= n_items or (np.diff(rows) <= 0).any():
        raise fail(path, f"array 'cold_landmark_rows' must hold 2 to {MAX_LANDMARKS} ascending item rows "
                   f"in [0, {n_items})")
    words = array(arrays, "cold_words", path, dtype=np.float64, shape=(1,), finite=True)
    if not 0 <= float(words[0]) <= MAX_WORDS:
        raise fail(path, f"array 'cold_words' must hold a weight in [0, {MAX_WORDS}], got {float(words[0])}")
    factors = array(arrays, "cold_factors", path, dtype=np.float64, shape=(1,), finite=True, required=False)
    alpha = 0.0 if factors is None else float(factors[0])  # version 9: no learned part
    if not 0 <= alpha <= MAX_FACTORS:
        raise fail(path, f"array 'cold_factors' must hold a weight in [0, {MAX_FACTORS}], got {alpha}")
    rows_in = d + (HASH_DIMS if words[0] else 0)
    projection = array(arrays, "cold_projection", path, dtype=np.float32, shape=(rows_in, f), finite=True,
                       required=alpha > 0)
    if projection is not None and alpha == 0:
        raise fail(path, "array 'cold_projection' given without a weight > 0 in 'cold_factors'")
    if projection is not None and float(np.abs(projection).max(initial=0.0)) > MAX_COEF:
        raise fail(path, f"array 'cold_projection' holds a value beyond ±{MAX_COEF:g}")
    landmarks = array(arrays, "cold_landmarks", path, dtype=np.float32,
                      shape=(m, rows_in + (f if alpha > 0 else 0)), finite=True)
    if float(np.einsum("ij,ij->i", landmarks, landmarks, dtype=np.float64).max()) > (1 + 1e-3) ** 2:
        raise fail(path, "array 'cold_landmarks' must hold unit text vectors (norm at most 1)")
    parts = {name: array(arrays, name, path, dtype=np.float32, shape=shape, finite=True)
             for name, shape in (("cold_inverse", (m, m)), ("cold_mean", (m,)))}
    for name, value in parts.items():
        if value.size and float(np.abs(value).max()) > MAX_COEF:
            raise fail(path, f"array {name!r} holds a value beyond ±{MAX_COEF:g}")
    spread = array(arrays, "cold_spread", path, dtype=np.float64, shape=(1,), finite=True)
    if not 0 < float(spread[0]) <= MAX_COEF:
        raise fail(path, f"array 'cold_spread' must hold a variance in (0, {MAX_COEF:g}], got {float(spread[0])}")
    width = array(arrays, "cold_width", path, dtype=np.float64, shape=(1,), finite=True)
    if not MIN_WIDTH <= float(width[0]) <= MAX_WIDTH:
        raise fail(path, f"array 'cold_width' must hold a kernel width in [{MIN_WIDTH}, {MAX_WIDTH}], "
                   f"got {float(width[0])}")
    shift = array(arrays, "cold_shift", path, dtype=np.float64, shape=(1,), finite=True, required=False)
    delta = 0.0 if shift is None else float(shift[0])  # versions 9, 10: new items unshifted
    if not abs(delta) <= MAX_SHIFT:
        raise fail(path, f"array 'cold_shift' must hold a shift in [-{MAX_SHIFT:g}, {MAX_SHIFT:g}], got {delta}")
    codes = array(arrays, "Z_codes", path, dtype=np.int8, shape=(None, m))
    scales = array(arrays, "Z_scales", path, dtype=np.float32, shape=(len(codes),), finite=True)
    slots = array(arrays, "Z_slots", path, dtype=np.int32, shape=(n_items,))
    if len(codes) == 0 or (scales < 0).any() or float(scales.max()) > MAX_COEF:
        raise fail(path, "arrays 'Z_codes' and 'Z_scales' must hold at least one row, scales in [0, 1e30]")
    if slots.size and (slots.min() < 0 or slots.max() >= len(codes)):
        raise fail(path, f"array 'Z_slots' must hold rows in [0, {len(codes)})")
    kernel = ColdKernel(rows, np.ascontiguousarray(landmarks), np.ascontiguousarray(parts["cold_inverse"]),
                        np.ascontiguousarray(parts["cold_mean"]), float(spread[0]), float(width[0]), float(words[0]),
                        alpha, None if projection is None else np.ascontiguousarray(projection))
    return kernel, ColdRows(np.ascontiguousarray(codes), np.ascontiguousarray(scales), np.ascontiguousarray(slots),
                            shift=delta)


def _checked_feedback(arrays: dict[str, np.ndarray], path: Any, out: dict[str, Any], n_items: int) -> None:
    """The feedback arrays (kind version 3), all or none, consistent with the histories:
    each user's likes, in order, are exactly the user's history."""
    names = ("fb_indptr", "fb_items", "fb_weight", "fb_disliked", "fb_rating", "fb_event")
    present = [n in arrays for n in names]
    if not any(present):
        out["feedback"] = None
        return
    if not all(present):
        raise fail(path, f"the feedback arrays {list(names)} must be saved together")
    indptr = array(arrays, "fb_indptr", path, dtype=np.int64, ndim=1)
    items = array(arrays, "fb_items", path, dtype=np.int64, ndim=1)
    if len(indptr) != len(out["hist_indptr"]):
        raise fail(path, "arrays 'fb_indptr' and 'hist_indptr' disagree on the number of users")
    check_csr(path, "feedback", indptr, items, len(indptr) - 1, n_items)
    nnz = (len(items),)
    weight = array(arrays, "fb_weight", path, dtype=np.float32, shape=nnz, finite=True)
    if len(weight) and not (weight.min() > 0):
        raise fail(path, "array 'fb_weight' must hold multipliers > 0")
    disliked = array(arrays, "fb_disliked", path, dtype=np.uint8, shape=nnz)
    if len(disliked) and disliked.max() > 1:
        raise fail(path, "array 'fb_disliked' must hold 0 or 1")
    rating = array(arrays, "fb_rating", path, dtype=np.float32, shape=nnz)
    if len(rating) and np.isinf(rating).any():
        raise fail(path, "array 'fb_rating' must hold finite ratings or NaN")
    event = array(arrays, "fb_event", path, dtype=np.int32, shape=nnz)
    liked = disliked == 0
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    counts = np.bincount(owner[liked], minlength=len(indptr) - 1)
    if not (np.array_equal(counts, np.diff(out["hist_indptr"])) and np.array_equal(items[liked], out["hist_items"])):
        raise fail(path, "the feedback arrays' likes differ from the histories")
    out["feedback"] = (indptr, {"items": items, "weight": weight, "disliked": disliked.astype(bool),
                                "rating": rating, "event": event})


# The arrays add_items appends to, read with spare rows: the first add after a load
# appends in place instead of copying them (about 1.3 s at 1M items; see state.build_state).
_GROWING = ("V", "P", "Q", "G", "inv_norm", "E_codes", "E_scales", "E_slots", "label_bytes", "label_offsets")


def load(cls: Any, directory: Any, encoder: Any) -> Any:
    """Read a model written by :func:`save`. Both files are untrusted input: the ALS
    model is checked by :meth:`ALS.load`, the rest field by field and array by array
    (shapes against the id counts and factor widths, finite values, histories as CSR
    rows of known items) and against the ALS model, before any of it is used. Raises
    ``llmrec.FormatError`` (a ``ValueError``) for an inconsistent or damaged directory."""
    started = time.perf_counter()
    directory = _atomic.recover_directory(Path(directory))  # a save killed mid-switch
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a saved Recommender directory")
    path = directory / "recommender.llmrec"
    raw_meta, raw_arrays, version = load_arrays(path, _KIND, max_kind_version=_KIND_VERSION,
                                                spare_rows=_GROWING)
    meta = _checked_meta(cls, raw_meta, path)
    arrays = _checked_arrays(raw_arrays, path, meta["id_kinds"])
    als = ALS.load(directory / "als.llmrec").drop_item_priors()  # older files kept E·W
    n_items, f = arrays["V"].shape
    if als.n_items_ != n_items or als.item_factors_.shape[1] != f or als.n_users_ > len(arrays["user_ids"]):
        raise fail(directory / "als.llmrec", f"the ALS model ({als.n_users_} users, {als.n_items_} items, "
                   f"{als.item_factors_.shape[1]} factors) does not match the Recommender "
                   f"({len(arrays['user_ids'])} users, {n_items} items, {f} factors)")
    towers = _load_towers(directory, meta["settings"], arrays, n_items)
    spec = meta["encoder"] if isinstance(encoder, str) and encoder == "saved" else encoder
    model = cls(encoder=spec, **meta["params"])
    model._start_encoder()
    settings = meta["settings"]
    user_kind, item_kind = meta["id_kinds"]
    user_map = _id_map(arrays["user_ids"], user_kind, "user", path, arrays["user_gone"])
    item_map = _id_map(arrays["item_ids"], item_kind, "item", path, arrays["item_gone"])
    feedback = _feedback(arrays, meta["event_names"], path)
    geometry = scoring.Geometry(arrays["cov_V"], arrays["cov_Vn"], arrays["cov_E"], float(arrays["norm_V"][0]),
                                arrays["mean_V"], arrays["mean_Vn"], arrays["mean_E"], arrays["text_mean"],
                                arrays["text_basis"], arrays["cov_Q"], arrays["mean_Q"], arrays["cov_G"],
                                arrays["mean_G"])
    G = arrays["G"]
    V, Q = np.ascontiguousarray(arrays["V"]), np.ascontiguousarray(arrays["Q"])
    # One array of item factors, served and the ALS model's (see updates.update); files
    # saved before kept the re-solved rows of late items in V only.
    differ = np.flatnonzero((als.item_factors_ != V).any(axis=1))
    als.set_item_rows(differ, V[differ], into=V)
    saved = _saved_stage1(directory, raw_meta if version >= 6 else {}, geometry, V, arrays["E"], Q, settings,
                          item_map.gone)
    items = build_items(settings, model.random_state, geometry, V, arrays["inv_norm"], arrays["E"],
                        np.ascontiguousarray(arrays["P"]), Q, None if G is None else np.ascontiguousarray(G),
                        item_map.gone, index=saved)
    cold = arrays["cold"]
    if cold is not None:
        items = items._replace(Z=cold[1])
    users = {name: arrays.get(f"user_{name}") for name in ("behaviour", "sequence", "transition", "text")}
    if G is not None:
        users["towers"] = arrays["user_towers"]
    users = stored_users(users, items)  # files before version 7 kept the text interest in float32
    labels = arrays["labels"]
    fitted = build_state(settings=settings, geometry=geometry, user_map=user_map, item_map=item_map,
                         histories=liked_histories(feedback),  # checked equal to the saved histories
                         feedback=feedback, profile=arrays["profile"],
                         items=items, als=als, users=users, labels=labels, towers=towers,
                         text_prior=arrays["text_prior"], cold_kernel=None if cold is None else cold[0],
                         popularity=arrays["popularity"])
    model._install(fitted, Learned(meta["scenarios"], meta["regularization"], meta["validation"],
                                   meta["calibration"], meta["event_weights_fitted"]))
    log.info("Recommender.load: %s: %d users, %d items: %.2f s", directory, len(user_map),
             len(item_map), time.perf_counter() - started)
    return model


def _saved_stage1(directory: Path, meta: dict[str, Any], geometry: scoring.Geometry, V: np.ndarray, E: Any,
                  Q: np.ndarray, s: dict[str, Any], gone: np.ndarray | None) -> Any:
    """Stage 1 read from its files (:mod:`.stage1_files`, removed items marked there), or
    None where the model directory has none (older ones included): it is rebuilt.
    ``gone``: uint8 per item row, 1 = removed (None: none)."""
    from llmrec.recommender.partitioned import resolve_index

    kind = resolve_index(s["index"], len(V))
    rows: dict[str, Any] = {"behaviour": (lambda r: scoring._behaviour_rows(V[r], Q[r]), V.shape[1] + Q.shape[1])}
    if E is not None:
        basis = geometry.text_basis
        assert basis is not None  # _checked_arrays requires it wherever 'E' is saved
        rows["interest"] = (lambda r: scoring.text_coordinates(np.asarray(E[r], np.float32), geometry),
                            basis.shape[1])
        rows["request"] = (lambda r: np.asarray(E[r], np.float32), E.shape[1])
    token = meta_value(meta, "stage1", directory / "recommender.llmrec", types=(str, type(None)), default=None)
    removed = None
    if isinstance(E, Int8Rows):  # the request channel reads E's codes (.text_lists)
        removed = np.zeros(len(V), np.uint8) if gone is None else np.asarray(gone, np.uint8)
    return stage1_files.load_stage1(directory, token, kind, rows, len(V), s["num_threads"], s.get("probes"),
                                    removed)


def _inverse_norms(arrays: dict[str, np.ndarray], path: Any, V: np.ndarray) -> np.ndarray:
    """``inv_norm`` (kind version 5), or derived from the unit factors ``Vn`` of older
    files (non-zero rows: the items with interactions). Exactly one of them is saved."""
    n, f = V.shape
    if ("inv_norm" in arrays) == ("Vn" in arrays):
        raise fail(path, "exactly one of the arrays 'inv_norm' and 'Vn' must be saved")
    if "Vn" in arrays:
        Vn = array(arrays, "Vn", path, dtype=np.float32, shape=(n, f), finite=True)
        return inverse_norms(V, np.any(Vn != 0, axis=1))
    inv_norm = array(arrays, "inv_norm", path, dtype=np.float32, shape=(n,), finite=True)
    if len(inv_norm) and inv_norm.min() < 0:
        raise fail(path, "array 'inv_norm' must hold inverse norms >= 0")
    return np.ascontiguousarray(inv_norm)


def _labels(arrays: dict[str, np.ndarray], path: Any, n: int) -> Labels | None:
    """The item labels: UTF-8 ``label_bytes`` with ``label_offsets`` (n + 1, rising from
    0 to their length; kind version 7), or a unicode array ``labels`` (older), or None."""
    packed = "label_bytes" in arrays or "label_offsets" in arrays
    if packed and "labels" in arrays:
        raise fail(path, "arrays 'labels' and 'label_bytes'/'label_offsets' must not both be saved")
    if not packed:
        labels = array(arrays, "labels", path, dtype="U", shape=(n,), required=False)
        return None if labels is None else Labels.of(labels.tolist())
    data = array(arrays, "label_bytes", path, dtype=np.uint8, ndim=1)
    offsets = array(arrays, "label_offsets", path, dtype=np.int64, shape=(n + 1,))
    if offsets[0] != 0 or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
        raise fail(path, f"array 'label_offsets' must rise from 0 to {len(data)}")
    return Labels(np.ascontiguousarray(data), np.ascontiguousarray(offsets))


def _text_rows(arrays: dict[str, np.ndarray], path: Any, n: int, name: str = "E", width: int | None = None) -> Any:
    """Text vectors ``name`` (n rows, ``width`` wide where given): float32, or int8
    ``<name>_codes`` with ``<name>_scales`` (kind version 5 for the items' E, 7 for the
    users' ``user_text``) and, for E stored in another order, ``E_slots`` (kind version
    8, a permutation), or None; never both forms."""
    coded = f"{name}_codes" in arrays or f"{name}_scales" in arrays
    if coded and name in arrays:
        raise fail(path, f"arrays '{name}' and '{name}_codes'/'{name}_scales' must not both be saved")
    if not coded:
        return array(arrays, name, path, dtype=np.float32, shape=(n, width), required=False, finite=True)
    codes = array(arrays, f"{name}_codes", path, dtype=np.int8, shape=(n, width))
    scales = array(arrays, f"{name}_scales", path, dtype=np.float32, shape=(n,), finite=True)
    if len(scales) and scales.min() < 0:
        raise fail(path, f"array '{name}_scales' must hold scales >= 0")
    slots = array(arrays, "E_slots", path, dtype=np.int32, shape=(n,), required=False) if name == "E" else None
    if slots is not None and n and (slots.min() < 0 or slots.max() >= n
                                    or np.bincount(slots, minlength=n).max() > 1):
        raise fail(path, f"array 'E_slots' must hold each of the positions 0 to {n - 1} once")
    return Int8Rows(np.ascontiguousarray(codes), np.ascontiguousarray(scales),
                    None if slots is None else np.ascontiguousarray(slots))


def _feedback(arrays: dict[str, Any], names: list[str], path: Any) -> Any:
    """The Feedback store: saved (kind version 3), or every history item a like of
    weight 1 (versions 1 and 2)."""
    from llmrec.recommender.feedback import Feedback

    if arrays["feedback"] is None:
        items = arrays["hist_items"]
        return Feedback(arrays["hist_indptr"], {
            "items": items, "weight": np.ones(len(items), np.float32),
            "disliked": np.zeros(len(items), bool), "rating": np.full(len(items), np.nan, np.float32),
            "event": np.full(len(items), -1, np.int32)}, [])
    indptr, columns = arrays["feedback"]
    if len(columns["event"]) and not (-1 <= columns["event"].min() and columns["event"].max() < len(names)):
        raise fail(path, f"array 'fb_event' must hold -1 or codes below {len(names)} (event_names)")
    return Feedback(indptr, columns, names)


def _load_towers(directory: Path, settings: dict[str, Any], arrays: dict[str, Any], n_items: int) -> Any:
    """The towers file, present exactly when the settings have towers on, consistent
    with the Recommender's arrays (raises FormatError)."""
    path = directory / "towers.llmrec"
    on = settings.get("towers") is not None
    if on != path.exists() or on != (arrays["G"] is not None):
        raise fail(directory, "the towers setting, the file towers.llmrec and the array 'G' "
                   "disagree (all or none must be present)")
    if not on:
        return None
    from llmrec.towers import SequenceTowers
    from llmrec.towers.persistence import load_towers

    towers = load_towers(SequenceTowers, path, encoder=None, verify=True)
    dim = int(towers.module_.user.norm.normalized_shape[0])
    text = towers.text_dim_ > 0
    if (arrays["G"].shape[1] != dim or towers.n_items_ > n_items
            or (text and towers.n_items_ != n_items)):
        raise fail(path, f"the towers ({towers.n_items_} items, {dim} dims) do not match the "
                   f"Recommender ({n_items} items, {arrays['G'].shape[1]}-dim tower vectors)")
    return towers
