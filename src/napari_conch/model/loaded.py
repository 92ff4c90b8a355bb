"""``load_model``: a checkpoint, its tokenizer and preprocessing, ready to embed tiles and texts."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_conch.errors import InputError, TokenizerNotFoundError
from napari_conch.model.build import build_model, load_weights
from napari_conch.model.checkpoint import (
    check_finite_embeddings,
    fingerprint_state_dict,
    read_state_dict,
)
from napari_conch.model.coca import CoCa
from napari_conch.model.config import CocaConfig, resolve_config
from napari_conch.model.device import auto_choice, resolve_device, resolve_precision
from napari_conch.model.formats import AUTO
from napari_conch.model.generation import GenerationConfig, generate
from napari_conch.model.loaded_common import EncoderUse, text_list
from napari_conch.model.precision_choice import apply_precision
from napari_conch.model.preprocess import Preprocess
from napari_conch.model.sources import (
    BUNDLED,
    PATH_SOURCE,
    SourceInfo,
    cache_key,
    model_tile_size,
    resolve_source,
    source_info,
)
from napari_conch.model.tokenizer import Tokenizer, find_tokenizer

logger = logging.getLogger("napari_conch")


@dataclass
class LoadedModel(EncoderUse):
    """A CoCa with everything needed to use it.

    Attributes
    ----------
    model : CoCa
        In eval mode, on ``device``.
    config : CocaConfig
        Its architecture.
    device : torch.device
        Where it runs.
    precision : str
        ``"fp32"``, ``"bf16"`` (autocast; CUDA or CPU), ``"fp16"`` (autocast; CUDA only) or
        ``"int8"`` (the image encoder in ONNX Runtime, see :mod:`napari_conch.model.int8`).
    source : str
        What was loaded, as it was asked for (a path, ``hf_hub:...`` or a source name such as
        ``demo``).
    fingerprint : str
        Hash of the weights, for caches.
    preprocess : Preprocess
        Tiles -> model input.
    tokenizer_path : path, optional
        The tokenizer JSON; found automatically when ``None``.
    source_info : SourceInfo
        What kind of source it came from (see :mod:`napari_conch.model.sources`).
    image_engine : callable, optional
        Runs the image encoder instead of ``model`` (the int8 ONNX Runtime session): preprocessed
        images ``[B, 3, S, S]`` -> unnormalised embeddings ``[B, D]``.
    precision_note : str, optional
        What the precision was chosen by and how its gate went (see
        :mod:`napari_conch.model.precision_choice`); ``None`` when nothing was gated.
    """

    model: CoCa
    config: CocaConfig
    device: torch.device
    precision: str
    source: str
    fingerprint: str
    preprocess: Preprocess
    tokenizer_path: str | Path | None = None
    source_info: SourceInfo = PATH_SOURCE
    image_engine: Any = field(default=None, repr=False)
    precision_note: str | None = None
    _tokenizer: Tokenizer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def image_size(self) -> int:
        """Model input size in pixels."""
        return self.config.vision.image_size

    @property
    def default_tile_size(self) -> int:
        """The tile side to embed with unless told otherwise (pixels of the grid's level).

        The source's recommended size (the demo model: 128, the size it was trained on), else
        the model's input size (CONCH: 448).
        """
        return model_tile_size(self.source_info, self.image_size)

    @property
    def is_demo(self) -> bool:
        """Whether this is a demo model (not CONCH), which the UI must say."""
        return bool(self.source_info.is_demo)

    @property
    def has_decoder(self) -> bool:
        """Whether captioning decoder weights were loaded."""
        return bool(self.model.decoder_trained)

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer, found on first use (see :func:`find_tokenizer`) and checked against
        the model: its vocabulary size and special tokens must be the checkpoint's."""
        if self._tokenizer is None:
            path = find_tokenizer(self.tokenizer_path, checkpoint=self.source)
            text = self.config.text
            self._tokenizer = Tokenizer.from_file(path, text.context_length, text.vocab_size)
        return self._tokenizer

    @property
    def tokenizer_file(self) -> str | None:
        """Where the tokenizer is (or would be found), or ``None`` when nowhere; never raises."""
        if self._tokenizer is not None and self._tokenizer.path is not None:
            return str(self._tokenizer.path)
        try:
            return str(find_tokenizer(self.tokenizer_path, checkpoint=self.source))
        except TokenizerNotFoundError:
            return None

    @torch.inference_mode()
    def embed_images(self, tiles) -> torch.Tensor:
        """uint8 RGB tiles ``[B, H, W, 3]`` -> normalised projected embeddings ``[B, D]`` (CPU)."""
        return self.image_embeddings(
            self.model.encode_image, self.preprocess(tiles, device=self.device)
        )

    @torch.inference_mode()
    def embed_texts(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Texts -> normalised embeddings ``[N, D]`` (CPU).

        A single string is one text (``[1, D]``), as :meth:`Tokenizer.encode` takes it, never
        its characters.

        Raises
        ------
        InputError
            For no text at all, or an item that is not a string.
        """
        ids = self.tokenizer.encode(text_list(texts)).to(self.device)
        return self.normalised(self.model.encode_text, ids)

    @torch.inference_mode()
    def caption(self, tiles, cfg: GenerationConfig | None = None) -> list[str]:
        """Captions of uint8 RGB tiles, one string per tile.

        Raises
        ------
        NoDecoderError
            When the checkpoint had no decoder weights (the public CONCH release).
        """
        x = self.preprocess(tiles, device=self.device)
        with self._lock, self.autocast():
            ids = generate(self.model, x, cfg)
        return self.tokenizer.decode(ids)

    def describe(self) -> str:
        """One line for status bars and logs."""
        decoder = "with captioning decoder" if self.has_decoder else "no captioning decoder"
        name = f"{self.config.name} (not CONCH)" if self.is_demo else self.config.name
        return f"{name} from {self.source} on {self.device} ({self.precision}, {decoder})"


_CACHE: dict[tuple, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(
    source: str | os.PathLike,
    *,
    config: str | os.PathLike | dict | CocaConfig | None = None,
    tokenizer: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    token: str | None = None,
) -> LoadedModel:
    """Load a CoCa checkpoint once per (source, config, device) and reuse it.

    Parameters
    ----------
    source : str or path
        A model source (see :mod:`napari_conch.model.sources`): a CLIP model folder or
        ``hf_hub:`` repository (QuiltNet, PLIP; see :mod:`napari_conch.model.clip_sources`),
        loaded by :func:`~napari_conch.model.clip_loaded.load_clip_model`; a checkpoint file
        (``.bin``, ``.pt``, ``.pth``, ``.safetensors``), a folder holding ``pytorch_model.bin``,
        ``hf_hub:MahmoodLab/conch``, or a registered name such as ``"demo"`` (the demo model
        shipped with the package; not CONCH; its config and tokenizer come with it).
    config : str, path, dict or CocaConfig, optional
        The architecture; default: the source's own config, else CONCH ViT-B/16.
    tokenizer : path, optional
        The tokenizer JSON; default: the source's own, else found automatically (see
        :func:`find_tokenizer`) when text is first encoded.
    device : str or torch.device, optional
        Default: CUDA, else MPS, else CPU.
    precision : str, optional
        ``"auto"`` (default), ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``: see
        :mod:`napari_conch.model.formats` and :mod:`napari_conch.model.precision_choice`
        (``auto``: bf16 on capable CUDA GPUs, and on CPUs with native bf16 when the model
        passes the parity gate; else fp32).
    token : str, optional
        Hugging Face token for ``hf_hub:`` sources (default: ``HF_TOKEN``).

    Raises
    ------
    CheckpointError, ConfigError, TokenizerNotFoundError, NapariConchError
        One-line messages naming what is wrong.
    """
    requested = str(source)
    from napari_conch.model.clip_sources import is_clip_source

    if is_clip_source(requested):  # QuiltNet, PLIP, ...: a folder or hub repository of CLIP
        # a store made by a CLIP model records its config and tokenizer; they are the model's
        # own (the fingerprint check of the store guards the rest), anything else is refused
        recorded = isinstance(config, dict) and config.get("architecture") == "clip"
        if (config is not None and not recorded) or (tokenizer is not None and not recorded):
            raise InputError(
                f"{requested} is a CLIP model: it brings its own config and tokenizer "
                "(leave --config and --tokenizer out)"
            )
        from napari_conch.model.clip_loaded import load_clip_model

        return load_clip_model(requested, device=device, precision=precision, token=token)
    info = source_info(requested)
    resolved = None
    if info.kind == BUNDLED:  # brings its own config and tokenizer; cheap to resolve
        resolved = resolve_source(requested, token=token)
        config = config if config is not None else resolved.config
        tokenizer = tokenizer if tokenizer is not None else resolved.tokenizer
    cfg = resolve_config(config)
    dev = resolve_device(device)
    wanted = precision_key(precision, dev)
    base_key = (cache_key(requested), repr(cfg), str(dev), str(tokenizer) if tokenizer else None)
    with _CACHE_LOCK:
        cached = _CACHE.get((*base_key, wanted))
        if cached is not None:
            return cached
        base = _CACHE.get((*base_key, "fp32"))
        if base is None:
            if resolved is None:
                resolved = resolve_source(requested, token=token)
            base = _load_fp32(requested, resolved.weights, cfg, dev, tokenizer, info)
            _CACHE[(*base_key, "fp32")] = base
        loaded = base if wanted == "fp32" else apply_precision(base, precision)
        _CACHE[(*base_key, wanted)] = loaded
        return loaded


def precision_key(precision: str | None, device: torch.device) -> str:
    """The cache key of a requested precision: checked against ``device``; ``auto`` stays
    ``auto`` where it needs the gate, else it is what it resolves to."""
    resolved = resolve_precision(precision, device)
    if precision in (None, AUTO):
        return AUTO if auto_choice(device)[2] else resolved
    return resolved


def _load_fp32(
    requested: str,
    path: Any,
    cfg: CocaConfig,
    dev: torch.device,
    tokenizer: Any,
    info: SourceInfo,
) -> LoadedModel:
    """The float32 model of a checkpoint, checked for finite embeddings."""
    state = read_state_dict(path)
    model = build_model(cfg, device="meta")
    load_weights(model, state, source=repr(str(path)))
    loaded = LoadedModel(
        model=model.to(dev).eval(),
        config=cfg,
        device=dev,
        precision="fp32",
        source=requested,
        fingerprint=fingerprint_state_dict(state),
        preprocess=Preprocess(cfg.vision.image_size),
        tokenizer_path=tokenizer,
        source_info=info,
    )
    if tokenizer is not None:
        loaded.tokenizer  # noqa: B018 - fail early on an explicit but broken path
    check_finite_embeddings(loaded)  # NaN weights are refused, never embedded
    return loaded


def clear_model_cache() -> None:
    """Forget every loaded model (frees memory; the next ``load_model`` reads the file again)."""
    from napari_conch.model.clip_loaded import clear_clip_cache

    with _CACHE_LOCK:
        _CACHE.clear()
    clear_clip_cache()
