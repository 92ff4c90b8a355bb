"""napari's private modules the warm-up imports ahead (their first import on the GUI thread,
when the first map layers are drawn, was part of that step's pause)."""

from __future__ import annotations

from napari_conch._napari import fastpaths

#: napari's (private) vispy side of the layers and overlays the first maps draw.
NAPARI_PRIVATE_MODULES = (
    "napari._vispy.utils.visual",
    "napari._vispy.layers.image",
    "napari._vispy.layers.labels",
    "napari._vispy.overlays.labels_polygon",
    "napari._vispy.overlays.text",
)


def private_modules() -> tuple[str, ...]:
    """The modules of :data:`NAPARI_PRIVATE_MODULES`, or none with the fast paths off."""
    return NAPARI_PRIVATE_MODULES if fastpaths.enabled() else ()
