"""The Cohort dock: the slides of a cohort with their predicted class, and search across them.

- **Slides**: a ``classify-slides`` CSV (and the prompt file it was made with) fills a sortable
  table: slide, predicted class, its probability, tiles, at the pooling size chosen. Opening a
  row (double-click, or **Open**) reopens the slide from its store in a worker
  (:func:`~napari_conch.engine.cohort.view.open_cohort_slide`): the slide layer, the maps of its
  classes (probability of the predicted class, labels) and the evidence tiles of the predicted
  class are drawn; the session takes the slide, the model and the store, so the other
  napari-conch docks work on it too.
- **Search**: a prompt over every store of the table
  (:func:`~napari_conch.engine.cohort.view.search_cohort`), or a ``search`` hits CSV. Opening a
  hit opens its slide when it is another one, then centres and zooms on the tile and outlines it.

The dock holds widgets and wiring only; what it shows is computed in ``engine/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, Label, LineEdit, PushButton
from magicgui.widgets import Table as _Table

from napari_conch._napari.docks.base import DockBase, reports_errors
from napari_conch._napari.docks.form import Form
from napari_conch._napari.docks.option_widgets import option_widget
from napari_conch._napari.docks.panels import optional_path
from napari_conch._napari.docks.workers import background
from napari_conch._napari.layers import map_layers, on_show, regions
from napari_conch._napari.layers.slide_source import META_KEY
from napari_conch._napari.reader import layer_data
from napari_conch.engine.options import SearchOptions
from napari_conch.errors import InputError

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.cohort.classify import SlidesTable
    from napari_conch.engine.cohort.search import SearchHit
    from napari_conch.engine.cohort.view import CohortSlide

PROBABILITY = "Cohort: probability"
LABELS = "Cohort: classes"
EVIDENCE = "Cohort: evidence"
HIT = "Cohort: hit"
#: Screen pixels a tile spans after opening a hit.
TILE_SCREEN_PX = 320
#: Headers short enough to show whole in a 300 px dock ("Predicted" lost its last letter).
SLIDE_COLUMNS = ("Slide", "Class", "Prob.", "Tiles")
HIT_COLUMNS = ("Slide", "Row", "Col", "Score")


class SortableTable:
    """A read-only QTableWidget sorted by clicking a header; numbers sort as numbers.

    Each row remembers the index of the item it shows (:meth:`source_row`), whatever the order.
    """

    def __init__(self, columns: tuple[str, ...], names: tuple[int, ...] = (0,)) -> None:
        from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

        self.widget = _Table(columns=list(columns))
        self.widget.read_only = True
        self.widget.min_height = 160
        self.native = self.widget.native
        # magicgui's delegate reads numbers through int(), which shows 0.87 as 0; Qt's own
        # shows the number (numbers are kept as numbers so that they sort as numbers)
        self.native.setItemDelegate(QStyledItemDelegate(self.native))
        self.native.setSortingEnabled(True)
        self.native.setSelectionBehavior(self.native.SelectionBehavior.SelectRows)
        # nothing clipped in a 300 px dock: no row numbers, the numbers as wide as they are,
        # the columns of names (``names``: elided when long, the full text in the tooltip)
        # share the rest
        self.native.verticalHeader().setVisible(False)
        header = self.native.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        for column in names:
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)

    def fill(self, rows: list[list[Any]]) -> None:
        """Show ``rows`` (cells: str, int or float) in their given order."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QTableWidgetItem

        table = self.native
        table.setSortingEnabled(False)
        table.clearContents()
        table.setRowCount(len(rows))
        for i, cells in enumerate(rows):
            for j, value in enumerate(cells):
                item = QTableWidgetItem()
                shown = round(value, 4) if isinstance(value, float) else value
                item.setData(Qt.ItemDataRole.DisplayRole, shown)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                if j == 0:
                    item.setData(Qt.ItemDataRole.UserRole, i)
                if isinstance(value, str):
                    item.setToolTip(value)
                table.setItem(i, j, item)
        table.setSortingEnabled(True)

    def sort(self, column: int, descending: bool = True) -> None:
        """Sort by a column, as clicking its header does."""
        from qtpy.QtCore import Qt

        order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
        self.native.sortItems(column, order)

    def source_row(self, shown_row: int) -> int:
        """The index (in the filled rows) of the row shown at ``shown_row``."""
        from qtpy.QtCore import Qt

        return int(self.native.item(shown_row, 0).data(Qt.ItemDataRole.UserRole))

    def text(self, row: int, column: int) -> str:
        """The text a cell shows (as drawn)."""
        from qtpy.QtCore import QLocale

        index = self.native.model().index(row, column)
        value = index.data()
        return self.native.itemDelegate().displayText(value, QLocale())

    def column(self, column: int) -> list[Any]:
        """The values of a column, top to bottom as shown."""
        from qtpy.QtCore import Qt

        items = (self.native.item(r, column) for r in range(self.native.rowCount()))
        return [item.data(Qt.ItemDataRole.DisplayRole) for item in items]

    def selected(self) -> int | None:
        """The index (in the filled rows) of the selected row, or None."""
        row = self.native.currentRow()
        return None if row < 0 else self.source_row(row)


