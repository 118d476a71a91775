"""Batches, forward passes and the training loop of :class:`~llmrec.towers.SequenceTowers`.

Training follows SASRec: every user contributes the latest ``max_history + 1`` items of
their (training) history once per epoch; the input is ``[BOS, h_1 … h_m]`` and every
slot predicts the next item (BOS predicts the window's first item). The loss is the
cross-entropy of the next item against the whole catalogue, or, above
``full_softmax_max_items`` items, against ``n_negatives`` items drawn (with replacement)
in proportion to count^0.75 with the log-Q correction: each candidate's logit is lowered
by log(n_negatives · q_j), and sampled copies of the true item are masked out.

A share ``request_rate`` of the training rows also gets a request token holding the text
vector of the row's last target (a pseudo-request: "this is what I want next"), whose
output must predict that target: this teaches the user tower to move the interest
vector toward what a request describes.

With profiles (``TrainData.profiles``: one text vector per user, zero rows for users
without one), every row's BOS token carries its user's profile, in training and in
validation alike; in training a share ``profile_dropout`` of the rows goes without.

Early stopping (:class:`Plateau`) reads the mean held-out score of the latest
``STOP_SPAN`` epochs, not the single best epoch: the held-out slice is small, and one
early spike would stop a curve that still climbs. The epoch kept is still the best one.

With ``average`` > 0 the loop keeps a moving average of the weights (:class:`WeightAverage`,
updated after every step); the average, not the raw weights, is validated after each
epoch and the best epoch's average is what the loop leaves in the module. The raw
weights' validation ndcg swings from epoch to epoch on a small held-out slice, and early
stopping on such a curve stops at lucky epochs; the average moves slowly.

With ``text="finetune"`` (a :class:`~llmrec.towers.finetune.FineTuner` in the data),
training runs in two phases: first with the encoder's top layers frozen, until early
stopping or half the epochs, whichever comes first; then, from the best epoch's
weights, with the top layers trained too (their own learning rate ``encoder_lr``)
and the towers at ``TUNING_TOWERS_LR_SCALE`` of theirs, until early stopping again;
the best epoch of this second phase is kept (with ``average_epochs``, the epochs around
it). The head learns on a towers model that already fits, so its first steps are not
driven by random towers.

With ``average_epochs`` = R > 0 the loop also keeps the (validated) weights of the epochs
around the best one (:class:`EpochWindow`), and what it leaves in the module is the
uniform mean of the weights of epochs best − R … best + R (those that ran): checkpoint
averaging, as in stochastic weight averaging. The best epoch is one noisy draw from a
plateau of the validation curve, and the mean of its neighbours sits nearer the
plateau's centre. The mean is not chosen against the best epoch on the same validation
slice: the best epoch's score there is inflated by having been picked on it, so any
alternative would lose to it (MovieLens-100K: with that choice, the mean was never kept).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from llmrec.towers.model import N_GAP_BUCKETS, Towers

NDCG_K = 10
# In the fine-tuning phase the towers' own learning rate is scaled by this: they start
# from their best epoch, and at the full rate they go on overfitting as they did then.
TUNING_TOWERS_LR_SCALE = 0.1
# Early stopping reads the mean held-out score of this many latest epochs (:class:`Plateau`).
STOP_SPAN = 5


def gap_buckets(timestamps: np.ndarray) -> np.ndarray:
    """Bucket of the gap before each event: 0 for the first, else 1 + ⌊log2(1 + gap)⌋
    (gaps < 0 count as 0), capped at the last bucket."""
    out = np.zeros(len(timestamps), dtype=np.int64)
    if len(timestamps) > 1:
        gaps = np.maximum(np.diff(timestamps.astype(np.float64)), 0.0)
        out[1:] = 1 + np.minimum(np.floor(np.log2(1.0 + gaps)), N_GAP_BUCKETS - 2).astype(np.int64)
    return out


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count."""
    previous = torch.get_num_threads()
    if n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@dataclass
class Packed:
    """Right-aligned rows [pad…, BOS, items…]: ``items`` (b, s) int64 (0 at BOS and pad),
    ``valid`` (b, s) bool, ``gaps`` (b, s) int64 or None."""

    items: torch.Tensor
    valid: torch.Tensor
    gaps: torch.Tensor | None


