"""Engine results as napari layers lying exactly on the slide layer.

A map from :mod:`napari_conch.engine.query` is placed by its
:class:`~napari_conch.engine.overlap.MapGeometry` in level-0 pixels. The slide layer shows level-0
pixel ``p`` at world ``translate + p * scale`` (napari centres pixels on integer coordinates), so a
map cell of ``cell_size`` level-0 pixels gets ``scale = cell_size * slide_scale`` and its centre
``geometry.napari_translate`` (level-0 units) is carried into world units the same way. This holds
whether the slide layer is in pixels or in microns.

Layers are found again by name and updated in place; a layer the user deleted is made again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from napari_conch.engine.export import label_color

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.overlap import MapGeometry

HEATMAP = "CONCH similarity"
PROBABILITY = "CONCH probability"
LABELS = "CONCH labels"


@dataclass(frozen=True)
class Placement:
    """``scale`` and ``translate`` of a map layer in the slide layer's world (``(y, x)``)."""

    scale: tuple[float, float]
    translate: tuple[float, float]


def slide_transform(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, translate)`` of the slide layer's level 0 along ``(y, x)``."""
    return np.asarray(layer.scale[-2:], float), np.asarray(layer.translate[-2:], float)


def map_placement(geometry: MapGeometry, slide_layer: Any) -> Placement:
    """Where a map with ``geometry`` (level-0 pixels) lies in the slide layer's world."""
    scale, translate = slide_transform(slide_layer)
    cell = np.asarray(geometry.scale, float) * scale
    origin = translate + np.asarray(geometry.napari_translate, float) * scale
    return Placement(tuple(float(v) for v in cell), tuple(float(v) for v in origin))


def world_to_level0(slide_layer: Any, world_yx: Any) -> tuple[float, float]:
    """Level-0 pixel ``(y, x)`` under a world position (pixel centres at integers)."""
    scale, translate = slide_transform(slide_layer)
    y, x = (np.asarray(world_yx[-2:], float) - translate) / scale
    return float(y), float(x)


def find_layer(viewer: napari.Viewer, name: str) -> Any | None:
    """The viewer's layer named ``name``, or None."""
    return viewer.layers[name] if name in viewer.layers else None


def upsert_image(
    viewer: napari.Viewer,
    name: str,
    data: np.ndarray,
    placement: Placement,
    *,
    units: Any,
    colormap: str,
    opacity: float,
    contrast_limits: tuple[float, float],
) -> Any:
    """Show ``data`` in the image layer ``name``, adding it only when it is not there."""
    layer = find_layer(viewer, name)
    if layer is None:
        return viewer.add_image(
            data,
            name=name,
            scale=placement.scale,
            translate=placement.translate,
            colormap=colormap,
            opacity=opacity,
            contrast_limits=contrast_limits,
            blending="translucent",
            units=units,
        )
    place(layer, placement)
    layer.data = data
    if layer.colormap.name != colormap:
        layer.colormap = colormap
    if layer.opacity != opacity:
        layer.opacity = opacity
    if tuple(layer.contrast_limits) != tuple(contrast_limits):
        layer.contrast_limits = contrast_limits
    return layer


def place(layer: Any, placement: Placement) -> None:
    """Set a layer's scale and translate, only when they change (each change redraws)."""
    if not np.allclose(layer.scale[-2:], placement.scale):
        layer.scale = placement.scale
    if not np.allclose(layer.translate[-2:], placement.translate):
        layer.translate = placement.translate


def label_colormap(count: int) -> Any:
    """Label 0 transparent, labels ``1..count`` in the export's colours (as in the GeoJSON)."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[int | None, Any] = {None: np.zeros(4), 0: np.zeros(4)}
    for label in range(1, count + 1):
        colors[label] = np.array([*label_color(label), 255], float) / 255
    return DirectLabelColormap(color_dict=colors)


def upsert_labels(
    viewer: napari.Viewer,
    data: np.ndarray,
    names: list[str],
    placement: Placement,
    *,
    units: Any,
    opacity: float,
) -> Any:
    """Show labels with one colour and name per class (names in ``layer.features``).

    Colours and class names are set only when the classes change: a new batch of embeddings
    during a run changes the data alone.
    """
    layer = find_layer(viewer, LABELS)
    if layer is None:
        layer = viewer.add_labels(
            data, name=LABELS, scale=placement.scale, translate=placement.translate, units=units
        )
    else:
        place(layer, placement)
        layer.data = data
    if layer.metadata.get("class_names") != list(names):
        layer.colormap = label_colormap(len(names))
        layer.features = pd.DataFrame(
            {"index": np.arange(len(names) + 1), "class": ["none", *names]}
        )
        layer.metadata["class_names"] = list(names)
    if layer.opacity != opacity:
        layer.opacity = opacity
    return layer


def remove_layer(viewer: napari.Viewer, name: str) -> None:
    """Remove the layer ``name`` when it is there."""
    if name in viewer.layers:
        viewer.layers.remove(name)


def contrast_for(values: np.ndarray) -> tuple[float, float]:
    """Contrast limits spanning the finite values (a small range when they are all equal)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 1e-3, high + 1e-3)
