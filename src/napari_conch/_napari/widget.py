"""The prompt highlighter dock widget: load CONCH, embed a slide, type prompts, see maps.

The widget is a magicgui :class:`~magicgui.widgets.Container` of four panels (:mod:`.panels`);
this module wires them to the engine:

- **Load model** runs :func:`~napari_conch.model.load_model` in a thread worker.
- **Embed** / **Embed visible region first** run the engine's ``embed_slide_iter`` in a generator
  worker; each batch moves the progress bar and fills the maps in. **Cancel** sets the cancel
  event the engine checks between batches. The store of (slide, model, grid) is found and reused.
- Typing in **Prompts** restarts a 200 ms timer; when it fires, new prompts are encoded (text tower
  only, in a worker) and the maps are one product against the cached tile embeddings
  (:mod:`.maps`). Layers are updated in place (:mod:`.layers`).
- **More like this** arms one click on the slide: the map becomes the similarity to that tile.
- **Export** writes the current map with the engine's writers.

User mistakes become one-line notifications; the widget stays usable.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_conch._napari import layers as L
from napari_conch._napari.maps import MapSession, PromptRequest
from napari_conch._napari.panels import (
    ExportPanel,
    ModelPanel,
    PromptPanel,
    SlidePanel,
    optional_path,
)
from napari_conch._napari.slides import layer_levels, slide_for_layer
from napari_conch._napari.status import CursorStatus
from napari_conch._napari.workers import (
    USER_ERRORS,
    Failure,
    embed_worker,
    load_model_worker,
    one_line,
    text_worker,
)
from napari_conch.errors import InputError

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.query import QueryResult

logger = logging.getLogger("napari_conch")

#: Milliseconds between the last keystroke and the map update.
DEBOUNCE_MS = 200
#: While a run is under way, the maps are redrawn with the new tiles at most this often: each
#: redraw costs napari tens of milliseconds on the GUI thread, a batch can take less.
LIVE_MAP_INTERVAL_S = 0.5


def reports_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Show user errors raised by a handler as a one-line notification."""

    @functools.wraps(method)
    def run(self: PromptHighlighter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except USER_ERRORS as exc:
            self.notify_error(one_line(exc))
            return None

    return run


class PromptHighlighter(Container):
    """Dock widget turning text prompts into maps over a whole-slide image.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).

    Attributes
    ----------
    model_panel, slide_panel, prompt_panel, export_panel
        The parts (see :mod:`.panels`).
    model : LoadedModel or None
        The loaded model.
    session : MapSession or None
        Slide, grid, store and embeddings of the maps on show.
    result : QueryResult or None
        The map on show (what Export writes).
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        self.viewer = napari_viewer
        self.model_panel = ModelPanel()
        self.slide_panel = SlidePanel()
        self.prompt_panel = PromptPanel()
        self.export_panel = ExportPanel()
        super().__init__(
            widgets=[self.model_panel, self.slide_panel, self.prompt_panel, self.export_panel],
            scrollable=True,
        )
        self.model: Any = None
        self.session: MapSession | None = None
        self.result: QueryResult | None = None
        self.errors: list[str] = []
        self._session_key: tuple | None = None
        self._request: PromptRequest | None = None
        self._embedding: tuple[Any, threading.Event] | None = None
        self._workers: set[Any] = set()
        self._text_busy = False
        self._last_live_map = 0.0
        self._armed = False
        self._showing_example = False
        self._displaying = False
        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh_maps)
        self.cursor_status = CursorStatus(self)
        self._connect()
        self.reset_choices()

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        m, s, p, e = self.model_panel, self.slide_panel, self.prompt_panel, self.export_panel
        m.load.changed.connect(self.load_model)
        m.demo.changed.connect(self.use_demo_model)
        s.layer.changed.connect(self._on_layer_changed)
        s.embed.changed.connect(lambda: self.start_embedding(visible_first=False))
        s.embed_visible.changed.connect(lambda: self.start_embedding(visible_first=True))
        s.cancel.changed.connect(self.cancel_embedding)
        p.text.native.textChanged.connect(self.schedule_refresh)  # magicgui drops this one
        for widget in (p.templates, p.background, p.threshold):
            widget.changed.connect(self.schedule_refresh)
        for widget in (s.layer, s.level, s.mpp, s.tile_size, s.stride, s.store_root):
            widget.changed.connect(self.schedule_refresh)
        for widget in (p.show_class, p.colormap, p.opacity):
            widget.changed.connect(self._redisplay)
        p.more_like_this.changed.connect(self.arm_more_like_this)
        e.export.changed.connect(self.export)
        s.layer.choices = self._rgb_layers
        p.show_class.choices = self._class_choices
        layers = self.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            event.connect(self.reset_choices)
        layers.selection.events.active.connect(self._on_active_layer)
        self.viewer.mouse_drag_callbacks.append(self._on_click)

    def _rgb_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, Image) and ly.rgb]

    def _class_choices(self, _widget: Any = None) -> list[str]:
        return list(self.result.names) if self.result is not None else []

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        super().reset_choices()
        combo = self.slide_panel.layer
        active = self.viewer.layers.selection.active
        if combo.value is None and active is not None and active in combo.choices:
            combo.value = active

    def _on_active_layer(self, event: Any) -> None:
        layer = event.value
        combo = self.slide_panel.layer
        if layer is not None and layer in combo.choices and self._embedding is None:
            combo.value = layer

    def _on_layer_changed(self, layer: Any) -> None:
        if layer is not None:
            self.slide_panel.level.max = max(0, len(layer_levels(layer)) - 1)

    @property
    def slide_layer(self) -> Any:
        """The image layer chosen in the Slide panel."""
        return self.slide_panel.layer.value

    # ------------------------------------------------------------------ notifications
    def notify_error(self, message: str) -> None:
        """Show a one-line error (also kept in ``errors`` for tests and logs)."""
        self.errors.append(message)
        logger.warning(message)
        show_error(message)

    def notify_info(self, message: str) -> None:
        """Show a one-line message."""
        logger.info(message)
        show_info(message)

    def _start(self, worker: Any) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.start()

    # ------------------------------------------------------------------ model
    @reports_errors
    def load_model(self, *_: Any) -> Any:
        """Load the model the Model panel names, in a worker; returns the worker."""
        panel = self.model_panel
        arguments = panel.load_arguments()
        worker = load_model_worker(**arguments)
        worker.returned.connect(self._on_model_loaded)
        panel.load.enabled = False
        panel.info.value = f"Loading {arguments['source']} ..."
        worker.finished.connect(lambda: setattr(panel.load, "enabled", True))
        self._start(worker)
        return worker

    @reports_errors
    def use_demo_model(self, *_: Any) -> Any:
        """Fill the Model panel with the demo model shipped with the plugin and load it."""
        from napari_conch._napari.demo import fill_demo_model

        fill_demo_model(self)
        return self.load_model()

    def _on_model_loaded(self, model: Any) -> None:
        if isinstance(model, Failure):
            self.model_panel.info.value = "No model loaded."
            self.notify_error(model.message)
            return
        self.model = model
        freeze_long_lived_objects()
        self.model_panel.info.value = model.describe()
        self.model_panel.note.value = model_note(model)
        self._invalidate_session()
        self.schedule_refresh()

    # ------------------------------------------------------------------ slide, grid, store
    def _settings_key(self) -> tuple:
        s = self.slide_panel
        return (
            id(self.slide_layer),
            s.level.value,
            s.mpp.value,
            s.tile_size.value,
            s.stride.value,
            str(s.store_root.value or ""),
            getattr(self.model, "fingerprint", None),
        )

    def _invalidate_session(self) -> None:
        if self._embedding is None:
            self.session, self._session_key = None, None

    def current_session(self, *, create: bool) -> MapSession | None:
        """The session of the current settings: an existing store is found and reused.

        With ``create=False``, returns None when no store exists for these settings yet.
        Raises user errors (no model, not an RGB layer, no MPP, a store that does not match).
        """
        if self._embedding is not None:
            return self.session
        key = self._settings_key()
        if self.session is not None and self._session_key == key:
            return self.session
        if self.model is None:
            raise InputError("load a model first (Model panel)")
        if self.slide_layer is None:
            raise InputError("open a slide first: no RGB image layer to work on")
        from napari_conch.engine.embed import open_store
        from napari_conch.engine.store import store_path_for
        from napari_conch.slide import make_grid

        s = self.slide_panel
        slide = slide_for_layer(self.slide_layer)
        mpp = s.mpp.value or None
        level = None if mpp else s.level.value
        grid = make_grid(
            slide, level=level, mpp=mpp, tile_size=s.tile_size.value, stride=s.stride.value
        )
        root = optional_path(s.store_root.value)
        if not create and not store_path_for(slide, self.model, grid, root).exists():
            return None
        store = open_store(slide, self.model, grid, root)
        self.session = MapSession.from_store(slide, self.model, grid, store)
        self._session_key = key
        return self.session

    # ------------------------------------------------------------------ embedding
    @reports_errors
    def start_embedding(self, visible_first: bool = False) -> Any:
        """Embed the chosen slide (the visible region first if asked); returns the worker."""
        if self._embedding is not None:
            raise InputError("an embedding run is already under way")
        session = self.current_session(create=True)
        region = self.visible_region() if visible_first else None
        freeze_long_lived_objects()
        cancel = threading.Event()
        worker = embed_worker(
            session.slide,
            session.model,
            session.grid,
            session.store,
            cancel=cancel,
            region=region,
            min_tissue=self.slide_panel.min_tissue.value,
            batch_size=self.slide_panel.batch_size.value,
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_embedded)
        worker.finished.connect(self._on_embed_finished)
        self._embedding = (worker, cancel)
        self._set_running(True)
        self.slide_panel.status.value = "Finding tissue ..."
        self._start(worker)
        return worker

    def cancel_embedding(self, *_: Any) -> None:
        """Stop the run after the batch under way; what is written stays in the store."""
        if self._embedding is not None:
            self._embedding[1].set()
            self.slide_panel.status.value = "Cancelling ..."

    def _set_running(self, running: bool) -> None:
        s = self.slide_panel
        s.embed.enabled = s.embed_visible.enabled = not running
        s.cancel.enabled = running
        for widget in (s.layer, s.level, s.mpp, s.tile_size, s.stride, s.store_root):
            widget.enabled = not running
        self.model_panel.load.enabled = self.model_panel.demo.enabled = not running

    def _on_progress(self, item: tuple[Any, np.ndarray]) -> None:
        event, vectors = item
        bar = self.slide_panel.progress
        bar.max = max(1, event.total)
        bar.value = min(event.done + event.failed, bar.max)
        eta = "?" if event.eta_s is None else f"{event.eta_s:.0f} s"
        self.slide_panel.status.value = (
            f"{event.done}/{event.total} tiles, {event.tiles_per_s:.1f} tiles/s, ETA {eta}"
        )
        if self.session is not None and len(event.rows):
            self.session.index.add(event.rows, event.cols, vectors)
            now = time.monotonic()
            live = self._request is not None and not self._showing_example
            if live and now - self._last_live_map >= LIVE_MAP_INTERVAL_S:
                self._last_live_map = now
                self._show_request()

    def _on_embedded(self, summary: Any) -> None:
        if isinstance(summary, Failure):
            self.slide_panel.status.value = "Embedding failed."
            self.notify_error(summary.message)
            return
        done = f"{summary.done}/{summary.total} tissue tiles embedded"
        if summary.cancelled:
            self.slide_panel.status.value = f"Cancelled: {done}."
            self.notify_info(f"Embedding cancelled: {done}; the store keeps them.")
        else:
            self.slide_panel.status.value = f"Done: {done} ({summary.tiles_per_s:.1f} tiles/s)."
            self.notify_info(f"{done}; store: {summary.store_path}")
        if summary.failed:
            self.notify_error(f"{summary.failed} tiles could not be read (marked failed)")

    def _on_embed_finished(self) -> None:
        self._embedding = None
        self._set_running(False)
        self.schedule_refresh()

    @property
    def embedding(self) -> bool:
        """Whether an embedding run is under way."""
        return self._embedding is not None

    def visible_region(self) -> tuple[float, float, float, float] | None:
        """The level-0 box ``(x0, y0, x1, y1)`` of the slide that the canvas shows."""
        layer = self.slide_layer
        corners = np.asarray(layer.corner_pixels, float)[:, -2:]
        if not np.all(np.isfinite(corners)) or np.all(corners == 0):
            return None
        factor = np.ones(2)
        if layer.multiscale:
            factor = np.asarray(layer.downsample_factors[layer.data_level], float)[-2:]
        (y0, x0), (y1, x1) = corners[0] * factor, (corners[1] + 1) * factor
        return (float(x0), float(y0), float(x1), float(y1))

    # ------------------------------------------------------------------ prompts and maps
    def schedule_refresh(self, *_: Any) -> None:
        """Restart the debounce timer: the maps follow the prompts ~200 ms after typing."""
        self._timer.start()

    @reports_errors
    def refresh_maps(self) -> None:
        """Read the prompt panel; encode new prompts in a worker; show the maps."""
        p = self.prompt_panel
        request = PromptRequest.from_text(
            p.text.value,
            templates=p.templates.value,
            background=p.background.value,
            threshold=p.threshold.value,
        )
        if not request.prompts:
            self._request = None
            return
        request.check()
        self._request = request
        self._showing_example = False
        session = self.current_session(create=False) if self.model is not None else None
        if session is None:
            hint = "load a model" if self.model is None else "press Embed"
            self.prompt_panel.cursor.value = f"No embeddings yet: {hint}."
            return
        missing = session.missing_texts(request)
        if missing:
            self._encode(session, missing, request.templates)
        else:
            self._show_request()

    def _encode(self, session: MapSession, classes: list[str], templates: str) -> None:
        if self._text_busy:
            return  # the worker under way triggers a refresh when it ends
        self._text_busy = True
        worker = text_worker(session, classes, templates)

        def done(encoded: Any) -> None:
            self._text_busy = False
            if isinstance(encoded, Failure):
                self.notify_error(encoded.message)
                return
            session.remember(encoded)
            self.refresh_maps()

        worker.returned.connect(done)
        worker.errored.connect(lambda _: setattr(self, "_text_busy", False))
        self._start(worker)

    @reports_errors
    def _show_request(self) -> None:
        session, request = self.session, self._request
        if session is None or request is None or session.missing_texts(request):
            return  # a text worker is under way and shows the maps when it ends
        self.display(session.query(request))

    def _redisplay(self, *_: Any) -> None:
        if self.result is not None and not self._displaying:
            self.display(self.result)

    def display(self, result: QueryResult) -> None:
        """Show a query result: heatmap, and with several classes probability and labels."""
        self.result = result
        p = self.prompt_panel
        names = list(result.names)
        if list(p.show_class.choices) != names:
            self._displaying = True
            try:
                p.show_class.reset_choices()
            finally:
                self._displaying = False
        k = names.index(p.show_class.value) if p.show_class.value in names else 0
        place = L.map_placement(result.geometry, self.slide_layer)
        units = self.slide_layer.units[-2:]
        style = {"colormap": p.colormap.value, "opacity": p.opacity.value, "units": units}
        heat = result.cell_cosine[k]
        L.upsert_image(
            self.viewer, L.HEATMAP, heat, place, contrast_limits=L.contrast_for(heat), **style
        )
        if result.cell_probs is not None:
            probs = result.cell_probs[k]
            L.upsert_image(
                self.viewer, L.PROBABILITY, probs, place, contrast_limits=(0.0, 1.0), **style
            )
        else:
            L.remove_layer(self.viewer, L.PROBABILITY)
        if result.cell_labels is not None:
            names = result.label_names if result.cell_probs is not None else names
            L.upsert_labels(
                self.viewer, result.cell_labels, names, place, units=units, opacity=p.opacity.value
            )
        else:
            L.remove_layer(self.viewer, L.LABELS)
        self._select_slide_layer()

    def _select_slide_layer(self) -> None:
        """Keep the slide layer active, so adding map layers does not change the choice."""
        layer = self.slide_layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer

    # ------------------------------------------------------------------ more like this
    def arm_more_like_this(self, *_: Any) -> None:
        """The next click on the slide shows the similarity to the tile under it."""
        self._armed = not self._armed
        button = self.prompt_panel.more_like_this
        button.text = (
            "Click a tile (click here to stop)"
            if self._armed
            else ("More like this (click a tile)")
        )

    def _on_click(self, viewer: Any, event: Any) -> None:
        if self._armed and event.type == "mouse_press":
            self.more_like_this_at(event.position)

    @reports_errors
    def more_like_this_at(self, world_position: Any) -> QueryResult | None:
        """Show the similarity to the tile under a world position; returns the result."""
        self._armed = True
        self.arm_more_like_this()
        session = self.current_session(create=False)
        if session is None:
            raise InputError("embed the slide first: no tile embeddings to compare with")
        y, x = L.world_to_level0(self.slide_layer, world_position)
        tile = session.tile_at(y, x)
        if tile is None:
            raise InputError("the click is outside the slide's tile grid")
        result = session.example(*tile)
        self._showing_example = True
        self.display(result)
        return result

    # ------------------------------------------------------------------ export
    @reports_errors
    def export(self, *_: Any) -> Path | None:
        """Write the map on show to the Export panel's file (format by extension)."""
        from napari_conch.engine.export import export_result

        if self.result is None or self.session is None:
            raise InputError("nothing to export yet: type a prompt first")
        path = optional_path(self.export_panel.path.value)
        if path is None:
            raise InputError("choose a file to export to (.tif, .geojson, .csv or .npy)")
        session = self.session
        metadata = {
            "store": str(session.store.path),
            "model_source": str(session.model.source),
            "slide": str(session.slide.path),
        }
        mpp = session.slide.mpp
        out = export_result(path, self.result, session.grid, mpp=mpp, metadata=metadata)
        self.notify_info(f"Exported {out}")
        return out


def model_note(model: Any) -> str:
    """What a user should know about a loaded model, in one line."""
    from napari_conch.demo import DEMO_MODEL_NAME

    if model.config.name == DEMO_MODEL_NAME:
        return (
            "Demo model, not CONCH: trained on a few openly licensed images to try the plugin; "
            "not for diagnosis."
        )
    if not model.has_decoder:
        return (
            "No captioning decoder in this checkpoint (as in the public CONCH release): "
            "prompts and maps work, captions do not."
        )
    return "Captioning decoder loaded: captions work (Caption and retrieval widget)."


def freeze_long_lived_objects() -> None:
    """Keep Python's full garbage collections short while a run allocates in the background.

    napari, Qt and torch make a process of millions of long-lived objects; a full (generation 2)
    collection scans them all and, measured in the test suite, holds the interpreter for about
    300 ms, from whichever thread triggers it, so napari freezes. ``gc.freeze`` moves the objects
    alive now out of the collector's reach (they are still freed by reference counting), which
    brings those pauses down to the size of what the run itself allocates.
    """
    gc.freeze()
