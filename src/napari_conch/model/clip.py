"""CLIP in plain PyTorch: a ViT image tower and a causal text transformer, projected to one space.

CLIP (Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
2021) as QuiltNet (Ikezogwo et al., 2023; open_clip) and PLIP (Huang et al., Nature Medicine 2023;
transformers) publish it. Parameter names are open_clip's (``visual.conv1``, ``visual.ln_pre``,
``transformer.resblocks.N.attn.in_proj_weight``, ...); a transformers checkpoint is renamed to
them by :mod:`napari_conch.model.clip_weights`. The blocks are those of CONCH's text tower
(:mod:`napari_conch.model.layers`), with QuickGELU where the config asks for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_conch.model.clip_config import POOL_ARGMAX, ClipConfig
from napari_conch.model.layers import causal_mask
from napari_conch.model.text import Transformer


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _tower(width: int, layers: int, heads: int, mlp_ratio: float, cfg: ClipConfig) -> Transformer:
    """Pre-norm residual blocks with the config's activation and layer-norm epsilon."""
    tower = Transformer(width, layers, heads, mlp_ratio)
    for block in tower.resblocks:
        if cfg.quick_gelu:
            block.mlp.gelu = QuickGELU()
        block.ln_1.eps = block.ln_2.eps = cfg.layer_norm_eps
    return tower


class ClipVisionTransformer(nn.Module):
    """CLIP's image tower (open_clip's ``visual``): class token + patches -> projected token."""

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        v = cfg.vision
        self.conv1 = nn.Conv2d(
            3, v.width, kernel_size=v.patch_size, stride=v.patch_size, bias=False
        )
        self.class_embedding = nn.Parameter(torch.empty(v.width))
        self.positional_embedding = nn.Parameter(torch.empty(v.grid_size**2 + 1, v.width))
        self.ln_pre = nn.LayerNorm(v.width, eps=cfg.layer_norm_eps)
        self.transformer = _tower(v.width, v.layers, v.heads, v.mlp_ratio, cfg)
        self.ln_post = nn.LayerNorm(v.width, eps=cfg.layer_norm_eps)
        self.proj = nn.Parameter(torch.empty(v.width, cfg.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[B, 3, S, S]`` -> projected embeddings ``[B, D]`` (unnormalised)."""
        x = self.conv1(images).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        if x.shape[1] != self.positional_embedding.shape[0]:
            raise ValueError(
                f"an input of {tuple(images.shape[-2:])} px gives {x.shape[1] - 1} patches; the "
                f"model takes {self.positional_embedding.shape[0] - 1}"
            )
        x = self.ln_pre(x + self.positional_embedding)
        x = self.transformer(x)
        return self.ln_post(x[:, 0]) @ self.proj


class ClipModel(nn.Module):
    """A CLIP model (image and text towers, ``logit_scale``).

    Parameters
    ----------
    config : ClipConfig
        The architecture (see :mod:`napari_conch.model.clip_config`).
    """

    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        self.config = config
        t = config.text
        self.visual = ClipVisionTransformer(config)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
        self.transformer = _tower(t.width, t.layers, t.heads, t.mlp_ratio, config)
        self.ln_final = nn.LayerNorm(t.width, eps=config.layer_norm_eps)
        self.text_projection = nn.Parameter(torch.empty(t.width, config.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def image_size(self) -> int:
        """Input side in pixels."""
        return self.config.vision.image_size

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings ``[B, D]`` of normalised images ``[B, 3, S, S]``."""
        out = self.visual(images)
        return F.normalize(out, dim=-1) if normalize else out

    def pooled_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Which position of each text is pooled: its end-of-text token (``[B]``)."""
        if self.config.text.pool == POOL_ARGMAX:
            return ids.argmax(dim=-1)
        return (ids == self.config.text.eos_id).int().argmax(dim=-1)

    def encode_text(self, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings ``[B, D]`` of token ids ``[B, L]`` (``L <= context_length``)."""
        length = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=causal_mask(length, device=ids.device).to(x.dtype))
        rows = torch.arange(ids.shape[0], device=ids.device)
        out = self.ln_final(x[rows, self.pooled_positions(ids)]) @ self.text_projection
        return F.normalize(out, dim=-1) if normalize else out

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised image and text embeddings and the exponentiated logit scale."""
        return {
            "image_features": self.encode_image(images),
            "text_features": self.encode_text(ids),
            "logit_scale": self.logit_scale.exp(),
        }
