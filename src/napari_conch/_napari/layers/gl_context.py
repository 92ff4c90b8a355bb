"""Removing napari layers with the canvas's OpenGL context current.

napari (0.6 and later, up to 0.9.2 at least) ends a layer's removal by running the OpenGL
commands vispy has queued for it at once: the deletion of the layer's textures, buffers and
shader program, then ``glFinish`` (``VispyCanvas._clean_and_update_scenegraph``). It does not
make the canvas's context current first. With Qt 6 the canvas is a ``QOpenGLWidget``, whose
context is current only while it paints; between paints the current context is usually the one
Qt composes the window with. The deletions then act on Qt's context, and the next paint of the
canvas crashed the process in ``glDrawArrays`` (Mesa llvmpipe under Xvfb: ``napari-conch view``,
then three prompts to two and to one, which removes the probability map, every time).

:func:`canvas_current` makes the canvas's context current around such a removal and
:func:`remove_layer` uses it. Both use Qt's public widget tree (the ``QOpenGLWidget`` in the
window of a dock), no napari internals; without a shown canvas they do nothing special.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import napari


def canvas_widget(widget: Any) -> Any | None:
    """The shown OpenGL canvas of the window holding ``widget`` (napari's), or None.

    ``widget`` is a Qt widget or a magicgui widget (its ``native`` Qt widget is used).
    """
    from qtpy.QtWidgets import QOpenGLWidget

    native = getattr(widget, "native", widget)
    try:
        window = native.window() if native is not None else None
    except RuntimeError:  # its C++ object is gone (closed)
        return None
    if window is None:
        return None
    try:
        canvases = [c for c in window.findChildren(QOpenGLWidget) if c.isValid()]
    except RuntimeError:  # the window's C++ object is gone (closed)
        return None
    return canvases[0] if canvases else None


@contextmanager
def canvas_current(widget: Any) -> Iterator[None]:
    """Make the OpenGL context of the canvas beside ``widget`` (a dock) current in this block.

    OpenGL commands run in the block (napari's removal of a layer, see the module) then act on
    the canvas's objects. Nothing is done where no shown canvas is found.
    """
    canvas = canvas_widget(widget)
    if canvas is None:
        yield
        return
    canvas.makeCurrent()
    try:
        yield
    finally:
        try:
            canvas.doneCurrent()
        except RuntimeError:  # the canvas was deleted in the block (the window closed)
            pass


def remove_layer(viewer: napari.Viewer, layer: Any, widget: Any) -> bool:
    """Remove ``layer`` (a layer or its name) when it is there; whether it was.

    ``widget`` is a dock of the viewer's window: the removal runs with the canvas's context
    current (see the module).
    """
    name = layer if isinstance(layer, str) else getattr(layer, "name", None)
    if name is None or name not in viewer.layers:
        return False
    with canvas_current(widget):
        viewer.layers.remove(name)
    return True
