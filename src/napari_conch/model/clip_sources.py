"""Open CLIP-family pathology models: what is known about each, and where its files are.

A CLIP-family model (two towers, contrastive; QuiltNet, PLIP, KEEP, BiomedCLIP) is loaded from
its own published files, unchanged:

- a local folder laid out as its Hugging Face repository: ``open_clip_config.json`` with
  ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.safetensors`` /
  ``open_clip_pytorch_model.bin`` (open_clip: QuiltNet), or ``config.json`` of
  ``model_type: clip`` with ``model.safetensors`` / ``pytorch_model.bin``, and the tokenizer files
  (transformers: PLIP); or ``config.json`` of ``model_type: keep`` with the same weight files
  and ``vocab.txt``/``tokenizer.json`` (KEEP). BiomedCLIP is an open_clip folder whose config
  names a timm image tower and a Hugging Face text tower.
- ``hf_hub:REPO`` for a known repository (:data:`KNOWN_MODELS`) or any repository whose cached
  snapshot holds such files, through ``huggingface_hub`` (the ``hub`` extra): the cached snapshot
  when there is one (nothing is downloaded then), else a download of those files only.

This module imports neither torch nor huggingface_hub at import time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from napari_conch.errors import CheckpointError
from napari_conch.model.clip_config import OPEN_CLIP, TRANSFORMERS
from napari_conch.model.sources import HF_PREFIX

OPEN_CLIP_CONFIG = "open_clip_config.json"
HF_CONFIG = "config.json"
HF_PREPROCESSOR = "preprocessor_config.json"
#: The layout of KEEP's repository (transformers with its own modelling code).
KEEP_LAYOUT = "keep"
#: Weight files looked for, per layout, in this order (safetensors first).
WEIGHT_FILES = {
    OPEN_CLIP: (
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.safetensors",
        "open_clip_pytorch_model.bin",
    ),
    TRANSFORMERS: ("model.safetensors", "pytorch_model.bin"),
    KEEP_LAYOUT: ("model.safetensors", "pytorch_model.bin"),
}
#: Tokenizer files of a transformers folder (CLIP's BPE or BERT's WordPiece).
HF_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class ModelCard:
    """What napari-conch knows about a published model (checked against its card offline only
    as far as docs/models.md says).

    Attributes
    ----------
    name : str
        Short name (``QuiltNet-B-32``).
    repo : str
        Its Hugging Face repository.
    summary : str
        What it is, one line.
    licence : str
        As its card states it.
    image_size : int
        Input side in pixels (the default tile size).
    supported : bool
        Whether napari-conch can load it yet.
    templates : str
        The name of its zero-shot template set (:data:`napari_conch.engine.prompts.TEMPLATE_SETS`).
    """

    name: str
    repo: str
    summary: str
    licence: str
    image_size: int = 224
    supported: bool = True
    templates: str = "none"

    @property
    def source(self) -> str:
        """What to pass as ``--model``."""
        return f"{HF_PREFIX}{self.repo}"

    @property
    def how_to_get(self) -> str:
        """One line: how a user gets the files."""
        if not self.supported:
            return "not yet supported by napari-conch"
        return (
            f"--model {self.source} downloads it once (pip install 'napari-conch[hub]'); or "
            f"download the repository's files into a folder and pass --model FOLDER"
        )


KNOWN_MODELS: tuple[ModelCard, ...] = (
    ModelCard(
        "QuiltNet-B-32",
        "wisdomik/QuiltNet-B-32",
        "CLIP ViT-B/32 fine-tuned on Quilt-1M (histopathology from YouTube videos and more); "
        "open_clip",
        "MIT",
        templates="quiltnet",
    ),
    ModelCard(
        "QuiltNet-B-16",
        "wisdomik/QuiltNet-B-16",
        "CLIP ViT-B/16 fine-tuned on Quilt-1M; open_clip",
        "MIT",
        templates="quiltnet",
    ),
    ModelCard(
        "PLIP",
        "vinid/plip",
        "CLIP ViT-B/32 fine-tuned on OpenPath (pathology images and text from medical Twitter); "
        "transformers CLIPModel",
        "see its card (research use; not gated)",
        templates="plip",
    ),
    ModelCard(
        "KEEP",
        "Astaxanthin/KEEP",
        "timm ViT-L/16 + BERT, knowledge-enhanced pathology vision-language model (disease "
        "knowledge graph); transformers with its own modelling code",
        "MIT (per its card)",
        templates="keep",
    ),
    ModelCard(
        "BiomedCLIP",
        "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        "timm ViT-B/16 + PubMedBERT (256 tokens), trained on PubMed figures (biomedical, not "
        "only pathology); open_clip",
        "MIT",
        templates="biomedclip",
    ),
)


def known_model(repo_or_name: str) -> ModelCard | None:
    """The card of a repository (``wisdomik/QuiltNet-B-32``, ``hf_hub:...``) or short name."""
    text = repo_or_name[len(HF_PREFIX) :] if repo_or_name.startswith(HF_PREFIX) else repo_or_name
    for card in KNOWN_MODELS:
        if text.lower() in (card.repo.lower(), card.name.lower()):
            return card
    return None


@dataclass(frozen=True)
class ClipFiles:
    """The files of one CLIP model.

    Attributes
    ----------
    folder : Path
        The folder (or hub snapshot) holding them.
    layout : str
        ``"open_clip"`` or ``"transformers"``.
    config : Path
        ``open_clip_config.json`` or ``config.json``.
    weights : Path
        The checkpoint.
    preprocessor : Path or None
        ``preprocessor_config.json`` of a transformers folder, when there is one.
    """

    folder: Path
    layout: str
    config: Path
    weights: Path
    preprocessor: Path | None = None


def folder_layout(folder: Path) -> str | None:
    """``"open_clip"``/``"transformers"``/``"keep"`` for a CLIP-family model folder, ``None`` for
    anything else."""
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return OPEN_CLIP
    config = folder / HF_CONFIG
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and data.get("model_type") == "clip":
            return TRANSFORMERS
        if isinstance(data, dict) and data.get("model_type") == KEEP_LAYOUT:
            return KEEP_LAYOUT
    return None


def clip_folder(path: str | os.PathLike) -> Path | None:
    """The CLIP model folder ``path`` names (the folder, or a weight file inside one), or None."""
    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    if not path.exists() or folder_layout(folder) is None:
        return None
    if path.is_file() and path.name not in WEIGHT_FILES[folder_layout(folder)]:
        return None
    return folder


def folder_files(folder: Path, where: str | None = None) -> ClipFiles:
    """The files of a CLIP model folder.

    Raises
    ------
    CheckpointError
        When the folder is not a CLIP model folder or lacks its weights.
    """
    where = where or repr(str(folder))
    layout = folder_layout(folder)
    if layout is None:
        raise CheckpointError(
            f"{where} is not a CLIP model folder (no {OPEN_CLIP_CONFIG}, nor a {HF_CONFIG} of "
            "model_type clip or keep)"
        )
    for name in WEIGHT_FILES[layout]:
        if (folder / name).is_file():
            weights = folder / name
            break
    else:
        raise CheckpointError(
            f"{where} holds no weights (looked for {', '.join(WEIGHT_FILES[layout])})"
        )
    config = folder / (OPEN_CLIP_CONFIG if layout == OPEN_CLIP else HF_CONFIG)
    pre = folder / HF_PREPROCESSOR
    return ClipFiles(
        folder, layout, config, weights, pre if layout == TRANSFORMERS and pre.is_file() else None
    )


def cached_snapshot(repo: str) -> Path | None:
    """The folder of ``repo``'s cached snapshot when it holds a CLIP config, else None (no
    network; None without huggingface_hub)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in (OPEN_CLIP_CONFIG, HF_CONFIG):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str) and folder_layout(Path(found).parent) is not None:
            return Path(found).parent
    return None


