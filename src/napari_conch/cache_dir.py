"""The user's cache folder of napari-conch (stores, slide overviews)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_root() -> Path:
    """``$NAPARI_CONCH_CACHE`` when set, else the platform's user cache folder.

    ``platformdirs.user_cache_dir("napari-conch")``: ``~/.cache/napari-conch`` (or
    ``$XDG_CACHE_HOME/napari-conch``) on Linux, ``~/Library/Caches/napari-conch`` on macOS,
    ``%LOCALAPPDATA%\\napari-conch\\Cache`` on Windows.
    """
    env = os.environ.get("NAPARI_CONCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-conch", appauthor=False))
