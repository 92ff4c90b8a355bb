"""Showing a new napari layer in steps, one per event-loop turn.

Adding a layer and drawing it for the first time each cost napari, on the GUI thread, tens to
hundreds of milliseconds (its Qt controls, its vispy visual, the canvas side of its overlays,
the shaders of its first drawing). Done in one go they add up to one long pause; here a layer is
added hidden (:func:`add_in_parts`), with what can wait held back, and ``layer.metadata``
:data:`REVEAL` lists the steps left (:func:`reveal_steps`), which the caller runs
:data:`STEP_GAP_MS` apart so that napari redraws and answers input in between.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_conch._napari.session_registry import unwrap

if TYPE_CHECKING:
    import napari

#: Metadata key of the steps that reveal a layer added hidden.
REVEAL = "napari_conch_reveal"
#: Metadata key marking a layer the plugin (not the user) keeps hidden under another map.
KEPT_HIDDEN = "napari_conch_kept_hidden"
#: Milliseconds between two steps of showing layers. The canvas redraws in between: Qt makes
#: the repaint a step asked for a few milliseconds after it, and here it takes 25-50 ms of
#: software OpenGL; at 15 ms the next step often ran in the same pause as that repaint (the
#: labels step of bench/stalls.py: longest pause 94-104 ms), at 35 ms they are apart (71-82).
STEP_GAP_MS = 35
#: Longest wait for the canvas's redraw after a step before the next step's gap counts anyway
#: (a step that changes nothing on the canvas; see after_canvas_drawn).
CANVAS_WAIT_MS = 60
#: Milliseconds from the end of a step (a layer added or shown) to the canvas's redraw (see
#: canvas_redrawn_later).
CANVAS_LATER_MS = 1
#: Overlays of a new layer made in a later event-loop turn than the layer (see add_in_parts).
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: The overlays held back from layers just added, until their "overlays" step.
_HELD_OVERLAYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The parts of new Shapes layers' visuals held back, until their "part" steps.
_HELD_PARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Layers being shown by their "layer" step (their parts then come one per step).
_SHOWING: weakref.WeakSet = weakref.WeakSet()
#: Layers whose napari controls wait for their "controls" step: their controls containers.
_PENDING_CONTROLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def add_in_parts(viewer: napari.Viewer, layer: Any, index: int | None = None) -> None:
    """Add a new (hidden) layer, leaving the costly parts of napari's work for later turns.

    The layer goes on top, or at ``index`` of the layer list when given.

    Adding a layer costs napari, on the GUI thread, its Qt controls, its canvas visual and the
    canvas side of its overlays, all in one call. What can wait is left out here:

    - the layer does not become the active one (napari would show its controls panel, and
      the docks would then make the slide layer active again: two panel switches);
    - napari's Qt controls of the layer (its panel in the layer controls, 20-30 ms here) are
      built by the ``"controls"`` step, the first of :func:`reveal_steps`
      (:func:`controls_built_later`), or at once when the layer is selected or removed first;
    - the canvas redraws in a later event-loop turn than the one adding the layer
      (:func:`canvas_redrawn_later`);
    - the overlays of a Labels layer's polygon and brush tools (:data:`DEFERRED_OVERLAYS`,
      70-100 ms here, as much as the rest of the layer) are held back and given back, one per
      step, by the ``"overlay:<name>"`` steps of :func:`reveal_steps`, which come before the
      layer is shown, so the tools work as usual;
    - a Shapes layer's visual is drawn in parts: its four parts (faces, highlight faces,
      highlight lines, vertex markers), each with its own shaders to build at its first drawing
      (20-30 ms each here), are hidden and given back one per ``"part:<k>"`` step after the
      layer is shown (all at once if the layer is shown some other way); its text waits for
      text (:func:`skip_empty_text`).

    ``layer.metadata[REVEAL]`` then lists the steps that show it (:func:`reveal_steps`). What is
    left out uses napari's private attributes; on a napari without them the layer is added as
    ``viewer.add_layer`` would.
    """
    layer = unwrap(layer)
    overlays = getattr(layer, "_overlays", None)  # napari keeps a layer's overlays private
    held = {}
    for key in DEFERRED_OVERLAYS:
        if overlays is not None and key in overlays:
            held[key] = overlays.pop(key)
    layers = unwrap(viewer).layers
    activate = getattr(layers, "_activate_on_insert", None)
    if activate is not None:
        layers._activate_on_insert = False
    try:
        with canvas_redrawn_later(viewer), controls_built_later(viewer, layer) as later:
            layers.insert(len(layers) if index is None else index, layer)
    finally:
        if activate is not None:
            layers._activate_on_insert = activate
    _HELD_OVERLAYS[layer] = held
    parts = _hold_parts(viewer, layer)
    layer.metadata[REVEAL] = [
        *(["controls"] if later else []), *(f"overlay:{key}" for key in held),
        "layer", *(f"part:{k}" for k in range(parts)),
    ]  # fmt: skip
    skip_empty_text(viewer, layer)


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
    is held when the canvas is not found (napari's private canvas) or is held already.

    Used around every step of showing maps (the docks' step queue, :func:`run_in_turns`): a
    layer made visible or a canvas overlay shown is drawn for the first time (its shaders built:
    25-50 ms here) in a turn of its own.
    """
    native = getattr(_napari_canvas(viewer), "native", None)
    if native is None or "update" in vars(native):  # none, or held by an outer block
        yield
        return
    requested: list[tuple] = []
    native.update = lambda *args: requested.append(args)  # the widget's own, for vispy
    try:
        yield
    finally:
        QTimer.singleShot(CANVAS_LATER_MS, lambda: _release_redraws(native, requested))


