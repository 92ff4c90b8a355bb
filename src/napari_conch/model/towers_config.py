"""Configurations of the timm-ViT + BERT models (KEEP, BiomedCLIP), read from their own files.

Two published forms are understood, unchanged:

- **KEEP** (Zhou et al., "A Knowledge-enhanced Pathology Vision-language Foundation Model for
  Cancer Diagnosis", 2024): a transformers ``config.json`` of ``model_type: keep`` with
  ``text_config`` (a ``BertConfig``'s keys) and ``projection_dim``. KEEP's modelling code builds
  timm's ``vit_large_patch16_224`` with ``img_size=224, patch_size=16, init_values=1e-5,
  num_classes=0`` whatever ``vision_config`` says; napari-conch reads timm's keyword names from
  ``vision_config`` when present (``img_size``, ``patch_size``, ``embed_dim``, ``depth``,
  ``num_heads``, ``mlp_ratio``, ``init_values``), else those values. The image is projected by
  ``visual_head`` (Linear, GELU, Linear), the text is BERT's pooler output; texts are padded to
  256 tokens, lower-cased; images resized (bicubic) and centre-cropped to 224 px, ImageNet mean
  and std.
- **BiomedCLIP** (Zhang et al., "BiomedCLIP", 2023): open_clip's ``open_clip_config.json`` whose
  ``vision_cfg.timm_model_name`` names a timm ViT (:data:`~napari_conch.model.vit_timm.TIMM_VITS`)
  and whose ``text_cfg.hf_model_name`` names a BERT (its shape from that repository's
  ``config.json``: a local folder, the Hugging Face cache, or :data:`KNOWN_BERTS`), projected as
  ``hf_proj_type`` and pooled as ``hf_pooler_type`` say.

Anything else (another timm pool, a non-BERT text model, another resize mode) is refused with a
:class:`~napari_conch.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_conch.errors import ConfigError
from napari_conch.model.bert import BertConfig
from napari_conch.model.clip_config import _triple
from napari_conch.model.config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from napari_conch.model.vit_timm import TIMM_VITS, TimmVitConfig

KEEP, BIOMEDCLIP = "keep", "biomedclip"
#: ImageNet's mean and std (KEEP's preprocessing).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: KEEP's tokenizer call: ``max_length=256, padding="max_length", truncation=True``.
KEEP_CONTEXT_LENGTH = 256
#: KEEP's image tower: timm's ``vit_large_patch16_224`` with ``init_values=1e-5``.
KEEP_VISION = dataclasses.replace(TIMM_VITS["vit_large_patch16_224"], layer_scale=1e-5)
#: BERTs that open_clip configs name, with their shapes (transformers' BERT-base defaults).
KNOWN_BERTS: dict[str, BertConfig] = {
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract": BertConfig(),
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract": BertConfig(),
}
#: How the text tower's output is pooled: BERT's pooler, the first token, the masked mean.
POOL_POOLER, POOL_CLS, POOL_MEAN = "pooler", "cls", "mean"
_OPEN_CLIP_POOLERS = {
    "cls_pooler": POOL_POOLER,
    "cls_last_hidden_state_pooler": POOL_CLS,
    "mean_pooler": POOL_MEAN,
}


@dataclass(frozen=True)
class TowersConfig:
    """A timm-ViT + BERT model and its preprocessing.

    Attributes
    ----------
    family : str
        ``"keep"`` or ``"biomedclip"`` (which parameter names and heads).
    vision : TimmVitConfig
        The image trunk.
    text : BertConfig
        The text encoder.
    embed_dim : int
        Width of the shared embedding.
    context_length : int
        Tokens per text.
    text_pool : str
        ``"pooler"``, ``"cls"`` or ``"mean"``.
    text_proj : str
        BiomedCLIP's ``hf_proj_type``: ``"mlp"``, ``"linear"`` or ``"none"`` (null; KEEP:
        ``"none"``).
    image_proj_bias : bool
        BiomedCLIP's ``timm_proj_bias``.
    lowercase : bool or None
        Forced lower-casing of texts (KEEP), else the tokenizer's own setting.
    tokenizer_repo : str or None
        Where the tokenizer lives when the folder has none (BiomedCLIP's ``hf_tokenizer_name``).
    mean, std : tuple of float
        Per-channel normalisation of the input.
    name : str
        What it is called in the UI and in stores.
    """

    family: str
    vision: TimmVitConfig
    text: BertConfig
    embed_dim: int
    context_length: int
    text_pool: str
    text_proj: str = "none"
    image_proj_bias: bool = False
    lowercase: bool | None = None
    tokenizer_repo: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str = "model"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (stored with embeddings). ``architecture`` is ``clip``: a
        two-tower contrastive model without a decoder, like QuiltNet and PLIP."""
        return {"architecture": "clip", **dataclasses.asdict(self)}


def _int(section: dict, key: str, default: Any, where: str) -> int:
    try:
        return int(section.get(key, default))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key}={section.get(key)!r} is not a number") from None


