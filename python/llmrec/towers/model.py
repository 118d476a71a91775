"""The towers as torch modules: an item tower (id embedding + MLP over a text vector) and a
causal transformer user tower over a history of item vectors.

Sequence layout seen by :class:`UserTower` (one row per user, right-aligned)::

    [pad … pad] [BOS (+ profile)] [g(h_1) … g(h_m)] [REQ]?

Every token but the request carries a position embedding indexed by its distance from
the last history token (the last item is 0, BOS of a full window is ``max_history``),
so a row's positions do not depend on how much padding the batch needs. ``BOS`` is a
learned token always present: a user with no history still has one token to attend to
(its output is the learned "no history" interest vector), and in training its output
predicts the first item of the window. A user's profile (the text vector of a free
text about the user: age, occupation, tastes) is added to BOS through its own linear
map without bias, so every history token reads it and a user without a profile (a zero
vector) has BOS alone; the map exists only in models fitted with profiles. ``REQ`` is
an optional request: the request's text vector through the item text MLP (a request
reads as an imagined item) plus a learned type vector; the causal mask keeps it
invisible to the history tokens.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

N_GAP_BUCKETS = 41  # 0 = unknown / first item, 1..40 = 1 + floor(log2(1 + gap))


class ItemTower(nn.Module):
    """g_i = keep_i · E[i] + W₂ σ(W₁ x_i + b₁) + b₂.

    ``keep_i`` is 1 for items with a trained id embedding and 0 otherwise (items with no
    training interactions, items added after fit); during training it is also 0 with
    probability ``id_dropout``. Without text (``text_dim == 0``) only the id part exists;
    without ids (``n_id_rows == 0``) only the text part.
    """

    def __init__(self, *, n_id_rows: int, text_dim: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.n_id_rows = n_id_rows
        self.text_dim = text_dim
        self.id_embedding = nn.Embedding(n_id_rows, dim) if n_id_rows > 0 else None
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=dim ** -0.5)
        self.text_mlp = (nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
                         if text_dim > 0 else None)

    def forward(self, ids: torch.Tensor, text: torch.Tensor | None,
                keep: torch.Tensor | None) -> torch.Tensor:
        """ids (m,) int64, text (m, text_dim) or None, keep (m,) float 0/1 or None → (m, dim)."""
        out = None
        if self.text_mlp is not None:
            out = self.text_mlp(text)
        if self.id_embedding is not None:
            rows = self.id_embedding(ids.clamp(max=self.n_id_rows - 1))
            if keep is not None:
                rows = rows * keep.unsqueeze(-1)
            out = rows if out is None else out + rows
        assert out is not None
        return out

    def text_part(self, text: torch.Tensor) -> torch.Tensor:
        """The text MLP alone: the vector of an item known only by its text."""
        if self.text_mlp is None:
            raise ValueError("this tower has no text part (text=None)")
        return self.text_mlp(text)


class _Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        a = a.transpose(1, 2).reshape(b, s, d)
        x = x + F.dropout(self.out(a), p, self.training)
        return x + F.dropout(self.ffn(self.norm2(x)), p, self.training)


class UserTower(nn.Module):
    """A causal transformer over [BOS, item tokens…, REQ?]; returns every slot's output."""

    def __init__(self, *, dim: int, layers: int, heads: int, max_history: int, dropout: float,
                 use_gaps: bool, profile_dim: int = 0) -> None:
        super().__init__()
        self.max_history = max_history
        self.bos = nn.Parameter(torch.randn(dim) * dim ** -0.5)
        self.request_type = nn.Parameter(torch.randn(dim) * dim ** -0.5)
        self.positions = nn.Embedding(max_history + 1, dim)
        nn.init.normal_(self.positions.weight, std=dim ** -0.5)
        self.gaps = nn.Embedding(N_GAP_BUCKETS, dim) if use_gaps else None
        if self.gaps is not None:
            nn.init.zeros_(self.gaps.weight)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.dropout = dropout
        # Zero at first, like the gaps: training starts from the profile-free tower. Made
        # last and without drawing random numbers, so the other weights start as without it.
        self.profile = None
        if profile_dim:
            self.profile = nn.Linear(profile_dim, dim, bias=False, device="meta").to_empty(device="cpu")
            nn.init.zeros_(self.profile.weight)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor, gaps: torch.Tensor | None,
                request: torch.Tensor | None, has_request: torch.Tensor | None,
                profile: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (b, s, dim): item vectors, slot 0 of each row a placeholder for BOS and
        left padding before it; valid (b, s) bool marks BOS and items; gaps (b, s) int64
        buckets or None; request (b, dim) the request tokens' text part (or None),
        has_request (b,) bool; profile (b, profile_dim) text vectors (zero rows: none),
        read only by a tower with a profile map. Returns (b, s + [1 if request]) × dim
        outputs."""
        b, s, d = tokens.shape
        n_items = valid.sum(1, keepdim=True) - 1            # items per row, BOS excluded
        slot = torch.arange(s, device=tokens.device).unsqueeze(0)
        first = s - 1 - n_items                              # BOS slot per row
        is_bos = slot == first
        distance = (s - 1 - slot).clamp(0, self.max_history)
        if self.profile is not None and profile is not None:
            bos = (self.bos + self.profile(profile)).unsqueeze(1).expand(b, s, d)
        else:  # as before profiles existed: the same gradient sums, bit for bit
            bos = self.bos.expand(b, s, d)
        x = torch.where(is_bos.unsqueeze(-1), bos, tokens)
        x = x + self.positions(distance)
        if self.gaps is not None and gaps is not None:
            x = x + self.gaps(gaps)
        x = x * valid.unsqueeze(-1)
        if request is not None:
            assert has_request is not None
            req = (request + self.request_type).unsqueeze(1)
            x = torch.cat([x, req], dim=1)
            valid = torch.cat([valid, has_request.unsqueeze(1)], dim=1)
            s += 1
        x = F.dropout(x, self.dropout, self.training)
        causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        diagonal = torch.eye(s, dtype=torch.bool, device=x.device)
        # Padded keys are masked; a padded query keeps its own key so no row is all -inf.
        allowed = (causal & (valid.unsqueeze(1) | diagonal)).unsqueeze(1)
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)


class Towers(nn.Module):
    """Both towers; the score of user u and item i is f_u · g_i. ``text_head`` (with
    ``text="finetune"``): the encoder's fine-tuned top layers, which make the text
    vectors the item tower reads (:mod:`llmrec.towers.finetune`)."""

    def __init__(self, *, n_id_rows: int, text_dim: int, dim: int, hidden: int, layers: int,
                 heads: int, max_history: int, dropout: float, use_gaps: bool,
                 text_head: nn.Module | None = None, use_profiles: bool = False) -> None:
        super().__init__()
        self.text_head = text_head
        self.item = ItemTower(n_id_rows=n_id_rows, text_dim=text_dim, dim=dim, hidden=hidden)
        self.user = UserTower(dim=dim, layers=layers, heads=heads, max_history=max_history,
                              dropout=dropout, use_gaps=use_gaps,
                              profile_dim=text_dim if use_profiles else 0)
