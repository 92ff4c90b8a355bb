"""``load_clip_model``: a CLIP model folder or hub repository, ready to embed tiles and texts.

:class:`LoadedClip` has the interface of :class:`~napari_conch.model.loaded.LoadedModel` that
the engine, the CLI and the docks use (``embed_images``, ``embed_texts``, ``logit_scale``,
``fingerprint``, ``preprocess_info``, ``config.to_dict()``, ...), so every command works with it;
it has no captioning decoder (``caption`` raises :class:`NoDecoderError`).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_conch.errors import NoDecoderError
from napari_conch.model.checkpoint import (
    fingerprint_state_dict,
    read_state_dict,
    refuse_not_finite,
)
from napari_conch.model.clip import ClipModel
from napari_conch.model.clip_config import (
    OPEN_CLIP,
    ClipConfig,
    from_open_clip,
    from_transformers,
)
from napari_conch.model.clip_sources import ClipFiles, known_model, resolve_clip
from napari_conch.model.clip_tokenizer import ClipTokenizer
from napari_conch.model.clip_weights import build_clip, load_clip_weights
from napari_conch.model.config import read_config_file
from napari_conch.model.device import resolve_device
from napari_conch.model.loaded_common import EncoderUse, text_list
from napari_conch.model.precision_choice import apply_precision
from napari_conch.model.preprocess import Preprocess
from napari_conch.model.sources import (
    HF_PREFIX,
    HUB,
    PATH,
    SourceInfo,
    cache_key,
    model_tile_size,
)


def read_clip_config(files: ClipFiles, name: str) -> ClipConfig:
    """The :class:`ClipConfig` of a model's files."""
    data = read_config_file(files.config)
    if files.layout == OPEN_CLIP:
        return from_open_clip(data, name=name, where=repr(str(files.config)))
    pre = read_config_file(files.preprocessor) if files.preprocessor is not None else None
    return from_transformers(data, pre, name=name, where=repr(str(files.config)))


def clip_tokenizer(files: ClipFiles, config: ClipConfig) -> ClipTokenizer:
    """The model's tokenizer: open_clip's for an open_clip folder, the folder's own otherwise."""
    length, vocab = config.text.context_length, config.text.vocab_size
    if files.layout == OPEN_CLIP:
        return ClipTokenizer.open_clip(length, vocab)
    return ClipTokenizer.from_folder(files.folder, length, vocab)


