"""An unpadded ("packed") forward pass for BERT-family encoders, on the HF model's weights.

A padded batch spends its linear layers, layer norms and activations on pad tokens
too. Here the batch's real tokens are packed into one ``(total_tokens, hidden)``
matrix, so the feed-forward block, the attention output projection and the layer
norms run on real tokens only. Attention itself is one masked
``scaled_dot_product_attention`` call on a padded view (many small per-length calls
measured slower on CPU); query, key and value are one fused linear layer (weights
concatenated once, at construction), and residual sums accumulate into the GEMM's
output instead of going through temporaries.

The maths is BERT's (post-norm encoder, absolute positions, exact GELU):

    x = LayerNorm(word[ids] + position[0..n-1] + token_type[0])
    for each layer:
        q, k, v = split(x W_qkv + b_qkv)
        x = LayerNorm(x + softmax(q k^T / sqrt(d)) v W_o + b_o)
        x = LayerNorm(x + GELU(x W_i + b_i) W_2 + b_2)

:func:`packed_encoder_for` returns None for models it does not handle, and the
caller then keeps the plain HF forward.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

_SUPPORTED_TYPES = ("bert",)
_SUPPORTED_ACTIVATIONS = ("gelu",)


class PackedBertEncoder:
    """The last hidden states of a HF ``BertModel``, computed on unpadded tokens.

    Reuses the model's own parameters (the fused QKV weight is the only new tensor),
    so its memory cost is one extra copy of the attention input projections.
    """

    def __init__(self, model: Any) -> None:
        import torch

        self._torch = torch
        config = model.config
        self.num_heads = int(config.num_attention_heads)
        self.hidden_size = int(config.hidden_size)
        self.head_dim = self.hidden_size // self.num_heads
        embeddings = model.embeddings
        self.word = embeddings.word_embeddings.weight
        self.position = embeddings.position_embeddings.weight
        self.token_type0 = embeddings.token_type_embeddings.weight[0]
        self.embedding_norm = embeddings.LayerNorm
        self.layers = []
        for layer in model.encoder.layer:
            attention = layer.attention.self
            qkv_weight = torch.cat([attention.query.weight, attention.key.weight,
                                    attention.value.weight]).contiguous()
            qkv_bias = torch.cat([attention.query.bias, attention.key.bias,
                                  attention.value.bias]).contiguous()
            self.layers.append((qkv_weight, qkv_bias, layer.attention.output.dense,
                                layer.attention.output.LayerNorm, layer.intermediate.dense,
                                layer.output.dense, layer.output.LayerNorm))

    def __call__(self, token_ids: Any, lengths: np.ndarray, n_layers: int | None = None) -> Any:
        """Hidden states ``(sum(lengths), hidden)`` for texts packed one after another.

        ``token_ids`` is a 1-D int64 tensor of the concatenated token ids and
        ``lengths`` the token count of each text. ``n_layers``: stop after the first
        ``n_layers`` layers (None: all; 0: the embeddings' output).
        """
        torch = self._torch
        functional = torch.nn.functional
        lengths = np.asarray(lengths, dtype=np.int64)
        device = token_ids.device
        positions = torch.from_numpy(_positions(lengths)).to(device)
        x = self.word[token_ids] + self.position[positions] + self.token_type0
        x = self.embedding_norm(x)
        attention = _PaddedAttention(torch, lengths, device, self.num_heads, self.head_dim)
        gelu_ = torch.ops.aten.gelu_
        layers = self.layers if n_layers is None else self.layers[:n_layers]
        for qkv_weight, qkv_bias, out_dense, out_norm, inner_dense, inner_out, inner_norm in layers:
            qkv = functional.linear(attention.pad(x), qkv_weight, qkv_bias)
            context = attention(qkv)
            # x + (c W^T + b) as one GEMM accumulating into x: no bias copy, no temporary
            x = out_norm(x.add_(out_dense.bias).addmm_(context, out_dense.weight.t()))
            inner = gelu_(functional.linear(x, inner_dense.weight, inner_dense.bias))
            x = inner_norm(x.add_(inner_out.bias).addmm_(inner, inner_out.weight.t()))
        return x


class _PaddedAttention:
    """Self-attention of packed texts through one padded, masked attention call.

    Only the attention input is padded: ``pad`` places each text's rows in a
    ``(texts * longest, hidden)`` buffer whose pad rows stay zero, the fused QKV
    projection runs on that buffer, and the attention output is gathered back to the
    real rows. With texts of one length there is nothing to pad and no mask.
    """

    def __init__(self, torch: Any, lengths: np.ndarray, device: Any, num_heads: int,
                 head_dim: int) -> None:
        self._torch = torch
        self.texts = int(lengths.size)
        self.longest = int(lengths.max())
        self.heads, self.head_dim = num_heads, head_dim
        self.uniform = bool((lengths == self.longest).all())
        self.rows: Any = None
        self.mask: Any = None
        self.buffer: Any = None
        if not self.uniform:
            rows = _positions(lengths) + np.repeat(np.arange(lengths.size) * self.longest, lengths)
            self.rows = torch.from_numpy(rows).to(device)
            keep = np.arange(self.longest)[None, :] < lengths[:, None]
            self.mask = torch.from_numpy(keep).to(device).view(self.texts, 1, 1, self.longest)

    def pad(self, x: Any) -> Any:
        if self.uniform:
            return x
        if self.buffer is None:
            self.buffer = x.new_zeros(self.texts * self.longest, x.shape[1])
        return self.buffer.index_copy_(0, self.rows, x)

    def __call__(self, qkv: Any) -> Any:
        block = qkv.view(self.texts, self.longest, 3, self.heads, self.head_dim)
        q, k, v = (block[:, :, i].transpose(1, 2) for i in range(3))
        out = self._torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        # out is (texts, heads, longest, head_dim) laid out as (texts, longest, heads, head_dim)
        out = out.transpose(1, 2).reshape(self.texts * self.longest, self.heads * self.head_dim)
        return out if self.uniform else out.index_select(0, self.rows)


def _positions(lengths: np.ndarray) -> np.ndarray:
    """0..n-1 for each text, concatenated."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - offsets


def packed_encoder_for(model: Any) -> PackedBertEncoder | None:
    """A :class:`PackedBertEncoder` over ``model``, or None if ``model`` is not one it handles.

    Handled: a transformers ``BertModel`` (model_type ``"bert"``, absolute positions,
    exact GELU, encoder only). Anything else — other architectures, subclasses with
    extra modules, decoders — gets None, and the caller uses the model's own forward.
    """
    config = getattr(model, "config", None)
    if config is None or type(model).__name__ != "BertModel":
        return None
    if getattr(config, "model_type", None) not in _SUPPORTED_TYPES:
        return None
    if getattr(config, "hidden_act", None) not in _SUPPORTED_ACTIVATIONS:
        return None
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return None
    if config.hidden_size % config.num_attention_heads != 0:
        return None
    try:
        return PackedBertEncoder(model)
    except AttributeError:
        return None


def packed_token_ids(token_ids: Any, batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The token ids of texts ``batch`` (with ``lengths`` tokens each) concatenated, int64."""
    total = int(np.sum(lengths))
    return np.fromiter(itertools.chain.from_iterable(token_ids[i] for i in batch),
                       dtype=np.int64, count=total)
