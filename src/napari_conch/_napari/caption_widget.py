"""The caption and retrieval dock widget: a region of the slide -> text, and a text -> tiles.

- **Model**: the prompt highlighter's :class:`~.panels.ModelPanel` and the same cached loader
  (loading a model twice costs nothing), or the model a Prompt highlighter dock already holds.
- **Region**: the last (or the one selected) shape of the ``CONCH caption region`` Shapes layer:
  a rectangle the user draws, or a tile-sized box around a clicked point. World coordinates
  become level-0 pixels through the slide layer's scale and translate (:mod:`.regions`).
- **Caption** runs :func:`~napari_conch.engine.region.caption_region` in a worker. A model
  without decoder weights (the public CONCH release) disables it, and a label says why.
- **Rank texts** runs :func:`~napari_conch.engine.region.rank_texts` over candidate texts or a
  prompt-set JSON: probabilities are the softmax with the model's temperature.
- **Top tiles** runs :func:`~napari_conch.engine.retrieval.top_tiles_for_prompt` over the slide's
  embeddings: those of a Prompt highlighter working on the same slide and model, else the store
  found under the store folder (:mod:`.stores`). Clicking an entry centres and zooms on the tile.

Every slow call runs off the GUI thread; user mistakes become one-line notifications.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, PushButton
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info

from napari_conch._napari import regions as R
from napari_conch._napari.caption_panels import (
    CLICK_ARMED_TEXT,
    CLICK_TEXT,
    CaptionPanel,
    RankPanel,
    RegionPanel,
    TopTilesPanel,
)
from napari_conch._napari.layers import find_layer
from napari_conch._napari.panels import ModelPanel, optional_path
from napari_conch._napari.slides import layer_levels, slide_for_layer
from napari_conch._napari.stores import top_tiles_job
from napari_conch._napari.widget import PromptHighlighter, reports_errors
from napari_conch._napari.workers import USER_ERRORS, Failure, load_model_worker, one_line
from napari_conch.errors import InputError, NoDecoderError

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.region import Region
    from napari_conch.engine.retrieval import TileHit

logger = logging.getLogger("napari_conch")

NO_DECODER_REASON = (
    "This checkpoint has no captioning decoder (the public CONCH release has none): "
    "Caption is off. Ranking texts and top tiles work."
)
#: Screen pixels a top tile spans after clicking its entry.
TILE_SCREEN_PX = 320
HIT_COLOR = np.array([1.0, 0.85, 0.0, 1.0])
CHOSEN_COLOR = np.array([0.0, 1.0, 1.0, 1.0])


def background(func: Callable[..., Any], *args: Any) -> FunctionWorker:
    """An unstarted worker calling ``func(*args)``; user errors return a :class:`Failure`."""

    def run() -> Any:
        try:
            return func(*args)
        except USER_ERRORS as exc:
            return Failure(one_line(exc))

    return create_worker(run, _start_thread=False)


class CaptionRetrieval(Container):
    """Dock widget: caption a region, rank texts for it, find the top tiles of a prompt.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).

    Attributes
    ----------
    model : LoadedModel or None
        The model in use.
    caption_text : str or None
        The last caption.
    ranking : list of (text, probability, cosine)
        The last ranking, best first.
    hits : list of TileHit
        The last top tiles, best first.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        self.viewer = napari_viewer
        self.model_panel = ModelPanel()
        self.use_highlighter = PushButton(text="Use the Prompt highlighter's model")
        self.region_panel = RegionPanel()
        self.caption_panel = CaptionPanel()
        self.rank_panel = RankPanel()
        self.tiles_panel = TopTilesPanel()
        super().__init__(
            widgets=[
                self.model_panel,
                self.use_highlighter,
                self.region_panel,
                self.caption_panel,
                self.rank_panel,
                self.tiles_panel,
            ],
            scrollable=True,
        )
        self.model: Any = None
        self.caption_text: str | None = None
        self.ranking: list[tuple[str, float, float]] = []
        self.hits: list[TileHit] = []
        self.errors: list[str] = []
        self._hits_layer: Any = None
        self._slide: tuple[Any, Any] | None = None
        self._region_layer: Any = None
        self._workers: set[Any] = set()
        self._busy: set[str] = set()
        self._armed = False
        self._connect()
        self.reset_choices()
        self.adopt_highlighter_model(quiet=True)
        self._update_decoder_state()

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        r = self.region_panel
        self.model_panel.load.changed.connect(self.load_model)
        self.model_panel.demo.changed.connect(self.use_demo_model)
        self.use_highlighter.changed.connect(lambda: self.adopt_highlighter_model())
        r.layer.choices = self._rgb_layers
        r.layer.changed.connect(self._on_layer_changed)
        r.draw.changed.connect(self.draw_region)
        r.click.changed.connect(self.arm_click)
        r.level.changed.connect(lambda: self._region_changed(run=False))
        self.caption_panel.caption.changed.connect(self.caption)
        self.rank_panel.rank.changed.connect(self.rank)
        self.tiles_panel.find.changed.connect(self.find_top_tiles)
        self.tiles_panel.table.native.cellClicked.connect(lambda row, _col: self.go_to_hit(row))
        layers = self.viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            event.connect(self.reset_choices)
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self._watch_region_layer()

    def _rgb_layers(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, Image) and ly.rgb]

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        super().reset_choices()
        combo = self.region_panel.layer
        active = self.viewer.layers.selection.active
        if combo.value is None and active is not None and active in combo.choices:
            combo.value = active
        if self._region_layer is not None and self._region_layer not in self.viewer.layers:
            self._region_layer = None
        self._watch_region_layer()

    def _on_layer_changed(self, layer: Any) -> None:
        if layer is not None:
            self.region_panel.level.max = max(0, len(layer_levels(layer)) - 1)

    @property
    def slide_layer(self) -> Any:
        """The image layer chosen in the Region panel."""
        return self.region_panel.layer.value

    def slide(self) -> Any:
        """The :class:`~napari_conch.slide.Slide` of the chosen layer (opened once per layer)."""
        layer = self.slide_layer
        if layer is None:
            raise InputError("open a slide first: no RGB image layer to work on")
        if self._slide is None or self._slide[0] is not layer:
            self._slide = (layer, slide_for_layer(layer))
        return self._slide[1]

    # ------------------------------------------------------------------ notifications, workers
    def notify_error(self, message: str) -> None:
        """Show a one-line error (also kept in ``errors`` for tests and logs)."""
        self.errors.append(message)
        logger.warning(message)
        show_error(message)

    def notify_info(self, message: str) -> None:
        """Show a one-line message."""
        logger.info(message)
        show_info(message)

    def busy(self, task: str | None = None) -> bool:
        """Whether ``task`` ("caption", "rank", "tiles", "model"), or any task, is running."""
        return bool(self._busy) if task is None else task in self._busy

    def _run(self, task: str, worker: FunctionWorker, done: Callable[[Any], None]) -> Any:
        self._busy.add(task)
        self._workers.add(worker)
        worker.returned.connect(done)

        def finished() -> None:
            self._workers.discard(worker)
            self._busy.discard(task)
            self._update_buttons()

        worker.finished.connect(finished)
        self._update_buttons()
        worker.start()
        return worker

    def _update_buttons(self) -> None:
        self.model_panel.load.enabled = not self.busy("model")
        self.model_panel.demo.enabled = not self.busy("model")
        self.rank_panel.rank.enabled = not self.busy("rank")
        self.tiles_panel.find.enabled = not self.busy("tiles")
        self._update_decoder_state()

    def _check_idle(self, task: str, what: str) -> None:
        if self.busy(task):
            raise InputError(f"{what} is under way: wait for it to finish")

    # ------------------------------------------------------------------ model
    @reports_errors
    def load_model(self, *_: Any) -> Any:
        """Load the model the Model panel names (cached loader), in a worker; returns it."""
        self._check_idle("model", "loading a model")
        arguments = self.model_panel.load_arguments()
        worker = load_model_worker(**arguments)
        self.model_panel.info.value = f"Loading {arguments['source']} ..."
        return self._run("model", worker, self._on_model_loaded)

    @reports_errors
    def use_demo_model(self, *_: Any) -> Any:
        """Fill the Model panel with the demo model shipped with the plugin and load it."""
        from napari_conch._napari.demo import fill_demo_paths

        fill_demo_paths(self.model_panel)
        return self.load_model()

    def _on_model_loaded(self, model: Any) -> None:
        if isinstance(model, Failure):
            self.model_panel.info.value = "No model loaded."
            self.notify_error(model.message)
            return
        self.set_model(model)

    def set_model(self, model: Any) -> None:
        """Use ``model`` (a LoadedModel) for captions, rankings and top tiles."""
        self.model = model
        self.model_panel.info.value = model.describe()
        self._update_decoder_state()

    def highlighters(self) -> list[PromptHighlighter]:
        """The Prompt highlighter docks of this viewer."""
        docks = getattr(self.viewer.window, "dock_widgets", None) or {}
        widgets = [_unwrap(w) for w in docks.values()]
        return [w for w in widgets if isinstance(w, PromptHighlighter)]

    @reports_errors
    def adopt_highlighter_model(self, *, quiet: bool = False) -> Any:
        """Use the model of a Prompt highlighter dock; returns it (None when there is none)."""
        for highlighter in self.highlighters():
            if highlighter.model is not None:
                self.set_model(highlighter.model)
                return highlighter.model
        if not quiet:
            raise InputError("no Prompt highlighter with a loaded model in this viewer")
        return None

    def require_model(self) -> Any:
        """The model in use, picking up a Prompt highlighter's when none is loaded here."""
        if self.model is None:
            self.adopt_highlighter_model(quiet=True)
        if self.model is None:
            raise InputError("load a model first (Model section, or in the Prompt highlighter)")
        return self.model

    def _update_decoder_state(self) -> None:
        panel = self.caption_panel
        has_decoder = self.model is not None and self.model.has_decoder
        panel.caption.enabled = has_decoder and not self.busy("caption")
        if self.model is None:
            panel.reason.value = "Load a model to caption a region."
        else:
            panel.reason.value = "" if has_decoder else NO_DECODER_REASON

    # ------------------------------------------------------------------ region
    def region_layer(self, *, create: bool = False) -> Any:
        """The ``CONCH caption region`` Shapes layer (added on the slide when ``create``)."""
        layer = find_layer(self.viewer, R.REGION_LAYER)
        if create:
            slide_layer = self.slide_layer
            if slide_layer is None:
                raise InputError("open a slide first: no RGB image layer to draw on")
            width = max(2.0, max(self.slide().shape) / 500)
            layer = R.shapes_layer(
                self.viewer, R.REGION_LAYER, slide_layer,
                edge_color="lime", face_color="transparent", edge_width=width,
            )  # fmt: skip
            self._watch_region_layer()
        return layer

    def _watch_region_layer(self) -> None:
        layer = _unwrap(find_layer(self.viewer, R.REGION_LAYER))
        if layer is not None and layer is not self._region_layer:
            layer.events.data.connect(self._on_region_data)
            self._region_layer = layer

    def _on_region_data(self, event: Any) -> None:
        action = str(getattr(event, "action", ""))
        if action in ("added", "changed"):
            self._region_changed(run=action == "added")

    def _region_changed(self, *, run: bool) -> None:
        try:
            region = self.current_region()
        except USER_ERRORS:
            self.region_panel.box.value = "No region yet."
            return
        self.region_panel.box.value = (
            f"x {region.x0:.0f}-{region.x1:.0f}, y {region.y0:.0f}-{region.y1:.0f} "
            f"(level-0 px), read at level {region.level}"
        )
        if run and self.region_panel.auto.value:
            self.run_region()

    def current_region(self) -> Region:
        """The region: the selected (else the last) shape of the caption region layer."""
        from napari_conch.engine.region import Region

        if self.slide_layer is None:
            raise InputError("open a slide first: no RGB image layer to work on")
        box = R.shape_box(self.region_layer(), self.slide_layer)
        return Region(*box, level=self.region_panel.level.value)

    @reports_errors
    def draw_region(self, *_: Any) -> Any:
        """Add (or pick) the caption region layer in rectangle mode, ready to draw."""
        self._armed = True
        self.arm_click()  # disarm a pending click
        layer = self.region_layer(create=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def arm_click(self, *_: Any) -> None:
        """The next click on the slide makes a tile-sized region around the clicked point."""
        self._armed = not self._armed
        self.region_panel.click.text = CLICK_ARMED_TEXT if self._armed else CLICK_TEXT
        layer = self.region_layer()
        if self._armed and layer is not None:
            layer.mode = "pan_zoom"  # the click must not start a rectangle as well

    def _on_click(self, viewer: Any, event: Any) -> None:
        if self._armed and event.type == "mouse_press":
            self.region_at(event.position)

    @reports_errors
    def region_at(self, world_position: Any) -> Region:
        """Make the region a tile-sized box around a world position; returns the region."""
        self._armed = True
        self.arm_click()
        slide, slide_layer = self.slide(), self.slide_layer
        y, x = R.world_to_edge(slide_layer, world_position)
        height, width = slide.shape
        if not (0 <= x < width and 0 <= y < height):
            raise InputError("the click is outside the slide")
        level = self.region_panel.level.value
        if not 0 <= level < len(slide.downsamples):
            raise InputError(f"level {level} does not exist (levels 0..{len(slide.levels) - 1})")
        side = self.region_panel.box_size.value * float(slide.downsamples[level])
        layer = self.region_layer(create=True)
        layer.selected_data = set()  # the new box is the last shape, and no other is selected
        layer.add_rectangles([R.box_rectangle(R.box_around(slide.shape, y, x, side))])
        return self.current_region()

    def run_region(self) -> None:
        """Caption (when the model can) and rank (when there are candidates) the region."""
        if self.model is not None and self.model.has_decoder and not self.busy("caption"):
            self.caption()
        panel = self.rank_panel
        has_candidates = panel.texts.value.strip() or optional_path(panel.prompt_file.value)
        if has_candidates and not self.busy("rank"):
            self.rank()

    # ------------------------------------------------------------------ caption
    @reports_errors
    def caption(self, *_: Any) -> Any:
        """Caption the region in a worker; returns the worker."""
        from napari_conch.engine.region import caption_region
        from napari_conch.model.generation import GenerationConfig

        self._check_idle("caption", "a caption")
        model = self.require_model()
        if not model.has_decoder:
            raise NoDecoderError(NO_DECODER_REASON)
        c = self.caption_panel
        cfg = GenerationConfig(
            strategy=c.strategy.value,
            max_length=c.max_length.value,
            min_length=min(GenerationConfig.min_length, c.max_length.value),
            num_beams=c.num_beams.value,
        )
        worker = background(caption_region, model, self.slide(), self.current_region(), cfg)
        c.text.value = "Captioning ..."
        return self._run("caption", worker, self._on_caption)

    def _on_caption(self, caption: Any) -> None:
        if isinstance(caption, Failure):
            self.caption_panel.text.value = ""
            self.notify_error(caption.message)
            return
        self.caption_text = caption
        self.caption_panel.text.value = caption

    # ------------------------------------------------------------------ rank texts
    def candidates(self) -> tuple[Any, str]:
        """The candidates (a prompt set from the JSON file, else the lines) and templates."""
        from napari_conch.engine.prompts import load_prompt_set

        panel = self.rank_panel
        templates = "conch" if panel.templates.value else "none"
        path = optional_path(panel.prompt_file.value)
        if path is not None:
            return load_prompt_set(path, templates), templates
        lines = [line.strip() for line in panel.texts.value.splitlines() if line.strip()]
        if not lines:
            raise InputError("type candidate texts (one per line) or choose a prompt-set JSON")
        return lines, templates

    @reports_errors
    def rank(self, *_: Any) -> Any:
        """Rank the candidate texts for the region in a worker; returns the worker."""
        from napari_conch.engine.region import rank_texts

        self._check_idle("rank", "a ranking")
        model = self.require_model()
        candidates, templates = self.candidates()
        region = self.current_region()
        worker = background(rank_texts, model, self.slide(), region, candidates, templates)
        return self._run("rank", worker, self._on_rank)

    def _on_rank(self, ranking: Any) -> None:
        if isinstance(ranking, Failure):
            self.notify_error(ranking.message)
            return
        self.ranking = list(ranking)
        rows = [[name, f"{prob:.3f}", f"{cos:.4f}"] for name, prob, cos in self.ranking]
        _fill(self.rank_panel.table, rows)

    # ------------------------------------------------------------------ top tiles
    def _store_root(self) -> str | None:
        root = optional_path(self.tiles_panel.store_root.value)
        if root is not None:
            return root
        for highlighter in self.highlighters():
            found = optional_path(highlighter.slide_panel.store_root.value)
            if found is not None:
                return found
        return None

    def _highlighter_embeddings(self, slide: Any, model: Any) -> tuple | None:
        """(index, grid, store path) of a Prompt highlighter on this slide and model, or None."""
        for highlighter in self.highlighters():
            session = highlighter.session
            if (
                session is not None
                and session.slide.fingerprint == slide.fingerprint
                and session.model.fingerprint == model.fingerprint
            ):
                return session.index.compacted(), session.grid, session.store.path
        return None

    @reports_errors
    def find_top_tiles(self, *_: Any) -> Any:
        """Find the top tiles of the prompt in a worker; returns the worker."""
        self._check_idle("tiles", "a top-tiles search")
        t = self.tiles_panel
        prompt = t.prompt.value.strip()
        if not prompt:
            raise InputError("type a prompt to find its top tiles")
        model, slide = self.require_model(), self.slide()
        live = self._highlighter_embeddings(slide, model)
        templates = "conch" if t.templates.value else "none"
        args = (slide, model, self._store_root(), live, prompt, t.k.value, templates)
        self._hits_layer = self.slide_layer
        t.status.value = "Searching ..."
        return self._run("tiles", background(top_tiles_job, *args), self._on_top_tiles)

    def _on_top_tiles(self, found: Any) -> None:
        t = self.tiles_panel
        if isinstance(found, Failure):
            t.status.value = found.message
            self.notify_error(found.message)
            return
        self.hits = list(found.hits)
        _fill(t.table, [[h.row, h.col, f"{h.score:.4f}"] for h in self.hits])
        grid = found.grid
        t.status.value = (
            f"{len(self.hits)} tiles of {grid.tile_size} px at level {grid.level} "
            f"from {found.store_path.name}; click one to go there."
        )
        self._outline_hits()

    def _outline_hits(self) -> None:
        slide_layer = self._hits_layer
        if slide_layer is None or slide_layer not in self.viewer.layers:
            return
        side = max((h.box[2] - h.box[0] for h in self.hits), default=1.0)
        layer = R.shapes_layer(
            self.viewer, R.TOP_TILES_LAYER, slide_layer, face_color="transparent"
        )
        layer.selected_data = set(range(layer.nshapes))
        layer.remove_selected()  # the previous search's tiles
        rectangles = [R.box_rectangle(h.box) for h in self.hits]
        layer.add_rectangles(rectangles, edge_width=max(2.0, side / 40), edge_color=HIT_COLOR)
        self.viewer.layers.selection.active = slide_layer

    @reports_errors
    def go_to_hit(self, index: int) -> tuple[float, float]:
        """Centre and zoom the viewer on the ``index``-th top tile; returns its world centre."""
        if not 0 <= index < len(self.hits):
            raise InputError(f"no top tile number {index + 1} in the list")
        slide_layer = self._hits_layer
        if slide_layer is None or slide_layer not in self.viewer.layers:
            raise InputError("the slide layer of these tiles was closed: find them again")
        box = self.hits[index].box
        centre = R.box_center_world(slide_layer, box)
        camera = viewer_camera(self.viewer)
        camera.center = centre
        camera.zoom = TILE_SCREEN_PX / R.box_world_size(slide_layer, box)
        layer = find_layer(self.viewer, R.TOP_TILES_LAYER)
        if layer is not None and len(layer.data) == len(self.hits):
            colors = np.tile(HIT_COLOR, (len(self.hits), 1))
            colors[index] = CHOSEN_COLOR
            layer.edge_color = colors
        return centre


def _unwrap(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy`` (which wraps ``napari*`` objects)."""
    return getattr(obj, "__wrapped__", obj)


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _fill(table: Any, rows: list[list[Any]]) -> None:
    """Replace a read-only table's rows (numbered from 1), keeping its columns."""
    columns = list(table.column_headers)
    table.read_only = False
    table.value = {"data": rows, "index": list(range(1, len(rows) + 1)), "columns": columns}
    table.read_only = True
