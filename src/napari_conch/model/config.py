"""Model configurations in CONCH's JSON form, as dataclasses with named presets.

A configuration has the keys of CONCH's ``model_configs/*.json``: ``embed_dim``,
``embed_dim_caption``, ``vision_cfg``, ``text_cfg`` and ``multimodal_cfg``. The vision tower is
either named the timm way (``timm_model_name``, e.g. ``vit_base_patch16_224``, as in CONCH's own
file) or spelled out (``patch_size``, ``width``, ``layers``, ``num_heads``), which is how small test
models and users' own architectures are described.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_conch.bounds import bounded, check_fields
from napari_conch.errors import ConfigError, InputError
from napari_conch.json_input import read_json

#: Heads of both attentional poolers. CONCH's reference code builds its poolers with this fixed
#: number and ignores the config's ``attn_pooler_heads`` (the reference numbers of a config that
#: says 4 are only reproduced with 8), so we do the same.
POOLER_HEADS = 8

#: Caption generation strategies (:class:`GenerationConfig`), here rather than in the torch
#: module (:mod:`~napari_conch.model.generation`) so that the docks and the CLI offer them, and
#: check their settings, without torch.
STRATEGIES = ("greedy", "beam", "top_k", "top_p")

#: ViT trunks known by their timm names: patch size, width, layers, heads.
TIMM_VIT_TRUNKS: dict[str, dict[str, int]] = {
    "vit_base_patch16_224": {"patch_size": 16, "width": 768, "layers": 12, "num_heads": 12},
    "vit_small_patch16_224": {"patch_size": 16, "width": 384, "layers": 12, "num_heads": 6},
    "vit_large_patch16_224": {"patch_size": 16, "width": 1024, "layers": 24, "num_heads": 16},
}

#: OpenAI CLIP's normalisation (CONCH, QuiltNet, PLIP use it), torch-free so that the CLIP
#: configs and the Model panel's known-model list read without importing torch.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionConfig:
    """The ViT image trunk and its two attentional poolers."""

    image_size: int = 448
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    n_queries_contrast: int = 1
    n_queries_caption: int = 256

    @property
    def grid_size(self) -> int:
        """Patches per side at the configured image size."""
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class MultimodalConfig:
    """The captioning decoder: causal self-attention + cross-attention to the image tokens.

    Its shape is that of CONCH's text encoder (:class:`TextConfig` adds the pad id).
    """

    context_length: int = 128
    vocab_size: int = 32007
    width: int = 768
    heads: int = 12
    layers: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class TextConfig(MultimodalConfig):
    """The text encoder: a causal transformer with a CLS token appended at the end."""

    pad_id: int = 0


@dataclass(frozen=True)
class CocaConfig:
    """A whole CONCH-style CoCa model."""

    embed_dim: int = 512
    embed_dim_caption: int = 768
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    multimodal: MultimodalConfig = field(default_factory=MultimodalConfig)
    name: str = "custom"

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], name: str = "custom") -> CocaConfig:
        """Build a config from a dict in CONCH's JSON form.

        Raises
        ------
        ConfigError
            When a required key is missing or a value has the wrong type.
        """
        with config_errors(f"model config {name!r}"):
            vision = _vision_from_dict(dict(cfg["vision_cfg"]))
            text = _pick(TextConfig, cfg["text_cfg"], "text_cfg")
            multimodal = _pick(MultimodalConfig, cfg["multimodal_cfg"], "multimodal_cfg")
            return cls(
                embed_dim=int(cfg["embed_dim"]),
                embed_dim_caption=int(cfg.get("embed_dim_caption", vision.width)),
                vision=vision,
                text=text,
                multimodal=multimodal,
                name=str(cfg.get("name", name)),
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the config in CONCH's JSON form (explicit vision trunk), with its name."""
        return {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "embed_dim_caption": self.embed_dim_caption,
            "vision_cfg": dataclasses.asdict(self.vision),
            "text_cfg": dataclasses.asdict(self.text),
            "multimodal_cfg": dataclasses.asdict(self.multimodal),
        }


@contextlib.contextmanager
def config_errors(what: str) -> Iterator[None]:
    """Turn a missing key (``KeyError``) or a bad value (``TypeError``, ``ValueError``) met while
    reading the config ``what`` into a one-line :class:`ConfigError` naming it."""
    try:
        yield
    except KeyError as exc:
        raise ConfigError(f"{what} lacks the key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} is malformed: {exc}") from None


