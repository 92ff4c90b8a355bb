"""CONCH's CoCa in plain PyTorch: configs, towers, tokenizer, preprocessing, loading.

Public API
----------
build_model(config)
    A CoCa of a preset (``"conch_ViT-B-16"``) or a CONCH-form config (dict or JSON file).
load_model(source, *, config=None, tokenizer=None, device=None)
    A checkpoint (or ``hf_hub:MahmoodLab/conch``) loaded with its tokenizer and preprocessing,
    ready to embed tiles and texts; cached per (source, config, device).
Tokenizer
    CONCH's byte-level BPE tokenizer (``Tokenizer.from_file(path)``).
Preprocess
    uint8 RGB tiles -> normalised model input.
"""

from napari_conch.model.build import build_model, init_weights, load_weights
from napari_conch.model.coca import CoCa
from napari_conch.model.config import CONCH_VITB16, PRESETS, CocaConfig, resolve_config
from napari_conch.model.loaded import LoadedModel, clear_model_cache, load_model
from napari_conch.model.preprocess import Preprocess
from napari_conch.model.tokenizer import Tokenizer, find_tokenizer

__all__ = [
    "CONCH_VITB16",
    "PRESETS",
    "CoCa",
    "CocaConfig",
    "LoadedModel",
    "Preprocess",
    "Tokenizer",
    "build_model",
    "clear_model_cache",
    "find_tokenizer",
    "init_weights",
    "load_model",
    "load_weights",
    "resolve_config",
]
