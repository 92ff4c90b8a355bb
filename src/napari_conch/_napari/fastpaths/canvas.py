"""The canvas redrawn in a turn of its own, and steps counted from its drawing.

Both use napari's private canvas (``QtViewer.canvas``: its Qt widget and vispy's
``SceneCanvas``); with the fast paths off (:func:`napari_conch._napari.fastpaths.enabled`) the
canvas redraws when napari asks and :func:`after_canvas_drawn` calls at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer

from napari_conch._napari import fastpaths

if TYPE_CHECKING:
    import napari

#: Longest wait for the canvas's redraw after a step before the next step's gap counts anyway
#: (a step that changes nothing on the canvas; see after_canvas_drawn).
CANVAS_WAIT_MS = 60
#: Milliseconds from the end of a step (a layer added or shown) to the canvas's redraw (see
#: canvas_redrawn_later).
CANVAS_LATER_MS = 1


def unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (napari hands plugins proxies that refuse
    private attributes; the fast paths need the object itself)."""
    return getattr(obj, "__wrapped__", obj)


def napari_canvas(viewer: napari.Viewer) -> Any | None:
    """napari's (private) canvas of the viewer's window, or None (also with the fast paths off)."""
    if not fastpaths.enabled():
        return None
    window = getattr(unwrap(viewer), "window", None)
    return getattr(getattr(window, "_qt_viewer", None), "canvas", None)


def canvas_node(viewer: napari.Viewer, layer: Any) -> Any | None:
    """The vispy node drawing ``layer`` (napari's private canvas map), or None."""
    visual = getattr(napari_canvas(viewer), "layer_to_visual", {}).get(unwrap(layer))
    return getattr(visual, "node", None)


@contextmanager
def canvas_redrawn_later(viewer: napari.Viewer) -> Iterator[None]:
    """Hold the canvas's redraws from the start of this block to a later event-loop turn.

    Adding a layer changes the layer list and the canvas, and Qt repaints both right after the
    step that added it, before napari answers any input: the canvas alone is 25-30 ms of
    software OpenGL at 1366 x 768 here, on top of the 40-60 ms of the adding itself. The
    canvas's requests to be redrawn (vispy asks its Qt widget with ``update()``) are held in the
    block and made :data:`CANVAS_LATER_MS` after it, so the canvas is drawn in a turn of its
    own; meanwhile Qt shows its last drawing (disabling the widget's updates instead made Qt
    show it blank for a frame). The delay is a real timer: a 0 ms one is a posted event, run
    before napari's pending input and timers, so the two would still make one pause. Nothing
    is held when the canvas is not found (fast paths off) or is held already.

    Used around every step of showing maps (the docks' step queue, ``run_in_turns``): a
    layer made visible or a canvas overlay shown is drawn for the first time (its shaders built:
    25-50 ms here) in a turn of its own.
    """
    native = getattr(napari_canvas(viewer), "native", None)
    if native is None or "update" in vars(native):  # none, or held by an outer block
        yield
        return
    requested: list[tuple] = []
    native.update = lambda *args: requested.append(args)  # the widget's own, for vispy
    try:
        yield
    finally:
        QTimer.singleShot(CANVAS_LATER_MS, lambda: release_redraws(native, requested))


def release_redraws(native: Any, requested: list[tuple]) -> None:
    """Give the canvas widget its ``update`` back and make the redraw asked for meanwhile."""
    try:
        del native.update
        if requested:
            native.update()
    except RuntimeError:  # the viewer was closed: its C++ widget is gone
        pass


def after_canvas_drawn(viewer: napari.Viewer, then: Any, wait_ms: int = CANVAS_WAIT_MS) -> None:
    """Call ``then`` when the canvas next draws (or after ``wait_ms`` if it does not).

    A step's gap counted from the step's end could end while the canvas was still redrawing
    what the step changed (a layer's removal: 95 ms of software OpenGL here); the next step
    then ran in the same pause as that drawing (129-163 ms). Counted from the drawing, the
    gap is one. Without napari's canvas (fast paths off) ``then`` is called at once.
    """
    scene = getattr(napari_canvas(viewer), "_scene_canvas", None)
    draw = getattr(getattr(scene, "events", None), "draw", None)
    if draw is None:
        then()
        return
    called = []

    def once(*_: Any) -> None:
        if called:
            return
        called.append(True)
        draw.disconnect(once)
        then()

    draw.connect(once)
    QTimer.singleShot(wait_ms, once)
