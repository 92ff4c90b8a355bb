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

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch._napari.layers import gl_context
from napari_conch._napari.layers.steps import add_in_parts
from napari_conch.engine.colors import label_color

if TYPE_CHECKING:
    import napari

    from napari_conch.engine.overlap import MapGeometry

HEATMAP = "CONCH similarity"
PROBABILITY = "CONCH probability"
LABELS = "CONCH labels"
#: The Prompt highlighter's map layers (the similarity first, the labels on top).
PROMPT_MAP_LAYERS = (HEATMAP, PROBABILITY, LABELS)
#: Keys of the canvas text overlays that make the labels' legend (one per class).
LEGEND_KEY = "napari_conch_legend_{}"
#: Key of the legend's last line when it names only some classes ("+ 28 more classes ...").
LEGEND_MORE_KEY = "napari_conch_legend_more"
#: Most classes the canvas legend names. Each is a text the canvas draws at every redraw (with
#: 40, each redraw paused napari 110-145 ms here) and 12 lines already cover a laptop canvas's
#: top; beyond it the legend names the first 11 and counts the rest (the dock lists them all).
CANVAS_LEGEND_MAX = 12
#: Largest subdivision of a map cell used to cut the map at the image's edges.
MAX_SUBDIVISION = 8
#: Most cells a map layer may hold after subdivision (memory and texture size stay small).
MAX_LAYER_CELLS = 262_144


@dataclass(frozen=True)
class Placement:
    """``scale`` and ``translate`` of a map layer in the slide layer's world (``(y, x)``)."""

    scale: tuple[float, float]
    translate: tuple[float, float]


def slide_transform(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, translate)`` of the slide layer's level 0 along ``(y, x)``."""
    return np.asarray(layer.scale[-2:], float), np.asarray(layer.translate[-2:], float)


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def map_placement(geometry: MapGeometry, slide_layer: Any) -> Placement:
    """Where a map with ``geometry`` (level-0 pixels) lies in the slide layer's world."""
    scale, translate = slide_transform(slide_layer)
    cell = np.asarray(geometry.scale, float) * scale
    origin = translate + np.asarray(geometry.napari_translate, float) * scale
    return Placement(tuple(float(v) for v in cell), tuple(float(v) for v in origin))


def clip_to_image(
    data: np.ndarray, geometry: MapGeometry, image_shape: tuple[int, int]
) -> tuple[np.ndarray, MapGeometry]:
    """The map cut at the image's edges: cells past the slide are not drawn past it.

    Edge tiles are padded, so a map's last row and column of cells usually reach past the
    image. The cells are split into ``f x f`` sub-cells (``f`` at most :data:`MAX_SUBDIVISION`,
    chosen so the cut falls closest to the edge, within :data:`MAX_LAYER_CELLS`) and those
    outside the image dropped; each sub-cell keeps its cell's value.

    Returns
    -------
    data, geometry
        The array to show and where it lies (level-0 pixels).
    """
    from napari_conch.engine.overlap import MapGeometry

    rows, cols = geometry.shape
    cell = float(geometry.cell_size)
    (oy, ox), (height, width) = geometry.origin, image_shape
    edges = [(0 - oy) / cell, (height - oy) / cell, (0 - ox) / cell, (width - ox) / cell]
    inside = (
        edges[0] <= 0 and edges[1] >= rows and edges[2] <= 0 and edges[3] >= cols
    )  # fmt: skip
    if inside or rows == 0 or cols == 0:
        return data, geometry
    largest = max(1, int(np.sqrt(MAX_LAYER_CELLS / max(1, rows * cols))))
    factors = range(1, min(MAX_SUBDIVISION, largest) + 1)
    factor = min(factors, key=lambda f: max(abs(e * f - round(e * f)) / f for e in edges))
    y0, y1 = max(0, round(edges[0] * factor)), min(rows * factor, round(edges[1] * factor))
    x0, x1 = max(0, round(edges[2] * factor)), min(cols * factor, round(edges[3] * factor))
    y1, x1 = max(y1, y0 + 1), max(x1, x0 + 1)
    sub_rows = np.arange(y0, y1) // factor
    sub_cols = np.arange(x0, x1) // factor
    clipped = np.asarray(data)[np.ix_(sub_rows, sub_cols)]
    sub = cell / factor
    return clipped, MapGeometry(clipped.shape, sub, (oy + y0 * sub, ox + x0 * sub))


