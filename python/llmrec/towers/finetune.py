"""The item tower's fine-tuned text path (``SequenceTowers(text="finetune")``).

The encoder is split in two: its lower layers stay frozen and run once per text (their
token states are kept, packed, for the whole fit), and a trainable copy of its top
``finetune_layers`` BERT layers plus its pooling (:class:`TextHead`) turns those states
into the text vector x_i that the item tower's MLP reads. At initialisation the head
reproduces the encoder's own vectors exactly; training moves it with the towers.

A step of the softmax objective needs x for every item, but a pass of the head over
the whole catalogue with gradients costs as much as encoding it. So (see
:class:`FineTuner`) x is recomputed for every item once per epoch without gradients,
and in each step only the text vectors of up to :data:`GRAD_ITEMS` items drawn from
the step's targets are recomputed with gradients; the others keep the epoch's values
(they move little within an epoch at the encoder's small learning rate).

Only BERT-family encoders (what :func:`llmrec.text.packed.packed_encoder_for` handles,
e.g. the default MiniLM) can be fine-tuned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

GRAD_ITEMS = 128        # items per step whose text vectors carry gradient
HEAD_CHUNK_TOKENS = 8192  # padded tokens per chunk when the head runs over many texts
POOLINGS = ("mean", "cls", "last")


class _BertLayer(nn.Module):
    """One post-norm BERT layer: x = LN(x + Attn(x)); x = LN(x + W₂ GELU(W₁ x))."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm1 = nn.LayerNorm(hidden, eps=eps)
        self.inner = nn.Linear(hidden, intermediate)
        self.outer = nn.Linear(intermediate, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])
        x = self.norm1(x + self.out(a.transpose(1, 2).reshape(b, n, d)))
        return self.norm2(x + self.outer(F.gelu(self.inner(x))))


class TextHead(nn.Module):
    """The encoder's top layers and pooling, trainable: token states → text vectors."""

    def __init__(self, *, layers: int, hidden: int, heads: int, intermediate: int, eps: float,
                 pooling: str, normalize: bool) -> None:
        super().__init__()
        self.settings = {"layers": layers, "hidden": hidden, "heads": heads,
                         "intermediate": intermediate, "eps": eps, "pooling": pooling,
                         "normalize": normalize}
        self.blocks = nn.ModuleList(_BertLayer(hidden, heads, intermediate, eps)
                                    for _ in range(layers))
        self.pooling = pooling
        self.normalize = normalize
        self.hidden = hidden

    @classmethod
    def from_encoder(cls, encoder: Any, layers: int) -> TextHead:
        """A head holding float32 copies of ``encoder``'s top ``layers`` layers."""
        model = bert_model(encoder)
        config = model.config
        head = cls(layers=layers, hidden=int(config.hidden_size),
                   heads=int(config.num_attention_heads),
                   intermediate=int(config.intermediate_size), eps=float(config.layer_norm_eps),
                   pooling=encoder.pooling, normalize=bool(encoder.normalize))
        with torch.no_grad():
            for block, layer in zip(head.blocks, model.encoder.layer[-layers:]):
                assert isinstance(block, _BertLayer)
                attention = layer.attention.self
                block.qkv.weight.copy_(torch.cat([attention.query.weight, attention.key.weight,
                                                  attention.value.weight]))
                block.qkv.bias.copy_(torch.cat([attention.query.bias, attention.key.bias,
                                                attention.value.bias]))
                for mine, theirs in ((block.out, layer.attention.output.dense),
                                     (block.norm1, layer.attention.output.LayerNorm),
                                     (block.inner, layer.intermediate.dense),
                                     (block.outer, layer.output.dense),
                                     (block.norm2, layer.output.LayerNorm)):
                    mine.weight.copy_(theirs.weight)
                    mine.bias.copy_(theirs.bias)
        return head

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x (b, n, hidden) right-padded token states, valid (b, n) bool → (b, hidden)."""
        for block in self.blocks:
            x = block(x, valid)
        if self.pooling == "cls":
            pooled = x[:, 0]
        elif self.pooling == "last":
            pooled = x[torch.arange(x.shape[0]), valid.sum(1) - 1]
        else:
            w = valid.to(x.dtype).unsqueeze(-1)
            pooled = (x * w).sum(1) / w.sum(1).clamp(min=1.0)
        return F.normalize(pooled, p=2.0, dim=1) if self.normalize else pooled


def _packed_encoder(encoder: Any) -> Any:
    """The unpadded BERT forward of a :class:`~llmrec.TextEncoder` (its own on CPU), or a
    clear error for anything else."""
    from llmrec.text.packed import packed_encoder_for

    packed = getattr(encoder, "_packed", None)
    model = getattr(encoder, "_model", None)
    if packed is None and model is not None:
        packed = packed_encoder_for(model)
    if packed is None:
        raise ValueError("text='finetune' needs a llmrec.TextEncoder over a BERT-family model "
                         f"(such as the default MiniLM); got {type(encoder).__name__}")
    return packed


def bert_model(encoder: Any) -> Any:
    """The HF BertModel inside a :class:`~llmrec.TextEncoder`, or a clear error."""
    _packed_encoder(encoder)
    return encoder._model


def encoder_layers(encoder: Any) -> int:
    """Number of transformer layers of the encoder's model."""
    return len(bert_model(encoder).encoder.layer)