def pack(prefixes: Sequence[np.ndarray], gaps: Sequence[np.ndarray] | None) -> Packed:
    """Pack item-id prefixes (each already cut to at most ``max_history`` items)."""
    b = len(prefixes)
    s = 1 + max((len(p) for p in prefixes), default=0)
    items = np.zeros((b, s), dtype=np.int64)
    valid = np.zeros((b, s), dtype=bool)
    gap = np.zeros((b, s), dtype=np.int64) if gaps is not None else None
    for r, p in enumerate(prefixes):
        m = len(p)
        if m:
            items[r, s - m:] = p
        valid[r, s - m - 1:] = True
        if gaps is not None and gap is not None and m:
            gap[r, s - m:] = gaps[r]
    return Packed(torch.from_numpy(items), torch.from_numpy(valid),
                  None if gap is None else torch.from_numpy(gap))


def user_outputs(net: Towers, G: torch.Tensor, packed: Packed,
                 request_text: torch.Tensor | None, has_request: torch.Tensor | None,
                 profile: torch.Tensor | None = None) -> torch.Tensor:
    """All slot outputs (b, s [+1], dim) of the user tower, tokens gathered from G;
    ``profile``: the rows' profile text vectors (b, text_dim) or None."""
    tokens = G[packed.items]
    request = None
    if request_text is not None:
        request = net.item.text_part(request_text)
    return net.user(tokens, packed.valid, packed.gaps, request, has_request, profile)


def interest(net: Towers, G: torch.Tensor, packed: Packed, request_text: torch.Tensor | None,
             has_request: torch.Tensor | None, profile: torch.Tensor | None = None) -> torch.Tensor:
    """f_u (b, dim): the request slot's output where a row has a request, else the last slot's."""
    out = user_outputs(net, G, packed, request_text, has_request, profile)
    if request_text is None:
        return out[:, -1]
    assert has_request is not None
    return torch.where(has_request.unsqueeze(1), out[:, -1], out[:, -2])


@dataclass
class TrainData:
    """What the loop trains on: per-user training sequences (and gap buckets), the item
    text vectors (or None), which items keep an id embedding, validation rows (and the
    user of each), and the users' profile text vectors (or None)."""

    sequences: list[np.ndarray]
    gaps: list[np.ndarray] | None
    text: torch.Tensor | None
    has_id: torch.Tensor
    n_items: int
    val_prefixes: list[np.ndarray]
    val_gaps: list[np.ndarray] | None
    val_targets: np.ndarray
    val_seen: list[np.ndarray]
    tuner: Any = None  # a FineTuner with text="finetune": sets ``text`` as training goes
    val_users: np.ndarray | None = None
    profiles: torch.Tensor | None = None


@dataclass
class Settings:
    """The checked training settings of one fit (from the estimator's parameters)."""

    max_history: int
    batch_size: int
    lr: float
    weight_decay: float
    id_dropout: float
    request_rate: float
    full_softmax_max_items: int
    n_negatives: int
    max_epochs: int
    patience: int
    encoder_lr: float = 0.0
    average: float = 0.0
    average_epochs: int = 0
    profile_dropout: float = 0.0


def _item_vectors(net: Towers, data: TrainData, ids: torch.Tensor | None,
                  keep: torch.Tensor) -> torch.Tensor:
    """g for ``ids`` (all items when None) with the id parts kept where ``keep``."""
    if ids is None:
        return net.item(torch.arange(data.n_items), data.text, keep)
    text = data.text[ids] if data.text is not None else None
    return net.item(ids, text, keep[ids])


