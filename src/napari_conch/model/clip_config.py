"""Configurations of CLIP models (QuiltNet, PLIP), read from each model's own config file.

Two published forms are understood, unchanged:

- open_clip's ``open_clip_config.json`` (QuiltNet): ``{"model_cfg": {"embed_dim", "quick_gelu",
  "vision_cfg": {...}, "text_cfg": {...}}, "preprocess_cfg": {"mean", "std", ...}}``;
- transformers' ``config.json`` of a ``CLIPModel`` (PLIP): ``{"model_type": "clip",
  "projection_dim", "text_config": {...}, "vision_config": {...}}``, with the preprocessing in
  ``preprocessor_config.json`` (``image_mean``, ``image_std``, ``size``, ``crop_size``).

Only the plain CLIP architecture is accepted (ViT image tower with a class token, causal text
transformer pooled at the end-of-text token, linear projections); anything else a config asks
for (a timm or Hugging Face text tower, attentional pooling, other pool types) is refused with a
:class:`~napari_conch.errors.ConfigError` naming the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from napari_conch.errors import ConfigError
from napari_conch.model.config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, config_errors

#: The two layouts a CLIP checkpoint can come in.
OPEN_CLIP, TRANSFORMERS = "open_clip", "transformers"
#: How the text tower picks its pooled token: the highest id (open_clip: ``argmax``, the
#: end-of-text token is the vocabulary's last id) or the first end-of-text id (``eos``).
POOL_ARGMAX, POOL_EOS = "argmax", "eos"
#: CLIP's end-of-text id (``<|endoftext|>``, the last of its 49408 ids).
CLIP_EOT_ID = 49407


@dataclass(frozen=True)
class ClipVisionConfig:
    """The ViT image tower: patches + class token, pre-norm blocks, ``ln_post`` on the token."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0

    @property
    def grid_size(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class ClipTextConfig:
    """The causal text transformer."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    pool: str = POOL_ARGMAX
    eos_id: int = CLIP_EOT_ID


@dataclass(frozen=True)
class ClipConfig:
    """A whole CLIP model and its preprocessing.

    Attributes
    ----------
    embed_dim : int
        Width of the shared embedding.
    quick_gelu : bool
        ``x * sigmoid(1.702 x)`` in the MLPs (OpenAI's CLIP) instead of the exact GELU.
    layer_norm_eps : float
        Epsilon of every layer norm.
    mean, std : tuple of float
        Per-channel normalisation of the input.
    layout : str
        ``"open_clip"`` or ``"transformers"``: the checkpoint's tensor names.
    name : str
        What it is called in the UI and in stores.
    """

    embed_dim: int = 512
    vision: ClipVisionConfig = field(default_factory=ClipVisionConfig)
    text: ClipTextConfig = field(default_factory=ClipTextConfig)
    quick_gelu: bool = False
    layer_norm_eps: float = 1e-5
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    layout: str = OPEN_CLIP
    name: str = "clip"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (stored with embeddings)."""
        return {"architecture": "clip", **dataclasses.asdict(self)}

    def with_name(self, name: str) -> ClipConfig:
        """The same config under another name."""
        return dataclasses.replace(self, name=name)


#: open_clip ``vision_cfg`` keys that change the architecture away from plain CLIP, with the
#: value that plain CLIP has (a config giving another value is refused).
_OPEN_CLIP_VISION_PLAIN = {
    "timm_model_name": None,
    "attentional_pool": False,
    "pool_type": "tok",
    "final_ln_after_pool": False,
    "no_ln_pre": False,
    "output_tokens": False,
    "ls_init_value": None,
    "patch_dropout": 0.0,
    "global_average_pool": False,
    "attn_pooler_queries": None,
    "act_kwargs": None,
    "norm_kwargs": None,
}
_OPEN_CLIP_TEXT_PLAIN = {
    "hf_model_name": None,
    "hf_tokenizer_name": None,
    "pool_type": "argmax",
    "proj_bias": False,
    "no_causal_mask": False,
    "embed_cls": False,
    "ls_init_value": None,
    "final_ln_after_pool": False,
    "act_kwargs": None,
    "norm_kwargs": None,
}


def _check_plain(section: dict[str, Any], plain: dict[str, Any], where: str) -> None:
    for key, value in plain.items():
        given = section.get(key, value)
        if given != value and not (value in (None, False, 0.0) and not given):
            raise ConfigError(
                f"{where}: {key}={given!r} is not the plain CLIP architecture napari-conch "
                "implements (QuiltNet and PLIP use none of it)"
            )


def _heads(width: int, section: dict[str, Any], default_head_width: int) -> int:
    if "heads" in section:
        return int(section["heads"])
    head_width = int(section.get("head_width", default_head_width))
    if head_width <= 0 or width % head_width:
        raise ConfigError(f"head_width {head_width} does not divide the width {width}")
    return width // head_width


def _triple(values: Any, where: str, default: tuple[float, float, float]) -> tuple:
    if values is None:
        return default
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be three numbers, not {values!r}") from None
    if len(out) != 3:
        raise ConfigError(f"{where} must be three numbers, not {values!r}")
    return out


def from_open_clip(data: dict[str, Any], name: str = "clip", where: str = "config") -> ClipConfig:
    """A :class:`ClipConfig` from the content of an ``open_clip_config.json``.

    Raises
    ------
    ConfigError
        When a key is missing, a value malformed, or the architecture is not plain CLIP.
    """
    with config_errors(where):
        model = data["model_cfg"] if "model_cfg" in data else data
        vision = dict(model["vision_cfg"])
        text = dict(model["text_cfg"])
        _check_plain(vision, _OPEN_CLIP_VISION_PLAIN, f"{where} vision_cfg")
        _check_plain(text, _OPEN_CLIP_TEXT_PLAIN, f"{where} text_cfg")
        if isinstance(vision.get("layers"), list | tuple):
            raise ConfigError(f"{where}: a ResNet image tower is not supported")
        width = int(vision["width"])
        text_width = int(text.get("width", 512))
        preprocess = data.get("preprocess_cfg", {}) or {}
        if preprocess.get("resize_mode", "shortest") != "shortest":
            raise ConfigError(
                f"{where}: preprocess_cfg.resize_mode={preprocess['resize_mode']!r} is not "
                "supported (only 'shortest': shorter side resized, then centre crop)"
            )
        if preprocess.get("interpolation", "bicubic") != "bicubic":
            raise ConfigError(
                f"{where}: preprocess_cfg.interpolation={preprocess['interpolation']!r} is not "
                "supported (only 'bicubic')"
            )
        return ClipConfig(
            embed_dim=int(model["embed_dim"]),
            vision=ClipVisionConfig(
                image_size=int(vision.get("image_size", 224)),
                patch_size=int(vision["patch_size"]),
                width=width,
                layers=int(vision["layers"]),
                heads=_heads(width, vision, 64),
                mlp_ratio=float(vision.get("mlp_ratio", 4.0)),
            ),
            text=ClipTextConfig(
                context_length=int(text.get("context_length", 77)),
                vocab_size=int(text.get("vocab_size", 49408)),
                width=text_width,
                heads=int(text.get("heads", 8)),
                layers=int(text.get("layers", 12)),
                mlp_ratio=float(text.get("mlp_ratio", 4.0)),
                pool=POOL_ARGMAX,
            ),
            quick_gelu=bool(model.get("quick_gelu", False)),
            mean=_triple(preprocess.get("mean"), f"{where} preprocess_cfg.mean", OPENAI_CLIP_MEAN),
            std=_triple(preprocess.get("std"), f"{where} preprocess_cfg.std", OPENAI_CLIP_STD),
            layout=OPEN_CLIP,
            name=name,
        )


#: transformers' ``CLIPConfig`` defaults (ViT-B/32), for keys a config.json leaves out.
_HF_TEXT_DEFAULTS = {
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "eos_token_id": 49407,
}
_HF_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
_ACTIVATIONS = {"quick_gelu": True, "gelu": False}


def from_transformers(
    data: dict[str, Any],
    preprocessor: dict[str, Any] | None = None,
    name: str = "clip",
    where: str = "config.json",
) -> ClipConfig:
    """A :class:`ClipConfig` from a ``CLIPModel``'s ``config.json`` (and its
    ``preprocessor_config.json``, when given).

    Raises
    ------
    ConfigError
        When it is not a CLIP config, or a value is malformed or unsupported.
    """
    if data.get("model_type", "clip") != "clip":
        raise ConfigError(f"{where}: model_type {data.get('model_type')!r} is not 'clip'")
    with config_errors(where):
        text = {**_HF_TEXT_DEFAULTS, **(data.get("text_config") or {})}
        vision = {**_HF_VISION_DEFAULTS, **(data.get("vision_config") or {})}
        acts = {text["hidden_act"], vision["hidden_act"]}
        if len(acts) != 1 or next(iter(acts)) not in _ACTIVATIONS:
            raise ConfigError(f"{where}: hidden_act {sorted(acts)} is not supported")
        eps = {float(text["layer_norm_eps"]), float(vision["layer_norm_eps"])}
        if len(eps) != 1:
            raise ConfigError(f"{where}: the towers' layer_norm_eps differ ({sorted(eps)})")
        t_width, v_width = int(text["hidden_size"]), int(vision["hidden_size"])
        eos = int(text["eos_token_id"])
        pre = preprocessor or {}
        for key in ("crop_size", "size"):
            size = _hf_size(pre.get(key), int(vision["image_size"]))
            if size != int(vision["image_size"]):
                raise ConfigError(
                    f"{where}: preprocessor {key} {size} differs from the image size "
                    f"{vision['image_size']} (only shorter side to the input size, then centre "
                    "crop, is supported)"
                )
        if pre.get("resample", 3) != 3:
            raise ConfigError(f"{where}: preprocessor resample {pre['resample']} is not bicubic")
        return ClipConfig(
            embed_dim=int(data.get("projection_dim", 512)),
            vision=ClipVisionConfig(
                image_size=int(vision["image_size"]),
                patch_size=int(vision["patch_size"]),
                width=v_width,
                layers=int(vision["num_hidden_layers"]),
                heads=int(vision["num_attention_heads"]),
                mlp_ratio=int(vision["intermediate_size"]) / v_width,
            ),
            text=ClipTextConfig(
                context_length=int(text["max_position_embeddings"]),
                vocab_size=int(text["vocab_size"]),
                width=t_width,
                heads=int(text["num_attention_heads"]),
                layers=int(text["num_hidden_layers"]),
                mlp_ratio=int(text["intermediate_size"]) / t_width,
                # transformers pools at argmax(ids) for the legacy eos_token_id 2, else at the
                # first eos_token_id
                pool=POOL_ARGMAX if eos == 2 else POOL_EOS,
                eos_id=CLIP_EOT_ID if eos == 2 else eos,
            ),
            quick_gelu=_ACTIVATIONS[next(iter(acts))],
            layer_norm_eps=next(iter(eps)),
            mean=_triple(pre.get("image_mean"), "image_mean", OPENAI_CLIP_MEAN),
            std=_triple(pre.get("image_std"), "image_std", OPENAI_CLIP_STD),
            layout=TRANSFORMERS,
            name=name,
        )


def _hf_size(value: Any, default: int) -> int:
    """A size of ``preprocessor_config.json``: a number or ``{"height", "width"}``."""
    if value is None:
        return default
    if isinstance(value, dict):
        sides = {int(value[k]) for k in ("height", "width", "shortest_edge") if k in value}
        if len(sides) != 1:
            raise ValueError(f"a non-square size {value}")
        return sides.pop()
    return int(value)
