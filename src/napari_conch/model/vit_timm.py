"""A Vision Transformer with timm's parameter names: the image towers of KEEP and BiomedCLIP.

The ViT of Dosovitskiy et al. ("An Image is Worth 16x16 Words", ICLR 2021) as timm's
``VisionTransformer`` lays it out, so checkpoints saved from a timm model load unchanged:
``patch_embed.proj`` (a convolution with bias), ``cls_token``, ``pos_embed`` (class token
included), pre-norm ``blocks.N`` of ``norm1``, ``attn.qkv`` (with bias), ``attn.proj``, optional
LayerScale ``ls1.gamma``/``ls2.gamma`` (timm's ``init_values``), ``norm2``, ``mlp.fc1``/``mlp.fc2``
(exact GELU), then the final ``norm``. Layer norms use timm's epsilon 1e-6. The output is the class
token after the final norm (timm's ``global_pool="token"`` with no classifier head): what KEEP and
BiomedCLIP project.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_conch.model.layers import merge_heads

#: timm's layer-norm epsilon for ViTs.
TIMM_VIT_EPS = 1e-6


@dataclass(frozen=True)
class TimmVitConfig:
    """A timm ViT's shape (timm's keyword names in the comments).

    Attributes
    ----------
    image_size : int
        ``img_size``.
    patch_size : int
        ``patch_size``.
    width : int
        ``embed_dim``.
    layers : int
        ``depth``.
    heads : int
        ``num_heads``.
    mlp_ratio : float
        ``mlp_ratio``.
    layer_scale : float or None
        ``init_values``: LayerScale after attention and MLP when set (its value only initialises).
    """

    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    layer_scale: float | None = None

    @property
    def grid_size(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size


#: timm model names napari-conch knows, with their shapes (from timm's model definitions;
#: ``test_vit`` is timm's own small test model, used by the parity tests).
TIMM_VITS: dict[str, TimmVitConfig] = {
    "vit_base_patch16_224": TimmVitConfig(224, 16, 768, 12, 12),
    "vit_large_patch16_224": TimmVitConfig(224, 16, 1024, 24, 16),
    "test_vit": TimmVitConfig(160, 16, 64, 6, 2, mlp_ratio=3.0),
}


class PatchEmbed(nn.Module):
    """Non-overlapping patches, projected by a convolution (``patch_embed.proj``)."""

    def __init__(self, cfg: TimmVitConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Self-attention with one ``qkv`` projection (timm's layout)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(merge_heads(out))


class LayerScale(nn.Module):
    """A learned per-channel scale (``gamma``)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.empty(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """``fc1`` -> GELU -> ``fc2``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, cfg: TimmVitConfig) -> None:
        super().__init__()
        width = cfg.width
        self.norm1 = nn.LayerNorm(width, eps=TIMM_VIT_EPS)
        self.attn = Attention(width, cfg.heads)
        self.ls1 = LayerScale(width) if cfg.layer_scale is not None else nn.Identity()
        self.norm2 = nn.LayerNorm(width, eps=TIMM_VIT_EPS)
        self.mlp = Mlp(width, int(width * cfg.mlp_ratio))
        self.ls2 = LayerScale(width) if cfg.layer_scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TimmVit(nn.Module):
    """The ViT trunk: normalised images ``[B, 3, S, S]`` -> class token features ``[B, width]``.

    Parameters
    ----------
    cfg : TimmVitConfig
        The shape.
    """

    def __init__(self, cfg: TimmVitConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.empty(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.grid_size**2 + 1, cfg.width))
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.layers)))
        self.norm = nn.LayerNorm(cfg.width, eps=TIMM_VIT_EPS)

    @property
    def num_features(self) -> int:
        """Width of the output."""
        return self.cfg.width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        if x.shape[1] + 1 != self.pos_embed.shape[1]:
            raise ValueError(
                f"an input of {tuple(images.shape[-2:])} px gives {x.shape[1]} patches; the "
                f"model takes {self.pos_embed.shape[1] - 1}"
            )
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.blocks(x + self.pos_embed)
        return self.norm(x)[:, 0]
