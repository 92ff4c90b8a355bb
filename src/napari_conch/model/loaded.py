"""``load_model``: a checkpoint, its tokenizer and preprocessing, ready to embed tiles and texts."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from napari_conch.model.device import resolve_device, resolve_precision
from napari_conch.model.generation import GenerationConfig, generate
from napari_conch.model.loaded_common import EncoderUse, text_list
from napari_conch.model.preprocess import Preprocess
from napari_conch.model.sources import (
    BUNDLED,
    PATH_SOURCE,
    SourceInfo,
    cache_key,
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
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; the latter two on CUDA only).
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
        return int(self.source_info.default_tile_size or self.image_size)

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
        return self.normalised(self.model.encode_image, self.preprocess(tiles, device=self.device))

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
        ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 on capable CUDA GPUs, else fp32).
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
    prec = resolve_precision(precision, dev)
    key = (cache_key(requested), repr(cfg), str(dev), prec, str(tokenizer) if tokenizer else None)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        if resolved is None:
            resolved = resolve_source(requested, token=token)
        path = resolved.weights
        state = read_state_dict(path)
        model = build_model(cfg, device="meta")
        load_weights(model, state, source=repr(str(path)))
        loaded = LoadedModel(
            model=model.to(dev).eval(),
            config=cfg,
            device=dev,
            precision=prec,
            source=requested,
            fingerprint=fingerprint_state_dict(state),
            preprocess=Preprocess(cfg.vision.image_size),
            tokenizer_path=tokenizer,
            source_info=info,
        )
        if tokenizer is not None:
            loaded.tokenizer  # noqa: B018 - fail early on an explicit but broken path
        check_finite_embeddings(loaded)  # NaN weights are refused, never embedded
        _CACHE[key] = loaded
        return loaded


def clear_model_cache() -> None:
    """Forget every loaded model (frees memory; the next ``load_model`` reads the file again)."""
    from napari_conch.model.clip_loaded import clear_clip_cache

    with _CACHE_LOCK:
        _CACHE.clear()
    clear_clip_cache()
