"""KEEP and BiomedCLIP in plain PyTorch: a timm ViT and a BERT, projected to one space.

Parameter names are those of the published checkpoints, so they load unchanged:

- **KEEP** (Zhou et al., 2024; its own transformers modelling code): ``visual.*`` (timm's
  ``vit_large_patch16_224`` with LayerScale), ``visual_head.0``/``visual_head.2`` (Linear, GELU,
  Linear), ``text.*`` (a ``BertModel`` with its pooler; the text embedding is ``pooler_output``),
  ``logit_scale``.
- **BiomedCLIP** (Zhang et al., 2023; open_clip's ``CustomTextCLIP``): ``visual.trunk.*`` (a timm
  ViT), ``visual.head.proj`` (Linear), ``text.transformer.*`` (a ``BertModel``, pooler only with
  ``cls_pooler``), ``text.proj`` (Linear, or ``proj.0``/``proj.2`` with a GELU between for
  ``mlp``), ``logit_scale``. The attention mask is ``ids != pad``, as open_clip makes it.

The towers are :mod:`napari_conch.model.vit_timm` and :mod:`napari_conch.model.bert`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from napari_conch.model.bert import BertModel
from napari_conch.model.build import _SkipInitialisation
from napari_conch.model.clip_weights import load_strict
from napari_conch.model.towers_config import KEEP, POOL_CLS, POOL_POOLER, TowersConfig
from napari_conch.model.vit_timm import TimmVit

#: Buffers transformers saved with older versions of ``BertModel``: not weights.
BERT_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def _pool(text: BertModel, hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == POOL_POOLER:
        return text.pooler(hidden)
    if how == POOL_CLS:
        return hidden[:, 0]
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)


class _TowersBase(nn.Module):
    """What both models share: ``logit_scale``, the image size, normalised outputs."""

    def __init__(self, config: TowersConfig) -> None:
        super().__init__()
        self.config = config
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @property
    def image_size(self) -> int:
        """Input side in pixels."""
        return self.config.vision.image_size

    def image_features(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def text_features(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings ``[B, D]`` of normalised images ``[B, 3, S, S]``."""
        out = self.image_features(images)
        return F.normalize(out, dim=-1) if normalize else out

    def encode_text(
        self,
        ids: torch.Tensor,
        normalize: bool = True,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text embeddings ``[B, D]`` of token ids ``[B, L]`` (mask: 1 = token, 0 = padding)."""
        out = self.text_features(ids, attention_mask)
        return F.normalize(out, dim=-1) if normalize else out


class KeepModel(_TowersBase):
    """KEEP: ``visual`` + ``visual_head``, ``text`` (BERT with pooler)."""

    def __init__(self, config: TowersConfig) -> None:
        super().__init__(config)
        d = config.embed_dim
        self.visual = TimmVit(config.vision)
        self.visual_head = nn.Sequential(
            nn.Linear(config.vision.width, d), nn.GELU(), nn.Linear(d, d)
        )
        self.text = BertModel(config.text, pooler=True)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual_head(self.visual(images))

    def text_features(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.text.pooled(ids, mask)


class TimmTower(nn.Module):
    """open_clip's ``TimmModel`` with token pooling and a linear projection."""

    def __init__(self, config: TowersConfig) -> None:
        super().__init__()
        self.trunk = TimmVit(config.vision)
        self.head = nn.Sequential(
            OrderedDict(
                drop=nn.Identity(),
                proj=nn.Linear(config.vision.width, config.embed_dim, bias=config.image_proj_bias),
            )
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(images))


class HFTextTower(nn.Module):
    """open_clip's ``HFTextEncoder`` over a BERT: ``transformer``, pooling, ``proj``."""

    def __init__(self, config: TowersConfig) -> None:
        super().__init__()
        self.config = config
        width, out = config.text.hidden_size, config.embed_dim
        self.transformer = BertModel(config.text, pooler=config.text_pool == POOL_POOLER)
        if config.text_proj == "linear":
            self.proj = nn.Linear(width, out, bias=False)
        elif config.text_proj == "mlp":
            hidden = (width + out) // 2
            self.proj = nn.Sequential(
                nn.Linear(width, hidden, bias=False), nn.GELU(), nn.Linear(hidden, out, bias=False)
            )
        else:
            self.proj = nn.Identity()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.config.text.pad_token_id
        hidden = self.transformer(ids, mask)
        return self.proj(_pool(self.transformer, hidden, mask, self.config.text_pool))


class BiomedClipModel(_TowersBase):
    """BiomedCLIP (open_clip ``CustomTextCLIP``): ``visual`` (timm) and ``text`` (BERT)."""

    def __init__(self, config: TowersConfig) -> None:
        super().__init__(config)
        self.visual = TimmTower(config)
        self.text = HFTextTower(config)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def text_features(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.text(ids)  # open_clip masks ``ids != pad`` whatever the tokenizer said


def build_towers(config: TowersConfig, *, device: str | torch.device = "cpu") -> _TowersBase:
    """The model of ``config``; on ``"meta"`` nothing is allocated. Parameters elsewhere are
    uninitialised."""
    kind = KeepModel if config.family == KEEP else BiomedClipModel
    with torch.device("meta"), _SkipInitialisation():
        model = kind(config)
    if str(device) != "meta":
        model = model.to_empty(device=device)
    return model.eval()


def _text_prefix(config: TowersConfig) -> str:
    return "text." if config.family == KEEP else "text.transformer."


def published_names(
    state: Mapping[str, torch.Tensor], config: TowersConfig
) -> dict[str, torch.Tensor]:
    """The checkpoint without the BERT buffers older transformers versions saved."""
    prefix = _text_prefix(config)
    drop = {prefix + b for b in BERT_BUFFERS}
    return {k: v for k, v in state.items() if k not in drop}


def load_towers_weights(
    model: _TowersBase, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> _TowersBase:
    """Load a published KEEP or BiomedCLIP checkpoint into ``model`` strictly.

    Raises
    ------
    CheckpointError
        Naming ``source`` and the first missing, unexpected or mis-shaped tensors.
    """
    renamed = published_names(state, model.config)
    return load_strict(model, renamed, source=source, name=model.config.name)
