"""The caption and retrieval dock widget: a region of the slide -> text, and a text -> tiles.

- **Model**: the viewer's session model: loaded here (the same :class:`~.panels.ModelPanel` and
  cached loader as the Prompt highlighter) or in any other napari-conch dock of the viewer.
- **Region**: the last (or the one selected) shape of the ``CONCH caption region`` Shapes layer:
  a rectangle the user draws, or a tile-sized box around a clicked point. World coordinates
  become level-0 pixels through the slide layer's scale and translate (:mod:`.regions`).
- **Caption** runs :func:`~napari_conch.engine.region.caption_region` in a worker. A model
  without decoder weights (the public CONCH release) disables it, and a label says why.
- **Rank texts** runs :func:`~napari_conch.engine.region.rank_texts` over candidate texts or a
  prompt-set JSON: probabilities are the softmax with the model's temperature.
- **Top tiles** runs :func:`~napari_conch.engine.retrieval.top_tiles_for_prompt` over the slide's
  embeddings: the session's open store (a run under way included) when it holds this slide and
  model, else the store found under the store folder
  (:func:`~napari_conch.engine.store.lookup.find_store`). Clicking an entry centres and zooms on it.

Every slow call runs off the GUI thread; user mistakes become one-line notifications.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_conch._napari.docks.base import DockBase, reports_errors
from napari_conch._napari.docks.caption_panels import (
    CLICK_ARMED_TEXT,
    CaptionPanel,
    RankPanel,
    RegionPanel,
    TopTilesPanel,
)
from napari_conch._napari.docks.panels import ModelPanel, optional_path
from napari_conch._napari.docks.workers import USER_ERRORS, background
from napari_conch._napari.fastpaths.canvas import canvas_redrawn_later
from napari_conch._napari.layers import regions
from napari_conch._napari.layers.map_layers import clear_shapes, find_layer, viewer_camera
from napari_conch._napari.layers.steps import STEP_GAP_MS, reveal_steps, run_in_turns
from napari_conch._napari.session_registry import unwrap
from napari_conch.engine.retrieval import top_tiles_job
from napari_conch.errors import InputError, NoDecoderError

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.region import Region
    from napari_conch.engine.retrieval import TileHit

NO_DECODER_REASON = (
    "This checkpoint has no captioning decoder (the public CONCH release has none): "
    "Caption is off. Ranking texts and top tiles work."
)
#: Screen pixels a top tile spans after clicking its entry.
TILE_SCREEN_PX = 320
HIT_COLOR = np.array([1.0, 0.85, 0.0, 1.0])
CHOSEN_COLOR = np.array([0.0, 1.0, 1.0, 1.0])


class CaptionDock(DockBase):
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
        super().__init__(napari_viewer, self._make_sections(_no_model(napari_viewer)))

    def _make_sections(self, model_expanded: bool) -> Iterator[tuple]:
        """The panels, one per event-loop turn (see :class:`~.base.DockBase`)."""
        self.model_panel = ModelPanel()
        yield "Model", self.model_panel, model_expanded
        self.region_panel = RegionPanel()
        yield "Region", self.region_panel
        self.caption_panel = CaptionPanel()
        yield "Caption", self.caption_panel
        self.rank_panel = RankPanel()
        yield "Rank texts for the region", self.rank_panel
        self.tiles_panel = TopTilesPanel()
        yield "Top tiles for a prompt", self.tiles_panel

    def ready(self) -> None:
        """Wire the panels to the session."""
        self.caption_text: str | None = None
        self.ranking: list[tuple[str, float, float]] = []
        self.hits: list[TileHit] = []
        self._hits_layer: Any = None
        #: The slide layer (its name) the caption, ranking and top tiles on show were made on.
        self._results_of: str | None = None
        self._region_layer: Any = None
        self.bind_model_panel(self.model_panel)
        self.bind_layer_combo(self.region_panel.layer, self.region_panel.level)
        self._connect()
        self._update_decoder_state()

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        r = self.region_panel
        r.draw.changed.connect(self.draw_region)
        r.click.changed.connect(self.arm_click_region)
        r.level.changed.connect(lambda: self._region_changed(run=False))
        self.caption_panel.caption.changed.connect(self.caption)
        self.rank_panel.rank.changed.connect(self.rank)
        self.tiles_panel.find.changed.connect(self.find_top_tiles)
        self.tiles_panel.table.native.cellClicked.connect(lambda row, _col: self.go_to_hit(row))
        self._watch_region_layer()

    def reset_choices(self, *_: Any) -> None:
        """Refresh the layer list (napari calls this when layers change)."""
        super().reset_choices()
        if self.built and getattr(self, "_region_layer", None) is not None:
            if self._region_layer not in self.viewer.layers:
                self._region_layer = None
            self._watch_region_layer()

    def slide(self) -> Any:
        """The :class:`~napari_conch.slide.Slide` of the chosen layer (the session's slide)."""
        return self.require_slide()

    def _slide_for_results(self) -> Any:
        """:meth:`slide`, for a caption, ranking or top tiles about to be computed: the results
        on show are this slide's from now on (see :meth:`on_slide_changed`)."""
        slide = self.require_slide()
        self._results_of = self.slide_layer.name
        return slide

    def on_slide_changed(self, slide: Any) -> None:
        """Another slide: the caption, ranking and top tiles of the last one go (they describe
        it, and its tiles' outlines and the table's jumps would land on the new one)."""
        source = self.session.slide_source
        if self._results_of is None or (source is not None and source.name == self._results_of):
            return
        self._results_of = None
        self.caption_text, self.ranking, self.hits = None, [], []
        self.caption_panel.text.value = ""
        _fill(self.rank_panel.table, [])
        _fill(self.tiles_panel.table, [])
        self.tiles_panel.status.value = ""
        clear_shapes(self.viewer, regions.TOP_TILES_LAYER)

    def update_busy(self) -> None:
        """Enable the buttons of the tasks that are not running."""
        super().update_busy()
        self.rank_panel.rank.enabled = not self.busy("rank")
        self.tiles_panel.find.enabled = not self.busy("tiles")
        self._update_decoder_state()

    # ------------------------------------------------------------------ model
    def on_model_changed(self, model: Any) -> None:
        """The session's model changed: Caption follows whether it has a decoder."""
        self._update_decoder_state()

    def require_model(self) -> Any:
        """The session's model (loaded here or in another napari-conch dock)."""
        if self.model is None:
            raise InputError("load a model first (Model section of this or another CONCH dock)")
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
    def region_layer(self, *, create: bool = False, hidden: bool = False) -> Any:
        """The ``CONCH caption region`` Shapes layer (added on the slide when ``create``).

        With ``hidden``, a new layer is added hidden, to be shown in a later turn (see
        :func:`~napari_conch._napari.layers.regions.shapes_layer`).
        """
        layer = find_layer(self.viewer, regions.REGION_LAYER)
        if create:
            slide_layer = self.slide_layer
            if slide_layer is None:
                raise InputError("open a slide first: no RGB image layer to draw on")
            width = max(2.0, max(self.slide().shape) / 500)
            layer = regions.shapes_layer(
                self.viewer, regions.REGION_LAYER, slide_layer, hidden=hidden,
                edge_color="lime", face_color="transparent", edge_width=width,
            )  # fmt: skip
            self._watch_region_layer()
        return layer

    def _watch_region_layer(self) -> None:
        layer = unwrap(find_layer(self.viewer, regions.REGION_LAYER))
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
            # a turn later: the new box's first drawing then has the cores to itself, before
            # the model's threads take them (the pause at the click was 118-131 ms, 77-87 of
            # them the GUI thread's own work)
            QTimer.singleShot(STEP_GAP_MS, self._run_region_if_open)

    def _run_region_if_open(self) -> None:
        if not self._closed:
            self.run_region()

    def current_region(self) -> Region:
        """The region: the selected (else the last) shape of the caption region layer."""
        from napari_conch.engine.region import Region

        if self.slide_layer is None:
            raise InputError("open a slide first: no RGB image layer to work on")
        box = regions.shape_box(self.region_layer(), self.slide_layer)
        return Region(*box, level=self.region_panel.level.value)

    @reports_errors
    def draw_region(self, *_: Any) -> Any:
        """Add (or pick) the caption region layer in rectangle mode, ready to draw."""
        self.disarm_click()
        layer = self.region_layer(create=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def arm_click_region(self, *_: Any) -> None:
        """The next click on the slide makes a tile-sized region around the clicked point.

        The region layer is made now (when there is a slide), so the click itself only adds a
        box: making a Shapes layer and drawing it the first time are two of napari's longer
        pauses, so a new layer is added hidden and shown in the next event-loop turn.
        """
        armed = self.arm_click(self.region_panel.click, CLICK_ARMED_TEXT, self.region_at)
        layer = self.region_layer(create=armed and self.slide_layer is not None, hidden=True)
        if armed and layer is not None:
            layer.mode = "pan_zoom"  # the click must not start a rectangle as well
            if layer.visible:
                self.viewer.layers.selection.active = self.slide_layer
            else:
                QTimer.singleShot(STEP_GAP_MS, lambda: self._show_region_layer(layer))

    def _show_region_layer(self, layer: Any) -> None:
        if not self._closed and layer in self.viewer.layers:
            run_in_turns(self.viewer, reveal_steps(layer))

    @reports_errors
    def region_at(self, world_position: Any) -> Region:
        """Make the region a tile-sized box around a world position; returns the region."""
        self.disarm_click()
        slide, slide_layer = self.slide(), self.slide_layer
        y, x = regions.world_to_edge(slide_layer, world_position)
        height, width = slide.shape
        if not (0 <= x < width and 0 <= y < height):
            raise InputError("the click is outside the slide")
        level = self.region_panel.level.value
        if not 0 <= level < len(slide.downsamples):
            raise InputError(f"level {level} does not exist (levels 0..{len(slide.levels) - 1})")
        side = self.region_panel.box_size.value * float(slide.downsamples[level])
        layer = self.region_layer(create=True)
        with canvas_redrawn_later(self.viewer):  # the box is drawn in the next turn
            layer.selected_data = set()  # the new box is the last shape, none other selected
            layer.add_rectangles(
                [regions.box_rectangle(regions.box_around(slide.shape, y, x, side))]
            )
            for step in reveal_steps(layer):  # when clicked before it was all shown: now
                step()
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
        from napari_conch.engine.options import DOCK_CAPTION_DEFAULTS
        from napari_conch.engine.region import caption_region

        self.check_idle("caption", "a caption")
        model = self.require_model()
        if not model.has_decoder:
            raise NoDecoderError(NO_DECODER_REASON)
        c = self.caption_panel
        cfg = DOCK_CAPTION_DEFAULTS.replace(
            strategy=c.strategy.value,
            max_length=c.max_length.value,
            min_length=min(DOCK_CAPTION_DEFAULTS.min_length, c.max_length.value),
            num_beams=c.num_beams.value,
        ).generation_config()
        worker = background(
            caption_region, model, self._slide_for_results(), self.current_region(), cfg
        )
        c.text.value = "Captioning ..."
        failed = lambda _message: setattr(c.text, "value", "")  # noqa: E731
        return self.run("caption", worker, self._on_caption, failed=failed)

    def _on_caption(self, caption: Any) -> None:
        self.caption_text = caption
        self.caption_panel.text.value = caption

    # ------------------------------------------------------------------ rank texts
    def _templates(self, checked: bool) -> str:
        """A "Model's templates" box: the model's own set when checked (CONCH's 22 for CONCH and
        the demo model, QuiltNet's, PLIP's, KEEP's, BiomedCLIP's), else none."""
        from napari_conch.engine.prompts import model_templates

        return model_templates(self.require_model()) if checked else "none"

    def candidates(self) -> tuple[Any, str]:
        """The candidates (a prompt set from the JSON file, else the lines) and templates."""
        from napari_conch.engine.prompts import load_prompt_set

        panel = self.rank_panel
        templates = self._templates(panel.templates.value)
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

        self.check_idle("rank", "a ranking")
        model = self.require_model()
        candidates, templates = self.candidates()
        region = self.current_region()
        worker = background(
            rank_texts, model, self._slide_for_results(), region, candidates, templates
        )
        return self.run("rank", worker, self._on_rank)

    def _on_rank(self, ranking: Any) -> None:
        self.ranking = list(ranking)
        rows = [[name, f"{prob:.3f}", f"{cos:.4f}"] for name, prob, cos in self.ranking]
        _fill(self.rank_panel.table, rows)

    # ------------------------------------------------------------------ top tiles
    def _store_root(self) -> str | None:
        root = optional_path(self.tiles_panel.store_root.value)
        return root if root is not None else self.session.options.store_root

    def _session_embeddings(self, slide: Any, model: Any) -> tuple | None:
        """(index, grid, store path) of the session's open store on this slide and model."""
        session = self.session
        if session.store is None or session.slide is not slide or session.model is not model:
            return None
        return session.live_embeddings()

    @reports_errors
    def find_top_tiles(self, *_: Any) -> Any:
        """Find the top tiles of the prompt in a worker; returns the worker."""
        self.check_idle("tiles", "a top-tiles search")
        t = self.tiles_panel
        prompt = t.prompt.value.strip()
        if not prompt:
            raise InputError("type a prompt to find its top tiles")
        model, slide = self.require_model(), self._slide_for_results()
        live = self._session_embeddings(slide, model)
        templates = self._templates(t.templates.value)
        args = (slide, model, self._store_root(), live, prompt, t.k.value, templates)
        self._hits_layer = self.slide_layer
        t.status.value = "Searching ..."
        worker = background(top_tiles_job, *args)
        failed = lambda message: setattr(t.status, "value", message)  # noqa: E731
        return self.run("tiles", worker, self._on_top_tiles, failed=failed)

    def _on_top_tiles(self, found: Any) -> None:
        t = self.tiles_panel
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
        layer = regions.shapes_layer(
            self.viewer, regions.TOP_TILES_LAYER, slide_layer, face_color="transparent"
        )
        layer.selected_data = set(range(layer.nshapes))
        layer.remove_selected()  # the previous search's tiles
        rectangles = [regions.box_rectangle(h.box) for h in self.hits]
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
        centre = regions.box_center_world(slide_layer, box)
        camera = viewer_camera(self.viewer)
        camera.center = centre
        camera.zoom = TILE_SCREEN_PX / regions.box_world_size(slide_layer, box)
        layer = find_layer(self.viewer, regions.TOP_TILES_LAYER)
        if layer is not None and len(layer.data) == len(self.hits):
            colors = np.tile(HIT_COLOR, (len(self.hits), 1))
            colors[index] = CHOSEN_COLOR
            layer.edge_color = colors
        return centre


def _no_model(viewer: Any) -> bool:
    """Whether the viewer's session has no model yet (the Model section then starts open)."""
    from napari_conch._napari.session_registry import session_for

    return session_for(viewer).model is None


def _fill(table: Any, rows: list[list[Any]]) -> None:
    """Replace a read-only table's rows (numbered from 1), keeping its columns."""
    columns = list(table.column_headers)
    table.read_only = False
    table.value = {"data": rows, "index": list(range(1, len(rows) + 1)), "columns": columns}
    table.read_only = True