def is_clip_source(source: str | os.PathLike) -> bool:
    """Whether ``source`` names a CLIP model (a folder, ``hf_hub:`` of a known or cached CLIP
    repository). Reads nothing but small config files; downloads nothing."""
    text = str(source)
    if text.startswith(HF_PREFIX):
        repo = text[len(HF_PREFIX) :]
        card = known_model(repo)
        return (card is not None and card.supported) or cached_snapshot(repo) is not None
    try:
        return clip_folder(text) is not None
    except OSError:
        return False


def hub_files(repo: str, token: str | None = None) -> ClipFiles:
    """The files of ``hf_hub:REPO``: the cached snapshot, else downloaded (config, weights,
    tokenizer and preprocessor files only).

    Raises
    ------
    CheckpointError
        Without huggingface_hub, offline without a cached copy, or for a repository that is not
        a CLIP model.
    """
    card = known_model(repo)
    if card is not None and not card.supported:
        raise CheckpointError(f"{card.name} ({repo}) is not yet supported by napari-conch")
    cached = cached_snapshot(repo)
    if cached is not None:
        try:
            return folder_files(cached, where=f"hf_hub:{repo}")
        except CheckpointError:
            pass  # config cached, weights not yet: download them below
    try:
        import huggingface_hub
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise CheckpointError(
            f"hf_hub:{repo} needs huggingface_hub: pip install 'napari-conch[hub]'"
        ) from None
    patterns = [
        OPEN_CLIP_CONFIG,
        HF_CONFIG,
        HF_PREPROCESSOR,
        *HF_TOKENIZER_FILES,
        *WEIGHT_FILES[OPEN_CLIP],
        *WEIGHT_FILES[TRANSFORMERS],
    ]
    try:
        folder = huggingface_hub.snapshot_download(
            repo, allow_patterns=patterns, token=token or os.environ.get("HF_TOKEN")
        )
    except hub_errors.GatedRepoError:
        raise CheckpointError(
            f"hf_hub:{repo} is gated and this account has no access: request access on its "
            "Hugging Face page, then pass a token (--hf-token or HF_TOKEN)"
        ) from None
    except hub_errors.RepositoryNotFoundError:
        raise CheckpointError(f"hf_hub:{repo} was not found on the Hugging Face Hub") from None
    except hub_errors.LocalEntryNotFoundError:
        raise CheckpointError(
            f"hf_hub:{repo} is not in the local cache and the Hub cannot be reached (offline?)"
        ) from None
    except (OSError, hub_errors.HfHubHTTPError) as exc:
        raise CheckpointError(f"hf_hub:{repo} could not be downloaded: {exc}") from None
    return folder_files(Path(folder), where=f"hf_hub:{repo}")


