"""The menu paths the docs name are the ones napari shows.

napari puts a plugin with several widgets (or samples) under a submenu named by the manifest's
``display_name`` ("CONCH prompt highlighter"), not by the package name: the docs once named
"Plugins > napari-conch > Annotate", which does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

REPO = Path(__file__).resolve().parents[2]
#: napari's top-level menus; a bold span starting with one of them is a menu path.
TOP_MENUS = ("File", "Edit", "View", "Layers", "Plugins", "Window", "Help")


def _menu_paths(menu, prefix: str) -> set[str]:
    """Every path under a Qt menu, as ``File > Open Sample > ...`` (mnemonic '&' removed)."""
    menu.aboutToShow.emit()  # napari fills some menus when they open
    paths = set()
    for action in menu.actions():
        text = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
        if not text:
            continue
        path = f"{prefix} > {text}"
        paths.add(path)
        if action.menu() is not None:
            paths |= _menu_paths(action.menu(), path)
    return paths


def _documented_paths() -> list[tuple[str, str]]:
    """``(file, path)`` of every bold menu path in the README and docs."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for span in re.findall(r"\*\*([^*]+?)\*\*", doc.read_text(encoding="utf-8")):
            parts = [p.strip() for p in span.split(">")]
            if len(parts) > 1 and parts[0] in TOP_MENUS:
                found.append((doc.name, " > ".join(parts)))
    return found


def test_documented_menu_paths_exist(make_napari_viewer):
    window = make_napari_viewer().window
    shown = _menu_paths(window.file_menu, "File") | _menu_paths(window.plugins_menu, "Plugins")
    documented = _documented_paths()
    missing = [f"{name}: {path}" for name, path in documented if path not in shown]
    assert missing == [], f"menu paths napari does not show: {missing}"
    assert ("annotation.md", "Plugins > CONCH prompt highlighter > Annotate") in documented