def _malformed_is_a_config_error(parse):
    """``parse(data, name, where)`` raising :class:`ConfigError` for any malformed value (a list
    where a number belongs, a string where an object does) instead of a traceback."""

    @functools.wraps(parse)
    def wrapper(data: dict[str, Any], name: str, where: str) -> TowersConfig:
        try:
            return parse(data, name, where)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{where} is malformed: {exc}") from None

    return wrapper


def from_keep(data: dict[str, Any], name: str = "KEEP", where: str = "config.json") -> TowersConfig:
    """A :class:`TowersConfig` from KEEP's ``config.json``.

    Raises
    ------
    ConfigError
        When it is not KEEP's config, or a value is malformed.
    """
    return _from_keep(data, name, where)


@_malformed_is_a_config_error
def _from_keep(data: dict[str, Any], name: str, where: str) -> TowersConfig:
    if data.get("model_type") != KEEP:
        raise ConfigError(f"{where}: model_type {data.get('model_type')!r} is not 'keep'")
    if "text_config" not in data:
        raise ConfigError(f"{where} lacks the key 'text_config'")
    text = BertConfig.from_dict(data["text_config"], where=f"{where} text_config")
    v = data.get("vision_config") or {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: vision_config must be a JSON object")
    base = KEEP_VISION
    try:
        init = v.get("init_values", base.layer_scale)
        vision = TimmVitConfig(
            image_size=_int(v, "img_size", base.image_size, where),
            patch_size=_int(v, "patch_size", base.patch_size, where),
            width=_int(v, "embed_dim", base.width, where),
            layers=_int(v, "depth", base.layers, where),
            heads=_int(v, "num_heads", base.heads, where),
            mlp_ratio=float(v.get("mlp_ratio", base.mlp_ratio)),
            layer_scale=None if init is None else float(init),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: vision_config is malformed: {exc}") from None
    _check_vit(vision, where)
    embed_dim = _int(data, "projection_dim", 768, where)
    if embed_dim != text.hidden_size:  # the text embedding is BERT's pooler output, unprojected
        raise ConfigError(
            f"{where}: projection_dim {embed_dim} differs from the text width "
            f"{text.hidden_size} (KEEP's text embedding is BERT's pooler output)"
        )
    return TowersConfig(
        family=KEEP,
        vision=vision,
        text=text,
        embed_dim=embed_dim,
        context_length=min(KEEP_CONTEXT_LENGTH, text.max_position_embeddings),
        text_pool=POOL_POOLER,
        lowercase=True,
        name=name,
    )


def _check_vit(vision: TimmVitConfig, where: str) -> None:
    if vision.width % vision.heads or vision.image_size % vision.patch_size:
        raise ConfigError(
            f"{where}: the image tower's shape is inconsistent ({vision.heads} heads for width "
            f"{vision.width}, patch {vision.patch_size} for {vision.image_size} px)"
        )


def is_towers_open_clip(data: dict[str, Any]) -> bool:
    """Whether an ``open_clip_config.json`` asks for a timm image or Hugging Face text tower."""
    model = data.get("model_cfg", data) if isinstance(data, dict) else {}
    model = model if isinstance(model, dict) else {}
    vision, text = model.get("vision_cfg"), model.get("text_cfg")
    vision = vision if isinstance(vision, dict) else {}
    text = text if isinstance(text, dict) else {}
    return bool(vision.get("timm_model_name") or text.get("hf_model_name"))


def bert_of(repo: str, where: str) -> BertConfig:
    """The shape of the BERT an open_clip config names: a local folder's ``config.json``, the
    Hugging Face cache's, else :data:`KNOWN_BERTS`."""
    candidates = [Path(repo).expanduser() / "config.json"]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "config.json")
        if isinstance(cached, str):
            candidates.append(Path(cached))
    except (ImportError, ValueError):
        pass
    for path in candidates:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{where}: cannot read {str(path)!r}: {exc}") from None
            return BertConfig.from_dict(data, where=repr(str(path)))
    if repo in KNOWN_BERTS:
        return KNOWN_BERTS[repo]
    raise ConfigError(
        f"{where}: text_cfg.hf_model_name {repo!r} is not a BERT napari-conch knows (known: "
        f"{', '.join(KNOWN_BERTS)}), nor a folder or cached repository with its config.json"
    )


def from_open_clip_towers(
    data: dict[str, Any], name: str = "BiomedCLIP", where: str = "open_clip_config.json"
) -> TowersConfig:
    """A :class:`TowersConfig` from an open_clip config with a timm ViT and a Hugging Face BERT.

    Raises
    ------
    ConfigError
        Naming the key that asks for something else, or a malformed value.
    """
    return _from_open_clip_towers(data, name, where)


@_malformed_is_a_config_error
def _from_open_clip_towers(data: dict[str, Any], name: str, where: str) -> TowersConfig:
    model = data.get("model_cfg", data)
    vision = dict(model.get("vision_cfg") or {})
    text = dict(model.get("text_cfg") or {})
    timm_name, hf_name = vision.get("timm_model_name"), text.get("hf_model_name")
    if not timm_name or not hf_name:
        raise ConfigError(
            f"{where}: napari-conch reads a timm image tower (vision_cfg.timm_model_name) only "
            f"with a Hugging Face BERT text tower (text_cfg.hf_model_name) and the other way "
            f"round (timm_model_name={timm_name!r}, hf_model_name={hf_name!r})"
        )
    if timm_name not in TIMM_VITS:
        raise ConfigError(
            f"{where}: vision_cfg.timm_model_name {timm_name!r} is not a timm ViT napari-conch "
            f"knows ({', '.join(TIMM_VITS)})"
        )
    checks = {
        "timm_pool": (vision.get("timm_pool", "avg"), ("", "token")),
        "timm_proj": (vision.get("timm_proj", "linear"), ("linear",)),
        "hf_proj_type": (text.get("hf_proj_type", "mlp"), ("mlp", "linear", None)),
        "hf_pooler_type": (text.get("hf_pooler_type", "mean_pooler"), tuple(_OPEN_CLIP_POOLERS)),
    }
    for key, (value, allowed) in checks.items():
        if value not in allowed:
            raise ConfigError(f"{where}: {key}={value!r} is not supported ({allowed})")
    trunk = TIMM_VITS[timm_name]
    size = _int(vision, "image_size", trunk.image_size, where)
    if size != trunk.image_size:  # open_clip builds the timm model at its own default size
        raise ConfigError(
            f"{where}: vision_cfg.image_size {size} differs from {timm_name}'s {trunk.image_size}"
        )
    pre = data.get("preprocess_cfg", {}) or {}
    for key, allowed in (("resize_mode", "shortest"), ("interpolation", "bicubic")):
        if pre.get(key, allowed) != allowed:
            raise ConfigError(f"{where}: preprocess_cfg.{key}={pre[key]!r} is not {allowed!r}")
    bert = bert_of(str(hf_name), where)
    proj = text.get("hf_proj_type", "mlp") or "none"
    embed_dim = _int(model, "embed_dim", 512, where)
    if proj == "none" and bert.hidden_size != embed_dim:  # open_clip has no projection then
        raise ConfigError(f"{where}: hf_proj_type null needs the text width to be {embed_dim}")
    return TowersConfig(
        family=BIOMEDCLIP,
        vision=trunk,
        text=bert,
        embed_dim=embed_dim,
        context_length=_int(text, "context_length", 77, where),
        text_pool=_OPEN_CLIP_POOLERS[text.get("hf_pooler_type", "mean_pooler")],
        text_proj=proj,
        image_proj_bias=bool(vision.get("timm_proj_bias", False)),
        tokenizer_repo=text.get("hf_tokenizer_name") or str(hf_name),
        mean=_triple(pre.get("mean"), f"{where} preprocess_cfg.mean", OPENAI_CLIP_MEAN),
        std=_triple(pre.get("std"), f"{where} preprocess_cfg.std", OPENAI_CLIP_STD),
        name=name,
    )
