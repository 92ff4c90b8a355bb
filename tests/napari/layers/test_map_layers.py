"""Map placement helpers without a viewer: maps cut at the image's edges, the legend's HTML."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.layers import map_layers
from napari_conch.engine.colors import label_color
from napari_conch.engine.overlap import MapGeometry


def _edges(geometry: MapGeometry) -> np.ndarray:
    """Level-0 ``[[y0, x0], [y1, x1]]`` of a map."""
    origin = np.asarray(geometry.origin)
    return np.array([origin, origin + np.asarray(geometry.shape) * geometry.cell_size])


@pytest.mark.parametrize(
    ("image", "cell"), [((2967, 2220), 512.0), ((1000, 700), 128.0), ((300, 301), 96.0)]
)
def test_maps_are_cut_at_the_image_edges(image, cell):
    rows, cols = -(-image[0] // int(cell)), -(-image[1] // int(cell))
    data = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
    geometry = MapGeometry((rows, cols), cell, (0.0, 0.0))
    shown, where = map_layers.clip_to_image(data, geometry, image)
    factor = round(cell / where.cell_size)
    assert 1 <= factor <= map_layers.MAX_SUBDIVISION and where.cell_size * factor == pytest.approx(
        cell
    )
    # within half a sub-cell of the image's edges, never a whole cell past them
    np.testing.assert_allclose(_edges(where), [[0, 0], list(image)], atol=where.cell_size / 2)
    # every sub-cell keeps its cell's value, and every cell is still shown
    np.testing.assert_array_equal(shown[::factor, ::factor], data)
    centres = (np.arange(shown.shape[0]) + 0.5) * where.cell_size
    np.testing.assert_array_equal(shown[:, 0], data[(centres // cell).astype(int), 0])


def test_a_map_inside_the_image_is_unchanged():
    data = np.ones((4, 5), np.float32)
    geometry = MapGeometry((4, 5), 100.0, (0.0, 0.0))
    shown, where = map_layers.clip_to_image(data, geometry, (400, 500))
    assert shown is data and where is geometry


def test_large_maps_are_not_subdivided_beyond_the_cell_budget():
    rows, cols = 1200, 1000  # 1.2 million tiles
    geometry = MapGeometry((rows, cols), 256.0, (0.0, 0.0))
    shown, where = map_layers.clip_to_image(
        np.zeros((rows, cols), np.uint8), geometry, (307_100, 255_900)
    )
    assert shown.shape == (rows, cols) and where.cell_size == 256.0
    assert shown.size <= max(map_layers.MAX_LAYER_CELLS, rows * cols)


def test_legend_html_names_each_class_in_its_colour():
    html = map_layers.legend_html(["tumor", "a <b> & c"])
    r, g, b = label_color(1)
    assert f"#{r:02x}{g:02x}{b:02x}" in html and "tumor" in html
    assert "a &lt;b&gt; &amp; c" in html


def test_the_caption_dock_offers_the_engines_strategies(qtbot):
    from napari_conch._napari.docks.caption_panels import CaptionPanel
    from napari_conch.model import config

    assert tuple(CaptionPanel().strategy.choices) == tuple(config.STRATEGIES)


def test_the_colour_bar_spans_the_colormap_and_names_its_range():
    from napari.utils.colormaps import ensure_colormap

    html = map_layers.colorbar_html("inferno", 0.25, 0.75, cells=10)
    first, last = ensure_colormap("inferno").map(np.array([0.0, 1.0]))[:, :3]
    for rgb in (first, last):
        r, g, b = (np.clip(rgb, 0, 1) * 255).round().astype(int)
        assert f"#{r:02x}{g:02x}{b:02x}" in html
    assert html.count("<td bgcolor=") == 10
    assert "0.250" in html and "0.500" in html and "0.750" in html


@pytest.mark.gui
def test_the_canvas_legend_gets_each_new_box_a_turn_after_its_text(make_napari_viewer):
    viewer = make_napari_viewer()
    steps = map_layers.legend_steps(viewer, ["tumor", "stroma"])
    assert len(steps) == 5  # text, box per class; then the classes no longer there hidden

    steps[0]()
    first = viewer.canvas.overlays[map_layers.LEGEND_KEY.format(1)]
    assert first.visible and first.text.endswith("tumor") and not first.box
    steps[1]()
    assert first.box
    for step in steps[2:]:
        step()
    assert map_layers.legend_shown(viewer) == ["tumor", "stroma"]
    assert all(viewer.canvas.overlays[map_layers.LEGEND_KEY.format(k)].box for k in (1, 2))

    map_layers.show_legend(
        viewer, ["fat"]
    )  # one class now: the same overlay, boxed, the rest hidden
    assert map_layers.legend_shown(viewer) == ["fat"] and first.box


@pytest.mark.slow
@pytest.mark.gui
def test_the_canvas_legend_names_at_most_a_dozen_classes_and_counts_the_rest(make_napari_viewer):
    viewer = make_napari_viewer()
    names = [f"class {k}" for k in range(40)]
    map_layers.show_legend(viewer, names)
    named = map_layers.CANVAS_LEGEND_MAX - 1
    assert map_layers.legend_shown(viewer) == names[:named]
    more = viewer.canvas.overlays[map_layers.LEGEND_MORE_KEY]
    assert more.visible and more.text.startswith(f"+ {40 - named} more classes")
    map_layers.show_legend(viewer, names[:3])  # few again: all named, no count
    assert map_layers.legend_shown(viewer) == names[:3] and not more.visible
    map_layers.show_legend(
        viewer, names[: map_layers.CANVAS_LEGEND_MAX]
    )  # exactly the most: all named
    assert (
        map_layers.legend_shown(viewer) == names[: map_layers.CANVAS_LEGEND_MAX]
        and not more.visible
    )
    map_layers.hide_legend(viewer)
    assert map_layers.legend_shown(viewer) == [] and not more.visible
