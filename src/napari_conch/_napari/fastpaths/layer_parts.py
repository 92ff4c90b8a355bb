"""Parts of a new napari layer left for later event-loop turns.

- A new layer does not become the active one (napari's ``layers._activate_on_insert``).
- The overlays of a Labels layer's polygon and brush tools (``layer._overlays``) are held back
  and given back one per step.
- A Shapes layer's visual is drawn in parts (vispy's ``_subvisuals`` of napari's canvas node),
  and its text waits for text.

With the fast paths off (:func:`napari_conch._napari.fastpaths.enabled`) nothing is held: the
layer is added as ``viewer.layers.insert`` adds it, with everything at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch._napari import fastpaths
from napari_conch._napari.fastpaths.canvas import canvas_node, unwrap

if TYPE_CHECKING:
    import napari

#: Overlays of a new layer made in a later event-loop turn than the layer (see hold_overlays).
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: The overlays held back from layers just added, until their "overlay" steps.
_HELD_OVERLAYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The parts of new Shapes layers' visuals held back, until their "part" steps.
_HELD_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Layers being shown by their "layer" step (their parts then come one per step).
_SHOWING: weakref.WeakSet = weakref.WeakSet()


@contextmanager
def not_activated(viewer: napari.Viewer) -> Iterator[None]:
    """A layer inserted in this block does not become the active layer.

    napari would show its controls panel, and the docks would then make the slide layer active
    again: two panel switches.
    """
    layers = unwrap(viewer).layers
    activate = getattr(layers, "_activate_on_insert", None) if fastpaths.enabled() else None
    if activate is None:
        yield
        return
    layers._activate_on_insert = False
    try:
        yield
    finally:
        layers._activate_on_insert = activate


def hold_overlays(layer: Any) -> list[str]:
    """Take the tool overlays of :data:`DEFERRED_OVERLAYS` off a layer about to be added.

    They cost napari 70-100 ms here when the layer is added, as much as the rest of a Labels
    layer; :func:`give_back_overlay` puts each back (before the layer is shown, so the tools
    work as usual). Returns the keys held.
    """
    overlays = getattr(unwrap(layer), "_overlays", None) if fastpaths.enabled() else None
    held = {}
    for key in DEFERRED_OVERLAYS:
        if overlays is not None and key in overlays:
            held[key] = overlays.pop(key)
    _HELD_OVERLAYS[unwrap(layer)] = held
    return list(held)


def give_back_overlay(layer: Any, key: str) -> None:
    """Put a tool overlay held by :func:`hold_overlays` back on its layer."""
    held = _HELD_OVERLAYS.get(unwrap(layer), {})
    if key in held:  # napari's private overlays: the layer itself, not its proxy
        unwrap(layer)._overlays[key] = held.pop(key)


def hold_parts(
    viewer: napari.Viewer, layer: Any, shown_whole: Callable[[], None] = lambda: None
) -> int:
    """Hide the parts of a new Shapes layer's visual; how many (given back by
    :func:`give_back_parts`).

    Its four parts (faces, highlight faces, highlight lines, vertex markers) each build their
    own shaders at their first drawing (20-30 ms each here). If the layer is shown some other
    way than by its steps, every part comes back at once and ``shown_whole`` is called.
    """
    from napari.layers import Shapes

    node = canvas_node(viewer, layer)
    subvisuals = getattr(node, "_subvisuals", None)
    if not isinstance(layer, Shapes) or not subvisuals:
        return 0
    text = getattr(node, "text", None)
    parts = [part for part in subvisuals if part is not text and part.visible]
    for part in parts:
        part.visible = False
    _HELD_PARTS[layer] = parts

    def shown(_event: Any = None) -> None:
        if layer.visible and layer not in _SHOWING:  # not by its steps: every part at once
            give_back_parts(layer)
            shown_whole()

    layer.events.visible.connect(shown)
    return len(parts)


def give_back_parts(layer: Any, upto: int | None = None) -> bool:
    """Show the held parts of a Shapes layer's visual (those before ``upto``, else all);
    whether none is held any more."""
    layer = unwrap(layer)
    parts = _HELD_PARTS.get(layer, [])
    for part in parts[:upto]:
        part.visible = True
    if upto is None or upto >= len(parts):
        _HELD_PARTS.pop(layer, None)
        return True
    return False


@contextmanager
def showing(layer: Any) -> Iterator[None]:
    """The layer is being shown by its reveal steps (its parts then come one per step)."""
    _SHOWING.add(unwrap(layer))
    try:
        yield
    finally:
        _SHOWING.discard(unwrap(layer))


def skip_empty_text(viewer: napari.Viewer, layer: Any) -> None:
    """Keep a Shapes layer's text visual from drawing until the layer is given text.

    napari gives the text visual of a layer without text one empty string, and vispy builds the
    text program and its glyph texture for it at the first drawing: 110 ms of the 184 ms the
    first drawing of an empty Shapes layer took on the GUI thread here, for nothing on screen.
    The visual is hidden until the layer's text changes (then napari draws it as usual).
    """
    from napari.layers import Shapes

    layer = unwrap(layer)
    if not isinstance(layer, Shapes) or any(str(v) for v in np.atleast_1d(layer.text.values)):
        return
    text = getattr(canvas_node(viewer, layer), "text", None)
    if text is None:
        return
    text.visible = False

    def given_text(_event: Any = None) -> None:
        text.visible = True
        layer.text.events.disconnect(given_text)

    layer.text.events.connect(given_text)