@contextmanager
def controls_built_later(viewer: napari.Viewer, layer: Any) -> Iterator[bool]:
    """Keep napari from building the Qt controls of ``layer`` when it is added in this block.

    napari builds every new layer's controls panel (hidden unless the layer is active) in the
    call that adds the layer: 20-30 ms here for an Image or Labels layer, a third of the adding.
    In this block its builder is held for the layer list's ``inserted`` event; afterwards the
    panel is built by :func:`build_controls` (the ``"controls"`` step of :func:`reveal_steps`),
    or whenever napari looks it up first (the layer selected or removed): napari's table of
    panels builds a missing one it is asked for (:class:`_ControlsOnDemand`). Yields whether
    the controls were held (napari's private controls container was found).
    """
    container = _controls_container(viewer)
    builder = getattr(container, "_add", None)
    panels = getattr(container, "widgets", None)
    if builder is None or not isinstance(panels, dict):
        yield False
        return
    if not isinstance(panels, _ControlsOnDemand):
        container.widgets = _ControlsOnDemand(panels)
    layers = unwrap(viewer).layers
    with layers.events.inserted.blocker(builder):
        yield True
    layer = unwrap(layer)
    if layer in layers and layer not in container.widgets:
        _PENDING_CONTROLS[layer] = weakref.ref(container)


class _ControlsOnDemand(dict):
    """napari's table of layer controls panels, building a held panel when it is looked up."""

    def __missing__(self, layer: Any) -> Any:
        if layer not in _PENDING_CONTROLS:
            raise KeyError(layer)
        build_controls(layer)
        return dict.__getitem__(self, layer)


def build_controls(layer: Any) -> None:
    """Build napari's Qt controls of a layer added by :func:`controls_built_later` (once)."""
    container = _PENDING_CONTROLS.pop(unwrap(layer), lambda: None)()
    if container is None:
        return
    try:
        if unwrap(layer) not in container.widgets:
            container._add(SimpleNamespace(value=unwrap(layer)))
    except RuntimeError:  # the window was closed: its Qt widgets are gone
        pass


def _controls_container(viewer: napari.Viewer) -> Any | None:
    """napari's (private) layer controls container of the viewer's window, or None."""
    window = getattr(unwrap(viewer), "window", None)
    return getattr(getattr(window, "_qt_viewer", None), "controls", None)


def after_canvas_drawn(viewer: napari.Viewer, then: Any) -> None:
    """Call ``then`` when the canvas next draws (or after :data:`CANVAS_WAIT_MS` if it does not).

    A step's gap counted from the step's end could end while the canvas was still redrawing
    what the step changed (a layer's removal: 95 ms of software OpenGL here); the next step
    then ran in the same pause as that drawing (129-163 ms). Counted from the drawing, the
    gap is one. Without napari's canvas ``then`` is called at once.
    """
    scene = getattr(_napari_canvas(viewer), "_scene_canvas", None)
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
    QTimer.singleShot(CANVAS_WAIT_MS, once)


def _release_redraws(native: Any, requested: list[tuple]) -> None:
    """Give the canvas widget its ``update`` back and make the redraw asked for meanwhile."""
    try:
        del native.update
        if requested:
            native.update()
    except RuntimeError:  # the viewer was closed: its C++ widget is gone
        pass


def _napari_canvas(viewer: napari.Viewer) -> Any | None:
    """napari's (private) canvas of the viewer's window, or None."""
    window = getattr(unwrap(viewer), "window", None)
    return getattr(getattr(window, "_qt_viewer", None), "canvas", None)


def _canvas_node(viewer: napari.Viewer, layer: Any) -> Any | None:
    """The vispy node drawing ``layer`` (napari's private canvas map), or None."""
    visual = getattr(_napari_canvas(viewer), "layer_to_visual", {}).get(unwrap(layer))
    return getattr(visual, "node", None)


