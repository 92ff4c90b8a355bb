"""CONCH's image encoder: a ViT trunk with two attentional poolers.

Implements the vision side of CoCa (Yu et al., "CoCa: Contrastive Captioners are Image-Text
Foundation Models", 2022) as used by CONCH (Lu et al., "A visual-language foundation model for
computational pathology", Nature Medicine 2024): a ViT-B/16 (Dosovitskiy et al., 2021) whose
tokens feed one attentional pooler for the contrastive embedding (1 query, then layer norm and
projection) and one for the captioning decoder (256 queries). Parameter names follow timm's
``VisionTransformer`` under ``trunk.``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_conch.model.config import POOLER_HEADS, CocaConfig, VisionConfig
from napari_conch.model.layers import AttentionalPooler, merge_heads, split_heads

#: timm's ViT uses LayerNorm with this epsilon.
VIT_LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens, by a strided convolution."""

    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VitAttention(nn.Module):
    """timm-layout self-attention (``qkv``, ``proj``)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(
            split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)
        )
        return self.proj(merge_heads(out))


class VitMlp(nn.Module):
    """timm-layout MLP (``fc1``, GELU, ``fc2``)."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VitBlock(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, width: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=VIT_LN_EPS)
        self.attn = VitAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=VIT_LN_EPS)
        self.mlp = VitMlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT trunk returning every token (CLS first) after the final norm."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.grid_size = cfg.grid_size
        self.patch_size = cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.cls_token = nn.Parameter(torch.empty(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.grid_size**2 + 1, cfg.width))
        self.blocks = nn.ModuleList(
            VitBlock(cfg.width, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(cfg.width, eps=VIT_LN_EPS)

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """The position embedding for a ``grid_h x grid_w`` patch grid.

        At another grid than the configured one, the patch positions are resampled bicubically
        (antialiased, as timm does for dynamic image sizes); the CLS position is kept.
        """
        if (grid_h, grid_w) == (self.grid_size, self.grid_size):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        width = patch_pos.shape[-1]
        grid = patch_pos.float().reshape(1, self.grid_size, self.grid_size, width)
        grid = F.interpolate(
            grid.permute(0, 3, 1, 2), size=(grid_h, grid_w), mode="bicubic", antialias=True
        )
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, width)
        return torch.cat([cls_pos, patch_pos.to(cls_pos.dtype)], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, 1 + (H/p)(W/p), width]``."""
        grid_h, grid_w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.position_embedding(grid_h, grid_w)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class VisualModel(nn.Module):
    """Trunk + contrastive pooler/projection + captioning pooler (CONCH's ``visual``)."""

    def __init__(self, cfg: CocaConfig) -> None:
        super().__init__()
        v = cfg.vision
        self.trunk = VisionTransformer(v)
        self.attn_pool_contrast = AttentionalPooler(
            cfg.embed_dim, v.width, POOLER_HEADS, v.n_queries_contrast
        )
        self.ln_contrast = nn.LayerNorm(cfg.embed_dim)
        self.proj_contrast = nn.Parameter(torch.empty(cfg.embed_dim, cfg.embed_dim))
        self.attn_pool_caption = AttentionalPooler(
            cfg.embed_dim_caption, v.width, POOLER_HEADS, v.n_queries_caption
        )
        self.ln_caption = nn.LayerNorm(cfg.embed_dim_caption)

    def pooled_unprojected(self, tokens: torch.Tensor) -> torch.Tensor:
        """Contrastive pooled features before the projection: ``[B, embed_dim]``."""
        return self.ln_contrast(self.attn_pool_contrast(tokens)[:, 0])

    def caption_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image tokens for the decoder: ``[B, n_queries_caption, embed_dim_caption]``."""
        return self.ln_caption(self.attn_pool_caption(tokens))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the projected embedding (not normalised) and the caption tokens."""
        tokens = self.trunk(images)
        return self.pooled_unprojected(tokens) @ self.proj_contrast, self.caption_tokens(tokens)