def image_shape(slide_layer: Any) -> tuple[int, int]:
    """``(height, width)`` of the slide layer's level 0, in pixels."""
    data = slide_layer.data[0] if slide_layer.multiscale else slide_layer.data
    return int(data.shape[0]), int(data.shape[1])


def world_to_level0(slide_layer: Any, world_yx: Any) -> tuple[float, float]:
    """Level-0 pixel ``(y, x)`` under a world position (pixel centres at integers)."""
    scale, translate = slide_transform(slide_layer)
    y, x = (np.asarray(world_yx[-2:], float) - translate) / scale
    return float(y), float(x)


def find_layer(viewer: napari.Viewer, name: str) -> Any | None:
    """The viewer's layer named ``name``, or None."""
    return viewer.layers[name] if name in viewer.layers else None


def upsert_layer(
    viewer: napari.Viewer,
    kind: str,
    name: str,
    data: np.ndarray,
    placement: Placement,
    *,
    units: Any,
    below: str | None = None,
    **new: Any,
) -> tuple[Any, bool]:
    """The layer ``name`` showing ``data`` at ``placement``, and whether it was just made.

    A layer that is there is placed (:func:`place`) and given ``data``. Else a napari layer of
    class ``kind`` (``"Image"``, ``"Labels"``) is made hidden with the keyword arguments ``new``
    and added in parts (:func:`~napari_conch._napari.layers.steps.add_in_parts`: not made
    active), under the layer ``below`` when given and there (else on top), for the caller to
    reveal it (:func:`~napari_conch._napari.layers.steps.reveal_steps`).
    """
    layer = find_layer(viewer, name)
    if layer is not None:
        place(layer, placement)
        layer.data = data
        return layer, False
    from napari import layers

    layer = getattr(layers, kind)(
        data,
        name=name,
        scale=placement.scale,
        translate=placement.translate,
        units=units,
        visible=False,
        **new,
    )
    over = find_layer(viewer, below) if below is not None else None
    add_in_parts(viewer, layer, index=None if over is None else viewer.layers.index(over))
    return layer, True


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
    below: str | None = None,
) -> Any:
    """Show ``data`` in the image layer ``name``, adding it only when it is not there.

    A new layer is added hidden, under the layer ``below`` when given and there (else on
    top); ``layer.metadata["napari_conch_reveal"]`` then holds the steps that show it (see
    :func:`reveal_steps`), for the caller to run one per event-loop turn. Its
    colour bar is drawn in the dock (:func:`colorbar_html`), not with napari's canvas colour bar:
    in napari 0.9.2 deleting a layer whose canvas colour bar was shown crashed the viewer at the
    next draw (reproduced with software OpenGL), and its first drawing paused napari 100-150 ms.
    """
    layer, made = upsert_layer(
        viewer, "Image", name, data, placement, units=units, below=below,
        colormap=colormap, opacity=opacity, contrast_limits=contrast_limits,
        blending="translucent",
    )  # fmt: skip
    if made:
        return layer
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


def direct_colormap(colors: list[tuple[int, int, int]]) -> Any:
    """Label 0 transparent, label ``k`` the ``k``-th RGB colour (0-255)."""
    from napari.utils.colormaps import DirectLabelColormap

    table: dict[int | None, Any] = {None: np.zeros(4), 0: np.zeros(4)}
    for k, rgb in enumerate(colors, start=1):
        table[k] = np.array([*rgb, 255], float) / 255
    return DirectLabelColormap(color_dict=table)


