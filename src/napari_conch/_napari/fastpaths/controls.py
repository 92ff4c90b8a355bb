"""napari's Qt controls of a new layer built in a later event-loop turn.

Uses napari's private layer controls container (``QtViewer.controls``: its ``_add`` handler
and ``widgets`` table); with the fast paths off napari builds the controls as usual.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from napari_conch._napari import fastpaths
from napari_conch._napari.fastpaths.canvas import unwrap

if TYPE_CHECKING:
    import napari

#: Layers whose napari controls wait for their "controls" step: their controls containers.
_PENDING_CONTROLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def controls_built_later(viewer: napari.Viewer, layer: Any) -> Iterator[bool]:
    """Keep napari from building the Qt controls of ``layer`` when it is added in this block.

    napari builds every new layer's controls panel (hidden unless the layer is active) in the
    call that adds the layer: 20-30 ms here for an Image or Labels layer, a third of the adding.
    In this block its builder is held for the layer list's ``inserted`` event; afterwards the
    panel is built by :func:`build_controls` (the ``"controls"`` step of the layer's reveal
    steps), or whenever napari looks it up first (the layer selected or removed): napari's table
    of panels builds a missing one it is asked for (:class:`_ControlsOnDemand`). Yields whether
    the controls were held (napari's private controls container was found, fast paths on).
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
    if not fastpaths.enabled():
        return None
    window = getattr(unwrap(viewer), "window", None)
    return getattr(getattr(window, "_qt_viewer", None), "controls", None)
