"""The Annotate dock's layers: the examples painted over the grid, and the learned maps.

- ``CONCH examples``: a labels layer with one pixel per tile of the store's grid, each drawn as
  the stride-sized square centred on its tile (:func:`~napari_conch.engine.overlap.tile_geometry`);
  label ``k`` is the ``k``-th class of the dock, 0 no example.
- ``CONCH example shapes``: a shapes layer in the slide's level-0 pixels, for drawing examples;
  each finished shape is turned into example tiles (:func:`drawn_shapes`) and removed.
- ``CONCH learned labels`` and ``CONCH learned probability``: the classifier's cell maps, placed
  like the Prompt highlighter's (:mod:`.layers`).

Colours are set only when they change: each change rebuilds napari's colour table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch._napari.fastpaths.layer_parts import skip_empty_text
from napari_conch._napari.layers import map_layers, on_show
from napari_conch._napari.layers import steps as layer_steps
from napari_conch.engine.learn.annotations import Color, Examples

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.query import QueryResult

EXAMPLES = "CONCH examples"
#: Opacity of the painted examples: the tissue under them stays visible (0.8 hid it).
EXAMPLES_OPACITY = 0.4
SHAPES = "CONCH example shapes"
LEARNED_LABELS = "CONCH learned labels"
LEARNED_PROBABILITY = "CONCH learned probability"


def set_colors(layer: Any, colors: list[Color]) -> None:
    """Give a labels layer label ``k`` the ``k``-th colour, only when the colours change."""
    key = [list(map(int, c)) for c in colors]
    if layer.metadata.get("napari_conch_colors") != key:
        layer.colormap = map_layers.direct_colormap(colors)
        layer.metadata["napari_conch_colors"] = key


def read_examples(layer: Any | None, classes: list[str]) -> Examples:
    """The example tiles of an examples layer whose label ``k`` is ``classes[k - 1]``."""
    if layer is None:
        return Examples()
    data = np.asarray(layer.data)
    rows, cols = np.nonzero(data)
    keep = data[rows, cols] <= len(classes)
    rows, cols = rows[keep], cols[keep]
    return Examples(rows, cols, [classes[v - 1] for v in data[rows, cols]])


def write_examples(layer: Any, examples: Examples, classes: list[str], colors: list[Color]) -> None:
    """Show ``examples`` in an examples layer (label ``k``: ``classes[k - 1]``).

    The data is replaced only when it differs (after a stroke the layer shows them already).
    """
    data = np.zeros(layer.data.shape, np.uint8)
    numbers = np.asarray([classes.index(n) + 1 for n in examples.names], dtype=np.uint8)
    data[examples.rows, examples.cols] = numbers
    if not np.array_equal(np.asarray(layer.data), data):
        layer.data = data
    set_colors(layer, colors)


def examples_layer(
    viewer: napari.Viewer, grid: Any, slide_layer: Any, widget: Any
) -> tuple[Any, bool]:
    """The examples layer over ``grid`` on the slide layer, and whether it was just made.

    ``widget`` is the dock asking: a layer of another grid is removed with the canvas's OpenGL
    context current (:mod:`napari_conch._napari.layers.gl_context`).
    """
    from napari_conch.engine.overlap import tile_geometry

    placement = map_layers.map_placement(tile_geometry(grid), slide_layer)
    layer = map_layers.find_layer(viewer, EXAMPLES)
    if layer is not None and layer.data.shape == tuple(grid.shape):
        map_layers.place(layer, placement)
        return layer, False
    if layer is not None:
        map_layers.remove_layer(viewer, EXAMPLES, widget)
    layer = viewer.add_labels(
        np.zeros(grid.shape, np.uint8),
        name=EXAMPLES,
        scale=placement.scale,
        translate=placement.translate,
        units=slide_layer.units[-2:],
        opacity=EXAMPLES_OPACITY,
        blending="translucent",
    )
    return layer, True


def show_learned(
    viewer: napari.Viewer,
    result: QueryResult,
    slide_layer: Any,
    colors: dict[str, Color],
    shown: str | None,
) -> None:
    """Put a learned result into the labels and probability layers (made when missing).

    ``shown``: the class whose probability the probability layer shows (default the first).
    The probability layer starts hidden; the examples layer stays on top. New layers are not
    made active: the active layer stays the one the user was working in.
    """
    shape = map_layers.image_shape(slide_layer)  # cut at the slide's edge, as the other docks' maps
    cell_labels, geometry = map_layers.clip_to_image(result.cell_labels, result.geometry, shape)
    place = map_layers.map_placement(geometry, slide_layer)
    units = slide_layer.units[-2:]
    names = list(result.names)
    layer, made = map_layers.upsert_layer(
        viewer, "Labels", LEARNED_LABELS, cell_labels, place, units=units, opacity=0.5
    )  # not made active
    if made:
        for step in layer_steps.reveal_steps(layer):
            step()
    set_colors(layer, [colors[n] for n in names])
    on_show.describe_classes(layer, names, [colors[n] for n in names])
    k = names.index(shown) if shown in names else 0
    probability = map_layers.upsert_image(
        viewer,
        LEARNED_PROBABILITY,
        map_layers.clip_to_image(result.cell_probs[k], result.geometry, shape)[0],
        place,
        units=units,
        colormap="magma",
        opacity=0.5,
        contrast_limits=(0.0, 1.0),
    )
    on_show.describe_range(probability, f"learned probability of '{names[k]}'", "magma", 0, 1)
    examples = map_layers.find_layer(viewer, EXAMPLES)
    if examples is not None and viewer.layers.index(examples) != len(viewer.layers) - 1:
        viewer.layers.move(viewer.layers.index(examples), len(viewer.layers))
    on_show.follow(viewer).refresh()  # the canvas legend names the learned classes


def repeats_prompt_map(viewer: napari.Viewer, used: int) -> bool:
    """Whether a learned map would only repeat the Prompt highlighter's labels map.

    With no example the learned map is the prompts' zero-shot map, which the Prompt
    highlighter already shows as its labels: a second, identical labels layer would only make
    a new user wonder which one to read. Once learned layers exist they are kept up to date.
    """
    return (
        used == 0
        and map_layers.find_layer(viewer, map_layers.LABELS) is not None
        and map_layers.find_layer(viewer, LEARNED_LABELS) is None
    )


def tile_centre_world(slide_layer: Any, grid: Any, row: int, col: int) -> np.ndarray:
    """World ``(y, x)`` of tile ``(row, col)``'s centre on the slide layer."""
    x0, y0, x1, y1 = grid.tile_box(row, col)
    scale, translate = map_layers.slide_transform(slide_layer)
    return translate + np.array([(y0 + y1) / 2, (x0 + x1) / 2]) * scale