@dataclass
class LoadedClip(EncoderUse):
    """A CLIP model with its tokenizer and preprocessing (see the module docstring)."""

    model: ClipModel
    config: ClipConfig
    device: torch.device
    precision: str
    source: str
    fingerprint: str
    preprocess: Preprocess
    tokenizer: ClipTokenizer
    files: ClipFiles
    source_info: SourceInfo
    templates: str = "none"
    image_engine: Any = field(default=None, repr=False)
    precision_note: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    has_decoder = False
    is_demo = False

    @property
    def image_size(self) -> int:
        """Model input size in pixels."""
        return self.config.vision.image_size

    @property
    def default_tile_size(self) -> int:
        """The input size: QuiltNet and PLIP were trained on 224 px crops."""
        return model_tile_size(self.source_info, self.image_size)

    @property
    def tokenizer_file(self) -> str:
        """The tokenizer's file (the shipped CLIP vocabulary for open_clip models)."""
        if self.tokenizer.path is not None:
            return str(self.tokenizer.path)
        return "CLIP BPE vocabulary shipped with napari-conch (open_clip's)"

    @torch.inference_mode()
    def embed_images(self, tiles) -> torch.Tensor:
        """uint8 RGB tiles ``[B, H, W, 3]`` -> normalised embeddings ``[B, D]`` (CPU)."""
        x = self.preprocess(tiles, device=self.device)
        return self.image_embeddings(functools.partial(self.model.encode_image, normalize=False), x)

    @torch.inference_mode()
    def embed_texts(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Texts -> normalised embeddings ``[N, D]`` (CPU)."""
        ids = self.tokenizer.encode(text_list(texts)).to(self.device)
        return self.normalised(functools.partial(self.model.encode_text, normalize=False), ids)

    def caption(self, tiles, cfg=None) -> list[str]:
        """CLIP models have no captioning decoder.

        Raises
        ------
        NoDecoderError
            Always.
        """
        raise NoDecoderError(
            f"{self.config.name} ({self.source}) has no captioning decoder: captioning needs "
            "CONCH's CoCa with decoder weights"
        )

    def describe(self) -> str:
        """One line for status bars and logs."""
        return (
            f"{self.config.name} from {self.source} on {self.device} ({self.precision}, "
            "no captioning decoder)"
        )


def _check_finite(loaded: LoadedClip) -> None:
    size = loaded.image_size
    image = loaded.embed_images(torch.full((1, size, size, 3), 255, dtype=torch.uint8))
    text = loaded.embed_texts("tissue")
    refuse_not_finite(loaded.source, image=image, text=text)


_CACHE: dict[tuple, LoadedClip] = {}
_CACHE_LOCK = threading.Lock()


def model_name(source: str, files: ClipFiles) -> str:
    """A known model's name (``QuiltNet-B-32``), else the folder's or repository's last part."""
    text = source[len(HF_PREFIX) :] if source.startswith(HF_PREFIX) else source
    card = known_model(text)
    if card is None and not source.startswith(HF_PREFIX):
        return Path(files.folder).name or "clip"
    return card.name if card is not None else text.rsplit("/", 1)[-1]


def load_clip_model(
    source: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    precision: str | None = None,
    token: str | None = None,
) -> LoadedClip:
    """Load a CLIP-family model folder or ``hf_hub:REPO`` once per (source, device, precision):
    QuiltNet, PLIP here; KEEP and BiomedCLIP through
    :func:`~napari_conch.model.towers_loaded.load_towers`.

    ``precision`` as for :func:`~napari_conch.model.loaded.load_model` (``auto``, ``fp32``,
    ``bf16``, ``fp16``, ``int8``); the float32 model is loaded once and shared.

    Raises
    ------
    CheckpointError, ConfigError, TokenizerNotFoundError
        One-line messages naming what is wrong.
    """
    requested = str(source)
    dev = resolve_device(device)
    from napari_conch.model.loaded import precision_key

    wanted = precision_key(precision, dev)
    base_key = (cache_key(requested), str(dev))
    with _CACHE_LOCK:
        cached = _CACHE.get((*base_key, wanted))
        if cached is not None:
            return cached
        base = _CACHE.get((*base_key, "fp32"))
        if base is None:
            base = _load_fp32(requested, dev, token)
            _CACHE[(*base_key, "fp32")] = base
        loaded = base if wanted == "fp32" else apply_precision(base, precision)
        _CACHE[(*base_key, wanted)] = loaded
        return loaded


def _load_fp32(requested: str, dev: torch.device, token: str | None) -> LoadedClip:
    """The float32 CLIP model of a folder or hub repository, checked for finite embeddings."""
    files = resolve_clip(requested, token=token)
    name = model_name(requested, files)
    from napari_conch.model.towers_loaded import is_towers_files, load_towers

    if is_towers_files(files):  # KEEP, BiomedCLIP: a timm ViT and a BERT
        return load_towers(requested, files, name, dev, "fp32")
    config = read_clip_config(files, name)
    tokenizer = clip_tokenizer(files, config)
    state = read_state_dict(files.weights)
    model = build_clip(config, device="meta")
    load_clip_weights(model, state, source=repr(str(files.weights)))
    card = known_model(name)
    hub = requested.startswith(HF_PREFIX)
    info = SourceInfo(
        name="hf_hub" if hub else "path",
        kind=HUB if hub else PATH,
        display_name=name,
        default_tile_size=config.vision.image_size,
        description=card.summary if card is not None else "a CLIP model",
    )
    loaded = LoadedClip(
        model=model.to(dev).eval(),
        config=config,
        device=dev,
        precision="fp32",
        source=requested,
        fingerprint=fingerprint_state_dict(state),
        preprocess=Preprocess(config.vision.image_size, config.mean, config.std),
        tokenizer=tokenizer,
        files=files,
        source_info=info,
        templates=card.templates if card is not None else "none",
    )
    _check_finite(loaded)
    return loaded


def clear_clip_cache() -> None:
    """Forget every loaded CLIP model."""
    with _CACHE_LOCK:
        _CACHE.clear()
