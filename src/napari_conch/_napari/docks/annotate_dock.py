"""The Annotate dock: teach the map by example, live, on the stored embeddings.

The dock is a :class:`~.base.DockBase` over the viewer's
:class:`~napari_conch.engine.session.session.Session`. The classes, the examples and the saved
project are the session's (:mod:`napari_conch.engine.session.examples`), the learning is the
engine's (:class:`~napari_conch.engine.learn.learner.Learner`); the dock holds widgets and
wiring only, showing the session through ``classes_changed`` and ``examples_changed`` and
sending what the user does to it. The examples on the canvas are :mod:`.example_painting`'s,
what a retraining shows in the panels :mod:`.annotate_panels`'.

- **Classes** are the prompts on show (typed in the Prompt highlighter; they are the prior),
  then the names the user adds (learned from examples alone) and the classes of imported or
  loaded annotations.
- **Paint** selects the ``CONCH examples`` labels layer (one pixel per tile of the
  store's grid, on the tile's centre) in paint mode with the chosen class: every painted tile is
  an example. **Draw** selects the ``CONCH example shapes`` layer for polygons (rectangles,
  ellipses): the tiles whose centre lies in a finished shape become examples, and the shape
  goes. **Correct** arms one click: the tile under it becomes an example of the chosen class.
- Each change restarts a short timer; when it fires, the classifier is retrained in a worker
  (the text of new prompts encoded first, also in a worker) and the ``CONCH learned labels`` and
  ``CONCH learned probability`` layers are redrawn, with the cross-validated precision/recall
  table and the **Check next** list (a click centres and zooms the camera on that tile).
- **Import** reads QuPath GeoJSON; **Save / Load project** keep the project in the
  store's ``annotations`` folder, and it is loaded again whenever that store is opened;
  **Export** writes the learned map (CSV, TIFF, GeoJSON, NPY) or the examples (QuPath GeoJSON).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer

from napari_conch._napari.docks.annotate_panels import (
    NO_EXAMPLES_SHOWN_BY_PROMPTS,
    ClassPanel,
    LearnPanel,
    ProjectPanel,
    check_next_choices,
    fit_table,
    outcome_status,
    validation_table,
)
from napari_conch._napari.docks.base import DockBase, reports_errors
from napari_conch._napari.docks.example_painting import ExamplePainting
from napari_conch._napari.docks.panels import optional_path
from napari_conch._napari.docks.workers import background
from napari_conch._napari.layers import examples as example_layers
from napari_conch._napari.layers import map_layers
from napari_conch.engine.learn.annotations import Examples, class_colors
from napari_conch.errors import InputError

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.learn.classifier import CrossValidation
    from napari_conch.engine.learn.learner import Learner, Outcome

#: Milliseconds between the last stroke and the retraining.
DEBOUNCE_MS = 300
CORRECT_ARMED = "Click a tile (or here: stop)"
#: Tiles across the view after a jump to a tile of the Check next list.
TILES_IN_VIEW = 8
#: Screen pixels those tiles span (about a laptop canvas's width).
VIEW_PIXELS = 700


class AnnotateDock(DockBase):
    """Dock teaching the classifier by example over an embedded slide.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it when the dock is opened from the Plugins menu).

    Attributes
    ----------
    class_panel, learn_panel, project_panel
        The parts (see :mod:`.annotate_panels`).
    outcome : Outcome or None
        The last retraining's result (classifier, maps, validation, tiles to check).
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer, self._make_sections())

    def _make_sections(self) -> Iterator[tuple[str, Any]]:
        """The panels, one per event-loop turn (see :class:`~.base.DockBase`)."""
        self.class_panel = ClassPanel()
        yield "Classes and examples", self.class_panel
        self.learn_panel = LearnPanel()
        yield "Learning", self.learn_panel
        self.project_panel = ProjectPanel()
        yield "Project", self.project_panel

    def ready(self) -> None:
        """Wire the panels to the session and show its classes and examples."""
        self.outcome: Outcome | None = None
        self._again = False
        self._generation = 0
        self._uncertain: dict[str, tuple[int, int]] = {}
        #: How many examples the learned map on screen came from (None: no learned map).
        self._learned_from: int | None = None
        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._auto_retrain)
        #: The examples on the canvas: shown from the session, strokes and shapes sent to it.
        self.painting = ExamplePainting(self)
        self.bind_layer_combo(self.class_panel.layer)
        self.class_panel.klass.choices = self._class_choices
        # a callable: napari's reset_choices() on every layer change keeps the list
        self.learn_panel.check_next.choices = self._check_next_choices
        self._connect()
        self.refresh_classes()
        self.painting.show(self.session.examples)
        self.schedule()

    # ------------------------------------------------------------------ wiring
    def _connect(self) -> None:
        c, lp, p = self.class_panel, self.learn_panel, self.project_panel
        c.add.changed.connect(self.add_class)
        c.paint.changed.connect(self.paint_examples)
        c.draw.changed.connect(self.draw_examples)
        c.correct.changed.connect(self.arm_correct)
        c.erase.changed.connect(self.clear_examples)
        c.klass.changed.connect(self._class_chosen)
        lp.retrain.changed.connect(self.retrain)
        lp.check_next.changed.connect(self._check_next_chosen)
        p.import_.changed.connect(self.import_annotations)
        p.save.changed.connect(self.save_project)
        p.load.changed.connect(self.load_project)
        p.export_map.changed.connect(self.export_map)
        p.export_examples.changed.connect(self.export_examples)
        events = self.session.events
        self.listen(events.prompts_changed, self.schedule)
        self.listen(events.classes_changed, self._on_classes)
        self.listen(events.examples_changed, self._on_examples)
        self.listen(events.store_changed, self._on_store)
        self.listen(events.run_finished, self.schedule)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)

    def schedule(self, *_: Any) -> None:
        """Retrain ~300 ms after the last change (when live retraining is on)."""
        if self.learn_panel.live.value:
            self._timer.start()

    # ------------------------------------------------------------------ classes
    @property
    def prompts(self) -> tuple[list[str], str]:
        """Classes with a prompt (the session's, then a loaded project's), and the templates."""
        return self.session.learning_prompts

    @property
    def classes(self) -> list[str]:
        """The session's classes: prompted, then added, imported or loaded."""
        return self.session.classes

    @property
    def colors(self) -> dict[str, tuple[int, int, int]]:
        """The colour of every class (the session's)."""
        return self.session.class_colors

    def _class_choices(self, _widget: Any = None) -> list[str]:
        return self.classes

    def _check_next_choices(self, _widget: Any = None) -> list[str]:
        return list(self._uncertain)

    @reports_errors
    def add_class(self, *_: Any, name: str | None = None) -> str:
        """Add a class learned from examples alone (the New class box, or ``name``)."""
        name = self.session.add_class(
            name if name is not None else self.class_panel.new_class.value
        )
        self.class_panel.new_class.value = ""
        self.class_panel.klass.value = name
        return name

    def refresh_classes(self) -> None:
        """Show the session's classes; the examples layer follows when their order changes."""
        combo = self.class_panel.klass
        current = combo.value
        combo.reset_choices()
        if current in self.classes:
            combo.value = current
        if not self.painting.up_to_date():
            self.painting.show(self.session.examples)

    def _on_classes(self, _classes: Any) -> None:
        self.refresh_classes()
        self.schedule()

    def _on_examples(self, examples: Examples) -> None:
        self.painting.show(examples)
        self.schedule()

    def _on_store(self, store: Any) -> None:
        """Another store (slide, model or grid changed): its saved project comes back with it."""
        self.outcome = None
        for name in (
            example_layers.EXAMPLES,
            example_layers.LEARNED_LABELS,
            example_layers.LEARNED_PROBABILITY,
        ):
            map_layers.remove_layer(self.viewer, name, self)
        if store is not None and self.session.has_project():
            if self.load_project() is not None:
                self.notify_info(f"Annotation project loaded.\nStore: {Path(store.path).name}")
        self.schedule()

    def _class_chosen(self, name: Any) -> None:
        self.painting.select(name)
        self._redisplay()

    # ------------------------------------------------------------------ examples
    def examples(self) -> Examples:
        """The example tiles (the session's)."""
        return self.session.examples

    def _grid(self) -> Any:
        """The store's grid (its embeddings are what is learned from)."""
        return self.session.learning_grid()

    def examples_layer(self) -> Any:
        """The ``CONCH examples`` layer over the store's grid, made when missing."""
        return self.painting.layer()

    @reports_errors
    def set_examples(self, examples: Examples) -> None:
        """Make ``examples`` the session's examples (their classes added when new).

        Raises
        ------
        InputError
            When a tile lies outside the store's grid.
        """
        self.session.set_examples(examples)

    @reports_errors
    def paint_examples(self, *_: Any) -> Any:
        """Select the examples layer in paint mode with the chosen class."""
        name = self.class_panel.klass.value
        if name is None:
            raise InputError("no class yet: type prompts in the Prompt highlighter or add a class")
        return self.painting.paint(name)

    @reports_errors
    def draw_examples(self, *_: Any) -> Any:
        """Select the example shapes layer for drawing polygons (made when missing)."""
        if self.class_panel.klass.value is None:
            raise InputError("no class yet: type prompts in the Prompt highlighter or add a class")
        return self.painting.draw(self._on_shape_drawn)

    def _on_shape_drawn(self, event: Any) -> None:
        if str(getattr(event, "action", "added")).lower().endswith("added"):
            self.add_drawn_shapes()

    @reports_errors
    def add_drawn_shapes(self) -> Examples | None:
        """The tiles whose centre lies in a drawn shape become examples of the chosen class;
        the shapes are then removed (the examples layer shows what they gave)."""
        name = self.class_panel.klass.value
        return None if name is None else self.painting.take_shapes(name)

    @reports_errors
    def label_tiles(self, tiles: list[tuple[int, int]], name: str | None) -> None:
        """Make ``tiles`` examples of ``name`` (None: not examples any more)."""
        self.session.label_tiles(tiles, name)

    def arm_correct(self, *_: Any) -> None:
        """The next click on the slide makes the tile under it an example of the chosen class."""
        self.arm_click(self.class_panel.correct, CORRECT_ARMED, self.correct_at)

    @reports_errors
    def correct_at(self, world_position: Any) -> tuple[int, int] | None:
        """Make the tile under a world position an example of the chosen class; return it."""
        self.disarm_click()
        grid = self._grid()
        name = self.class_panel.klass.value
        if name is None:
            raise InputError("choose a class first")
        from napari_conch.engine.session.maps import tile_at

        y, x = map_layers.world_to_level0(self.slide_layer, world_position)
        tile = tile_at(grid, y, x)
        if tile is None:
            raise InputError("the click is outside the slide's tile grid")
        self.session.label_tiles([tile], name)
        return tile

    @reports_errors
    def clear_examples(self, *_: Any) -> None:
        """Forget every example."""
        self.session.set_examples(Examples())

    # ------------------------------------------------------------------ learning
    def _learner(self) -> Learner | None:
        """The session's learner, or None while prompt texts are encoded (in a worker)."""
        session = self.session
        learner = session.learner()
        if learner is not None:
            return learner
        if not self.busy("text"):
            request = session.learning_request()

            def encoded(texts: dict) -> None:
                session.remember_texts(texts)
                self.retrain()

            worker = background(session.encode_texts, request, session.missing_texts(request))
            self.run("text", worker, encoded)
        return None

    def _auto_retrain(self) -> None:
        """Retrain after a change; say in the status line what is missing instead of warning."""
        status = self.learn_panel.status
        if self.session.model is None or self.session.live_embeddings() is None:
            status.value = "Waiting for embeddings: load a model and embed (Prompt highlighter)."
        elif len(self.classes) < 2:
            status.value = "Waiting for two or more classes: type prompts or add classes."
        else:
            self.retrain()

    @reports_errors
    def retrain(self, *_: Any) -> Any:
        """Retrain in a worker and redraw the maps; returns the worker (None when deferred)."""
        if self.busy("learn"):
            self._again = True
            return None
        learner = self._learner()
        if learner is None:
            return None
        learner.check_classes()
        self.learn_panel.status.value = f"Retraining on {len(learner.examples)} examples ..."
        worker = background(learner.retrain, validate=False)
        self._generation += 1
        generation = self._generation

        def validated(validation: CrossValidation) -> None:
            if generation == self._generation:  # not one of examples since changed
                self.show_validation(validation)

        def done(outcome: Outcome) -> None:
            self.show_outcome(outcome)
            if not self._again:  # the maps first; the cross-validation after, also off-thread
                self.run("validate", background(learner.validate), validated)
            self._rerun()

        return self.run("learn", worker, done, failed=self._learn_failed)

    def _learn_failed(self, message: str) -> None:
        self.learn_panel.status.value = message
        self._rerun()

    def _rerun(self) -> None:
        if self._again:
            self._again = False
            self.retrain()

    def show_outcome(self, outcome: Outcome) -> None:
        """Show a retraining's maps, validation and tiles to check next."""
        self.outcome = outcome
        shown_by_prompts = example_layers.repeats_prompt_map(self.viewer, 0)
        self.learn_panel.status.value = outcome_status(outcome, shown_by_prompts)
        self._uncertain = check_next_choices(outcome.uncertain)
        self.learn_panel.check_next.reset_choices()
        self._redisplay()
        if outcome.validation is not None:
            self.show_validation(outcome.validation)

    def show_validation(self, v: CrossValidation) -> None:
        """Show the cross-validated precision and recall per class."""
        self.learn_panel.table.value = validation_table(v, self.examples().counts())
        fit_table(self.learn_panel.table)
        self.learn_panel.validation.value = v.message

    def _redisplay(self) -> None:
        if self.outcome is not None and self.slide_layer is not None:
            if example_layers.repeats_prompt_map(self.viewer, self.outcome.used):
                return
            result = self.outcome.result
            colors = class_colors(result.names, self.session.given_colors)
            value = self.class_panel.klass.value
            example_layers.show_learned(self.viewer, result, self.slide_layer, colors, value)
            self._learned_from = self.outcome.used

    def _on_layer_inserted(self, event: Any) -> None:
        """The Prompt highlighter's labels came after a learned map from no example: that map
        repeated them (see ``annotate_layers.repeats_prompt_map``), so it goes."""
        if self._closed or getattr(event.value, "name", None) != map_layers.LABELS:
            return
        if self._learned_from == 0 and self.outcome is not None and self.outcome.used == 0:
            for name in (example_layers.LEARNED_LABELS, example_layers.LEARNED_PROBABILITY):
                map_layers.remove_layer(self.viewer, name, self)
            self._learned_from = None
            self.learn_panel.status.value = NO_EXAMPLES_SHOWN_BY_PROMPTS

    # ------------------------------------------------------------------ check next
    def _check_next_chosen(self, value: Any) -> None:
        if value:
            self.go_to(*self._uncertain[value[0]])

    def go_to(self, row: int, col: int) -> None:
        """Centre and zoom the camera on tile ``(row, col)``."""
        example_layers.centre_on_tile(
            self.viewer, self.slide_layer, self._grid(), row, col, TILES_IN_VIEW, VIEW_PIXELS
        )

    # ------------------------------------------------------------------ project
    @reports_errors
    def import_annotations(self, *_: Any) -> Examples:
        """Read the QuPath GeoJSON file: its shapes' tiles become examples (added to those)."""
        path = optional_path(self.project_panel.geojson.value)
        if path is None:
            raise InputError("choose a QuPath GeoJSON file to import")
        found = self.session.import_geojson(path)
        self.notify_info(f"Imported {len(found)} example tiles.\nFrom: {Path(path).name}")
        return found

    @reports_errors
    def save_project(self, *_: Any) -> Path:
        """Save the session's classes, colours, examples and the classifier in the store."""
        classifier = None if self.outcome is None else self.outcome.classifier
        path = self.session.save_project(classifier)
        self.notify_info(f"Saved {path}")
        return path

    @reports_errors
    def load_project(self, *_: Any) -> Any:
        """Take up the project saved in the store (the session's classes, colours, examples)."""
        return self.session.load_project()

    @reports_errors
    def export_map(self, *_: Any) -> Path:
        """Write the learned map (format by the file's extension)."""
        from napari_conch.engine.learn.export import export_learned

        path = optional_path(self.project_panel.path.value)
        if path is None:
            raise InputError("choose a file to export to (.tif, .geojson, .csv or .npy)")
        if self.outcome is None:
            raise InputError("nothing to export yet: the map appears after the first training")
        out = export_learned(
            path,
            self.outcome.result,
            self._grid(),
            colors=self.colors,
            mpp=self.session.slide.mpp if self.session.slide is not None else None,
        )
        self.notify_info(f"Exported {out}")
        return out

    @reports_errors
    def export_examples(self, *_: Any) -> Path:
        """Write the examples as QuPath GeoJSON annotations."""
        from napari_conch.engine.learn.annotations import write_examples_geojson

        path = optional_path(self.project_panel.path.value)
        if path is None or not path.lower().endswith(".geojson"):
            raise InputError("choose a .geojson file to export the examples to")
        out = write_examples_geojson(path, self.examples(), self._grid(), self.colors)
        self.notify_info(f"Exported {out}")
        return out