def read_config_file(path: str | Path, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """A JSON object from ``path`` (a clear ``error`` for anything else)."""
    data = read_json(path, "model config", error=error)
    if not isinstance(data, dict):
        raise error(f"model config {str(path)!r} must hold a JSON object")
    return data


def _pick(kind: type, values: dict[str, Any], section: str):
    """Instantiate ``kind`` from the keys of ``values`` it knows; ignore CONCH-only flags."""
    if not isinstance(values, dict):
        raise TypeError(f"{section} must be a mapping, not {type(values).__name__}")
    names = {f.name: f.type for f in dataclasses.fields(kind)}
    kwargs = {}
    for key, value in values.items():
        if key in names:
            kwargs[key] = float(value) if key == "mlp_ratio" else int(value)
    return kind(**kwargs)


def _vision_from_dict(values: dict[str, Any]) -> VisionConfig:
    timm_name = values.pop("timm_model_name", None)
    if timm_name:
        if timm_name not in TIMM_VIT_TRUNKS:
            known = ", ".join(sorted(TIMM_VIT_TRUNKS))
            raise ValueError(f"unknown vision trunk {timm_name!r} (known: {known})")
        values = {**TIMM_VIT_TRUNKS[timm_name], **values}
    for flag in ("attentional_pool_contrast", "attentional_pool_caption"):
        if values.get(flag, True) is False:
            raise ValueError(f"vision_cfg.{flag}=false is not a CONCH architecture")
    return _pick(VisionConfig, values, "vision_cfg")


#: CONCH ViT-B/16 (Lu et al., Nature Medicine 2024), the architecture of ``pytorch_model.bin``.
CONCH_VITB16 = CocaConfig(
    embed_dim=512,
    embed_dim_caption=768,
    vision=VisionConfig(
        image_size=448,
        patch_size=16,
        width=768,
        layers=12,
        num_heads=12,
        n_queries_contrast=1,
        n_queries_caption=256,
    ),
    text=TextConfig(context_length=128, vocab_size=32007, width=768, heads=12, layers=12),
    multimodal=MultimodalConfig(
        context_length=128, vocab_size=32007, width=768, heads=12, layers=12
    ),
    name="conch_ViT-B-16",
)

PRESETS: dict[str, CocaConfig] = {CONCH_VITB16.name: CONCH_VITB16}


def resolve_config(config: str | Path | dict[str, Any] | CocaConfig | None) -> CocaConfig:
    """Turn a preset name, a JSON file, a dict or a config into a :class:`CocaConfig`.

    ``None`` means the CONCH ViT-B/16 preset.
    """
    if config is None:
        return CONCH_VITB16
    if isinstance(config, CocaConfig):
        return config
    if isinstance(config, dict):
        return CocaConfig.from_dict(config)
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    path = Path(config)
    if path.suffix.lower() == ".json" or path.exists():
        return CocaConfig.from_dict(read_config_file(path), name=path.stem)
    known = ", ".join(sorted(PRESETS))
    raise ConfigError(f"unknown model config {str(config)!r} (presets: {known}; or a JSON file)")


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate a caption.

    Attributes
    ----------
    strategy : str
        ``"greedy"``, ``"beam"``, ``"top_k"`` or ``"top_p"`` (sampling).
    max_length : int
        Ids per caption including ``<start_of_text>`` and ``<end_of_text>``.
    min_length : int
        ``<end_of_text>`` is forbidden while fewer ids than this exist.
    num_beams : int
        Beams for ``"beam"``.
    top_k : int
        Candidates kept for ``"top_k"`` sampling.
    top_p : float
        Probability mass kept for ``"top_p"`` (nucleus) sampling.
    temperature : float
        Divides the logits before sampling.
    repetition_penalty : float
        > 1 discourages ids already generated (1 = off).
    seed : int, optional
        Makes sampling reproducible.
    """

    strategy: str = "greedy"
    max_length: int = field(default=30, metadata=bounded(kind=int, minimum=2))
    min_length: int = field(default=5, metadata=bounded(kind=int, minimum=0))
    num_beams: int = field(default=4, metadata=bounded(kind=int, minimum=1))
    top_k: int = field(default=50, metadata=bounded(kind=int, minimum=1))
    top_p: float = field(default=0.9, metadata=bounded(minimum=0, above=True, maximum=1))
    temperature: float = field(default=1.0, metadata=bounded(minimum=0, above=True))
    repetition_penalty: float = field(default=1.0, metadata=bounded(minimum=0, above=True))
    seed: int | None = field(
        default=None, metadata=bounded(kind=int, minimum=0, maximum=2**63 - 1, optional=True)
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown generation strategy {self.strategy!r} (use {', '.join(STRATEGIES)})"
            )
        check_fields(self)
        if self.min_length > self.max_length:
            raise InputError(
                f"min_length={self.min_length} is more than max_length={self.max_length}: "
                "a caption cannot be longer than its maximum"
            )
