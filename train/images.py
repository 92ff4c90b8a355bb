"""The data list (``train/data.json``) and the fixture images it names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from napari_conch.errors import InputError

TRAIN_DIR = Path(__file__).resolve().parent
REPO_ROOT = TRAIN_DIR.parent
DATA_LIST = TRAIN_DIR / "data.json"
CONFIG = TRAIN_DIR / "config.json"


def fixtures_root() -> Path:
    """The shared fixtures folder: ``$NAPARI_CONCH_FIXTURES`` or ``../shared/fixtures``."""
    env = os.environ.get("NAPARI_CONCH_FIXTURES")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures"


def read_json(path: str | os.PathLike = DATA_LIST) -> dict:
    """Read a JSON file of this folder (the data list by default)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def fixture_path(relative: str, root: Path | None = None) -> Path:
    """Path of a fixture file named in the data list.

    Raises
    ------
    InputError
        When it does not exist (naming where it was looked for).
    """
    path = (root or fixtures_root()) / relative
    if not path.is_file():
        raise InputError(
            f"training image {str(path)!r} not found: set NAPARI_CONCH_FIXTURES to the shared "
            "fixtures folder"
        )
    return path


def read_rgb(path: Path) -> np.ndarray:
    """The whole full-resolution level of an image as ``uint8 [H, W, 3]``.

    Opened with :func:`napari_conch.slide.open_slide`, as the plugin opens it, so the training
    pixels are the pixels the model later sees.
    """
    from napari_conch.slide import open_slide

    slide = open_slide(path)
    try:
        return np.ascontiguousarray(np.asarray(slide.levels[0].compute(), dtype=np.uint8))
    finally:
        slide.close()
