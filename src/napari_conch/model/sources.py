"""Model sources: what a ``source`` string names, and the files it stands for.

A source is what a user types where a model is asked for (``--model``, the Model panel,
:func:`napari_conch.model.load_model`):

- a path: a checkpoint file, or a folder holding ``pytorch_model.bin`` (built in);
- ``hf_hub:REPO``: a Hugging Face Hub repository such as ``hf_hub:MahmoodLab/conch``
  (built in; downloaded on first use);
- a name registered with :func:`register_source`, such as ``demo``, the demo model shipped with
  the package, which :mod:`napari_conch.demo` registers when it is imported.

This module imports nothing above :mod:`napari_conch.model` and nothing heavy (no torch).
Packages that register a source declare it as an entry point of the group
:data:`ENTRY_POINT_GROUP` (``name = "package.module"``; napari-conch's own ``demo`` is declared
in ``pyproject.toml``, so the registration shows in the package metadata, not as an import from
``model/`` upwards); the first time one of those names is asked for, the registry imports that
module, which registers the source, so it is there whichever entry point (CLI, napari, Python)
asked first. A registered name wins over a file of the same
name in the working folder; write ``./demo`` for the file.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_conch.errors import CheckpointError

#: Prefix of Hugging Face Hub sources.
HF_PREFIX = "hf_hub:"
#: Names of checkpoint files looked for inside a folder, in this order.
FOLDER_CHECKPOINTS = ("pytorch_model.bin", "model.safetensors")
#: Entry-point group of the packages that register named model sources on import.
ENTRY_POINT_GROUP = "napari_conch.model_sources"


@functools.cache
def plugin_modules() -> dict[str, str]:
    """Named sources declared as entry points: name -> the module that registers it."""
    from importlib.metadata import entry_points

    return {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}


#: Kinds of source.
PATH, HUB, BUNDLED = "path", "hub", "bundled"


@dataclass(frozen=True)
class SourceInfo:
    """What a source is, known before anything is loaded.

    Attributes
    ----------
    name : str
        The source's name: ``"path"``, ``"hf_hub"`` or the registered name (``"demo"``).
    kind : str
        ``"path"`` (a file or folder), ``"hub"`` (downloaded) or ``"bundled"`` (shipped with a
        package, with its own config and tokenizer).
    display_name : str
        How it is labelled in the UI and the CLI.
    is_demo : bool
        A demo model, not CONCH: the UI says so wherever it shows the model.
    default_tile_size : int or None
        The tile side it should be used with, in pixels of the grid's level; ``None``: the
        model's input size (CONCH: 448).
    description : str
        One line for ``napari-conch info`` and help texts.
    """

    name: str
    kind: str
    display_name: str
    is_demo: bool = False
    default_tile_size: int | None = None
    description: str = ""


def model_tile_size(info: SourceInfo, image_size: int) -> int:
    """The tile side a model embeds with unless told otherwise (pixels of the grid's level).

    Its source's recommended size (the demo model: 128, the size it was trained on), else the
    model's input size (CONCH: 448). The models' ``default_tile_size`` is this;
    :meth:`RunOptions.tile_size_for <napari_conch.engine.options.RunOptions.tile_size_for>`
    puts a tile size the user gave before it.
    """
    return int(info.default_tile_size or image_size)


@dataclass(frozen=True)
class ResolvedSource:
    """The local files a source stands for.

    Attributes
    ----------
    info : SourceInfo
        What the source is.
    weights : Path
        The checkpoint file.
    config : Path or None
        Its config JSON when the source brings one (bundled models).
    tokenizer : Path or None
        Its tokenizer JSON when the source brings one (bundled models).
    """

    info: SourceInfo
    weights: Path
    config: Path | None = None
    tokenizer: Path | None = None


#: A named source's resolver: ``token`` (for sources that download) -> files.
Resolver = Callable[[str | None], ResolvedSource]

PATH_SOURCE = SourceInfo(
    name="path",
    kind=PATH,
    display_name="checkpoint file",
    description="a checkpoint file (.bin, .pt, .pth, .safetensors) or a folder holding one",
)
HUB_SOURCE = SourceInfo(
    name="hf_hub",
    kind=HUB,
    display_name="Hugging Face Hub",
    description="hf_hub:REPO, e.g. hf_hub:MahmoodLab/conch (gated: needs a token)",
)

_NAMED: dict[str, tuple[SourceInfo, Resolver]] = {}
_LOCK = threading.Lock()


def register_source(info: SourceInfo, resolve: Resolver) -> None:
    """Make ``info.name`` a model source (registering a name again replaces it).

    Parameters
    ----------
    info : SourceInfo
        What the source is; ``info.name`` is what users type.
    resolve : callable
        ``resolve(token) -> ResolvedSource``: the files, found when the source is loaded.

    Raises
    ------
    ValueError
        When the name could be taken for a path or a Hub source (a programming error).
    """
    name = info.name
    if not name or name != name.strip() or ":" in name or "/" in name or "\\" in name:
        raise ValueError(f"model source name {name!r}: a plain word without ':', '/' or spaces")
    if name in (PATH_SOURCE.name, HUB_SOURCE.name):
        raise ValueError(f"model source name {name!r} is built in")
    with _LOCK:
        _NAMED[name] = (info, resolve)


def _named(text: str) -> tuple[SourceInfo, Resolver] | None:
    """The registered source called ``text``, importing its package when it is a known one."""
    with _LOCK:
        entry = _NAMED.get(text)
        module = plugin_modules().get(text)
    if entry is not None or module is None:
        return entry
    # Registers the source as it is imported. Not under _LOCK: another thread importing the
    # same package holds Python's import lock and waits for _LOCK in register_source.
    importlib.import_module(module)
    with _LOCK:
        entry = _NAMED.get(text)
    if entry is None:
        raise CheckpointError(f"model source {text!r}: {module} did not register it")
    return entry


def source_info(source: str | os.PathLike) -> SourceInfo:
    """What ``source`` is (no file is read, nothing is downloaded)."""
    text = str(source)
    entry = _named(text)
    if entry is not None:
        return entry[0]
    return HUB_SOURCE if text.startswith(HF_PREFIX) else PATH_SOURCE


def resolve_source(source: str | os.PathLike, token: str | None = None) -> ResolvedSource:
    """The local files of ``source``: a path checked, a Hub checkpoint downloaded, a name resolved.

    Raises
    ------
    CheckpointError
        When the path does not exist, a folder holds no checkpoint, or a download fails.
    """
    text = str(source)
    entry = _named(text)
    if entry is not None:
        return entry[1](token)
    if text.startswith(HF_PREFIX):
        from napari_conch.model.checkpoint import download_from_hub

        return ResolvedSource(HUB_SOURCE, download_from_hub(text[len(HF_PREFIX) :], token=token))
    return ResolvedSource(PATH_SOURCE, checkpoint_path(text))


def checkpoint_path(text: str) -> Path:
    """The checkpoint file a path names (a file, or a folder holding one)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {text!r} does not exist (a model source is a checkpoint file or folder, "
            f"hf_hub:REPO, or one of: {', '.join(available_names())})"
        )
    if path.is_dir():
        for name in FOLDER_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"checkpoint folder {text!r} holds no pytorch_model.bin")
    return path


def cache_key(source: str | os.PathLike) -> str:
    """One string per distinct source: a name, a Hub id, or the absolute path of a file."""
    text = str(source)
    info = source_info(text)
    if info.kind == PATH:
        return str(Path(text).expanduser().resolve())
    return text


def available_names() -> list[str]:
    """Names of the registered sources (known plugins included, not imported)."""
    with _LOCK:
        return sorted(set(_NAMED) | set(plugin_modules()))


def registered_sources() -> list[SourceInfo]:
    """Every named source, importing the known plugins that provide them."""
    return [source_info(name) for name in available_names()]


__all__ = [
    "ENTRY_POINT_GROUP",
    "HF_PREFIX",
    "HUB_SOURCE",
    "PATH_SOURCE",
    "ResolvedSource",
    "SourceInfo",
    "available_names",
    "cache_key",
    "checkpoint_path",
    "plugin_modules",
    "register_source",
    "registered_sources",
    "resolve_source",
    "source_info",
]
