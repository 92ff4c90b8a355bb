"""CONCH's CoCa in plain PyTorch: configs, towers, tokenizer, preprocessing, loading.

Public API
----------
build_model(config)
    A CoCa of a preset (``"conch_ViT-B-16"``) or a CONCH-form config (dict or JSON file).
load_model(source, *, config=None, tokenizer=None, device=None)
    A model source (a checkpoint, ``hf_hub:MahmoodLab/conch`` or a registered name such as
    ``demo``) loaded with its tokenizer and preprocessing, ready to embed tiles and texts;
    cached per (source, config, device).
register_source, source_info, SourceInfo
    The registry of model sources (:mod:`napari_conch.model.sources`).
Tokenizer
    CONCH's byte-level BPE tokenizer (``Tokenizer.from_file(path)``).
Preprocess
    uint8 RGB tiles -> normalised model input.

The names are imported on first use, so ``import napari_conch.model.sources`` (which packages
that register a source do) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "build_model": "build",
    "init_weights": "build",
    "load_weights": "build",
    "CoCa": "coca",
    "CONCH_VITB16": "config",
    "PRESETS": "config",
    "CocaConfig": "config",
    "resolve_config": "config",
    "LoadedModel": "loaded",
    "clear_model_cache": "loaded",
    "load_model": "loaded",
    "Preprocess": "preprocess",
    "SourceInfo": "sources",
    "register_source": "sources",
    "source_info": "sources",
    "Tokenizer": "tokenizer",
    "find_tokenizer": "tokenizer",
}

if TYPE_CHECKING:
    from napari_conch.model.build import build_model, init_weights, load_weights
    from napari_conch.model.coca import CoCa
    from napari_conch.model.config import CONCH_VITB16, PRESETS, CocaConfig, resolve_config
    from napari_conch.model.loaded import LoadedModel, clear_model_cache, load_model
    from napari_conch.model.preprocess import Preprocess
    from napari_conch.model.sources import SourceInfo, register_source, source_info
    from napari_conch.model.tokenizer import Tokenizer, find_tokenizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "CONCH_VITB16",
    "PRESETS",
    "CoCa",
    "CocaConfig",
    "LoadedModel",
    "Preprocess",
    "SourceInfo",
    "Tokenizer",
    "build_model",
    "clear_model_cache",
    "find_tokenizer",
    "init_weights",
    "load_model",
    "load_weights",
    "register_source",
    "resolve_config",
    "source_info",
]
