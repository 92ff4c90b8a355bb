"""The Annotate dock's examples on the canvas: shown from the session, painted and drawn back.

:class:`ExamplePainting` keeps the ``CONCH examples`` labels layer (one pixel per tile of the
store's grid, label ``k`` the ``k``-th class, see :mod:`napari_conch._napari.layers.examples`)
showing the session's examples, and turns what the user does on the canvas into session
actions: a stroke of the brush or eraser becomes
:meth:`~napari_conch.engine.session.session.Session.label_tiles` for the tiles it changed, a
finished polygon (``CONCH example shapes``) the tiles whose centre lies in it. The layer is
never read as the examples themselves: only a stroke's change is.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QTimer

from napari_conch._napari.layers import examples as example_layers
from napari_conch._napari.layers import map_layers
from napari_conch.engine.learn.annotations import Examples
from napari_conch.errors import InputError


def stroke_changes(
    painted: dict[tuple[int, int], str], held: dict[tuple[int, int], str]
) -> dict[str | None, list[tuple[int, int]]]:
    """The tiles whose class the layer (``painted``) gives otherwise than the session
    (``held``), by their new class (None: erased), each list sorted."""
    changed: dict[str | None, list[tuple[int, int]]] = {}
    for tile in set(painted) | set(held):
        if painted.get(tile) != held.get(tile):
            changed.setdefault(painted.get(tile), []).append(tile)
    return {name: sorted(tiles) for name, tiles in changed.items()}


class ExamplePainting:
    """The examples layer and the example shapes layer of an Annotate dock.

    Parameters
    ----------
    dock : AnnotateDock
        Its viewer, session, slide layer, and ``label_tiles`` (which says a refused change as
        a notice).
    """

    def __init__(self, dock: Any) -> None:
        self.dock = dock
        #: The classes of the layer's labels: label ``k`` is ``classes[k - 1]``.
        self.classes: list[str] = []
        self._stroke_timer = QTimer(dock.native)
        self._stroke_timer.setSingleShot(True)
        self._stroke_timer.setInterval(0)
        self._stroke_timer.timeout.connect(self._read_stroke)

    @property
    def session(self) -> Any:
        return self.dock.session

    def layer(self) -> Any:
        """The ``CONCH examples`` layer over the store's grid, made when missing.

        Raises
        ------
        InputError
            Without embeddings or without a slide layer.
        """
        dock = self.dock
        grid = self.session.learning_grid()
        if dock.slide_layer is None:
            raise InputError("open a slide first: no RGB image layer to annotate")
        layer, made = example_layers.examples_layer(dock.viewer, grid, dock.slide_layer, dock)
        if made:
            layer.events.paint.connect(self._on_paint)
            self.classes = []
        return layer

    def show(self, examples: Examples) -> None:
        """Show ``examples`` (the session's) in the layer, made once there are some."""
        session, dock = self.session, self.dock
        found = map_layers.find_layer(dock.viewer, example_layers.EXAMPLES)
        embedded = session.live_embeddings() is not None
        if found is None and (not len(examples) or not embedded):
            self.classes = session.classes
            return
        if dock.slide_layer is None or not embedded:
            return
        layer = self.layer()
        names = session.classes
        self.classes = names
        colors = session.class_colors
        example_layers.write_examples(layer, examples, names, [colors[n] for n in names])

    def up_to_date(self) -> bool:
        """Whether the layer's labels are numbered after the session's classes."""
        return self.classes == self.session.classes

    def paint(self, name: str) -> Any:
        """Select the layer in paint mode with class ``name``; returns it."""
        layer = self.layer()
        if not self.up_to_date():
            self.show(self.session.examples)
        self.select(name)
        layer.brush_size = 1
        self.dock.viewer.layers.selection.active = layer
        layer.mode = "paint"
        return layer

    def select(self, name: Any) -> None:
        """Paint with class ``name`` (when it is one of the layer's)."""
        layer = map_layers.find_layer(self.dock.viewer, example_layers.EXAMPLES)
        if layer is not None and name in self.classes:
            layer.selected_label = self.classes.index(name) + 1

    def _on_paint(self, *_: Any) -> None:
        """A stroke: read in the next turn (napari announces it before writing the data)."""
        self._stroke_timer.start()

    def _read_stroke(self) -> None:
        """The tiles the user painted (or erased) go to the session as examples."""
        dock = self.dock
        layer = map_layers.find_layer(dock.viewer, example_layers.EXAMPLES)
        if dock._closed or layer is None:
            return
        painted = example_layers.read_examples(layer, self.classes).as_dict()
        for name, tiles in stroke_changes(painted, self.session.examples.as_dict()).items():
            dock.label_tiles(tiles, name)
        self.show(self.session.examples)  # a refused stroke goes from the layer

    def draw(self, on_drawn: Any) -> Any:
        """Select the example shapes layer for drawing polygons (made when missing); a change
        of its shapes calls ``on_drawn(event)``; returns it."""
        dock = self.dock
        self.session.learning_grid()
        layer, made = example_layers.shapes_layer(dock.viewer, dock.slide_layer)
        if made:
            layer.events.data.connect(on_drawn)
        dock.viewer.layers.selection.active = layer
        layer.mode = "add_polygon"
        return layer

    def take_shapes(self, name: str) -> Examples | None:
        """The tiles whose centre lies in a drawn shape, as examples of ``name`` for the
        session; the shapes are removed (the examples layer shows what they gave)."""
        from napari_conch.engine.learn.annotations import examples_from_shapes

        layer = map_layers.find_layer(self.dock.viewer, example_layers.SHAPES)
        if layer is None or len(layer.data) == 0:
            return None
        shapes = example_layers.drawn_shapes(layer, name)
        layer.data = []
        if not shapes:
            return None
        found = examples_from_shapes(self.session.learning_grid(), shapes)
        self.session.label_tiles(zip(found.rows, found.cols, strict=True), name)
        return found
