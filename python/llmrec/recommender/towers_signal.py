"""The "towers" signal: f_u · g_i of :class:`llmrec.towers.SequenceTowers` trained on the
Recommender's histories (and its item text vectors, so nothing is encoded twice).

The Recommender keeps the item vectors g (one row per item, in the snapshot's items)
and one interest vector f_u per user (in the snapshot's users, recomputed by
``update``); a visitor's vector (``recommend_for_history``) is one numpy forward. Items
added later get their text-only vector at once (zero without text). The towers are
trained twice, like ALS: on the validation split's training part, so the blend weight
is fitted on targets the towers never saw, and on everything for serving.

With ``towers={"text": "finetune", …}`` the towers train the encoder's top layers on the
item texts (:mod:`llmrec.towers.finetune`): they need the texts and the Recommender's
encoder at fit (``text``: a :class:`TowersText`) and the new items' texts at
``add_items``; without an encoder or item texts they are ids-only, like the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrec._checks import check_int, check_real

# Besides SequenceTowers' parameters, the towers dict may give fit's ``epochs`` (int or
# "auto", the default: early stopping on the towers' own held-out users),
# ``validation`` (the share of users whose last items those are) and
# ``validation_items`` (how many of each such user's latest items are held out).
_FIT_OPTIONS = ("epochs", "validation", "validation_items")
# The towers' held-out share here: early stopping on the last item of 10 % of
# MovieLens' users (fit's default, ~94) picked noisy epochs; 30 % gave ndcg@10 0.2839 /
# 0.2869 against 0.2821 / 0.2776 (seeds 0 / 1), 50 % 0.2822 (seed 0). bench/RESULTS.md,
# "Issue 14, ninth session".
TOWERS_VALIDATION = 0.3


def check_towers(spec: Any, random_state: Any, num_threads: int) -> dict[str, Any] | None:
    """The SequenceTowers parameters of ``towers`` (None, "auto" or a dict), checked;
    None when off. ``random_state``/``num_threads`` default to the Recommender's and
    ``validation`` (fit's held-out share of users) to ``TOWERS_VALIDATION``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "auto":
            raise ValueError(f"towers must be None, 'auto' or a dict of SequenceTowers "
                             f"parameters, got {spec!r}")
        spec = {}
    if not isinstance(spec, Mapping):
        raise TypeError(f"towers must be None, 'auto' or a dict of SequenceTowers parameters, "
                        f"got {type(spec).__name__}")
    from llmrec.towers import SequenceTowers

    unknown = sorted(set(spec) - set(SequenceTowers._param_names) - set(_FIT_OPTIONS))
    if unknown:
        raise ValueError(f"towers has unknown SequenceTowers parameters {unknown}; "
                         f"valid: {list(SequenceTowers._param_names) + list(_FIT_OPTIONS)}")
    params = dict(spec)
    params.setdefault("random_state", 0 if random_state is None else int(random_state))
    params.setdefault("num_threads", num_threads)
    params.setdefault("validation", TOWERS_VALIDATION)
    epochs = params.get("epochs", "auto")
    if epochs != "auto" and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"towers['epochs'] must be an int >= 1 or 'auto', got {epochs!r}")
    share = check_real(params["validation"], "towers['validation']", low=0.0, high=1.0, high_open=True)
    if "validation_items" in params:
        check_int(params["validation_items"], "towers['validation_items']", minimum=1)
    if share == 0 and epochs == "auto":
        raise ValueError("towers['validation'] = 0 needs towers['epochs'] as an int "
                         "(epochs='auto' stops early on the validation users)")
    try:
        SequenceTowers(**{k: v for k, v in params.items() if k not in _FIT_OPTIONS})._settings()
    except (TypeError, ValueError) as error:
        raise type(error)(f"towers: {error}") from None
    return params


@dataclass
class TowersText:
    """The item texts and the encoder that made ``E``: what fine-tuned towers train on."""

    texts: list[str]
    encoder: Any


def fit_towers(params: dict[str, Any], histories: list[np.ndarray], n_items: int,
               E: np.ndarray | None, show_progress: bool = False,
               text: TowersText | None = None, profile: np.ndarray | None = None) -> Any:
    """SequenceTowers fitted on ``histories``; with text vectors ``E`` unless the
    parameters say ``text=None`` (without ``E`` the towers are ids-only); with
    ``text="finetune"``, on ``text``'s item texts and encoder. ``profile``: the users'
    profile text vectors (zero rows: none), read by towers with text when some user
    has one."""
    from llmrec.towers import SequenceTowers

    params = dict(params)
    fit_options = {name: params.pop(name) for name in _FIT_OPTIONS if name in params}
    if E is None or (params.get("text") == "finetune" and text is None):
        params["text"] = None
    towers = SequenceTowers(**params)
    fit = {"epochs": "auto", **fit_options, "show_progress": show_progress}
    if towers.text is not None and profile is not None and profile.any():
        fit["profile_vectors"] = profile
    if towers.text is None:
        return towers.fit(histories, n_items=n_items, encoder=None, **fit)
    if towers.text == "finetune":
        assert text is not None
        towers.fit(histories, item_texts=text.texts, encoder=text.encoder, **fit)
        towers.encoder_ = None  # lent again by new_item_vectors: the towers stay picklable
        return towers
    return towers.fit(histories, item_text_vectors=E, encoder=None, **fit)


def user_vectors(towers: Any, histories: list[np.ndarray], profile: np.ndarray | None = None
                 ) -> np.ndarray:
    """f_u per history (float32). ``profile`` rows (one per history) are read by towers
    fitted with profiles. An empty history without a profile gets zero (no signal, as
    the other personal signals); with one, the towers' vector of that profile alone.
    Items the towers do not know (added without text to an ids-only model) are skipped."""
    dim = int(towers.module_.user.norm.normalized_shape[0])
    out = np.zeros((len(histories), dim), dtype=np.float32)
    known = [np.asarray(h, dtype=np.int64) for h in histories]
    known = [h[h < towers.n_items_] for h in known]
    read = profile if profile is not None and towers.uses_profiles_ else None
    rows = [r for r, h in enumerate(known) if len(h) or (read is not None and read[r].any())]
    if rows:
        out[rows] = towers.user_vectors([known[r] for r in rows],
                                        profile_vectors=None if read is None else read[rows])
    return out


def new_item_vectors(towers: Any, E_new: np.ndarray | None, count: int,
                     text: TowersText | None = None) -> tuple[Any, np.ndarray]:
    """(towers that know the new items, their g rows): text-only vectors, or zero rows
    (and the towers unchanged) without text. Fine-tuned towers read ``text`` (the new
    items' texts and the Recommender's encoder) instead of ``E_new``. The towers given
    are not modified."""
    from llmrec.recommender.snapshot import fork

    dim = int(towers.module_.user.norm.normalized_shape[0])
    if E_new is None or towers.text_dim_ == 0:
        return towers, np.zeros((count, dim), dtype=np.float32)
    grown = fork(towers)  # add_items rebinds its arrays: requests holding the old one go on
    if towers.text == "finetune":
        if text is None:
            raise ValueError("towers with fine-tuned text need the new items' texts")
        grown.encoder_ = text.encoder
        grown.add_items(texts=text.texts)
        grown.encoder_ = None  # lent for this call only, as in fit_towers
    else:
        grown.add_items(text_vectors=E_new)
    return grown, np.ascontiguousarray(grown.item_vectors(np.arange(grown.n_items_ - count, grown.n_items_)))


__all__ = ["TOWERS_VALIDATION", "TowersText", "check_towers", "fit_towers", "new_item_vectors", "user_vectors"]
