"""BERT's encoder with transformers' parameter names: the text towers of KEEP and BiomedCLIP.

BERT (Devlin et al., NAACL 2019) as transformers' ``BertModel`` lays it out, so its checkpoints
load unchanged: ``embeddings.word_embeddings``/``position_embeddings``/``token_type_embeddings``
summed and layer-normed (``embeddings.LayerNorm``); post-norm layers ``encoder.layer.N`` of
``attention.self.query/key/value``, ``attention.output.dense`` + ``attention.output.LayerNorm``
(residual), ``intermediate.dense`` (exact GELU), ``output.dense`` + ``output.LayerNorm``
(residual); optionally the ``pooler.dense`` (tanh of a linear map of the first token). Padding is
masked out of the attention's keys; token types are all 0 (one sentence per text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_conch.errors import ConfigError
from napari_conch.model.layers import merge_heads, split_heads


@dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT encoder (transformers' ``BertConfig`` keys and defaults)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "text config") -> BertConfig:
        """The config of a ``config.json``-style dict (transformers' defaults for missing keys).

        Raises
        ------
        ConfigError
            For an activation other than GELU, relative position embeddings, or a bad value.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a JSON object, not {type(data).__name__}")
        if data.get("model_type", "bert") != "bert":
            raise ConfigError(f"{where}: model_type {data['model_type']!r} is not 'bert'")
        if data.get("hidden_act", "gelu") != "gelu":
            raise ConfigError(f"{where}: hidden_act {data['hidden_act']!r} is not 'gelu'")
        position = data.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise ConfigError(f"{where}: position_embedding_type {position!r} is not 'absolute'")
        try:
            values = {
                name: type(default)(default if data.get(name) is None else data[name])
                for name, default in cls().__dict__.items()
            }
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where} is malformed: {exc}") from None
        if values["hidden_size"] % values["num_attention_heads"]:
            raise ConfigError(
                f"{where}: {values['num_attention_heads']} heads do not divide the width "
                f"{values['hidden_size']}"
            )
        return cls(**values)


class BertEmbeddings(nn.Module):
    """Word + position + token type embeddings, layer-normed."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x + self.position_embeddings(positions))


class BertSelfAttention(nn.Module):
    """``query``, ``key``, ``value`` projections; keys where ``mask`` is False are ignored."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))
        return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


class BertResidual(nn.Module):
    """``LayerNorm(dense(x) + residual)`` (BERT's ``...output``)."""

    def __init__(self, width_in: int, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    """``self`` attention and its ``output``."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertResidual(cfg.hidden_size, cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    """``dense`` then GELU."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    """One post-norm encoder layer."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertResidual(cfg.intermediate_size, cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    """The stack of layers (``encoder.layer``)."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    """``tanh(dense(first token))``."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """BERT: token ids ``[B, L]`` -> hidden states ``[B, L, H]`` (and the pooled first token).

    Parameters
    ----------
    cfg : BertConfig
        The shape.
    pooler : bool
        Whether it has ``pooler.dense`` (transformers' ``add_pooling_layer``).
    """

    def __init__(self, cfg: BertConfig, pooler: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if pooler else None

    def forward(
        self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states ``[B, L, H]``; ``attention_mask`` (1 = a token, 0 = padding) defaults to
        the ids that are not the padding id."""
        if ids.shape[1] > self.cfg.max_position_embeddings:
            raise ValueError(
                f"{ids.shape[1]} tokens exceed the {self.cfg.max_position_embeddings} positions"
            )
        if attention_mask is None:
            attention_mask = ids != self.cfg.pad_token_id
        mask = attention_mask.bool()[:, None, None, :]
        return self.encoder(self.embeddings(ids), mask)

    def pooled(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooler's output ``[B, H]`` (transformers' ``pooler_output``)."""
        if self.pooler is None:
            raise ValueError("this BERT has no pooler")
        return self.pooler(self(ids, attention_mask))