@dataclass
class TokenStates:
    """Token states of n texts, packed: ``states`` (tokens + 1, hidden) float32 whose last
    row is zero (what padding reads), ``offsets`` (n,) and ``lengths`` (n,) int64."""

    states: torch.Tensor
    offsets: np.ndarray
    lengths: np.ndarray

    def __len__(self) -> int:
        return int(self.lengths.size)

    def padded(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (b, longest, hidden), valid (b, longest)) of texts ``rows``."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        valid = np.arange(width)[None, :] < lengths[:, None]
        index = np.where(valid, self.offsets[rows][:, None] + np.arange(width)[None, :],
                         self.states.shape[0] - 1)
        return self.states[torch.from_numpy(index)], torch.from_numpy(valid)


def lower_states(encoder: Any, texts: list[str], kind: str, layers_below: int) -> TokenStates:
    """The token states of ``texts`` after the encoder's first ``layers_below`` layers,
    tokenized as :meth:`~llmrec.TextEncoder.encode` does (prefix, truncation)."""
    from llmrec.text.batching import plan_batches, token_lengths
    from llmrec.text.packed import packed_token_ids

    packed = _packed_encoder(encoder)
    model = encoder._model
    prefix = encoder.query_prefix if kind == "query" else encoder.document_prefix
    token_ids = encoder._tokenizer([prefix + t for t in texts], add_special_tokens=True,
                                   truncation=True, max_length=encoder.max_length, padding=False,
                                   return_attention_mask=False,
                                   return_token_type_ids=False)["input_ids"]
    lengths = token_lengths(token_ids)
    offsets = np.cumsum(lengths) - lengths
    hidden = int(model.config.hidden_size)
    states = torch.zeros(int(lengths.sum()) + 1, hidden, dtype=torch.float32)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for batch in plan_batches(lengths, 256, HEAD_CHUNK_TOKENS):
            ids = torch.from_numpy(packed_token_ids(token_ids, batch, lengths[batch]))
            out = packed(ids.to(device), lengths[batch], n_layers=layers_below).float().cpu()
            rows = np.concatenate([np.arange(offsets[i], offsets[i] + lengths[i]) for i in batch])
            states[torch.from_numpy(rows)] = out
    return TokenStates(states, offsets.astype(np.int64), lengths.astype(np.int64))


def head_vectors(head: TextHead, tokens: TokenStates, rows: np.ndarray | None = None
                 ) -> torch.Tensor:
    """The head's text vectors of texts ``rows`` (all when None), in that order, run in
    length-sorted chunks (little padding); gradients flow if enabled."""
    from llmrec.text.batching import plan_batches

    rows = np.arange(len(tokens)) if rows is None else np.asarray(rows, dtype=np.int64)
    parts, where = [], []
    for chunk in plan_batches(tokens.lengths[rows], 512, HEAD_CHUNK_TOKENS):
        x, valid = tokens.padded(rows[chunk])
        parts.append(head(x, valid))
        where.append(chunk)
    if not torch.is_grad_enabled():
        out = torch.empty(len(rows), head.hidden, dtype=torch.float32)
        for chunk, part in zip(where, parts):
            out[torch.from_numpy(chunk)] = part
        return out
    order = torch.from_numpy(np.argsort(np.concatenate(where), kind="stable"))
    return torch.cat(parts)[order]


class FineTuner:
    """The text vectors of the catalogue during training (see the module docstring)."""

    def __init__(self, head: TextHead, tokens: TokenStates) -> None:
        self.head = head
        self.tokens = tokens
        self.cache = torch.empty(0)

    def refresh(self) -> torch.Tensor:
        """Recompute every item's text vector without gradients; returns them."""
        with torch.no_grad():
            self.cache = head_vectors(self.head, self.tokens)
        return self.cache

    def step_text(self, targets: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Text vectors for one step: the epoch's, with up to GRAD_ITEMS of ``targets``'
        items (drawn in proportion to their count) recomputed with gradients."""
        if targets.size > GRAD_ITEMS:
            targets = rng.choice(targets, size=GRAD_ITEMS, replace=False)
        chosen = np.unique(targets)
        fresh = head_vectors(self.head, self.tokens, chosen)
        return self.cache.index_copy(0, torch.from_numpy(chosen), fresh)
