"""SequenceTowers: a two-tower model trained on interactions (see the package docstring)."""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from llmrec._checks import as_ids, check_int, check_real
from llmrec._estimator import Estimator
from llmrec.exceptions import NotFittedError
from llmrec.towers._inputs import (as_histories, as_requests, as_text_vectors, as_texts,
                                   as_timestamps, profile_matrix)

_PARAM_NAMES = ("dim", "layers", "heads", "max_history", "text", "id_dropout", "profile_dropout", "dropout",
                "hidden", "lr", "weight_decay", "batch_size", "patience", "request_rate",
                "full_softmax_max_items", "n_negatives", "finetune_layers", "encoder_lr",
                "average", "average_epochs", "random_state", "num_threads")
_LEARNED = ("module_", "n_items_", "text_dim_", "item_text_vectors_", "has_id_", "encoder_",
            "history_", "best_epoch_", "validation_ndcg_", "averaged_epochs_", "uses_timestamps_",
            "uses_profiles_", "fit_seconds_")
TEXT_MODES = ("frozen", "finetune", None)
MAX_EPOCHS_AUTO = 200
LIMITS = {"dim": (2, 4096), "layers": (1, 32), "heads": (1, 64), "max_history": (1, 4096),
          "finetune_layers": (1, 32), "average_epochs": (0, 20)}