def label_colormap(count: int) -> Any:
    """Label 0 transparent, labels ``1..count`` in the export's colours (as in the GeoJSON)."""
    return direct_colormap([label_color(label) for label in range(1, count + 1)])


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
    import pandas as pd  # imported here: opening a dock stays light (warm-up imports it)

    def classes() -> dict[str, Any]:
        features = {"index": np.arange(len(names) + 1), "class": ["none", *names]}
        return {"colormap": label_colormap(len(names)), "features": pd.DataFrame(features)}

    # a new layer is made with its colours: napari draws its colour table once
    new = classes() if find_layer(viewer, LABELS) is None else {}
    layer, _ = upsert_layer(
        viewer, "Labels", LABELS, data, placement, units=units,
        metadata={"class_names": list(names)}, **new,
    )  # fmt: skip
    if layer.metadata.get("class_names") != list(names):
        for key, value in classes().items():
            setattr(layer, key, value)
        layer.metadata["class_names"] = list(names)
    if layer.opacity != opacity:
        layer.opacity = opacity
    return layer


def legend_html(names: list[str], colors: list[Any] | None = None) -> str:
    """The labels' legend for a Qt label: a coloured square and the class name per line.

    ``colors``: the classes' RGB colours (0-255); default the export's colour of each label.
    """
    rows = []
    for label, name in enumerate(names, start=1):
        r, g, b = (int(v) for v in (colors[label - 1] if colors else label_color(label)))
        text = html.escape(name, quote=False)
        rows.append(f'<span style="color:#{r:02x}{g:02x}{b:02x}">&#9632;</span> {text}')
    return "<br>".join(rows)


def colorbar_html(colormap: str, low: float, high: float, cells: int = 40) -> str:
    """A colour bar for a Qt label: the colormap from ``low`` to ``high`` and the values.

    ``cells`` coloured table cells make the gradient (Qt's rich text has no gradients); the
    values at both ends and in the middle are written under it.
    """
    from napari.utils.colormaps import ensure_colormap

    rgba = ensure_colormap(colormap).map(np.linspace(0.0, 1.0, cells))
    hexes = ["#{:02x}{:02x}{:02x}".format(*(np.clip(c[:3], 0, 1) * 255).round().astype(int))
             for c in rgba]  # fmt: skip
    strip = "".join(f'<td bgcolor="{h}" width="5" height="12"></td>' for h in hexes)
    middle = (low + high) / 2
    values = (
        f'<td align="left">{low:.3f}</td><td align="center">{middle:.3f}</td>'
        f'<td align="right">{high:.3f}</td>'
    )
    return (
        f'<table cellspacing="0" cellpadding="0"><tr>{strip}</tr></table>'
        f'<table width="{5 * cells}" cellspacing="0" cellpadding="0"><tr>{values}</tr></table>'
    )