def _training_rows(data: TrainData, users: np.ndarray, s: Settings, rng: np.random.Generator
                   ) -> tuple[Packed, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Packed inputs, targets (b, slots) with -1 where none, request ids and mask (the
    rows' profiles are ``data.profiles[users]``)."""
    W = s.max_history
    prefixes: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    gaps: list[np.ndarray] | None = [] if data.gaps is not None else None
    for u in users:
        seq = data.sequences[u]
        start = max(0, len(seq) - (W + 1))
        prefixes.append(seq[start:-1])
        targets.append(seq[start:])
        if gaps is not None and data.gaps is not None:
            gaps.append(data.gaps[u][start:len(seq) - 1])
    packed = pack(prefixes, gaps)
    slots = packed.items.shape[1]
    target = np.full((len(users), slots), -1, dtype=np.int64)
    for r, t in enumerate(targets):
        target[r, slots - len(t):] = t
    request = has = None
    if data.text is not None and s.request_rate > 0:
        has_np = rng.random(len(users)) < s.request_rate
        if has_np.any():
            last = np.array([t[-1] for t in targets], dtype=np.int64)
            target = np.concatenate([target, np.where(has_np, last, -1)[:, None]], axis=1)
            request = torch.from_numpy(last)
            has = torch.from_numpy(has_np)
    return packed, torch.from_numpy(target), request, has


def _loss(net: Towers, data: TrainData, s: Settings, packed: Packed, target: torch.Tensor,
          request: torch.Tensor | None, has: torch.Tensor | None,
          sample_q: torch.Tensor | None, profile: torch.Tensor | None = None) -> torch.Tensor:
    keep = data.has_id.float()
    if s.id_dropout > 0:
        keep = keep * (torch.rand(data.n_items) >= s.id_dropout).float()
    request_text = data.text[request] if request is not None and data.text is not None else None
    rows = target >= 0
    if sample_q is None:
        G = _item_vectors(net, data, None, keep)
        out = user_outputs(net, G, packed, request_text, has, profile)[rows]
        return F.cross_entropy(out @ G.T, target[rows])
    # Sampled softmax: only the items in the batch and the sampled negatives are built.
    negatives = torch.multinomial(sample_q, s.n_negatives, replacement=True)
    needed = torch.unique(torch.cat([packed.items.reshape(-1), target[rows], negatives]))
    G_needed = _item_vectors(net, data, needed, keep)
    G = torch.zeros(data.n_items, G_needed.shape[1], dtype=G_needed.dtype)
    G = G.index_copy(0, needed, G_needed)
    out = user_outputs(net, G, packed, request_text, has, profile)[rows]
    positives = target[rows]
    log_q = torch.log(sample_q * s.n_negatives)
    pos = (out * G[positives]).sum(1) - log_q[positives]
    neg = out @ G[negatives].T - log_q[negatives]
    neg = neg.masked_fill(negatives.unsqueeze(0) == positives.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(positives), dtype=torch.int64))


def validation_ndcg(net: Towers, data: TrainData, batch_size: int = 512) -> float:
    """Mean ndcg@10 of each validation user's held-out item, ranked against every item
    not in the user's (training) history."""
    if len(data.val_targets) == 0:
        return float("nan")
    was_training = net.training
    net.eval()
    total = 0.0
    with torch.inference_mode():
        G = _item_vectors(net, data, None, data.has_id.float())
        for start in range(0, len(data.val_targets), batch_size):
            stop = min(start + batch_size, len(data.val_targets))
            W = net.user.max_history
            gaps = [g[-W:] for g in data.val_gaps[start:stop]] if data.val_gaps is not None else None
            packed = pack([p[-W:] for p in data.val_prefixes[start:stop]], gaps)
            profile = None
            if data.profiles is not None and data.val_users is not None:
                profile = data.profiles[torch.from_numpy(data.val_users[start:stop])]
            scores = interest(net, G, packed, None, None, profile) @ G.T
            for r in range(stop - start):
                seen = data.val_seen[start + r]
                scores[r, torch.from_numpy(seen)] = float("-inf")
            targets = torch.from_numpy(data.val_targets[start:stop])
            target_scores = scores.gather(1, targets.unsqueeze(1))
            rank = (scores > target_scores).sum(1)
            gain = torch.where(rank < NDCG_K, 1.0 / torch.log2(rank.double() + 2.0),
                               torch.zeros((), dtype=torch.float64))
            total += float(gain.sum())
    net.train(was_training)
    return total / len(data.val_targets)


class WeightAverage:
    """An exponential moving average of a module's floating-point weights, updated after
    every optimizer step with decay min(``decay``, (1 + t) / (10 + t)) at step t (so the
    first steps do not leave the random initial weights in the average for long)."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net: torch.nn.Module) -> None:
        d = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        self.steps += 1
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.is_floating_point():
                    self.state[k].lerp_(v, 1.0 - d)
                else:
                    self.state[k].copy_(v)

    @contextlib.contextmanager
    def applied(self, net: torch.nn.Module) -> Iterator[None]:
        """Run the block with the averaged weights in ``net``, then restore its own."""
        own = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.state)
        try:
            yield
        finally:
            net.load_state_dict(own)


class Plateau:
    """When early stopping may stop: once the mean held-out score of the latest ``span``
    epochs has not risen for ``patience`` epochs. The held-out slice is small
    (MovieLens-100K: one item of ~280 users, a standard error near 0.015 on an ndcg@10
    of 0.07–0.12), so one epoch's score can spike early and hold the best for
    ``patience`` epochs while the curve still climbs: stopping on the single best,
    seed 4's validation towers stopped at epoch 14 (best 4, 0.075) and got blend weight
    0.25 (warm ndcg@10 0.2741); on the mean they ran to epoch 52 (0.097; 0.2798).
    bench/RESULTS.md, "Eighteenth session"."""

    def __init__(self, span: int, patience: int) -> None:
        self.patience = patience
        self.recent: deque[float] = deque(maxlen=span)
        self.best, self.stale = -math.inf, 0

    def update(self, value: float) -> None:
        """Record one epoch's held-out score."""
        self.recent.append(value)
        smoothed = sum(self.recent) / len(self.recent)
        if smoothed > self.best:
            self.best, self.stale = smoothed, 0
        else:
            self.stale += 1

    def reached(self) -> bool:
        """Whether training may stop here."""
        return self.stale >= self.patience

    def restart(self) -> None:
        """Forget the curve (a new phase of training)."""
        self.recent.clear()
        self.best, self.stale = -math.inf, 0


class EpochWindow:
    """The weights of the epochs around the best so far: up to ``radius`` epochs before
    it, the best, and up to ``radius`` after it (at most 3·radius + 1 copies are held:
    the ``radius`` latest epochs besides those)."""

    def __init__(self, radius: int) -> None:
        self.radius = radius
        self.recent: deque[dict[str, torch.Tensor]] = deque(maxlen=radius)
        self.before: list[dict[str, torch.Tensor]] = []
        self.best: dict[str, torch.Tensor] | None = None
        self.after: list[dict[str, torch.Tensor]] = []

    def add(self, state: dict[str, torch.Tensor], improved: bool) -> dict[str, torch.Tensor]:
        """Record one epoch's weights (copied; the copy is returned)."""
        snapshot = {k: v.detach().clone() for k, v in state.items()}
        if improved:
            self.before, self.best, self.after = list(self.recent), snapshot, []
        elif self.best is not None and len(self.after) < self.radius:
            self.after.append(snapshot)
        self.recent.append(snapshot)
        return snapshot

    def mean(self) -> tuple[dict[str, torch.Tensor], int] | None:
        """(the mean of the epochs kept around the best, how many), or None before any
        best; floating weights are averaged in float64 (others are the best epoch's)."""
        if self.best is None:
            return None
        states = self.before + [self.best] + self.after
        return {k: (torch.stack([st[k].double() for st in states]).mean(0).to(v.dtype)
                    if v.is_floating_point() else v.clone())
                for k, v in self.best.items()}, len(states)


def train(net: Towers, data: TrainData, s: Settings, rng: np.random.Generator, *,
          show_progress: bool, callback: Callable[[int, dict[str, float]], Any] | None
          ) -> tuple[list[dict[str, float]], int, float]:
    """Run the loop; leaves ``net`` at the best validation epoch (of the fine-tuning
    phase when there is one; the last without validation), with the averaged weights
    when ``s.average`` > 0, or at the mean of the epochs around it (``s.average_epochs``),
    in eval mode. Returns one record per epoch, how many epochs' weights the kept ones
    average (1: the best epoch alone) and the kept weights' validation ndcg (nan
    without validation)."""
    tuner = data.tuner
    head_params = [p for n, p in net.named_parameters() if n.startswith("text_head.")]
    towers_params = [p for n, p in net.named_parameters() if not n.startswith("text_head.")]
    optimizer = torch.optim.AdamW(towers_params, lr=s.lr, weight_decay=s.weight_decay)
    tuning = False
    if tuner is not None:
        data.text = tuner.refresh()
    trainable = np.array([u for u, seq in enumerate(data.sequences) if len(seq) > 0], dtype=np.int64)
    sample_q = None
    if data.n_items > s.full_softmax_max_items:
        counts = np.bincount(np.concatenate([data.sequences[u] for u in trainable]),
                             minlength=data.n_items).astype(np.float64)
        q = (counts + 1.0) ** 0.75
        sample_q = torch.from_numpy(q / q.sum())
    validate = len(data.val_targets) > 0
    average = WeightAverage(net, s.average) if s.average > 0 else None
    window = EpochWindow(s.average_epochs) if validate and s.average_epochs > 0 else None
    best, best_state, records = -math.inf, None, []
    plateau = Plateau(STOP_SPAN, s.patience)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=s.max_epochs, desc="towers", unit="epoch")
    start_time = time.perf_counter()
    try:
        for epoch in range(s.max_epochs):
            net.train()
            order = rng.permutation(trainable)
            total, batches = 0.0, 0
            for b in range(0, len(order), s.batch_size):
                batch = order[b:b + s.batch_size]
                packed, target, request, has = _training_rows(data, batch, s, rng)
                if tuning:
                    data.text = tuner.step_text(target[target >= 0].numpy(), rng)
                profile = None
                if data.profiles is not None:
                    profile = data.profiles[torch.from_numpy(batch)]
                    if s.profile_dropout > 0:  # drawn only with profiles: other fits are unchanged
                        kept = rng.random(len(batch)) >= s.profile_dropout
                        profile = profile * torch.from_numpy(kept).unsqueeze(1)
                loss = _loss(net, data, s, packed, target, request, has, sample_q, profile)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if average is not None:
                    average.update(net)
                total += float(loss.detach())
                batches += 1
            if tuning:
                data.text = tuner.refresh()
            value = validation_ndcg(net, data) if validate and average is None else float("nan")
            if validate and average is not None:
                with average.applied(net):  # the averaged weights are the ones validated and kept
                    if tuning:
                        data.text = tuner.refresh()
                    value = validation_ndcg(net, data)
                if tuning:
                    data.text = tuner.refresh()
            record = {"epoch": epoch, "loss": total / max(batches, 1), "validation_ndcg": value,
                      "elapsed": time.perf_counter() - start_time, "tuning": float(tuning)}
            records.append(record)
            improved = validate and record["validation_ndcg"] > best
            state = average.state if average is not None else net.state_dict()
            snapshot = window.add(state, improved) if window is not None else None
            if improved:
                best = record["validation_ndcg"]
                best_state = snapshot if snapshot is not None else {
                    k: v.detach().clone() for k, v in state.items()}
            if validate:
                plateau.update(record["validation_ndcg"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}",
                                ndcg=f"{record['validation_ndcg']:.4f}")
            stop = callback(epoch, dict(record)) if callback is not None else None
            if stop is True:
                break
            if tuner is not None and not tuning and (
                    (validate and plateau.reached()) or 2 * (epoch + 1) >= s.max_epochs):
                # Second phase: the top layers of the encoder train too, from the best weights.
                tuning = True
                plateau.restart()
                if best_state is not None:
                    net.load_state_dict(best_state)
                best = -math.inf  # keep the best fine-tuned epoch
                for group in optimizer.param_groups:  # the towers already fit: small steps
                    group["lr"] = s.lr * TUNING_TOWERS_LR_SCALE
                optimizer.add_param_group({"params": head_params, "lr": s.encoder_lr,
                                           "weight_decay": s.weight_decay})
                data.text = tuner.refresh()
                if average is not None:  # average the fine-tuned weights only
                    average = WeightAverage(net, s.average)
                if window is not None:
                    window = EpochWindow(s.average_epochs)
            elif validate and plateau.reached():
                break
    finally:
        if bar is not None:
            bar.close()
    if best_state is None and average is not None:  # no validation: the last average
        best_state = average.state
    averaged = 1
    mean = window.mean() if window is not None else None
    if mean is not None:
        best_state, averaged = mean
        net.load_state_dict(best_state)
        if tuner is not None:
            data.text = tuner.refresh()
        best = validation_ndcg(net, data)  # what is kept is what is reported
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    if tuner is not None:
        data.text = tuner.refresh()
    return records, averaged, (best if validate and math.isfinite(best) else float("nan"))
