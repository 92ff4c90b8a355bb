"""The view of a slide: fitted when it is opened and when the window settles; a scale bar.

napari fits the view to the first layer as it is added, often before the window has its final
size (the window is maximised, a dock takes its room): the slide then looks small until Home.
One :class:`SlideView` per viewer (:func:`watch`, from the reader and from every dock):

- fits the view to a slide layer (one read by napari-conch, with ``metadata["napari_conch"]``)
  when it is added (to that slide alone, not to the union with the slides opened before);
- fits it again when the canvas settles to its size while the window starts:
  :data:`SETTLE_MS` after a change of size (napari's public ``viewer.canvas.size``), within
  :data:`SETTLE_PERIOD_S` of the slide's fit, unless the camera moved since the last fit (the
  user zoomed or panned: the view is left alone from then on). A window can settle in steps
  (napari reads the slide, the window is maximised, a dock takes its room), more than
  :data:`SETTLE_MS` apart on a busy machine: each step while the camera is untouched is fitted;
- shows napari's scale bar when a slide with a known MPP is added: its layer is in microns
  (``units``), so the scale bar reads microns;
- shows the slide the docks work on (:meth:`SlideView.show_alone`, when the session's slide
  changes) and hides the other slides it overlaps (the RGB image layers, as the docks' slide
  lists have them). Slides opened in one viewer all start at the
  origin: the one on top would cover the one worked on, whose maps would then be drawn over the
  other slide's tissue. Slides placed apart (translated) stay as they are.
"""

from __future__ import annotations

import functools
import inspect
import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_conch._napari.layers.map_layers import viewer_camera
from napari_conch._napari.layers.slide_source import META_KEY

if TYPE_CHECKING:
    import napari

#: Milliseconds without a change of the canvas's size after which the window has settled.
SETTLE_MS = 300
#: Seconds after a slide is fitted in which the window's settling fits it again.
SETTLE_PERIOD_S = 10.0


def is_slide(layer: Any) -> bool:
    """Whether ``layer`` is a slide read by napari-conch."""
    metadata = getattr(layer, "metadata", None)
    return isinstance(metadata, dict) and META_KEY in metadata


def in_microns(layer: Any) -> bool:
    """Whether a slide layer's MPP is known (its scale is then in microns)."""
    return is_slide(layer) and layer.metadata[META_KEY].get("mpp") is not None


def scale_bar(viewer: napari.Viewer) -> Any:
    """napari's scale bar (a canvas overlay since napari 0.9, ``viewer.scale_bar`` before)."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None and "scale_bar" in overlays:
        return overlays["scale_bar"]
    return viewer.scale_bar


def show_scale_bar(viewer: napari.Viewer) -> None:
    """Show napari's scale bar; it reads the layers' units (microns for a slide with MPP).

    napari before 0.6 took the unit from the scale bar itself: it is set there too.
    """
    bar = scale_bar(viewer)
    kind = type(bar)
    fields = getattr(kind, "model_fields", None) or getattr(kind, "__fields__", {})
    if "unit" in fields:  # a field only where the scale bar names its own unit
        bar.unit = "um"
    bar.visible = True


@functools.cache
def home_fits_given_layers() -> bool:
    """Whether napari's Home can fit chosen layers (``reset_view(layers=...)``, napari 0.9.2+)."""
    from napari.components import ViewerModel

    return "layers" in inspect.signature(ViewerModel.reset_view).parameters


def world_box(layer: Any) -> np.ndarray:
    """``[[y0, x0], [y1, x1]]``: the layer's extent on the canvas (napari's world coordinates)."""
    return np.asarray(layer.extent.world, dtype=float)[:, -2:]


def overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two :func:`world_box` es share some area."""
    return bool(np.all(a[0] < b[1]) and np.all(b[0] < a[1]))


def _camera_state(viewer: napari.Viewer) -> np.ndarray:
    camera = viewer_camera(viewer)
    return np.asarray([*camera.center, camera.zoom, *np.ravel(camera.angles)], float)


class SlideView:
    """Fits the view to slides and shows the scale bar in ``viewer`` (see the module)."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self._fitted: np.ndarray | None = None
        self._until = 0.0  # the end of the settling period (time.monotonic)
        #: How many times the canvas settled in a settling period (each looked at).
        self.settles = 0
        #: The name of the slide the view is fitted to (the one opened last).
        self._fit_name: str | None = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self._settle)
        viewer.layers.events.inserted.connect(self._on_inserted)
        canvas = getattr(viewer, "canvas", None)
        size = getattr(getattr(canvas, "events", None), "size", None)
        if size is not None:  # napari 0.9 and later; older ones are fitted when opened only
            size.connect(self._on_canvas_size)
        slides = [layer for layer in viewer.layers if is_slide(layer)]
        if slides:  # opened before: the view as it is now counts as fitted
            self._fitted = _camera_state(viewer)
            self._until = time.monotonic() + SETTLE_PERIOD_S
            if any(in_microns(layer) for layer in slides):
                show_scale_bar(viewer)

    def fit(self) -> None:
        """Fit the view to the slide last opened (napari's Home for that layer alone), else to
        all layers (napari's Home), and remember the camera.

        napari's Home fits every layer: a slide opened beside a larger one would show small,
        in a corner of their union. Fitting one layer needs napari 0.9.2 or later
        (``reset_view(layers=...)``); before, the view fits all layers.
        """
        viewer = self._viewer()
        if viewer is None:
            return
        layer = next((ly for ly in viewer.layers if ly.name == self._fit_name), None)
        if layer is not None and home_fits_given_layers():
            viewer.reset_view(layers=[layer])
        else:
            viewer.reset_view()
        self._fitted = _camera_state(viewer)

    def show_alone(self, name: str) -> None:
        """Show the slide layer ``name`` and hide the other RGB image layers that overlap it
        (nothing when ``name`` is not an RGB image layer of the viewer).

        By name: napari hands docks a new proxy of a layer at each access.
        """
        viewer = self._viewer()
        layers = [] if viewer is None else list(viewer.layers)
        slides = [ly for ly in layers if getattr(ly, "rgb", False) is True]
        shown = next((ly for ly in slides if ly.name == name), None)
        if shown is None:
            return
        box = world_box(shown)
        for layer in slides:
            if layer.name != name and layer.visible and overlap(box, world_box(layer)):
                layer.visible = False
        if not shown.visible:
            shown.visible = True

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if not is_slide(layer):
            return
        viewer = self._viewer()
        if viewer is not None and in_microns(layer):
            show_scale_bar(viewer)
        self._fit_name = layer.name
        self.fit()
        self._until = time.monotonic() + SETTLE_PERIOD_S

    def _on_canvas_size(self, *_: Any) -> None:
        if time.monotonic() < self._until:
            self._timer.start()

    def _settle(self) -> None:
        viewer = self._viewer()
        if viewer is None or self._fitted is None:
            return
        self.settles += 1
        state = _camera_state(viewer)
        if state.shape == self._fitted.shape and np.allclose(state, self._fitted):
            self.fit()  # the user has not moved the camera since the last fit
        else:
            self._until = 0.0  # the user moved it: the view is theirs


_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watch(viewer: napari.Viewer) -> SlideView:
    """The viewer's :class:`SlideView` (made on first use)."""
    view = _VIEWS.get(viewer)
    if view is None:
        view = _VIEWS[viewer] = SlideView(viewer)
    return view
