"""CONCH's text encoder and multimodal (captioning) decoder.

The text side of CoCa (Yu et al., 2022) as CONCH uses it (Lu et al., Nature Medicine 2024): a
causal transformer over byte-level BPE tokens with a learned CLS embedding appended after the
last token; the CLS output, layer-normed and projected, is the contrastive text embedding, and the
other outputs feed the decoder, which alternates causal self-attention with cross-attention to the
image's caption tokens and projects onto the vocabulary. Parameter names follow open_clip's
``TextTransformer`` and ``MultimodalTransformer``.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_conch.model.config import CocaConfig, MultimodalConfig, TextConfig
from napari_conch.model.layers import ResidualAttentionBlock, causal_mask


class Transformer(nn.Module):
    """A stack of residual attention blocks (``resblocks``)."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


class TextTransformer(nn.Module):
    """The text encoder.

    Parameters
    ----------
    cfg : TextConfig
        Tower shape; ``context_length`` counts the positions including the CLS token.
    embed_dim : int
        Width of the contrastive embedding.
    """

    def __init__(self, cfg: TextConfig, embed_dim: int) -> None:
        super().__init__()
        self.pad_id = cfg.pad_id
        self.context_length = cfg.context_length
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.cls_emb = nn.Parameter(torch.empty(cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio)
        self.ln_final = nn.LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, embed_dim))

    def cls_attention_mask(self, text: torch.Tensor) -> torch.Tensor:
        """Causal mask plus CONCH's CLS-row padding mask, ``[B, 1, L + 1, L + 1]``.

        The CLS query (last row) may attend to key ``j`` when ``j == 0`` or token ``j - 1`` is not
        padding. The shift by one is how CONCH was trained (its mask is padded on the left), so we
        keep it: it makes the CLS token see the first padding position and not itself.
        """
        batch, length = text.shape
        mask = causal_mask(length + 1, device=text.device).repeat(batch, 1, 1)
        keep = torch.cat([torch.ones_like(text[:, :1], dtype=torch.bool), text != self.pad_id], 1)
        mask[:, -1, :] += torch.zeros_like(keep, dtype=mask.dtype).masked_fill(~keep, float("-inf"))
        return mask.unsqueeze(1)

    def forward(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode token ids ``[B, L]`` (``L < context_length``; the CLS token takes one position).

        Returns
        -------
        pooled : torch.Tensor
            ``[B, embed_dim]``: the CLS output, layer-normed and projected (not normalised).
        tokens : torch.Tensor
            ``[B, L, width]``: the per-token outputs the decoder reads, before the final norm.
        """
        x = self.token_embedding(text)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], 1, -1)], dim=1)
        x = x + self.positional_embedding[: x.shape[1]]
        x = self.transformer(x, attn_mask=self.cls_attention_mask(text))
        pooled = self.ln_final(x[:, -1]) @ self.text_projection
        return pooled, x[:, :-1]


class MultimodalDecoder(nn.Module):
    """The captioning decoder: text tokens attend causally to themselves and to image tokens."""

    def __init__(self, cfg: MultimodalConfig) -> None:
        super().__init__()
        self.context_length = cfg.context_length
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers)
        )
        self.cross_attn = nn.ModuleList(
            ResidualAttentionBlock(cfg.width, cfg.heads, cfg.mlp_ratio, cross_attention=True)
            for _ in range(cfg.layers)
        )
        self.ln_final = nn.LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.vocab_size))

    def forward(self, image_tokens: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
        """``[B, Nq, W]`` image tokens and ``[B, L, W]`` text tokens -> logits ``[B, L, vocab]``."""
        mask = causal_mask(text_tokens.shape[1], device=text_tokens.device)
        x = text_tokens
        for self_block, cross_block in zip(self.resblocks, self.cross_attn, strict=True):
            x = self_block(x, attn_mask=mask)
            x = cross_block(x, context=image_tokens)
        return self.ln_final(x) @ self.text_projection


def build_text_tower(cfg: CocaConfig) -> TextTransformer:
    """The text encoder of ``cfg``."""
    return TextTransformer(cfg.text, cfg.embed_dim)