def _hold_parts(viewer: napari.Viewer, layer: Any) -> int:
    """Hide the parts of a new Shapes layer's visual (see :func:`add_in_parts`); how many."""
    from napari.layers import Shapes

    node = _canvas_node(viewer, layer)
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
            _give_back_parts(layer)

    layer.events.visible.connect(shown)
    return len(parts)


def _give_back_parts(layer: Any, upto: int | None = None) -> None:
    """Show the held parts of a Shapes layer's visual (those before ``upto``, else all)."""
    parts = _HELD_PARTS.get(layer, [])
    for part in parts[:upto]:
        part.visible = True
    if upto is None or upto >= len(parts):
        _HELD_PARTS.pop(layer, None)
        steps = layer.metadata.get(REVEAL, [])
        layer.metadata[REVEAL] = [s for s in steps if not s.startswith("part:")]


def run_in_turns(viewer: napari.Viewer, steps: list[Any]) -> None:
    """Run ``steps`` one per event-loop turn (the first now), each :data:`STEP_GAP_MS` after
    the canvas has drawn what the one before changed (:func:`after_canvas_drawn`).

    What a step makes is drawn in a turn after it (:func:`canvas_redrawn_later`).
    """
    if steps:
        with canvas_redrawn_later(viewer):
            steps[0]()
        if len(steps) > 1:

            def next_turns() -> None:
                QTimer.singleShot(STEP_GAP_MS, lambda: run_in_turns(viewer, steps[1:]))

            after_canvas_drawn(viewer, next_turns)


def skip_empty_text(viewer: napari.Viewer, layer: Any) -> None:
    """Keep a Shapes layer's text visual from drawing until the layer is given text.

    napari gives the text visual of a layer without text one empty string, and vispy builds the
    text program and its glyph texture for it at the first drawing: 110 ms of the 184 ms the
    first drawing of an empty Shapes layer took on the GUI thread here, for nothing on screen.
    The visual is hidden until the layer's text changes (then napari draws it as usual). Uses
    napari's private canvas map; on a napari without it nothing is changed.
    """
    from napari.layers import Shapes

    layer = unwrap(layer)
    if not isinstance(layer, Shapes) or any(str(v) for v in np.atleast_1d(layer.text.values)):
        return
    text = getattr(_canvas_node(viewer, layer), "text", None)
    if text is None:
        return
    text.visible = False

    def given_text(_event: Any = None) -> None:
        text.visible = True
        layer.text.events.disconnect(given_text)

    layer.text.events.connect(given_text)


def keep_hidden(layer: Any) -> Any:
    """A layer just added hidden stays hidden (its ``"layer"`` reveal step is dropped).

    For the maps kept under others, which the user shows with the layer's eye; a layer already
    shown is left as it is. The layer is marked (:data:`KEPT_HIDDEN`) so that
    :func:`show_again` shows it when it is the map again. Returns the layer.
    """
    steps = layer.metadata.get(REVEAL)
    if steps and "layer" in steps:
        layer.metadata[REVEAL] = [s for s in steps if s != "layer"]
        layer.metadata[KEPT_HIDDEN] = True
    return layer


def hide_for_now(layer: Any) -> None:
    """Hide a shown layer that another map now covers, marked for :func:`show_again`."""
    if layer.visible:
        layer.visible = False
        layer.metadata[KEPT_HIDDEN] = True


def show_again(layer: Any) -> None:
    """Show a layer hidden by :func:`keep_hidden` or :func:`hide_for_now` (not one the user hid)."""
    if layer.metadata.pop(KEPT_HIDDEN, False) and not layer.visible:
        layer.visible = True


def reveal_steps(layer: Any) -> list[Any]:
    """The steps still needed to show a layer added hidden (callables; none once shown).

    Making a layer and drawing it for the first time each cost napari a long pause on the GUI
    thread; run in separate event-loop turns they do not add up. A step is forgotten only once
    it has run, so steps dropped by a newer display are given again by the next call.
    """

    def stage(name: str) -> Any:
        def run() -> None:
            remaining = layer.metadata.get(REVEAL, [])
            if name not in remaining:
                return
            if name == "controls":
                build_controls(layer)
            elif name == "layer":
                _SHOWING.add(unwrap(layer))
                try:
                    layer.visible = True
                finally:
                    _SHOWING.discard(unwrap(layer))
            elif name.startswith("part:"):
                _give_back_parts(unwrap(layer), upto=int(name.split(":", 1)[1]) + 1)
            elif name.startswith("overlay:"):
                held = _HELD_OVERLAYS.get(unwrap(layer), {})
                key = name.split(":", 1)[1]
                if key in held:  # napari's private overlays: the layer itself, not its proxy
                    unwrap(layer)._overlays[key] = held.pop(key)
            layer.metadata[REVEAL] = [s for s in remaining if s != name]

        return run

    return [stage(name) for name in layer.metadata.get(REVEAL, ())]