class CohortDock(DockBase):
    """Dock widget: a cohort's slides, sortable by prediction, and search across them.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when the widget is opened from the Plugins menu).

    Attributes
    ----------
    table : SlidesTable or None
        The slides CSV loaded.
    opened : CohortSlide or None
        The slide on show.
    hits : list of SearchHit
        The hits on show, best first.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        self.table: SlidesTable | None = None
        self.opened: CohortSlide | None = None
        self.hits: list[SearchHit] = []
        self._pending_hit: SearchHit | None = None
        super().__init__(napari_viewer, self._make_sections())

    def _make_sections(self) -> Iterator[Any]:
        """The slides part, the search part and the status line, one per event-loop turn."""
        self.slides_csv = FileEdit(label="Slides CSV", mode="r", filter="*.csv")
        self.prompts = FileEdit(label="Prompts", mode="r", filter="*.json")
        self.prompts.tooltip = "the prompt file the slides were classified with (for the maps)"
        self.load = PushButton(text="Load slides")
        self.pooling = ComboBox(label="Pooling", choices=self._pooling_choices)
        self.slides = SortableTable(SLIDE_COLUMNS, names=(0, 1))
        self.open = PushButton(text="Open selected slide")
        yield (
            "Slides",
            Form(
                widgets=[
                    self.slides_csv,
                    self.prompts,
                    self.load,
                    self.pooling,
                    self.slides.widget,
                    self.open,
                ]
            ),
        )
        self.query = LineEdit(label="Prompt")
        self.k = option_widget(SearchOptions, "search_hits")  # as search's -k
        self.search = PushButton(text="Search the cohort")
        self.hits_csv = FileEdit(label="Hits CSV", mode="r", filter="*.csv")
        self.load_hits = PushButton(text="Load hits")
        self.hit_table = SortableTable(HIT_COLUMNS)
        yield (
            "Search across slides",
            Form(
                widgets=[
                    self.query,
                    self.k,
                    self.search,
                    self.hits_csv,
                    self.load_hits,
                    self.hit_table.widget,
                ]
            ),
        )
        self.status = Label(value="Load a classify-slides CSV.")
        yield self.status

    def ready(self) -> None:
        """Wire the buttons and tables."""
        self.load.changed.connect(self.load_slides)
        self.pooling.changed.connect(lambda *_: self._fill_slides())
        self.open.changed.connect(self.open_selected)
        self.slides.native.cellDoubleClicked.connect(
            lambda row, _col: self.open_slide(self.slides.source_row(row))
        )
        self.search.changed.connect(self.search_cohort)
        self.query.native.returnPressed.connect(self.search_cohort)
        self.load_hits.changed.connect(self.load_hits_csv)
        self.hit_table.native.cellDoubleClicked.connect(
            lambda row, _col: self.go_to_hit(self.hit_table.source_row(row))
        )

    # ------------------------------------------------------------------ slides
    @reports_errors
    def load_slides(self, *_: Any) -> SlidesTable:
        """Read the slides CSV and fill the table (largest pooling size first shown)."""
        from napari_conch.engine.cohort.classify import read_slides_csv

        path = optional_path(self.slides_csv.value)
        if path is None:
            raise InputError("choose the slides CSV that classify-slides wrote")
        table = read_slides_csv(path)
        self.table = table
        self.pooling.reset_choices()
        self.pooling.value = f"top-{table.topk[-1]}"
        self._fill_slides()
        self.status.value = f"{len(table.rows)} slides, classes: {', '.join(table.names)}"
        return table

    def _pooling_choices(self, _widget: Any = None) -> list[str]:
        return [] if self.table is None else [f"top-{j}" for j in self.table.topk]

    @property
    def j(self) -> int:
        """The pooling size shown (10 before a slides CSV is loaded)."""
        value = self.pooling.value
        return int(str(value).removeprefix("top-")) if value else 10

    def _fill_slides(self) -> None:
        if self.table is None or not self.pooling.value:
            return
        j = self.j
        rows = [[r.slide, r.preds[j], r.probability(j), r.tiles] for r in self.table.rows]
        self.slides.fill(rows)

    @reports_errors
    def open_selected(self, *_: Any) -> Any:
        """Open the slide of the selected row."""
        index = self.slides.selected()
        if index is None:
            raise InputError("select a slide in the table first")
        return self.open_slide(index)

    @reports_errors
    def open_slide(self, index: int) -> Any:
        """Reopen slide ``index`` of the table (in a worker); returns the worker."""
        if self.table is None:
            raise InputError("load a slides CSV first")
        return self._open_store(self.table.rows[index].store)

    def _prompt_set(self) -> Any:
        from napari_conch.engine.prompts import load_prompt_set

        path = optional_path(self.prompts.value)
        return None if path is None else load_prompt_set(path)

    def _open_store(self, store_path: Path) -> Any:
        from napari_conch.engine.cohort.view import open_cohort_slide

        self.check_idle("open", "opening a slide")
        prompt_set = self._prompt_set()
        topk = self.table.topk if self.table is not None else (self.j,)  # hits CSV alone
        self.status.value = f"Opening {Path(store_path).name} ..."
        worker = background(open_cohort_slide, store_path, prompt_set, topk)
        return self.run("open", worker, self.show_slide)

    @reports_errors
    def show_slide(self, opened: CohortSlide) -> None:
        """Draw an opened slide: the slide layer, its maps and evidence; hand it to the session."""
        slide_layer = self._slide_layer(opened.slide)
        self._remove_other_slides(slide_layer)
        for name in (PROBABILITY, LABELS):
            map_layers.remove_layer(self.viewer, name, self)
        for name in (EVIDENCE, HIT):  # emptied, not deleted (see map_layers.clear_shapes)
            map_layers.clear_shapes(self.viewer, name)
        self.opened = opened
        if opened.maps is not None:
            self._draw_maps(opened, slide_layer)
        self._share_with_session(opened, slide_layer)
        predicted = opened.predicted
        self.status.value = (
            f"{opened.slide.name}: {predicted}" if predicted else f"{opened.slide.name} opened"
        )
        if self._pending_hit is not None:
            hit, self._pending_hit = self._pending_hit, None
            self._show_hit(hit)
        else:
            self.viewer.reset_view()  # the opened slide fills the canvas

    def _remove_other_slides(self, slide_layer: Any) -> None:
        """The opened slide replaces the one on show: the other slides' layers and the prompt
        maps and legend drawn over them go (they describe another slide)."""
        slides = [layer for layer in self.viewer.layers if META_KEY in layer.metadata]
        # by name: napari hands docks proxies of its layers, a new one per access
        others = [layer.name for layer in slides if layer.name != slide_layer.name]
        for name in [*others, *map_layers.PROMPT_MAP_LAYERS]:
            map_layers.remove_layer(self.viewer, name, self)

    def _slide_layer(self, slide: Any) -> Any:
        """The image layer of ``slide`` (the file's), added when the viewer has none."""
        path = str(Path(slide.path).resolve())
        for layer in self.viewer.layers:
            meta = layer.metadata.get(META_KEY, {}) if hasattr(layer, "metadata") else {}
            if meta.get("path") == path:
                return layer
        data, kwargs, _ = layer_data(slide)
        return self.viewer.add_image(data, **kwargs)

    def _draw_maps(self, opened: CohortSlide, slide_layer: Any) -> None:
        maps, result = opened.maps, opened.result
        units = slide_layer.units[-2:]
        k = maps.names.index(opened.predicted)
        shape = map_layers.image_shape(
            slide_layer
        )  # maps are cut at the slide's edge, as in the docks
        probs, geometry = map_layers.clip_to_image(maps.cell_probs[k], maps.geometry, shape)
        cell_labels, _ = map_layers.clip_to_image(maps.cell_labels, maps.geometry, shape)
        placement = map_layers.map_placement(geometry, slide_layer)
        probability = map_layers.upsert_image(
            self.viewer, PROBABILITY, probs, placement, units=units,
            colormap="inferno", opacity=0.5, contrast_limits=(0.0, 1.0),
        )  # fmt: skip
        title = f"probability of '{opened.predicted}'"
        on_show.describe_range(probability, title, "inferno", 0.0, 1.0)
        labels = self.viewer.add_labels(
            cell_labels, name=LABELS, scale=placement.scale,
            translate=placement.translate, units=units, opacity=0.35,
        )  # fmt: skip
        labels.colormap = map_layers.label_colormap(len(maps.names))
        on_show.describe_classes(labels, list(maps.names))
        self.shown_map.refresh()  # the canvas legend names the slide's classes
        grid = opened.store.grid
        boxes = [
            grid.tile_box(int(result.rows[i]), int(result.cols[i]))
            for i in result.top_tiles(k, self.j)
        ]
        if boxes:
            layer = regions.shapes_layer(
                self.viewer, EVIDENCE, slide_layer, edge_color="yellow", face_color="transparent",
                edge_width=2,
            )  # fmt: skip
            layer.add_rectangles([regions.box_rectangle(b) for b in boxes])
        self.viewer.layers.selection.active = slide_layer

    def _share_with_session(self, opened: CohortSlide, slide_layer: Any) -> None:
        """The session takes the model, the slide and, when its grid matches, the store."""
        session = self.session
        if session.running:
            return  # another dock embeds: leave its state alone
        if opened.model is not None:
            session.set_model(opened.model)
        session.set_slide(opened.slide, source=slide_layer)
        if session.model is None:
            return
        grid = opened.store.grid
        resampled = abs(grid.resample - 1.0) > 1e-9
        session.set_options(
            level=None if resampled else grid.level,
            mpp=grid.mpp if resampled else None,
            tile_size=grid.tile_size,
            stride=grid.stride,
            store_root=str(opened.store.path.parent),
        )
        if session.grid.to_dict() == grid.to_dict():
            session.open_store(create=False)

    # ------------------------------------------------------------------ search
    def _store_paths(self) -> list[Path]:
        if self.table is None:
            raise InputError("load a slides CSV first: the search runs over its stores")
        return [r.store for r in self.table.rows]

    @reports_errors
    def search_cohort(self, *_: Any) -> Any:
        """Search every store of the table for the prompt (in a worker); returns the worker."""
        from napari_conch.engine.cohort.view import search_cohort

        self.check_idle("search", "a search")
        prompt = self.query.value.strip()
        if not prompt:
            raise InputError("type what to look for")
        worker = background(search_cohort, self._store_paths(), prompt, int(self.k.value))
        self.status.value = f"Searching {len(self.table.rows)} slides for {prompt!r} ..."
        return self.run("search", worker, self.show_hits)

    @reports_errors
    def load_hits_csv(self, *_: Any) -> list[SearchHit]:
        """Show the hits of a ``napari-conch search`` CSV."""
        from napari_conch.engine.cohort.search import read_hits_csv

        path = optional_path(self.hits_csv.value)
        if path is None:
            raise InputError("choose a hits CSV that napari-conch search wrote")
        hits = read_hits_csv(path)
        self.show_hits(hits)
        return hits

    def show_hits(self, hits: list[SearchHit]) -> None:
        """Fill the hits table (best first)."""
        self.hits = list(hits)
        self.hit_table.fill([[h.slide, h.row, h.col, h.score] for h in self.hits])
        self.status.value = f"{len(self.hits)} tiles found; double-click one to go there"

    @reports_errors
    def go_to_hit(self, index: int) -> Any:
        """Show hit ``index``: open its slide when it is not the one on show, then the tile."""
        hit = self.hits[index]
        opened = self.opened
        if opened is not None and Path(opened.store.path).resolve() == Path(hit.store).resolve():
            return self._show_hit(hit)
        self._pending_hit = hit
        return self._open_store(hit.store)

    def _show_hit(self, hit: SearchHit) -> tuple[float, float]:
        """Centre and zoom on the hit's tile and outline it; returns its world centre."""
        slide_layer = self._slide_layer(self.opened.slide)
        layer = regions.shapes_layer(
            self.viewer, HIT, slide_layer, edge_color="cyan", face_color="transparent",
            edge_width=3,
        )  # fmt: skip
        layer.data = [regions.box_rectangle(hit.box)]
        centre = regions.box_center_world(slide_layer, hit.box)
        camera = map_layers.viewer_camera(self.viewer)
        camera.center = centre
        camera.zoom = TILE_SCREEN_PX / regions.box_world_size(slide_layer, hit.box)
        self.status.value = f"{hit.slide}: tile ({hit.row}, {hit.col}), score {hit.score:.3f}"
        return centre

    def update_busy(self) -> None:
        """Buttons are off while their task runs."""
        super().update_busy()
        self.open.enabled = not self.busy("open")
        self.search.enabled = not self.busy("search")