def legend_steps(
    viewer: napari.Viewer,
    names: list[str],
    visible: bool = True,
    colors: list[Any] | None = None,
) -> list[Any]:
    """The steps that show the labels' legend on the canvas, one class per step.

    Each class is a text overlay in the class's colour, on a box (napari stacks them in the
    top-left corner); overlays of classes no longer there are hidden. The first drawing of each
    overlay builds its text's shaders (60-70 ms here) and its box's, so each class goes in its
    own event-loop turn, and a new overlay gets its box in the turn after its text (together,
    one turn was 100-117 ms). With more than :data:`CANVAS_LEGEND_MAX` classes the last line
    counts those not named. ``colors``: the classes' RGB colours (0-255), default the export's
    colour of each label (the Prompt highlighter's labels); a learned map gives its own.
    """
    named = names if len(names) <= CANVAS_LEGEND_MAX else names[: CANVAS_LEGEND_MAX - 1]
    unnamed = len(names) - len(named)

    def show(label: int, name: str) -> None:
        from napari.components.overlays import TextOverlay

        overlays = viewer.canvas.overlays
        key = LEGEND_KEY.format(label)
        rgb = colors[label - 1] if colors else label_color(label)
        color = np.array([*rgb, 255], float) / 255
        text = f"\u25a0 {name}"
        if key not in overlays:
            overlays[key] = TextOverlay(
                text=text, color=color, position="top_left", box=False, font_size=10
            )
        overlay = overlays[key]
        if overlay.text != text:
            overlay.text = text
        if not np.allclose(overlay.color, color):
            overlay.color = color
        overlay.visible = visible

    def count_the_rest() -> None:
        from napari.components.overlays import TextOverlay

        overlays = viewer.canvas.overlays
        text = f"+ {unnamed} more classes (the dock's legend lists them)"
        if LEGEND_MORE_KEY not in overlays:
            overlays[LEGEND_MORE_KEY] = TextOverlay(
                text=text, color=(1.0, 1.0, 1.0, 1.0), position="top_left", box=True,
                font_size=10,
            )  # fmt: skip
        more = overlays[LEGEND_MORE_KEY]
        if more.text != text:
            more.text = text
        more.visible = visible

    def hide_the_rest() -> None:
        overlays, label = viewer.canvas.overlays, len(named) + 1
        while LEGEND_KEY.format(label) in overlays:
            overlays[LEGEND_KEY.format(label)].visible = False
            label += 1
        if not unnamed and LEGEND_MORE_KEY in overlays:
            overlays[LEGEND_MORE_KEY].visible = False

    def box(label: int) -> None:
        overlay = viewer.canvas.overlays[LEGEND_KEY.format(label)]
        if not overlay.box:
            overlay.box = True

    steps: list[Any] = []
    for label, name in enumerate(named, start=1):
        steps += [lambda n=name, i=label: show(i, n), lambda i=label: box(i)]
    if unnamed:
        steps.append(count_the_rest)
    return [*steps, hide_the_rest]


def show_legend(
    viewer: napari.Viewer,
    names: list[str],
    visible: bool = True,
    colors: list[Any] | None = None,
) -> None:
    """The labels' legend on the canvas at once (see :func:`legend_steps`)."""
    for step in legend_steps(viewer, names, visible, colors):
        step()


def hide_legend(viewer: napari.Viewer) -> None:
    """Hide the labels' legend on the canvas."""
    show_legend(viewer, [], visible=False)


def legend_shown(viewer: napari.Viewer) -> list[str]:
    """The class names the canvas legend shows now, in order."""
    overlays, names, label = viewer.canvas.overlays, [], 1
    while LEGEND_KEY.format(label) in overlays:
        overlay = overlays[LEGEND_KEY.format(label)]
        if overlay.visible:
            names.append(overlay.text[2:])
        label += 1
    return names


def clear_shapes(viewer: napari.Viewer, name: str) -> None:
    """Empty the Shapes layer ``name`` when it is there, keeping the layer.

    A Shapes layer is never deleted by the plugin: in napari 0.9.2 with software OpenGL,
    deleting a layer that draws text crashes napari at the next redraw (docs/reliability.md).
    """
    layer = find_layer(viewer, name)
    if layer is not None and layer.nshapes:
        layer.data = []


def remove_layer(viewer: napari.Viewer, name: str, widget: Any) -> None:
    """Remove the layer ``name`` when it is there, with the canvas's OpenGL context current.

    ``widget`` is the dock asking (see :mod:`napari_conch._napari.layers.gl_context`: napari's
    removal without it crashed the viewer at the next drawing).
    """
    gl_context.remove_layer(viewer, name, widget)


def contrast_for(values: np.ndarray) -> tuple[float, float]:
    """Contrast limits spanning the finite values (a small range when they are all equal)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low - 1e-3, high + 1e-3)
