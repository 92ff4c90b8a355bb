"""Showing a new napari layer in steps, one per event-loop turn.

Adding a layer and drawing it for the first time each cost napari, on the GUI thread, tens to
hundreds of milliseconds (its Qt controls, its vispy visual, the canvas side of its overlays,
the shaders of its first drawing). Done in one go they add up to one long pause; here a layer is
added hidden (:func:`add_in_parts`), with what can wait held back by the fast paths
(:mod:`napari_conch._napari.fastpaths`), and ``layer.metadata`` :data:`REVEAL` lists the steps
left (:func:`reveal_steps`), which the caller runs :data:`STEP_GAP_MS` apart so that napari
redraws and answers input in between. With the fast paths off the only step is ``"layer"``
(the layer made visible), and this module uses napari's public API alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer

from napari_conch._napari.fastpaths import layer_parts
from napari_conch._napari.fastpaths.canvas import after_canvas_drawn, canvas_redrawn_later
from napari_conch._napari.fastpaths.controls import build_controls, controls_built_later

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


def add_in_parts(viewer: napari.Viewer, layer: Any, index: int | None = None) -> None:
    """Add a new (hidden) layer, leaving the costly parts of napari's work for later turns.

    The layer goes on top, or at ``index`` of the layer list when given. With the fast paths
    on, what can wait is left out (see :mod:`napari_conch._napari.fastpaths`):

    - the layer does not become the active one (:func:`~.layer_parts.not_activated`; with the
      fast paths off, the layer that was active is made active again);
    - napari's Qt controls of the layer are built by the ``"controls"`` step, the first of
      :func:`reveal_steps` (:func:`~.controls.controls_built_later`);
    - the canvas redraws in a later event-loop turn than the one adding the layer
      (:func:`~.canvas.canvas_redrawn_later`);
    - a Labels layer's tool overlays come back one per ``"overlay:<name>"`` step, before the
      layer is shown (:func:`~.layer_parts.hold_overlays`);
    - a Shapes layer's visual is drawn in parts, one per ``"part:<k>"`` step after the layer is
      shown, and its text waits for text (:func:`~.layer_parts.hold_parts`,
      :func:`~.layer_parts.skip_empty_text`).

    ``layer.metadata[REVEAL]`` then lists the steps that show it (:func:`reveal_steps`).
    """
    held = layer_parts.hold_overlays(layer)
    layers = viewer.layers
    active = layers.selection.active
    with (
        layer_parts.not_activated(viewer),
        canvas_redrawn_later(viewer),
        controls_built_later(viewer, layer) as later,
    ):
        layers.insert(len(layers) if index is None else index, layer)
    if active is not None and layers.selection.active != active and active in layers:
        layers.selection.active = active  # napari made the new layer active: the user's back

    def parts_shown() -> None:
        steps = layer.metadata.get(REVEAL, [])
        layer.metadata[REVEAL] = [s for s in steps if not s.startswith("part:")]

    parts = layer_parts.hold_parts(viewer, layer, parts_shown)
    layer.metadata[REVEAL] = [
        *(["controls"] if later else []), *(f"overlay:{key}" for key in held),
        "layer", *(f"part:{k}" for k in range(parts)),
    ]  # fmt: skip
    layer_parts.skip_empty_text(viewer, layer)


class StepQueue:
    """Steps run one per event-loop turn, each :data:`STEP_GAP_MS` after the canvas has drawn
    what the one before changed: the one scheduler of the plugin's layer updates.

    Making or redrawing a layer costs napari tens to hundreds of milliseconds on the GUI
    thread; one layer per turn keeps each pause to one layer's (``bench/stalls.py`` measures
    it). What a step makes is drawn in a turn after it
    (:func:`~napari_conch._napari.fastpaths.canvas.canvas_redrawn_later`). A step may return
    further steps (a new layer's :func:`reveal_steps`), run next.

    Parameters
    ----------
    viewer : napari.Viewer
    alive : callable, optional
        Whether the owner still wants its steps (a closed dock: False); checked before each.
    after_step : callable, optional
        Called after each step (the Prompt dock keeps the slide layer active).
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        *,
        alive: Callable[[], bool] | None = None,
        after_step: Callable[[], Any] | None = None,
    ) -> None:
        self.viewer = viewer
        self._alive = alive if alive is not None else (lambda: True)
        self._after_step = after_step
        self._pending: list[Any] = []
        self._scheduled = False

    @property
    def busy(self) -> bool:
        """Whether steps are still waiting for their turn."""
        return bool(self._pending)

    def replace(self, steps: list[Any]) -> None:
        """Run ``steps``, the first in the next turn (after :data:`STEP_GAP_MS`); steps of an
        older call that are still waiting are dropped (a newer display replaces them)."""
        self._pending = list(steps)
        self._schedule()

    def run_now(self, steps: list[Any]) -> None:
        """Run ``steps``, the first now (the others dropped, as :meth:`replace`)."""
        self._pending = list(steps)
        self._next()

    def _schedule(self) -> None:
        if self._pending and not self._scheduled and self._alive():
            self._scheduled = True
            # a lambda: Qt holds it (a bound method is held weakly), so a queue nobody else
            # keeps (run_in_turns) lives until its steps are done
            QTimer.singleShot(STEP_GAP_MS, lambda: self._next())

    def _next(self) -> None:
        self._scheduled = False
        if not self._pending or not self._alive():
            return
        try:
            with canvas_redrawn_later(self.viewer):  # its first drawing in a turn of its own
                more = self._pending.pop(0)()
        except Exception as exc:
            if not window_closed(exc):
                raise
            self._pending.clear()  # the viewer's window is gone: nothing left to draw on
            return
        if more:
            self._pending[0:0] = more  # what the step left for the next turns, first
        if self._after_step is not None:
            self._after_step()
        if self._pending:  # the gap counts from the canvas's drawing of this step
            after_canvas_drawn(self.viewer, lambda: self._schedule())


#: What Qt's Python bindings say of a widget whose C++ object was deleted (PyQt, PySide).
DELETED = ("has been deleted", "already deleted")


def window_closed(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it: napari's signals wrap their callbacks' errors) is Qt
    saying a widget was deleted: a step that ran after its viewer's window was closed (a timer
    set before, a viewer made again in the same process)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RuntimeError) and any(text in str(exc) for text in DELETED):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run_in_turns(viewer: napari.Viewer, steps: list[Any]) -> StepQueue:
    """Run ``steps`` one per event-loop turn, the first now, through a :class:`StepQueue` of
    their own; returns it."""
    queue = StepQueue(viewer)
    queue.run_now(steps)
    return queue


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
                with layer_parts.showing(layer):
                    layer.visible = True
            elif name.startswith("part:"):
                if layer_parts.give_back_parts(layer, upto=int(name.split(":", 1)[1]) + 1):
                    remaining = [s for s in remaining if not s.startswith("part:")]
            elif name.startswith("overlay:"):
                layer_parts.give_back_overlay(layer, name.split(":", 1)[1])
            layer.metadata[REVEAL] = [s for s in remaining if s != name]

        return run

    return [stage(name) for name in layer.metadata.get(REVEAL, ())]
