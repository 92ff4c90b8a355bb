"""The Prompt highlighter dock: load CONCH, embed a slide, type prompts, see maps.

The dock is a :class:`~.dock_base.DockBase` of four panels (:mod:`.panels`) over the viewer's
:class:`~napari_conch.engine.session.session.Session`; it holds widgets and wiring only:

- **Load model** runs the session's model loading in a worker (the base class).
- **Embed** / **Embed visible region first** run the generator of
  :meth:`~napari_conch.engine.session.session.Session.embed_run` in a worker; each batch goes to the
  session (live index, progress signal), which moves the progress bar and fills the maps in.
  Before the first batch the bar shows the tissue search's share done ("Finding tissue ...
  43 %") and the seconds spent.
  **Cancel** sets the cancel event the engine checks between batches. The store of
  (slide, model, grid) is found and reused.
- Typing in **Prompts** restarts a 200 ms timer; when it fires, the box's text goes to the
  session (:meth:`~napari_conch.engine.session.session.Session.set_prompts`). The session holds
  the prompts: its ``prompts_changed`` signal, whoever set them (this box, another dock, the demo
  start, a script), fills the box when its text differs and has new prompts encoded (text tower
  only, in a worker); the session computes the maps and its ``result_changed`` signal puts them
  on the canvas (:mod:`.layers`). The option fields send each edit to the session and show the
  session's options through ``options_changed``.
- **More like this** arms one click on the slide: the map becomes the similarity to that tile.
- **Export** writes the map on show with the engine's writers.

User mistakes become one-line notifications; the dock stays usable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_conch._napari.docks.base import DockBase, reports_errors
from napari_conch._napari.docks.cursor_status import CursorStatus
from napari_conch._napari.docks.panels import (
    RANGES,
    ExportPanel,
    ModelPanel,
    PromptPanel,
    SlidePanel,
    optional_path,
    prompt_hint,
)
from napari_conch._napari.docks.workers import (
    USER_ERRORS,
    background,
    background_generator,
    one_line,
)
from napari_conch._napari.fastpaths.process import freeze_long_lived_objects
from napari_conch._napari.layers import map_layers, on_show
from napari_conch._napari.layers import steps as layer_steps
from napari_conch.engine.progress import TISSUE
from napari_conch.engine.session.prompt_request import PromptRequest
from napari_conch.errors import InputError

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.query import QueryResult

#: Milliseconds between the last keystroke and the map update.
DEBOUNCE_MS = 200
#: Under the colour bar with several prompts: where the class chosen in Show is drawn.
CLASS_MAPS_NOTE = "Maps of the class in Show: hidden under the labels (tick their eye).<br>"
#: While a run is under way, the maps are redrawn with the new tiles at most this often: each
#: redraw costs napari tens of milliseconds on the GUI thread, a batch can take less.
LIVE_MAP_INTERVAL_S = 0.5
MORE_LIKE_THIS_TEXT = "More like this (click a tile)"
#: The map layers of the prompts, removed in this order when the prompts are cleared (the
#: hidden class maps first, the labels the user sees last).
MAP_LAYERS = map_layers.PROMPT_MAP_LAYERS
MORE_LIKE_THIS_ARMED = "Click a tile (click here to stop)"


class PromptDock(DockBase):
    """Dock turning text prompts into maps over a whole-slide image.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when the dock is opened from the Plugins menu).

    Attributes
    ----------
    model_panel, slide_panel, prompt_panel, export_panel
        The parts (see :mod:`.panels`).
    session : Session
        The viewer's session: model, slide, options, store, live index, prompts, maps.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer, self._make_sections())

    def _make_sections(self) -> Iterator[tuple[str, Any]]:
        """The panels, one per event-loop turn (see :class:`~.base.DockBase`)."""
        self.model_panel = ModelPanel()
        yield "Model", self.model_panel
        self.slide_panel = SlidePanel()
        yield "Slide and embedding", self.slide_panel
        self.prompt_panel = PromptPanel()
        yield "Prompts and maps", self.prompt_panel
        self.export_panel = ExportPanel()
        yield "Export", self.export_panel

    def ready(self) -> None:
        """Wire the panels to the session and show its state."""
        self._cancel: threading.Event | None = None
        self._last_live_map = 0.0
        self._displaying = False
        self._maps_for: Any = None  # the session's slide the maps on the canvas were made for
        self._preparing_since = 0.0
        self._tissue_share: float | None = None  # of the tissue search, once it says it
        self._preparing_timer = QTimer(self.native)
        self._preparing_timer.setInterval(1000)
        self._preparing_timer.timeout.connect(self._tick_preparing)
        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._timer_fired)
        self._send_due = False  # the prompt fields changed: the timer sends them
        #: The layer updates, one per event-loop turn (see _show_in_turns).
        self.steps = layer_steps.StepQueue(
            self.viewer, alive=lambda: not self._closed, after_step=self._select_slide_layer
        )
        self.bind_model_panel(self.model_panel)
        self.bind_layer_combo(self.slide_panel.layer, self.slide_panel.level)
        self._show_options(self.session.options)
        self._show_prompts(self.session.request)
        self._connect()
        self.cursor_status = CursorStatus(self)
        self._show_store_state()
        if self.session.result is not None:
            self.display(self.session.result)

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        s, p, e = self.slide_panel, self.prompt_panel, self.export_panel
        s.embed.changed.connect(lambda: self.start_embedding(visible_first=False))
        s.embed_visible.changed.connect(lambda: self.start_embedding(visible_first=True))
        s.cancel.changed.connect(self.cancel_embedding)
        for name in s.OPTION_WIDGETS:
            getattr(s, name).changed.connect(self._options_edited)
        p.text.native.textChanged.connect(self.prompts_edited)  # magicgui drops this one
        for widget in (p.templates, p.background, p.threshold, p.prompt_file):
            widget.changed.connect(self.prompts_edited)
        for widget in (p.show_class, p.colormap, p.opacity, p.range):
            widget.changed.connect(self._redisplay)
        p.more_like_this.changed.connect(self.arm_more_like_this)
        e.export.changed.connect(self.export)
        p.show_class.choices = self._class_choices
        events = self.session.events
        self.listen(events.options_changed, self._on_options)
        self.listen(events.prompts_changed, self._on_prompts)
        self.listen(events.running_changed, self._set_running)
        self.listen(events.progress, self._on_progress)
        self.listen(events.tiles_added, self._on_tiles_added)
        self.listen(events.run_finished, self._on_run_finished)
        self.listen(events.result_changed, self._on_result)
        self.listen(self.shown_map.changed, self._show_key)
        self.shown_map.hold_while_drawing(self)

    def _class_choices(self, _widget: Any = None) -> list[str]:
        result = self.session.result
        return list(result.names) if result is not None else []

    @property
    def result(self) -> QueryResult | None:
        """The map on show (what Export writes)."""
        return self.session.result

    def on_model_changed(self, model: Any) -> None:
        """A new model: the prompts are parsed again (its templates) and the maps follow; the
        prompt box says what the model knows."""
        from napari_conch._napari.demo import DEMO_PROMPT_HINT

        text = self.prompt_panel.text
        text.native.setPlaceholderText(prompt_hint(model))
        if model is not None and model.is_demo:
            text.tooltip = DEMO_PROMPT_HINT
        self._show_store_state()
        self.prompts_edited()

    def on_slide_changed(self, slide: Any) -> None:
        """A new slide: the maps and the embedding's status follow."""
        self._show_store_state()
        self.schedule_refresh()

    def _show_store_state(self) -> None:
        """Outside a run, the status and bar say how far the session's slide is embedded with
        this model and these options (from its store): another slide chosen, or the dock opened
        again, never shows the last run of another slide, nor nothing."""
        session = self.session
        if session.running:
            return
        s = self.slide_panel
        done, total, text = 0, 1, ""
        try:
            counts = session.store_counts()
        except USER_ERRORS as exc:
            counts, text = None, one_line(exc)
        tissue = 0 if counts is None else counts["done"] + counts["pending"] + counts["failed"]
        if tissue:  # a store whose tissue was found (a run cancelled before has none)
            done, failed = counts["done"], counts["failed"]
            total = tissue
            text = f"{done}/{tissue} tissue tiles embedded"
            text += f", {failed} failed." if failed else "."
            done += failed
        elif not text and session.model is not None and session.slide is not None:
            text = "Not embedded yet with this model and these options."
        s.progress.max, s.progress.value = total, min(done, total)
        if s.status.value != text:
            s.status.value = text

    @reports_errors
    def use_demo_model(self, *_: Any) -> Any:
        """Load the demo model (the panels show it from the session; its tile size is the
        model's own, as for every model)."""
        from napari_conch.demo import DEMO_SOURCE

        return self.load_model(source=DEMO_SOURCE)

    @reports_errors
    def _options_edited(self, *_: Any) -> None:
        """A user's edit of an option field: sent to the session (which announces it)."""
        if self.session.running:
            return
        self.session.set_options(self.slide_panel.run_options(self.session.options))

    def _on_options(self, options: Any) -> None:
        self._show_options(options)
        self._show_store_state()  # other options, another grid: another store
        self.schedule_refresh()

    def _show_options(self, options: Any) -> None:
        """Show the session's options in the fields, without sending them back."""
        s = self.slide_panel
        with ExitStack() as stack:
            for name in s.OPTION_WIDGETS:
                stack.enter_context(getattr(s, name).changed.blocked())
            s.show_options(options)

    # ------------------------------------------------------------------ embedding
    @reports_errors
    def start_embedding(self, visible_first: bool = False) -> Any:
        """Embed the chosen slide (the visible region first if asked); returns the worker."""
        session = self.session
        if session.running or self.busy("embed"):
            raise InputError("an embedding run is already under way")
        session.require_model()
        self.require_slide()
        region = self.visible_region() if visible_first else None
        freeze_long_lived_objects()
        cancel = threading.Event()
        events = session.embed_run(region=region, cancel=cancel)
        self._cancel = cancel
        worker = background_generator(events)
        worker.errored.connect(lambda _exc: self._end_run(None))
        self._start_preparing()
        return self.run(
            "embed",
            worker,
            self._end_run,
            failed=lambda message: self._end_run(None, message),
            progress=lambda item: session.add_progress(*item),
        )

    def _end_run(self, summary: Any, message: str | None = None) -> None:
        if self.session.running:
            if summary is None:
                self.slide_panel.status.value = "Embedding failed."
            self.session.finish_run(summary)

    def cancel_embedding(self, *_: Any) -> None:
        """Stop the run after the batch under way; what is written stays in the store."""
        if self._cancel is not None and self.session.running:
            self._cancel.set()
            self.slide_panel.status.value = "Cancelling ..."

    @property
    def embedding(self) -> bool:
        """Whether an embedding run is under way."""
        return self.session.running or self.busy("embed")

    def _set_running(self, running: bool) -> None:
        s = self.slide_panel
        s.embed.enabled = s.embed_visible.enabled = not running
        s.cancel.enabled = running
        for name in ("layer", *s.OPTION_WIDGETS):
            getattr(s, name).enabled = not running
        self.update_busy()

    def _start_preparing(self) -> None:
        """Until the first batch: the tissue search's share done and the seconds spent (a busy
        bar until the search says its first step)."""
        self._preparing_since = time.monotonic()
        self._tissue_share = None
        self.slide_panel.progress.max = 0  # Qt draws a busy indicator
        self._tick_preparing()
        self._preparing_timer.start()

    def _tick_preparing(self) -> None:
        elapsed = time.monotonic() - self._preparing_since
        cancelling = self._cancel is not None and self._cancel.is_set()
        doing = "Cancelling" if cancelling else "Finding tissue"
        if self._tissue_share is None:
            text = f"{doing} ... {elapsed:.0f} s"
        else:
            text = f"{doing} ... {100 * self._tissue_share:.0f} % ({elapsed:.0f} s)"
        self.slide_panel.status.value = text

    def _stop_preparing(self) -> None:
        self._preparing_timer.stop()
        if self.slide_panel.progress.max == 0:
            self.slide_panel.progress.max = 1

    def _on_progress(self, event: Any) -> None:
        if event.phase == TISSUE:
            self._on_tissue_progress(event)
            return
        self._stop_preparing()
        bar = self.slide_panel.progress
        bar.max = max(1, event.total)
        bar.value = min(event.done + event.failed, bar.max)
        eta = "?" if event.eta_s is None else f"{event.eta_s:.0f} s"
        self.slide_panel.status.value = (
            f"{event.done}/{event.total} tiles, {event.tiles_per_s:.1f} tiles/s, ETA {eta}"
        )

    def _on_tissue_progress(self, event: Any) -> None:
        """A step of the tissue search: the bar shows its share done (steps, not tiles)."""
        bar = self.slide_panel.progress
        bar.max = max(1, event.total)
        bar.value = min(event.done, bar.max)
        self._tissue_share = event.fraction
        self._tick_preparing()

    def _on_tiles_added(self, _rows: Any, _cols: Any) -> None:
        session = self.session
        if session.request is None or session.showing_example:
            return
        now = time.monotonic()
        if now - self._last_live_map >= LIVE_MAP_INTERVAL_S:
            self._last_live_map = now
            self._update_maps()

    def _on_run_finished(self, summary: Any) -> None:
        self._cancel = None
        self._stop_preparing()
        if summary is not None:
            done = f"{summary.done}/{summary.total} tissue tiles embedded"
            if summary.computed == 0 and not summary.cancelled and not summary.failed:
                already = f"{summary.done} tiles already embedded."
                self.slide_panel.status.value = f"Nothing to compute: {already}"
                self.notify_info(f"Nothing to compute.\n{already}\nStore: {summary.store_path}")
            elif summary.cancelled:
                self.slide_panel.status.value = f"Cancelled: {done}."
                self.notify_info(f"Embedding cancelled.\n{done}; the store keeps them.")
            else:
                rate = f"{summary.tiles_per_s:.1f} tiles/s"
                self.slide_panel.status.value = f"Done: {done} ({rate})."
                # the toast shows its first line whole; the store's path is under it
                self.notify_info(f"{done}.\nStore: {summary.store_path}")
            if summary.failed:
                failed = summary.failed
                self.notify_error(f"{failed} tiles could not be read.\nThey are marked failed.")
        self.schedule_refresh()

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
        """Restart the debounce timer: the maps follow the session ~200 ms later."""
        self._timer.start()

    def prompts_edited(self, *_: Any) -> None:
        """A prompt field changed: the timer sends the prompts to the session ~200 ms after
        the last keystroke."""
        self._send_due = True
        self._timer.start()

    def _timer_fired(self) -> None:
        if self._send_due:
            self._send_due = False
            self.send_prompts()
        else:
            self.refresh_maps()

    @reports_errors
    def send_prompts(self) -> None:
        """Send the prompt panel's request to the session; its ``prompts_changed`` makes the
        maps (nothing new: the maps are made again, for a new store or slide)."""
        session = self.session
        request = self.request()
        text = self.prompt_panel.text.value
        if not request.prompts:
            request = None
        if request == session.request and text == session.prompt_text:
            self.refresh_maps()
            return
        session.set_prompts(request, text=text)

    def _on_prompts(self, request: PromptRequest | None) -> None:
        """The session's prompts changed: the fields show them, new ones are encoded."""
        self._show_prompts(request)
        if request is None and any(map_layers.find_layer(self.viewer, n) for n in MAP_LAYERS):
            self._remove_maps()  # maps kept hidden (no map since) go with their prompts
        self.refresh_maps()

    def _show_prompts(self, request: PromptRequest | None) -> None:
        """Show the session's prompts in the fields (only what differs; nothing sent back)."""
        p = self.prompt_panel
        box = p.text
        if box.value != self.session.prompt_text:
            box.native.blockSignals(True)  # not an edit: nothing to send back
            try:
                box.value = self.session.prompt_text
            finally:
                box.native.blockSignals(False)
        if request is None:
            return
        values = {
            p.templates: request.templates != "none",
            p.background: request.background or "",
            p.threshold: request.threshold or 0.0,
        }
        for widget, value in values.items():
            if widget.value != value:
                with widget.changed.blocked():
                    widget.value = value

    def request(self) -> PromptRequest:
        """The prompt panel's request: the prompt-set file's classes when one is chosen."""
        from napari_conch.engine.prompts import model_templates

        p = self.prompt_panel
        # the model's own templates (CONCH's for CONCH and the demo model, QuiltNet's, PLIP's)
        templates = model_templates(self.session.model) if p.templates.value else "none"
        path = optional_path(p.prompt_file.value)
        if path is not None:
            from napari_conch.engine.prompts import load_prompt_set

            return PromptRequest.from_prompt_set(
                load_prompt_set(path, templates),
                templates=templates,
                background=p.background.value,
                threshold=p.threshold.value,
            )
        return PromptRequest.from_text(
            p.text.value,
            templates=templates,
            background=p.background.value,
            threshold=p.threshold.value,
        )

    @reports_errors
    def refresh_maps(self) -> None:
        """The maps of the session's prompts: new prompts encoded in a worker, then shown."""
        session = self.session
        request = session.request
        if request is None:
            return  # no prompt: the session has taken the maps away
        if session.model is None:
            self.prompt_panel.cursor.value = "No embeddings yet: load a model."
            return
        self.require_slide()
        if session.open_store(create=False) is None:
            self.prompt_panel.cursor.value = "No embeddings yet: press Embed."
            return
        missing = session.missing_texts(request)
        if missing:
            self._encode(request, missing)
        else:
            self._update_maps()

    def _encode(self, request: PromptRequest, classes: list[str]) -> None:
        if self.busy("text"):
            return  # the worker under way refreshes the maps when it ends

        def done(encoded: Any) -> None:
            self.session.remember_texts(encoded)
            self.refresh_maps()

        worker = background(self.session.encode_texts, request, classes)
        self.run("text", worker, done)

    @reports_errors
    def _update_maps(self) -> None:
        self.session.update_maps()

    def _on_result(self, result: Any) -> None:
        if result is None:
            self.prompt_panel.legend.value = ""
            if self._maps_kept():
                self._show_in_turns([self._hide_maps, self._follow_screen])
            else:
                self._remove_maps()
            return
        self.display(result)

    def _maps_kept(self) -> bool:
        """Whether the maps of a store that closed stay, hidden, for the next map to reuse.

        They do while the prompts and the slide stay (new run options, a new run, another
        model: the next map is of the same prompts over the same slide). Removing a map layer
        and making it again each pause napari for 50-100 ms (bench/stalls.py, "live maps");
        giving a kept layer its new grid and data costs 15 ms. Without prompts, or for another
        slide, the maps go.
        """
        session = self.session
        return (
            session.request is not None
            and session.slide is not None
            and session.slide is self._maps_for
        )

    def _hide_maps(self) -> None:
        """Hide the maps on show (marked for :func:`~.layer_steps.show_again`)."""
        for name in MAP_LAYERS:
            layer = map_layers.find_layer(self.viewer, name)
            if layer is not None:
                layer_steps.hide_for_now(layer)

    def _remove_maps(self) -> None:
        """Remove the maps, one layer per turn (each removal costs napari a pause)."""
        viewer = self.viewer
        gone = [lambda n=name: map_layers.remove_layer(viewer, n, self) for name in MAP_LAYERS]
        self._show_in_turns([*gone, self._follow_screen])

    def _redisplay(self, *_: Any) -> None:
        if self.session.result is not None and not self._displaying:
            self.display(self.session.result)

    def display(self, result: QueryResult) -> None:
        """Show a query result: heatmap, and with several classes probability and labels.

        The maps are cut at the image's edges; the heatmap's colour range is shared by the
        prompts or each prompt's own (Range); the labels' legend is shown in the dock and on
        the canvas.
        """
        layer = self.slide_layer
        if layer is None:
            return
        self._maps_for = self.session.slide
        p = self.prompt_panel
        names = list(result.names)
        if list(p.show_class.choices) != names:
            self._displaying = True
            try:
                p.show_class.reset_choices()
            finally:
                self._displaying = False
        k = names.index(p.show_class.value) if p.show_class.value in names else 0
        shape = map_layers.image_shape(layer)
        units = layer.units[-2:]
        style = {"colormap": p.colormap.value, "opacity": p.opacity.value, "units": units}
        shared = p.range.value == RANGES[0]
        limits = map_layers.contrast_for(result.cell_cosine if shared else result.cell_cosine[k])
        heat, geometry = map_layers.clip_to_image(result.cell_cosine[k], result.geometry, shape)
        place = map_layers.map_placement(geometry, layer)
        viewer, opacity = self.viewer, p.opacity.value
        # several prompts: the labels are the map; the class maps stay under them, hidden
        several = result.cell_probs is not None

        def show_heatmap() -> list[Any]:
            layer = map_layers.upsert_image(
                viewer,
                map_layers.HEATMAP,
                heat,
                place,
                contrast_limits=limits,
                below=map_layers.LABELS,
                **style,
            )
            title = f"similarity of '{names[k]}'"
            on_show.describe_range(layer, title, style["colormap"], *limits)
            if several:
                layer_steps.keep_hidden(layer)
            else:
                layer_steps.show_again(layer)  # one prompt again: the similarity is the map
            return layer_steps.reveal_steps(layer)

        steps = [show_heatmap]
        if several:
            probs, _ = map_layers.clip_to_image(result.cell_probs[k], result.geometry, shape)

            def show_probability() -> list[Any]:
                layer = map_layers.upsert_image(
                    viewer, map_layers.PROBABILITY, probs, place, contrast_limits=(0.0, 1.0),
                    below=map_layers.LABELS, **style,
                )  # fmt: skip
                title = f"probability of '{names[k]}'"
                on_show.describe_range(layer, title, style["colormap"], 0.0, 1.0)
                return layer_steps.reveal_steps(layer_steps.keep_hidden(layer))

            steps.append(show_probability)
        else:
            map_layers.remove_layer(viewer, map_layers.PROBABILITY, self)
        if result.cell_labels is not None:
            classes = result.label_names if several else names
            labels, _ = map_layers.clip_to_image(result.cell_labels, result.geometry, shape)

            def show_labels() -> list[Any]:
                new = map_layers.find_layer(viewer, map_layers.LABELS) is None
                layer = map_layers.upsert_labels(
                    viewer, labels, classes, place, units=units, opacity=opacity
                )
                on_show.describe_classes(layer, classes)
                layer_steps.show_again(layer)  # a map kept hidden while its store closed
                heatmap = map_layers.find_layer(viewer, map_layers.HEATMAP)
                covered = []
                if new and several and heatmap is not None:
                    # once, as the labels first come (not against a user), and only once they
                    # are on screen: no turn without a map
                    covered = [lambda: layer_steps.hide_for_now(heatmap)]
                return [*layer_steps.reveal_steps(layer), *covered, self._follow_screen]

            steps.insert(0, show_labels)  # the map first; the class maps under it after
        else:
            map_layers.remove_layer(viewer, map_layers.LABELS, self)
        steps.append(self._follow_screen)  # the legend or caption of the map on show
        self._show_in_turns(steps)

    def _follow_screen(self) -> list[Any]:
        """The dock's key shows the map on show; returns the steps that make the canvas say it
        (its legend or caption, see :mod:`.on_show`), run in the next turns."""
        self._show_key(on_show.map_on_show(self.viewer))
        return on_show.canvas_steps(self.viewer)

    def _show_key(self, _shown: Any = None) -> None:
        """The dock's key describes the topmost visible of its maps (the one the user sees)."""
        layer = on_show.map_on_show(self.viewer, MAP_LAYERS)
        key = on_show.dock_html(layer)
        if (
            layer is not None
            and layer.name == map_layers.LABELS
            and map_layers.PROBABILITY in self.viewer.layers
        ):
            key += "<br>" + CLASS_MAPS_NOTE
        if self.prompt_panel.legend.value != key:
            self.prompt_panel.legend.value = key

    def _show_in_turns(self, steps: list[Any]) -> None:
        """Run the layer updates one per event-loop turn, the first in the next turn
        (:class:`~napari_conch._napari.layers.steps.StepQueue`): the first comes after the dock
        has shown the new legend; a newer display drops the steps of an older one that are
        still waiting."""
        self.steps.replace(steps)

    @property
    def drawing(self) -> bool:
        """Whether layer updates of the last display are still waiting for their turn."""
        return self.steps.busy

    def _select_slide_layer(self) -> None:
        """Keep the slide layer active, so adding map layers does not change the choice."""
        layer = self.slide_layer
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer

    # ------------------------------------------------------------------ more like this
    def arm_more_like_this(self, *_: Any) -> None:
        """The next click on the slide shows the similarity to the tile under it."""
        button = self.prompt_panel.more_like_this
        self.arm_click(button, MORE_LIKE_THIS_ARMED, self.more_like_this_at)

    @reports_errors
    def more_like_this_at(self, world_position: Any) -> QueryResult | None:
        """Show the similarity to the tile under a world position; returns the result."""
        self.disarm_click()
        self.require_slide()
        session = self.session
        if session.open_store(create=False) is None:
            raise InputError("embed the slide first: no tile embeddings to compare with")
        y, x = map_layers.world_to_level0(self.slide_layer, world_position)
        tile = session.tile_at(y, x)
        if tile is None:
            raise InputError("the click is outside the slide's tile grid")
        return session.show_example(*tile)

    # ------------------------------------------------------------------ export
    @reports_errors
    def export(self, *_: Any) -> Any:
        """Write the map on show to the Export panel's file (format by extension) in a worker.

        The file and the map are checked at once (a mistake is a notice and returns None);
        returns the worker, whose ``returned`` signal carries the path written.
        """
        self.check_idle("export", "an export")
        typed = self.export_panel.path.line_edit.value.strip()  # magicgui turns "" into "."
        job = self.session.export_job(
            optional_path(self.export_panel.path.value) if typed else None,
            map_render=self.export_panel.map_render(),
        )
        done = lambda out: self.notify_info(f"Exported {out}")  # noqa: E731
        return self.run("export", background(job), done)
