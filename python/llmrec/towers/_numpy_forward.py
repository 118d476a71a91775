"""The user tower for one history in numpy float32: the serving path of a single request.

For one history of ≤ 50 items the transformer is a few MFLOP; what costs is the
per-operation overhead, about twice as high in torch (module calls, dispatch) as in
numpy. This computes exactly the forward of :class:`llmrec.towers.model.UserTower` in
eval mode (same weights, float32), from a snapshot of the state dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import erf

_LN_EPS = 1e-5
_SQRT_HALF = np.float32(np.sqrt(0.5))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + np.float32(_LN_EPS)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return np.float32(0.5) * x * (np.float32(1.0) + erf(x * _SQRT_HALF))


class NumpyUserTower:
    """f_u for one history from the weights of a fitted :class:`~llmrec.towers.model.Towers`."""

    def __init__(self, net: Any) -> None:
        p = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
        self.max_history = int(net.user.max_history)
        self.heads = net.user.blocks[0].heads
        self.bos = p["user.bos"]
        self.request_type = p["user.request_type"]
        profile = p.get("user.profile.weight")
        self.profile = None if profile is None else np.ascontiguousarray(profile.T)
        self.positions = p["user.positions.weight"]
        self.gaps = p.get("user.gaps.weight")
        self.norm = (p["user.norm.weight"], p["user.norm.bias"])
        self.blocks = []
        for b in range(len(net.user.blocks)):
            q = f"user.blocks.{b}."
            self.blocks.append({
                "norm1": (p[q + "norm1.weight"], p[q + "norm1.bias"]),
                "qkv": (np.ascontiguousarray(p[q + "qkv.weight"].T), p[q + "qkv.bias"]),
                "out": (np.ascontiguousarray(p[q + "out.weight"].T), p[q + "out.bias"]),
                "norm2": (p[q + "norm2.weight"], p[q + "norm2.bias"]),
                "ffn0": (np.ascontiguousarray(p[q + "ffn.0.weight"].T), p[q + "ffn.0.bias"]),
                "ffn2": (np.ascontiguousarray(p[q + "ffn.2.weight"].T), p[q + "ffn.2.bias"]),
            })
        self.text_mlp: tuple[np.ndarray, ...] | None = None
        if "item.text_mlp.0.weight" in p:
            self.text_mlp = (np.ascontiguousarray(p["item.text_mlp.0.weight"].T),
                             p["item.text_mlp.0.bias"],
                             np.ascontiguousarray(p["item.text_mlp.2.weight"].T),
                             p["item.text_mlp.2.bias"])

    def __call__(self, tokens: np.ndarray, gaps: np.ndarray | None,
                 request_text: np.ndarray | None, profile: np.ndarray | None = None) -> np.ndarray:
        """tokens (m, dim): item vectors of the latest m ≤ max_history items; gaps (m,)
        buckets or None; request_text and profile (text_dim,) or None → f_u (dim,)
        float32 (the profile is read by a tower fitted with profiles)."""
        m = tokens.shape[0]
        x = np.empty((m + 1, tokens.shape[1]), dtype=np.float32)
        x[0] = self.bos
        if self.profile is not None and profile is not None:
            x[0] += profile @ self.profile
        x[1:] = tokens
        x += self.positions[np.minimum(np.arange(m, -1, -1), self.max_history)]
        if self.gaps is not None:
            x[0] += self.gaps[0]
            x[1:] += self.gaps[gaps] if gaps is not None else self.gaps[0]
        if request_text is not None:
            assert self.text_mlp is not None  # requests are text: the tower has its text MLP
            W1, b1, W2, b2 = self.text_mlp
            req = _gelu(request_text @ W1 + b1) @ W2 + b2 + self.request_type
            x = np.vstack([x, req[None, :]])
        s, d = x.shape
        h, dh = self.heads, d // self.heads
        future = np.triu(np.ones((s, s), dtype=bool), 1)
        scale = np.float32(1.0 / np.sqrt(dh))
        for n, blk in enumerate(self.blocks):
            qkv = _layer_norm(x, *blk["norm1"]) @ blk["qkv"][0] + blk["qkv"][1]
            q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(s, h, dh).transpose(1, 0, 2) for i in range(3))
            if n == len(self.blocks) - 1:  # only the last token's output is needed now
                q, x, future, s = q[:, -1:], x[-1:], future[-1:], 1
            logits = (q @ k.transpose(0, 2, 1)) * scale
            logits[:, future] = -np.inf
            logits -= logits.max(-1, keepdims=True)
            w = np.exp(logits)
            w /= w.sum(-1, keepdims=True)
            a = (w @ v).transpose(1, 0, 2).reshape(s, d)
            x = x + (a @ blk["out"][0] + blk["out"][1])
            f = _gelu(_layer_norm(x, *blk["norm2"]) @ blk["ffn0"][0] + blk["ffn0"][1])
            x = x + (f @ blk["ffn2"][0] + blk["ffn2"][1])
        return _layer_norm(x[-1], *self.norm)