def resolve_clip(source: str | os.PathLike, token: str | None = None) -> ClipFiles:
    """The files of a CLIP source (see :func:`is_clip_source`)."""
    text = str(source)
    if text.startswith(HF_PREFIX):
        return hub_files(text[len(HF_PREFIX) :], token=token)
    folder = clip_folder(text)
    if folder is None:
        raise CheckpointError(f"{text!r} is not a CLIP model folder")
    return folder_files(folder)


#: What each folder layout is, for listings.
LAYOUT_LABELS = {
    OPEN_CLIP: "open_clip CLIP",
    TRANSFORMERS: "transformers CLIP",
    KEEP_LAYOUT: "KEEP (timm ViT + BERT)",
}
TOWERS_LABEL = "open_clip with a timm image tower and a BERT text tower (BiomedCLIP)"


def folder_kind(folder: Path) -> str | None:
    """What a model folder is, in words (``None``: not a CLIP-family folder). Reads only its
    config; imports no torch."""
    layout = folder_layout(folder)
    if layout != OPEN_CLIP:
        return LAYOUT_LABELS.get(layout) if layout is not None else None
    try:
        data = json.loads((folder / OPEN_CLIP_CONFIG).read_text(encoding="utf-8"))
        model = data.get("model_cfg", data)
        towers = bool(
            (model.get("vision_cfg") or {}).get("timm_model_name")
            or (model.get("text_cfg") or {}).get("hf_model_name")
        )
    except (OSError, ValueError, AttributeError):
        towers = False
    return TOWERS_LABEL if towers else LAYOUT_LABELS[OPEN_CLIP]


def uses_wordpiece(source: str | os.PathLike) -> bool:
    """Whether a CLIP-family source tokenises with BERT's WordPiece (KEEP, BiomedCLIP) rather
    than CLIP's BPE. Downloads nothing."""
    text = str(source)
    card = known_model(text)
    if card is not None:
        return card.templates in ("keep", "biomedclip")
    try:
        folder = clip_folder(text)
    except OSError:
        return False
    return folder is not None and folder_kind(folder) in (LAYOUT_LABELS[KEEP_LAYOUT], TOWERS_LABEL)


def known_model_status(folder: str | os.PathLike | None = None) -> list[dict[str, object]]:
    """One row per known model, for a model chooser (the napari Model panel) or a listing:
    ``name``, ``source`` (what to pass as ``--model``), ``repo``, ``summary``, ``licence``,
    ``image_size``, ``templates``, ``supported``, ``found`` (its files are in ``folder`` or the
    Hugging Face cache) and ``where`` (one phrase). Reads only small files; downloads nothing."""
    rows = []
    for card in KNOWN_MODELS:
        where = where_found(card, folder) if card.supported else "not yet supported"
        rows.append(
            {
                "name": card.name,
                "source": card.source,
                "repo": card.repo,
                "summary": card.summary,
                "licence": card.licence,
                "image_size": card.image_size,
                "templates": card.templates,
                "supported": card.supported,
                "found": where.startswith("found"),
                "where": where,
            }
        )
    return rows


def where_found(card: ModelCard, folder: str | os.PathLike | None = None) -> str:
    """Where a known model's files are: a given folder, the HF cache, or nowhere (one phrase)."""
    if folder is not None:
        try:
            files = folder_files(Path(folder))
        except CheckpointError as exc:
            return f"not in {str(folder)!r}: {exc}"
        return f"found in {files.folder}"
    snapshot = cached_snapshot(card.repo)
    if snapshot is None:
        return "not in the Hugging Face cache"
    try:
        folder_files(snapshot)
    except CheckpointError:
        return f"config cached in {snapshot}, weights not yet"
    return f"found in the Hugging Face cache ({snapshot})"
