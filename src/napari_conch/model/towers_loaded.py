"""Loading KEEP and BiomedCLIP: a model folder or hub repository, ready to embed tiles and texts.

:class:`LoadedTowers` is a :class:`~napari_conch.model.clip_loaded.LoadedClip` (the interface
the engine, the CLI and the docks use) whose texts go through BERT's WordPiece tokenizer with an
attention mask. :func:`load_towers` is called by
:func:`~napari_conch.model.clip_loaded.load_clip_model` for folders it recognises as KEEP's
(``config.json`` of ``model_type: keep``) or as open_clip's with a timm and a Hugging Face tower.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from napari_conch.errors import TokenizerNotFoundError
from napari_conch.model.checkpoint import fingerprint_state_dict, read_state_dict
from napari_conch.model.clip_config import OPEN_CLIP
from napari_conch.model.clip_loaded import LoadedClip, _check_finite
from napari_conch.model.clip_sources import KEEP_LAYOUT, ClipFiles, known_model
from napari_conch.model.clip_tokenizer import open_clip_clean
from napari_conch.model.config import read_config_file
from napari_conch.model.preprocess import Preprocess
from napari_conch.model.sources import HF_PREFIX, HUB, PATH, SourceInfo
from napari_conch.model.towers import build_towers, load_towers_weights
from napari_conch.model.towers_config import (
    BIOMEDCLIP,
    TowersConfig,
    from_keep,
    from_open_clip_towers,
    is_towers_open_clip,
)
from napari_conch.model.wordpiece import (
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    VOCAB_FILE,
    WordPieceTokenizer,
)


def is_towers_files(files: ClipFiles) -> bool:
    """Whether a model's files are KEEP's or BiomedCLIP-like (timm + Hugging Face towers)."""
    if files.layout == KEEP_LAYOUT:
        return True
    return files.layout == OPEN_CLIP and is_towers_open_clip(read_config_file(files.config))


def read_towers_config(files: ClipFiles, name: str) -> TowersConfig:
    """The :class:`TowersConfig` of a model's files."""
    data = read_config_file(files.config)
    where = repr(str(files.config))
    if files.layout == KEEP_LAYOUT:
        return from_keep(data, name=name, where=where)
    return from_open_clip_towers(data, name=name, where=where)


def _tokenizer_folder(files: ClipFiles, config: TowersConfig, download: bool) -> Path:
    """Where the WordPiece files are: the model folder, else (BiomedCLIP) the repository its
    config names, as a local folder, cached, or downloaded for a hub source."""
    if any((files.folder / f).is_file() for f in (VOCAB_FILE, TOKENIZER_JSON)):
        return files.folder
    repo = config.tokenizer_repo
    if repo is None:
        raise TokenizerNotFoundError(
            f"{str(files.folder)!r} has no BERT tokenizer ({VOCAB_FILE} or {TOKENIZER_JSON})"
        )
    local = Path(repo).expanduser()
    if (local / VOCAB_FILE).is_file() or (local / TOKENIZER_JSON).is_file():
        return local
    try:
        import huggingface_hub
    except ImportError:
        huggingface_hub = None
    if huggingface_hub is not None:
        cached = huggingface_hub.try_to_load_from_cache(repo, VOCAB_FILE)
        if isinstance(cached, str):
            return Path(cached).parent
        if download:
            try:
                vocab = huggingface_hub.hf_hub_download(repo, VOCAB_FILE)
                try:
                    huggingface_hub.hf_hub_download(repo, TOKENIZER_CONFIG)
                except Exception:
                    pass
                return Path(vocab).parent
            except Exception as exc:
                raise TokenizerNotFoundError(
                    f"the tokenizer of {config.name} ({repo}) could not be downloaded: {exc}"
                ) from None
    raise TokenizerNotFoundError(
        f"{str(files.folder)!r} has no BERT tokenizer ({VOCAB_FILE} or {TOKENIZER_JSON}) and "
        f"{repo!r} is neither a folder holding one nor in the Hugging Face cache: put its "
        f"{VOCAB_FILE} (and {TOKENIZER_CONFIG}) in the model folder"
    )


def towers_tokenizer(files: ClipFiles, config: TowersConfig, download: bool) -> WordPieceTokenizer:
    """The model's WordPiece tokenizer (BiomedCLIP's texts cleaned as open_clip cleans them)."""
    folder = _tokenizer_folder(files, config, download)
    clean = functools.partial(open_clip_clean, lower=False) if config.family == BIOMEDCLIP else None
    return WordPieceTokenizer.from_folder(
        folder,
        config.context_length,
        vocab_size=config.text.vocab_size,
        lowercase=config.lowercase,
        clean=clean,
    )


class LoadedTowers(LoadedClip):
    """A KEEP or BiomedCLIP model with its tokenizer and preprocessing."""

    @property
    def tokenizer_file(self) -> str:
        """The vocabulary file."""
        return str(self.tokenizer.path)

    @torch.inference_mode()
    def embed_texts(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Texts -> normalised embeddings ``[N, D]`` (CPU)."""
        from napari_conch.model.loaded_common import text_list

        ids, mask = self.tokenizer.encode_with_mask(text_list(texts))
        with self._lock, self.autocast():
            out = self.model.encode_text(
                ids.to(self.device), normalize=False, attention_mask=mask.to(self.device)
            )
        return F.normalize(out.float(), dim=-1).cpu()


def load_towers(
    requested: str, files: ClipFiles, name: str, device: torch.device, precision: str
) -> LoadedTowers:
    """Build, load and check a KEEP or BiomedCLIP model (the caller caches it)."""
    config = read_towers_config(files, name)
    hub = requested.startswith(HF_PREFIX)
    tokenizer = towers_tokenizer(files, config, download=hub)
    state = read_state_dict(files.weights)
    model = build_towers(config, device="meta")
    load_towers_weights(model, state, source=repr(str(files.weights)))
    card = known_model(name)
    info = SourceInfo(
        name="hf_hub" if hub else "path",
        kind=HUB if hub else PATH,
        display_name=name,
        default_tile_size=config.vision.image_size,
        description=card.summary if card is not None else f"a {config.family} model",
    )
    loaded = LoadedTowers(
        model=model.to(device).eval(),
        config=config,  # type: ignore[arg-type]
        device=device,
        precision=precision,
        source=requested,
        fingerprint=fingerprint_state_dict(state),
        preprocess=Preprocess(config.vision.image_size, config.mean, config.std),
        tokenizer=tokenizer,  # type: ignore[arg-type]
        files=files,
        source_info=info,
        templates=card.templates if card is not None else config.family,
    )
    _check_finite(loaded)
    return loaded