class SequenceTowers(Estimator):
    """User and item towers trained on interaction sequences with a softmax objective.

    **Item tower**: g_i = E[i] + W₂·GELU(W₁·x_i + b₁) + b₂, where E[i] is a learned id
    embedding and x_i the item's text vector: from a frozen :class:`~llmrec.TextEncoder`
    (``text="frozen"``), or with the encoder's top ``finetune_layers`` layers and pooling
    trained with the towers (``text="finetune"``, :mod:`llmrec.towers.finetune`).
    During training E[i] is dropped (set to 0, not rescaled) with probability
    ``id_dropout`` so the text part learns to stand alone; items without training
    interactions and items added later have no E[i] and are ranked from their text.
    With ``text=None`` only E exists (an ids-only tower; items without interactions then
    get the zero vector).

    **User tower**: a causal pre-norm transformer (SASRec-style) over
    ``[BOS, g(h_1)+p_1, …, g(h_m)+p_m]``, the user's latest ``max_history`` items with
    learned position embeddings (plus a time-gap embedding when ``fit`` got timestamps);
    when ``fit`` got user profiles (a free text per user), BOS also carries the
    profile's text vector through a learned linear map, so the interest vector reads who
    the user is as well as what they took; an optional request token (a free-text
    request's vector through the item text MLP plus a learned type vector) comes last.
    The interest vector f_u is the output of the last token, and the score of item i is
    f_u · g_i: put :meth:`item_vectors` in an :class:`~llmrec.ExactIndex` and search it
    with :meth:`user_vectors`.

    **Training**: next-item cross-entropy over the whole catalogue at every position of
    each user's latest window (sampled softmax with log-Q correction when the catalogue
    has more than ``full_softmax_max_items`` items), AdamW, early stopping on the
    held-out last item of a random ``validation`` share of the users (ndcg@10 against
    all items not in their history; the best epoch's weights are kept). See
    :mod:`llmrec.towers.training`.

    Parameters (keyword-only, stored as given and checked by :meth:`fit`)
    ----------
    dim : int in [2, 4096], a multiple of ``heads``
        Length of the user and item vectors.
    layers : int in [1, 32]
        Transformer blocks of the user tower.
    heads : int
        Attention heads.
    max_history : int in [1, 4096]
        The user tower reads the latest ``max_history`` items of a history.
    text : "frozen", "finetune" or None
        Text part of the item tower from frozen encoder vectors, from the encoder with
        its top layers fine-tuned on the interactions, or none (ids only).
        ``"finetune"`` needs ``item_texts`` and a BERT-family :class:`~llmrec.TextEncoder`
        at fit (the default MiniLM is one) and the same encoder to encode new texts
        and requests (only its frozen lower layers are used; precomputed
        ``text_vectors`` cannot be given then). Training first fits the towers with
        the encoder frozen, then trains the top layers too (see
        :mod:`llmrec.towers.training`).
    id_dropout : float in [0, 1)
        Probability of dropping an item's id embedding in a training step (text only).
    profile_dropout : float in [0, 1)
        With profiles: probability that a training row's profile is left out (as for a
        user without one), so the tower does not lean on it as on a user id.
    dropout : float in [0, 1)
        Dropout of the user tower (tokens, attention, residual branches).
    hidden : int or None
        Width of the text MLP; None means 2·dim.
    lr, weight_decay : float
        AdamW's learning rate (> 0) and decoupled weight decay (>= 0).
    batch_size : int
        Users per training step.
    patience : int
        Epochs without a rise of the mean validation ndcg of the latest 5 epochs
        before training stops (the best single epoch is what is kept).
    request_rate : float in [0, 1]
        Share of training rows given a pseudo-request (the text of the item they must
        predict), which teaches the tower to follow requests; 0 turns requests off.
    full_softmax_max_items : int
        Catalogues up to this size train with the full softmax; larger ones with a
        sampled softmax over ``n_negatives`` popularity-sampled items (log-Q corrected).
        50,000 by default: above that the (batch·positions × items) logits outgrow a
        CPU's caches and memory (64 × 51 × 50,000 floats ≈ 650 MB).
    n_negatives : int
        Sampled items per step for the sampled softmax.
    finetune_layers : int in [1, 32]
        With ``text="finetune"``: how many of the encoder's top layers are trained (at
        most the encoder's depth); the lower ones run once per text at fit.
    encoder_lr : float
        With ``text="finetune"``: AdamW's learning rate of the fine-tuned layers.
    average : float in [0, 1)
        Decay per training step of an exponential moving average of the weights (0: off;
        the default 0.98 spans ~50 steps, a few epochs). The averaged weights are the
        ones validated each epoch and kept (the best epoch's average): they change less
        from epoch to epoch than the raw weights, so early stopping on a small held-out
        slice picks a steadier, better model (MovieLens-100K, towers alone, seeds 0–2:
        ndcg@10 0.220 / 0.187 / 0.231 without, 0.241 / 0.217 / 0.231 with; bench/RESULTS.md).
    average_epochs : int in [0, 20]
        R > 0: the kept weights are the uniform mean of the (averaged) weights of the
        epochs best − R … best + R around the best validation epoch (those that ran;
        checkpoint averaging, see :mod:`llmrec.towers.training`), validated and
        reported as ``validation_ndcg_``; ``averaged_epochs_`` says how many epochs
        were averaged. 0 keeps the best epoch alone; without validation there is no
        best epoch and it has no effect. The default 2 (five epochs) raised the
        Recommender's towers signal on MovieLens-100K, seeds 0–2, from ndcg@10 0.2841 /
        0.2870 / 0.2818 to 0.2832 / 0.2883 / 0.2848 (ids-only towers: 0.2807 / 0.2805 /
        0.2833 to 0.2825 / 0.2813 / 0.2838; bench/RESULTS.md, "Issue 14, twelfth
        session"). Costs one more validation and up to 3R + 1 copies of the weights
        while training (with the id embeddings: 3R + 1 times n_items × dim floats).
    random_state : int >= 0 or None
        Seeds initialisation, batching, dropout and the validation users; training is
        reproducible for a fixed thread count. The global torch RNG is left untouched.
    num_threads : int
        torch threads while fitting and encoding users (0: all cores); the previous
        ``torch.get_num_threads()`` is restored afterwards.

    Attributes
    ----------
    module_ : torch.nn.Module (``.item`` and ``.user`` towers), in eval mode
    n_items_ : int, items known (fitted plus added with :meth:`add_items`)
    text_dim_ : int, length of the text vectors (0 with ``text=None``)
    item_text_vectors_ : float32 (n_items_, text_dim_) or None (with ``text="finetune"``,
        the fine-tuned layers' vectors)
    has_id_ : bool (n_items_,), items with a trained id embedding
    encoder_ : TextEncoder or None
    history_ : list of dict per epoch (loss, validation_ndcg, elapsed)
    best_epoch_ : int, validation_ndcg_ : float (nan without validation): the best epoch
        and the kept weights' validation ndcg@10
    averaged_epochs_ : int, how many epochs' weights (around ``best_epoch_``) the kept
        model averages; 1: the best epoch alone
    uses_timestamps_ : bool
    uses_profiles_ : bool, the user tower reads profiles (fitted with them)
    fit_seconds_ : float
    """

    _param_names = _PARAM_NAMES

    def __init__(self, *, dim: int = 64, layers: int = 2, heads: int = 2, max_history: int = 50,
                 text: str | None = "frozen", id_dropout: float = 0.5, profile_dropout: float = 0.5,
                 dropout: float = 0.2,
                 hidden: int | None = None, lr: float = 2e-3, weight_decay: float = 0.01,
                 batch_size: int = 64, patience: int = 10, request_rate: float = 0.1,
                 full_softmax_max_items: int = 50_000, n_negatives: int = 2048,
                 finetune_layers: int = 1, encoder_lr: float = 3e-5, average: float = 0.98,
                 average_epochs: int = 2, random_state: int | None = 0, num_threads: int = 0) -> None:
        self.dim = dim
        self.layers = layers
        self.heads = heads
        self.max_history = max_history
        self.text = text
        self.id_dropout = id_dropout
        self.profile_dropout = profile_dropout
        self.dropout = dropout
        self.hidden = hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.request_rate = request_rate
        self.full_softmax_max_items = full_softmax_max_items
        self.n_negatives = n_negatives
        self.finetune_layers = finetune_layers
        self.encoder_lr = encoder_lr
        self.average = average
        self.average_epochs = average_epochs
        self.random_state = random_state
        self.num_threads = num_threads

    # ------------------------------------------------------------------ settings

    def _settings(self) -> dict[str, Any]:
        if self.text not in TEXT_MODES:
            raise ValueError(f"text must be one of {list(TEXT_MODES)}, got {self.text!r}")
        s: dict[str, Any] = {name: check_int(getattr(self, name), name, minimum=low, maximum=high)
                             for name, (low, high) in LIMITS.items()}
        if s["dim"] % s["heads"]:
            raise ValueError(f"dim ({s['dim']}) must be a multiple of heads ({s['heads']})")
        s["id_dropout"] = check_real(self.id_dropout, "id_dropout", low=0.0, high=1.0, high_open=True)
        s["profile_dropout"] = check_real(self.profile_dropout, "profile_dropout", low=0.0, high=1.0,
                                          high_open=True)
        s["dropout"] = check_real(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        s["hidden"] = 2 * s["dim"] if self.hidden is None else check_int(self.hidden, "hidden", minimum=1)
        s["lr"] = check_real(self.lr, "lr", low=0.0, high=10.0, low_open=True)
        s["weight_decay"] = check_real(self.weight_decay, "weight_decay", low=0.0, high=1e3)
        s["batch_size"] = check_int(self.batch_size, "batch_size", minimum=1)
        s["patience"] = check_int(self.patience, "patience", minimum=1)
        s["request_rate"] = check_real(self.request_rate, "request_rate", low=0.0, high=1.0)
        s["full_softmax_max_items"] = check_int(self.full_softmax_max_items,
                                                "full_softmax_max_items", minimum=1)
        s["n_negatives"] = check_int(self.n_negatives, "n_negatives", minimum=1)
        s["encoder_lr"] = check_real(self.encoder_lr, "encoder_lr", low=0.0, high=10.0, low_open=True)
        s["average"] = check_real(self.average, "average", low=0.0, high=1.0, high_open=True)
        s["num_threads"] = check_int(self.num_threads, "num_threads", minimum=0)
        if self.random_state is not None:
            check_int(self.random_state, "random_state", minimum=0)
        return s

    def _threads(self) -> int:
        n = check_int(self.num_threads, "num_threads", minimum=0)
        return n if n > 0 else max(os.cpu_count() or 1, 1)

    def __getattr__(self, name: str) -> Any:
        if name in _LEARNED:
            raise NotFittedError(f"SequenceTowers.{name} is learned by fit: call fit(histories, …) first")
        raise AttributeError(f"'SequenceTowers' object has no attribute {name!r}")

    def _check_fitted(self) -> None:
        if "module_" not in self.__dict__:
            raise NotFittedError("this SequenceTowers instance is not fitted yet: call "
                                 "fit(histories, item_texts=…) first")

    # ------------------------------------------------------------------ fitting

    def fit(self, histories: Any, *, item_texts: Any = None, item_text_vectors: Any = None,
            encoder: Any = "default", n_items: int | None = None, timestamps: Any = None,
            profiles: Any = None, profile_vectors: Any = None, validation: float = 0.1,
            validation_items: int = 1, epochs: int | str = "auto", show_progress: bool = False,
            callback: Callable[[int, dict[str, float]], Any] | None = None) -> SequenceTowers:
        """Train both towers on interaction sequences; returns self.

        Parameters
        ----------
        histories : sequence of 1-D int arrays, one per user
            Item ids in [0, n_items), oldest first. Empty histories are allowed (those
            users are skipped); at least one user needs an item.
        item_texts : sequence of str, one per item (item j's text), optional
            Encoded with ``encoder``. Needed with ``text="frozen"`` unless
            ``item_text_vectors`` is given, and always with ``text="finetune"``; a
            missing (non-str) text is an error.
        item_text_vectors : float array (n_items, text_dim), optional
            Precomputed text vectors, used instead of encoding ``item_texts``
            (``text="frozen"`` only).
        encoder : "default", a TextEncoder, or None
            Encodes ``item_texts`` now and, later, ``texts=`` of :meth:`item_vectors`
            and :meth:`add_items` and the ``requests`` of :meth:`user_vectors`.
            ``"default"`` (MiniLM) is only loaded when some text must be encoded.
        n_items : int, optional
            Catalogue size when no texts are given (``text=None``); else the number of
            texts. Defaults to the largest id in ``histories`` plus one.
        timestamps : sequence of real arrays parallel to ``histories``, optional
            Event times (any unit; datetime64 is read in seconds): adds a time-gap
            embedding, log2-bucketed, to each token.
        profiles : sequence of str or None, one per history, optional
            A free text about each user (age, occupation, stated tastes; None or '' for
            a user without one), encoded with ``encoder`` (its plain vectors, also with
            ``text="finetune"``): the user tower learns to read it (see the class
            docstring), and :meth:`user_vectors` then takes profiles too. Needs text.
        profile_vectors : float array (n_histories, text_dim), optional
            Precomputed profile vectors instead of ``profiles`` (zero rows: no profile).
        validation : float in [0, 1)
            Share of the users with more than ``validation_items`` items whose latest
            ``validation_items`` items are held out for early stopping (their other
            items still train). 0 trains ``epochs`` epochs.
        validation_items : int >= 1
            How many latest items of each validation user are held out (users with
            more than that many items are eligible); each held-out item is ranked
            against the items not in the user's remaining history (the user's other
            held-out items excluded). More items per user steady the early stop's
            curve, at the cost of those items' training targets.
        epochs : int >= 1 or "auto"
            The most epochs (one pass over the users); "auto" is 200 with early
            stopping and needs ``validation > 0``.
        show_progress : bool
            A tqdm bar over epochs with the loss and validation ndcg@10.
        callback : callable(epoch, record) -> bool or None, optional
            Called after each epoch with ``{"epoch", "loss", "validation_ndcg",
            "elapsed", "tuning"}`` (tuning: 1.0 in the epochs that train the encoder's
            top layers, else 0.0); returning True stops training.
        """
        s = self._settings()
        _require_torch()
        validation = check_real(validation, "validation", low=0.0, high=1.0, high_open=True)
        validation_items = check_int(validation_items, "validation_items", minimum=1)
        if isinstance(epochs, str):
            if epochs != "auto":
                raise ValueError(f"epochs must be a positive int or 'auto', got {epochs!r}")
            if validation == 0:
                raise ValueError("epochs='auto' stops early on the validation users: it needs "
                                 "validation > 0 (or give epochs as an int)")
            max_epochs = MAX_EPOCHS_AUTO
        else:
            max_epochs = check_int(epochs, "epochs", minimum=1)
        encoder_spec, encoder_obj = _encoder_spec(encoder)
        use_text = self.text is not None
        T = tuner = None
        if self.text == "finetune":
            if item_text_vectors is not None or item_texts is None:
                raise ValueError("text='finetune' trains the encoder's top layers on the item "
                                 "texts: give item_texts (and an encoder), not item_text_vectors")
            enc = encoder_obj if encoder_obj is not None else _make_encoder(encoder_spec)
            encoder_obj = enc
            tuner = self._fine_tuner(enc, as_texts(item_texts, "item_texts"), s["finetune_layers"])
            T = tuner.cache.numpy()
        elif item_text_vectors is not None:
            T = as_text_vectors(item_text_vectors, "item_text_vectors", dim=None)
            if item_texts is not None:
                raise ValueError("give item_texts or item_text_vectors, not both")
        elif item_texts is not None:
            texts = as_texts(item_texts, "item_texts")
            if use_text:
                enc = encoder_obj if encoder_obj is not None else _make_encoder(encoder_spec)
                if encoder_obj is None and encoder_spec == "default":
                    encoder_obj = enc
                T = enc.encode(texts, show_progress=show_progress)
            else:
                T = np.zeros((len(texts), 0), dtype=np.float32)
        elif use_text:
            raise ValueError(f"text={self.text!r} needs item_texts (with an encoder) or "
                             "item_text_vectors; use text=None for an ids-only tower")
        catalogue = self._catalogue_size(T, n_items, histories)
        H = as_histories(histories, "histories", catalogue)
        if not any(len(h) for h in H):
            raise ValueError("histories are all empty: nothing to train on")
        ts = as_timestamps(timestamps, H, "timestamps")
        if not use_text:
            T = None
        P = None
        if profiles is not None or profile_vectors is not None:
            if T is None:
                raise ValueError("profiles are text: they need a model with text (text='frozen' "
                                 "or 'finetune'), not text=None")
            if profiles is not None and profile_vectors is None and encoder_obj is None:
                if encoder_spec is None:
                    raise ValueError("profiles are texts to encode: pass an encoder, or give "
                                     "profile_vectors")
                encoder_obj = _make_encoder(encoder_spec)
            P = profile_matrix(profiles, profile_vectors, len(H), T.shape[1],
                               lambda texts: _plain_vectors(encoder_obj, texts, T.shape[1]))

        import torch

        from llmrec.towers.model import Towers
        from llmrec.towers.training import Settings, torch_threads, train

        seed = (int(self.random_state) if self.random_state is not None
                else int(np.random.default_rng().integers(2**31)))
        rng = np.random.default_rng(seed)
        data = _split_validation(H, ts, catalogue, validation, rng, validation_items)
        data.text = torch.from_numpy(T) if T is not None else None
        data.profiles = torch.from_numpy(P) if P is not None else None
        settings = Settings(max_history=s["max_history"], batch_size=s["batch_size"], lr=s["lr"],
                            weight_decay=s["weight_decay"],
                            id_dropout=s["id_dropout"] if use_text else 0.0,
                            profile_dropout=s["profile_dropout"],
                            request_rate=s["request_rate"] if use_text else 0.0,
                            full_softmax_max_items=s["full_softmax_max_items"],
                            n_negatives=s["n_negatives"], max_epochs=max_epochs,
                            patience=s["patience"], encoder_lr=s["encoder_lr"],
                            average=s["average"], average_epochs=s["average_epochs"])
        start = time.perf_counter()
        with torch_threads(self._threads()), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Towers(n_id_rows=catalogue, text_dim=0 if T is None else T.shape[1],
                         dim=s["dim"], hidden=s["hidden"], layers=s["layers"], heads=s["heads"],
                         max_history=s["max_history"], dropout=s["dropout"],
                         use_gaps=ts is not None, text_head=None if tuner is None else tuner.head,
                         use_profiles=P is not None)
            data.tuner = tuner
            records, averaged, kept_ndcg = train(net, data, settings, rng,
                                               show_progress=show_progress, callback=callback)
            if tuner is not None:  # the fine-tuned layers' vectors of the best epoch
                T = np.ascontiguousarray(data.text.numpy())
        self.module_ = net
        self.n_items_ = catalogue
        self.text_dim_ = 0 if T is None else int(T.shape[1])
        self.item_text_vectors_ = T
        self.has_id_ = data.has_id.numpy().copy()
        self.encoder_ = encoder_obj
        self._encoder_spec = encoder_spec
        self._encoder_fingerprint = getattr(encoder_obj, "fingerprint", None) if tuner else None
        self.history_ = records
        kept = [r for r in records if r["tuning"]] or records  # the weights are of a tuned epoch
        valid = [r for r in kept if np.isfinite(r["validation_ndcg"])]
        best = max(valid, key=lambda r: r["validation_ndcg"]) if valid else kept[-1]
        self.best_epoch_ = int(best["epoch"])
        self.validation_ndcg_ = float(kept_ndcg)
        self.averaged_epochs_ = averaged
        self.uses_timestamps_ = ts is not None
        self.uses_profiles_ = P is not None
        self.fit_seconds_ = time.perf_counter() - start
        self._touch()
        return self

    def _fine_tuner(self, encoder: Any, texts: list[str], layers: int) -> Any:
        """The FineTuner of ``texts``: lower-layer token states run once, a trainable
        copy of the top ``layers`` layers, and the initial text vectors (refreshed)."""
        from llmrec.towers.finetune import FineTuner, TextHead, encoder_layers, lower_states
        from llmrec.towers.training import torch_threads

        depth = encoder_layers(encoder)
        if layers > depth:
            raise ValueError(f"finetune_layers ({layers}) exceeds the encoder's {depth} layers")
        if not texts:
            raise ValueError("item texts are empty: expected one per item")
        with torch_threads(self._threads()):
            tuner = FineTuner(TextHead.from_encoder(encoder, layers),
                              lower_states(encoder, texts, "document", depth - layers))
            tuner.refresh()
        return tuner

    def _catalogue_size(self, T: np.ndarray | None, n_items: Any, histories: Any) -> int:
        if n_items is not None:
            n_items = check_int(n_items, "n_items", minimum=1)
            if T is not None and T.shape[0] != n_items:
                raise ValueError(f"n_items ({n_items}) differs from the number of item texts "
                                 f"({T.shape[0]})")
            return n_items
        if T is not None:
            if T.shape[0] == 0:
                raise ValueError("item texts are empty: expected one per item")
            return int(T.shape[0])
        # ids only, no size given: the largest id seen (checked again by as_histories).
        H = as_histories(histories, "histories", np.iinfo(np.int64).max)
        top = max((int(h.max()) for h in H if len(h)), default=-1)
        if top < 0:
            raise ValueError("histories are all empty: nothing to train on")
        return top + 1

    # ------------------------------------------------------------------ serving

    def _touch(self) -> None:
        self._item_matrix_cache: Any = None
        self._numpy_tower: Any = None
        self._item_matrix_np: Any = None

    def _item_matrix(self) -> Any:
        """g for every known item (torch float32 (n_items_, dim)), cached."""
        if getattr(self, "_item_matrix_cache", None) is None:
            import torch
            from llmrec.towers.training import torch_threads

            with torch_threads(self._threads()), torch.inference_mode():
                text = (torch.from_numpy(self.item_text_vectors_)
                        if self.item_text_vectors_ is not None else None)
                ids = torch.arange(self.n_items_)
                keep = torch.from_numpy(self.has_id_).float()
                self._item_matrix_cache = self.module_.item(ids, text, keep).contiguous()
        return self._item_matrix_cache

    def _encoder(self) -> Any:
        """The encoder that reads texts now (the default one loaded when first needed)."""
        if self.text_dim_ == 0:
            raise ValueError("this model was fitted with text=None: it cannot use texts")
        enc = self.encoder_
        if enc is None:
            if self._encoder_spec != "default":
                raise ValueError("no encoder to encode texts: this model was fitted from "
                                 "item_text_vectors with encoder=None; give precomputed "
                                 "vectors instead, or set encoder_ to a TextEncoder")
            enc = self.encoder_ = _make_encoder("default")
        return enc

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        enc = self._encoder()
        if enc.dim != self.text_dim_:
            raise ValueError(f"the encoder makes {enc.dim}-dim vectors but the model was "
                             f"fitted on {self.text_dim_}-dim text vectors")
        head = getattr(self.module_, "text_head", None)
        if head is None:
            return enc.encode(texts, kind=kind)
        return self._fine_tuned_vectors(enc, head, texts, kind)

    def _fine_tuned_vectors(self, encoder: Any, head: Any, texts: list[str], kind: str) -> np.ndarray:
        """Texts through the encoder's frozen lower layers, then the fine-tuned head."""
        import torch

        from llmrec.towers.finetune import encoder_layers, head_vectors, lower_states
        from llmrec.towers.training import torch_threads

        expected = getattr(self, "_encoder_fingerprint", None)
        if expected is not None and getattr(encoder, "fingerprint", None) != expected:
            raise ValueError("the encoder differs from the one the text layers were fine-tuned "
                             f"on (fingerprint {expected!r}); pass that encoder")
        if not texts:
            return np.zeros((0, self.text_dim_), dtype=np.float32)
        depth = encoder_layers(encoder)
        with torch_threads(self._threads()), torch.inference_mode():
            tokens = lower_states(encoder, texts, kind, depth - len(head.blocks))
            return head_vectors(head, tokens).numpy()

    def _text_vectors(self, texts: Any, text_vectors: Any) -> np.ndarray:
        if self.text_dim_ == 0:
            raise ValueError("this model was fitted with text=None: items can only be "
                             "given by id")
        if text_vectors is not None:
            if texts is not None:
                raise ValueError("give texts or text_vectors, not both")
            self._no_vectors_when_fine_tuned("text_vectors")
            return as_text_vectors(text_vectors, "text_vectors", dim=self.text_dim_)
        return self._encode(as_texts(texts, "texts"), "document")

    def _no_vectors_when_fine_tuned(self, name: str) -> None:
        if getattr(self.module_, "text_head", None) is not None:
            raise ValueError(f"this model was fitted with text='finetune': its text vectors come "
                             f"from its fine-tuned layers, so {name} cannot be given; give the "
                             "texts themselves")

    def user_vectors(self, histories: Any, *, requests: Any = None, request_vectors: Any = None,
                     profiles: Any = None, profile_vectors: Any = None,
                     timestamps: Any = None, batch_size: int = 1024) -> np.ndarray:
        """Interest vectors f_u, float32 (n, dim), one per history.

        Parameters
        ----------
        histories : sequence of 1-D int arrays (ids in [0, n_items_), oldest first)
            Only the latest ``max_history`` items are read. An empty history gives the
            learned no-history vector (it ranks what users tend to start with, close to
            popularity), or the request's vector when a request is given.
        requests : str, or a sequence of str or None (one per history), optional
            Free-text requests (encoded with ``kind="query"``); a single str applies to
            every history.
        request_vectors : float array (n, text_dim_), optional
            Precomputed request vectors, one per history (instead of ``requests``).
        profiles : sequence of str or None (one per history), optional
            The users' profile texts, read when the model was fitted with profiles
            (otherwise ignored, as a user without one): encoded with the encoder's
            plain vectors, as at fit.
        profile_vectors : float array (n, text_dim_), optional
            Precomputed profile vectors instead of ``profiles`` (zero rows: none).
        timestamps : sequence of arrays parallel to histories, optional
            Used when the model was fitted with timestamps (otherwise ignored); without
            them the time gaps read as unknown.
        batch_size : int
            Histories per forward pass.
        """
        self._check_fitted()
        H = as_histories(histories, "histories", self.n_items_)
        batch_size = check_int(batch_size, "batch_size", minimum=1)
        ts = as_timestamps(timestamps, H, "timestamps") if self.uses_timestamps_ else None
        R, has = self._requests(requests, request_vectors, len(H))
        P = None
        if self.uses_profiles_ and (profiles is not None or profile_vectors is not None):
            P = profile_matrix(profiles, profile_vectors, len(H), self.text_dim_,
                               lambda texts: _plain_vectors(self._encoder(), texts, self.text_dim_))
        import torch

        from llmrec.towers.training import gap_buckets, interest, pack, torch_threads

        W = int(self.module_.user.max_history)
        if len(H) == 1:
            return self._one_user_vector(H[0], None if ts is None else ts[0],
                                         None if R is None or has is None or not has[0] else R[0],
                                         None if P is None else P[0])
        out = np.empty((len(H), self.module_.user.norm.normalized_shape[0]), dtype=np.float32)
        G = self._item_matrix()
        with torch_threads(self._threads()), torch.inference_mode():
            for start in range(0, len(H), batch_size):
                stop = min(start + batch_size, len(H))
                prefixes = [h[-W:] if len(h) > W else h for h in H[start:stop]]
                gaps = None
                if self.uses_timestamps_:
                    gaps = [gap_buckets(ts[u])[-W:] if ts is not None
                            else np.zeros(len(prefixes[u - start]), dtype=np.int64)
                            for u in range(start, stop)]
                packed = pack(prefixes, gaps)
                req = has_req = None
                if R is not None and has is not None and has[start:stop].any():
                    req = torch.from_numpy(R[start:stop])
                    has_req = torch.from_numpy(has[start:stop])
                profile = None if P is None else torch.from_numpy(P[start:stop])
                out[start:stop] = interest(self.module_, G, packed, req, has_req, profile).numpy()
        return out

    def _one_user_vector(self, history: np.ndarray, timestamps: np.ndarray | None,
                         request: np.ndarray | None, profile: np.ndarray | None = None) -> np.ndarray:
        """One history through the numpy forward (cheaper per call than torch's)."""
        from llmrec.towers._numpy_forward import NumpyUserTower
        from llmrec.towers.training import gap_buckets

        tower: NumpyUserTower | None = getattr(self, "_numpy_tower", None)
        if tower is None:
            tower = self._numpy_tower = NumpyUserTower(self.module_)
            self._item_matrix_np = self._item_matrix().numpy()
        h = history[-tower.max_history:]
        gaps = None
        if self.uses_timestamps_ and timestamps is not None:
            gaps = gap_buckets(timestamps)[-tower.max_history:]
        return tower(self._item_matrix_np[h], gaps, request, profile)[None, :]

    def _requests(self, requests: Any, request_vectors: Any, n: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if requests is None and request_vectors is None:
            return None, None
        if self.text_dim_ == 0:
            raise ValueError("this model was fitted with text=None: it cannot take requests")
        if request_vectors is not None:
            if requests is not None:
                raise ValueError("give requests or request_vectors, not both")
            self._no_vectors_when_fine_tuned("request_vectors")
            R = as_text_vectors(request_vectors, "request_vectors", dim=self.text_dim_, rows=n)
            return R, np.ones(n, dtype=bool)
        rows, texts = as_requests(requests, n)
        R = np.zeros((n, self.text_dim_), dtype=np.float32)
        has = np.zeros(n, dtype=bool)
        if rows:
            R[rows] = self._encode(texts, "query")
            has[rows] = True
        return R, has

    def item_vectors(self, ids: Any = None, *, texts: Any = None,
                     text_vectors: Any = None) -> np.ndarray:
        """Item vectors g_i, float32 (m, dim).

        ``ids`` (int array): known items (fitted or added), with their id embedding
        where they had training interactions; None (and no texts): every known item.
        ``texts`` / ``text_vectors``: items that need not exist, from their text alone
        (what an item added with :meth:`add_items` gets).
        """
        self._check_fitted()
        import torch

        from llmrec.towers.training import torch_threads

        if texts is not None or text_vectors is not None:
            if ids is not None:
                raise ValueError("give ids, or texts / text_vectors, not both")
            X = self._text_vectors(texts, text_vectors)
            with torch_threads(self._threads()), torch.inference_mode():
                return self.module_.item.text_part(torch.from_numpy(X)).numpy().copy()
        G = self._item_matrix()
        if ids is None:
            return G.numpy().copy()
        return G[torch.from_numpy(as_ids(ids, "ids", self.n_items_))].numpy()

    def add_items(self, *, texts: Any = None, text_vectors: Any = None) -> np.ndarray:
        """Append items known by their text only; returns their new ids (int64).

        They can appear in histories and are ranked at once (no refit); they have no id
        embedding, exactly as in :meth:`item_vectors` ``(texts=…)``.
        """
        self._check_fitted()
        X = self._text_vectors(texts, text_vectors)
        ids = np.arange(self.n_items_, self.n_items_ + X.shape[0], dtype=np.int64)
        self.item_text_vectors_ = np.ascontiguousarray(np.concatenate([self.item_text_vectors_, X]))
        self.has_id_ = np.concatenate([self.has_id_, np.zeros(X.shape[0], dtype=bool)])
        self.n_items_ += int(X.shape[0])
        self._touch()
        return ids

    def score(self, histories: Any, ids: Any = None, **kwargs: Any) -> np.ndarray:
        """f_u · g_i for every history and item: float32 (n_histories, m); ``ids`` as in
        :meth:`item_vectors` (None: every known item); ``kwargs`` go to :meth:`user_vectors`."""
        return self.user_vectors(histories, **kwargs) @ self.item_vectors(ids).T

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path`` in llmrec's versioned, checksummed format
        (weights, item text vectors, settings; the encoder is referred to, not stored)."""
        from llmrec.towers.persistence import save_towers

        self._check_fitted()
        save_towers(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, encoder: Any = None,
             verify: bool = True) -> SequenceTowers:
        """Read a model written by :meth:`save`. ``encoder``: a TextEncoder for texts and
        requests (a model fitted with the default encoder loads it when first needed).
        Raises :class:`llmrec.FormatError` (a ValueError) for a damaged or foreign file."""
        from llmrec.towers.persistence import load_towers

        _require_torch()
        return load_towers(cls, path, encoder=encoder, verify=verify)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_item_matrix_cache=None, _numpy_tower=None, _item_matrix_np=None)
        if state.get("_encoder_spec") == "default":
            state["encoder_"] = None  # reloaded when needed
        return state


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"llmrec.towers needs torch, which could not be imported ({exc}); "
                          'install the text extra: pip install "llmrec[text]"') from exc


def _encoder_spec(encoder: Any) -> tuple[str | None, Any]:
    """("default" | "custom" | None, the encoder object or None)."""
    if encoder is None:
        return None, None
    if isinstance(encoder, str):
        if encoder != "default":
            raise ValueError(f"encoder must be 'default', a TextEncoder or None, got {encoder!r}")
        return "default", None
    if not callable(getattr(encoder, "encode", None)) or not isinstance(getattr(encoder, "dim", None),
                                                                        numbers.Integral):
        raise TypeError(f"encoder must be 'default', a TextEncoder (with .encode and .dim) or "
                        f"None, got {type(encoder).__name__}")
    return "custom", encoder


def _plain_vectors(encoder: Any, texts: list[str], text_dim: int) -> np.ndarray:
    """``texts`` through ``encoder`` itself (never a fine-tuned head), checked to be
    ``text_dim`` long: what profiles are read as."""
    if encoder.dim != text_dim:
        raise ValueError(f"the encoder makes {encoder.dim}-dim vectors but the model's text "
                         f"vectors are {text_dim}-dim")
    return np.asarray(encoder.encode(texts, kind="document"), dtype=np.float32)


def _make_encoder(spec: str | None) -> Any:
    if spec is None:
        raise ValueError("item_texts need an encoder: pass encoder='default' or a TextEncoder, "
                         "or give item_text_vectors")
    from llmrec.text import TextEncoder

    return TextEncoder("default")


def _split_validation(H: list[np.ndarray], ts: list[np.ndarray] | None, n_items: int,
                      validation: float, rng: np.random.Generator, held: int = 1) -> Any:
    """TrainData with the last ``held`` items of a random share of the users (those with
    more than ``held`` items) held out: one validation row per held-out item."""
    import torch

    from llmrec.towers.training import TrainData, gap_buckets

    gaps = [gap_buckets(t) for t in ts] if ts is not None else None
    eligible = np.array([u for u, h in enumerate(H) if len(h) > held], dtype=np.int64)
    n_val = int(round(validation * len(eligible)))
    if validation > 0 and len(eligible):
        n_val = max(n_val, 1)
    val_users = np.sort(rng.choice(eligible, size=n_val, replace=False)) if n_val else eligible[:0]
    sequences = list(H)
    train_gaps = list(gaps) if gaps is not None else None
    prefixes: list[np.ndarray] = []
    targets: list[int] = []
    owners: list[int] = []
    seen: list[np.ndarray] = []
    val_gaps: list[np.ndarray] | None = [] if gaps is not None else None
    for u in val_users:
        h = H[u]
        prefix, held_out = h[:-held], h[-held:]
        sequences[u] = prefix
        if gaps is not None and train_gaps is not None:
            train_gaps[u] = gaps[u][:-held]
        for target in held_out:
            prefixes.append(prefix)
            if gaps is not None and val_gaps is not None:
                val_gaps.append(gaps[u][:-held])
            targets.append(target)
            owners.append(int(u))
            seen.append(np.setdiff1d(np.union1d(prefix, held_out), [target]))
    counts = np.zeros(n_items, dtype=np.int64)
    for seq in sequences:
        counts += np.bincount(seq, minlength=n_items)
    return TrainData(sequences=sequences, gaps=train_gaps, text=None,
                     has_id=torch.from_numpy(counts > 0), n_items=n_items,
                     val_prefixes=prefixes, val_gaps=val_gaps,
                     val_targets=np.array(targets, dtype=np.int64), val_seen=seen,
                     val_users=np.array(owners, dtype=np.int64))