def centre_on_tile(
    viewer: napari.Viewer,
    slide_layer: Any,
    grid: Any,
    row: int,
    col: int,
    tiles_in_view: float,
    view_pixels: float,
) -> None:
    """Centre the camera on tile ``(row, col)``, zoomed so ``tiles_in_view`` tiles span about
    ``view_pixels`` screen pixels."""
    centre = tile_centre_world(slide_layer, grid, row, col)
    x0, _, x1, _ = grid.tile_box(row, col)
    scale = map_layers.slide_transform(slide_layer)[0]
    camera = map_layers.viewer_camera(viewer)
    camera.center = tuple(float(v) for v in centre)
    camera.zoom = float(view_pixels / (tiles_in_view * (x1 - x0) * scale[1]))


def shapes_layer(viewer: napari.Viewer, slide_layer: Any) -> tuple[Any, bool]:
    """The shapes layer to draw examples in, over the slide's level-0 pixels; whether new."""
    layer = map_layers.find_layer(viewer, SHAPES)
    if layer is not None:
        return layer, False
    scale, translate = map_layers.slide_transform(slide_layer)
    layer = viewer.add_shapes(
        name=SHAPES,
        scale=tuple(scale),
        translate=tuple(translate),
        units=slide_layer.units[-2:],
        edge_width=2,
        face_color="transparent",
        edge_color="yellow",
    )
    skip_empty_text(viewer, layer)
    return layer, True


def _ellipse(corners: np.ndarray, points: int = 48) -> np.ndarray:
    centre = corners.mean(axis=0)
    radii = (corners.max(axis=0) - corners.min(axis=0)) / 2
    angle = np.linspace(0, 2 * np.pi, points, endpoint=False)
    return centre + np.stack([np.sin(angle), np.cos(angle)], axis=1) * radii


def drawn_shapes(layer: Any, name: str) -> list[Any]:
    """The closed shapes of a shapes layer as examples' shapes of class ``name``.

    Vertices are the slide's level-0 pixel coordinates (pixel centres at integers, as napari
    draws them); they are moved by half a pixel to the pixel-edge coordinates of the tile grid
    and of QuPath. Lines and paths (not closed) are left out.
    """
    from napari_conch.engine.learn.annotations import Shape

    out = []
    for vertices, kind in zip(layer.data, layer.shape_type, strict=True):
        yx = np.asarray(vertices, dtype=np.float64)[:, -2:]
        if kind == "ellipse":
            yx = _ellipse(yx)
        elif kind not in ("polygon", "rectangle"):
            continue
        out.append(Shape(name, None, [[yx[:, ::-1] + 0.5]]))
    return out
