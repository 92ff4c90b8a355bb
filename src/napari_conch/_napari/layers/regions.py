"""Boxes of a slide as napari shapes, and back: world coordinates <-> level-0 pixel boxes.

The engine's boxes are ``(x0, y0, x1, y1)`` in level-0 pixel *edges*: ``(0, 0, 512, 512)`` is the
first 512 x 512 pixels. napari centres pixel ``p`` on ``translate + p * scale``, so the pixel's
edges lie half a pixel either side. :func:`world_to_level0` gives pixel-centre coordinates; an edge
coordinate is that plus one half. This holds whether the slide layer is in pixels or in microns.

Shapes layers made here share the slide layer's ``scale`` and ``translate``, so their data
coordinates are the slide's level-0 pixel-centre coordinates. Shapes drawn in any other layer are
read through that layer's own transform (:func:`shape_box`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch._napari.fastpaths.layer_parts import skip_empty_text
from napari_conch._napari.layers.map_layers import find_layer, slide_transform, world_to_level0
from napari_conch._napari.layers.steps import add_in_parts
from napari_conch.errors import InputError

if TYPE_CHECKING:
    import napari

Box = tuple[float, float, float, float]

#: The Shapes layer holding the caption / ranking region.
REGION_LAYER = "CONCH caption region"
#: The Shapes layer outlining the top tiles of a prompt.
TOP_TILES_LAYER = "CONCH top tiles"


def world_to_edge(slide_layer: Any, world_yx: Any) -> tuple[float, float]:
    """Level-0 pixel-edge coordinate ``(y, x)`` of a world position."""
    y, x = world_to_level0(slide_layer, world_yx)
    return y + 0.5, x + 0.5


def vertices_box(shapes_layer: Any, vertices: np.ndarray, slide_layer: Any) -> Box:
    """The level-0 box bounding a shape's vertices (data coordinates of ``shapes_layer``)."""
    world = [np.asarray(shapes_layer.data_to_world(v), float) for v in np.asarray(vertices)]
    edges = np.array([world_to_edge(slide_layer, w) for w in world])
    (y0, x0), (y1, x1) = edges.min(axis=0), edges.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))


def shape_box(shapes_layer: Any, slide_layer: Any) -> Box:
    """The box of the region shape: the one selected shape, else the last one drawn.

    Raises
    ------
    InputError
        When the layer holds no shape, or the shape covers no pixel.
    """
    if shapes_layer is None or len(shapes_layer.data) == 0:
        raise InputError("no region yet: draw a rectangle or click a point on the slide")
    selected = sorted(shapes_layer.selected_data)
    index = selected[0] if len(selected) == 1 else len(shapes_layer.data) - 1
    box = vertices_box(shapes_layer, shapes_layer.data[index], slide_layer)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise InputError(f"the region shape {index} covers no pixel: draw a larger rectangle")
    return box


def box_around(slide_shape: tuple[int, int], y: float, x: float, side: float) -> Box:
    """A ``side`` x ``side`` box (level-0 pixels) centred on pixel edge ``(y, x)``.

    The box is shifted to lie inside the slide where the slide is large enough.
    """
    height, width = slide_shape
    x0, y0 = x - side / 2, y - side / 2
    if width >= side:
        x0 = min(max(x0, 0.0), width - side)
    if height >= side:
        y0 = min(max(y0, 0.0), height - side)
    x0, y0 = float(round(x0)), float(round(y0))
    return (x0, y0, x0 + side, y0 + side)


def box_rectangle(box: Box) -> np.ndarray:
    """The corners ``[4, (y, x)]`` of a box in the slide's level-0 pixel-centre coordinates."""
    x0, y0, x1, y1 = (float(v) - 0.5 for v in box)
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])


def box_center_world(slide_layer: Any, box: Box) -> tuple[float, float]:
    """The world position ``(y, x)`` of a box's centre."""
    scale, translate = slide_transform(slide_layer)
    x0, y0, x1, y1 = box
    centre = np.array([(y0 + y1) / 2, (x0 + x1) / 2]) - 0.5
    y, x = translate + centre * scale
    return float(y), float(x)


def box_world_size(slide_layer: Any, box: Box) -> float:
    """The longer side of a box in world units."""
    scale, _ = slide_transform(slide_layer)
    x0, y0, x1, y1 = box
    return float(max((y1 - y0) * scale[0], (x1 - x0) * scale[1]))


def shapes_layer(
    viewer: napari.Viewer, name: str, slide_layer: Any, *, hidden: bool = False, **style: Any
) -> Any:
    """The Shapes layer ``name`` lying on the slide layer, added when it is not there.

    With ``hidden``, a new layer is added hidden and not made active (see
    :func:`~napari_conch._napari.layers.steps.add_in_parts`), for the caller to show it in a later
    event-loop turn: making the layer and drawing it the first time are then two shorter pauses
    instead of one long one.
    """
    layer = find_layer(viewer, name)
    scale, translate = slide_transform(slide_layer)
    if layer is None:
        kwargs = dict(
            name=name, scale=tuple(scale), translate=tuple(translate),
            units=slide_layer.units[-2:], **style,
        )  # fmt: skip
        if not hidden:
            layer = viewer.add_shapes(**kwargs)
            skip_empty_text(viewer, layer)
            return layer
        from napari.layers import Shapes

        layer = Shapes(visible=False, **kwargs)
        add_in_parts(viewer, layer)
        return layer
    layer.scale, layer.translate = tuple(scale), tuple(translate)
    return layer
