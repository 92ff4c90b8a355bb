"""Transformer building blocks shared by the vision, text and decoder towers.

Parameter names follow the modules CONCH was trained with (``nn.MultiheadAttention``'s
``in_proj_weight``/``out_proj``, open_clip's ``ln_1``/``mlp.c_fc``, timm's ``qkv``/``fc1``) so that
the official state dict loads unchanged; the arithmetic runs through
:func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, L, heads * d]`` -> ``[B, heads, L, d]``."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``[B, heads, L, d]`` -> ``[B, L, heads * d]``."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention with ``nn.MultiheadAttention``'s parameter layout.

    Parameters
    ----------
    width : int
        Query (and output) width.
    heads : int
        Number of attention heads.
    kv_width : int, optional
        Width of keys and values when it differs from ``width``; the projections are then stored
        separately as ``q_proj_weight``, ``k_proj_weight`` and ``v_proj_weight``, as PyTorch does.
    """

    def __init__(self, width: int, heads: int, kv_width: int | None = None) -> None:
        super().__init__()
        kv_width = width if kv_width is None else kv_width
        self.heads = heads
        self.separate_kv = kv_width != width
        if self.separate_kv:
            self.q_proj_weight = nn.Parameter(torch.empty(width, width))
            self.k_proj_weight = nn.Parameter(torch.empty(width, kv_width))
            self.v_proj_weight = nn.Parameter(torch.empty(width, kv_width))
        else:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def _projections(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.separate_kv:
            return self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return self.in_proj_weight.chunk(3)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``query [B, Lq, W]`` to ``key``/``value [B, Lk, Wkv]``.

        ``attn_mask`` is additive (``-inf`` blocks), broadcastable to ``[B, heads, Lq, Lk]``.
        """
        w_q, w_k, w_v = self._projections()
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        if query is key is value and not self.separate_kv:
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(query, w_q, b_q)
            k = F.linear(key, w_k, b_k)
            v = F.linear(value, w_v, b_v)
        out = F.scaled_dot_product_attention(
            split_heads(q, self.heads),
            split_heads(k, self.heads),
            split_heads(v, self.heads),
            attn_mask=attn_mask,
        )
        return self.out_proj(merge_heads(out))


class Mlp(nn.Module):
    """open_clip's MLP: ``c_fc`` -> GELU -> ``c_proj``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block of the text tower and the decoder (open_clip layout).

    With ``cross_attention=True`` the block attends from the text to a second sequence (the image
    tokens), which gets its own layer norm ``ln_1_kv``.
    """

    def __init__(
        self, width: int, heads: int, mlp_ratio: float = 4.0, cross_attention: bool = False
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        if cross_attention:
            self.ln_1_kv = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = self.ln_1(x)
        kv = q if context is None else self.ln_1_kv(context)
        x = x + self.attn(q, kv, kv, attn_mask=attn_mask)
        return x + self.mlp(self.ln_2(x))


class AttentionalPooler(nn.Module):
    """Learned queries attending to the image tokens (CoCa's attentional pooling).

    Parameters
    ----------
    width : int
        Width of the queries and of the output.
    context_width : int
        Width of the image tokens.
    heads : int
        Attention heads.
    n_queries : int
        Number of learned queries (output tokens).
    """

    def __init__(self, width: int, context_width: int, heads: int, n_queries: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.empty(n_queries, width))
        self.attn = MultiheadAttention(width, heads, kv_width=context_width)
        self.ln_q = nn.LayerNorm(width)
        self.ln_k = nn.LayerNorm(context_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, L, context_width]`` -> ``[B, n_queries, width]``."""
        kv = self.ln_k(tokens)
        q = self.ln_q(self.query).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.attn(q, kv, kv)


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """Additive causal mask ``[length, length]``: ``-inf`` above the diagonal."""
    mask = torch.full((length, length), float("-inf"), device=device)
    return mask.triu_(1)
