"""Rendering the canvas font's glyphs ahead of time, a few per event-loop turn.

napari draws every text on the canvas (the labels' legend, the text of a Shapes layer, a
colour bar's tick labels) from one font atlas per canvas, and renders a character's glyph (a
signed distance field computed on the CPU) the first time a text uses it: 5-9 ms per character
on a laptop-class CPU, all inside one canvas draw. The first legend (every letter of the class
names) and the first Shapes layer thus paused napari 120-260 ms in the stall benchmark.
:func:`warm_glyphs` renders the characters of :data:`CHARACTERS` while the viewer is idle, a few
per turn of the event loop, so that those first draws find them ready.

The atlas is reached through the canvas's font information, which napari keeps private
(``QtViewer.canvas._font_info``); where a napari version lacks it, nothing is warmed (the only
cost is the pause this module avoids) and the reason is logged at debug level.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QTimer

from napari_conch._napari.fastpaths.canvas import unwrap

logger = logging.getLogger("napari_conch")

#: The characters rendered ahead, those of the labels' legend first.
CHARACTERS = (
    "\u25a0 abcdefghijklmnopqrstuvwxyz"  # the legend ("■ tumor cells") first
    "\u2588"  # the canvas colour bar's rows (on_show.COLORBAR_TEXT)
    "\u00c5\u00c9\u00d1\u0150"  # napari measures every text's height with these
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-+"
    "()[],:;'/_%&!?#<>=*\"|~"
)
#: Longest work per event-loop turn (seconds): well under a frame on a 60 Hz screen.
TURN_BUDGET_S = 0.012
#: Wait between two turns (milliseconds), so that input and redraws go first.
TURN_GAP_MS = 15
#: Wait before the first turn (milliseconds): the dock being opened settles first.
START_DELAY_MS = 400

#: Fonts already warmed (or being warmed), so two docks do the work once.
_WARMED: weakref.WeakSet = weakref.WeakSet()


def canvas_font(viewer: Any) -> Any | None:
    """The texture font napari's canvas draws its texts with, or None where it is not found."""
    try:
        info = unwrap(viewer).window._qt_viewer.canvas._font_info
        return info.font_manager.get_font(info.face)
    except (AttributeError, TypeError) as exc:
        logger.debug("glyph warm-up: no canvas font in this napari (%s)", exc)
        return None


def missing_characters(font: Any, characters: str = CHARACTERS) -> list[str]:
    """The characters of ``characters`` whose glyph ``font`` has not rendered yet, in order."""
    glyphs = getattr(unwrap(font), "_glyphs", {})
    return [c for c in dict.fromkeys(characters) if c not in glyphs]


def render_glyphs(viewer: Any, characters: str) -> int:
    """Render the glyphs of ``characters`` now (for a window not shown yet); returns how many.

    ``napari-conch view`` knows its prompts before its window opens: their legend is rendered
    then, while the window is not yet answering anyone, instead of in the turns of a busy start.
    """
    font = canvas_font(viewer)
    if font is None:
        return 0
    todo = missing_characters(font, characters)
    for character in todo:
        font[character]
    return len(todo)


def warm_glyphs(
    viewer: Any, characters: str = CHARACTERS, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Render the glyphs of ``characters`` in the viewer's canvas font while napari is idle.

    Returns at once; the work runs on the GUI thread in turns of at most
    :data:`TURN_BUDGET_S`, :data:`TURN_GAP_MS` apart, starting after :data:`START_DELAY_MS`,
    and stops early once ``alive()`` is false (the dock that asked was closed). Done once per
    canvas font.

    Returns
    -------
    bool
        Whether warming was started (False: no font found, or already warmed).
    """
    font = canvas_font(viewer)
    if font is None or font in _WARMED:
        return False
    _WARMED.add(font)
    todo = missing_characters(font, characters)
    QTimer.singleShot(START_DELAY_MS, lambda: _turn(font, todo, alive))
    return True


def _turn(font: Any, todo: list[str], alive: Callable[[], bool]) -> None:
    """Render glyphs for one turn's budget; the rest is left for a later turn."""
    if not alive():
        _WARMED.discard(font)
        return
    start = time.perf_counter()
    while todo and time.perf_counter() - start < TURN_BUDGET_S:
        character = todo.pop(0)
        try:
            font[character]  # renders the glyph into the atlas once
        except Exception as exc:
            logger.debug("glyph warm-up: %r not rendered (%s)", character, exc)
    if todo:
        QTimer.singleShot(TURN_GAP_MS, lambda: _turn(font, todo, alive))
