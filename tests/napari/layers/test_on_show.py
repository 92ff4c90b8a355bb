"""The canvas and docks describe the map on show (the topmost visible map layer)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.layers import map_layers, on_show

pytestmark = pytest.mark.gui

WAIT_MS = 5_000


@pytest.fixture
def maps(make_napari_viewer):
    """A viewer with a similarity map under a labels map, both described, and its follower."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="slide")
    heat = viewer.add_image(np.random.default_rng(0).random((8, 8)), name=map_layers.HEATMAP)
    on_show.describe_range(heat, "similarity of 'stroma'", "inferno", 0.12, 0.31)
    labels = viewer.add_labels(np.ones((8, 8), np.uint8), name=map_layers.LABELS)
    on_show.describe_classes(labels, ["tumor", "stroma"])
    follower = on_show.follow(viewer)
    follower.refresh()
    return viewer, follower


@pytest.mark.slow
def test_the_canvas_follows_the_map_the_user_shows(maps, qtbot):
    viewer, follower = maps
    assert on_show.follow(viewer) is follower  # one per viewer
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)
    assert on_show.caption_shown(viewer) is None
    seen = []
    follower.changed.connect(seen.append)
    viewer.layers[map_layers.LABELS].visible = False  # the user unticks the labels' eye
    qtbot.waitUntil(lambda: on_show.caption_shown(viewer) is not None, timeout=WAIT_MS)
    assert on_show.caption_shown(viewer) == (
        "similarity of 'stroma': 0.120 (black) to 0.310 (yellow)"
    )
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == [], timeout=WAIT_MS)
    assert seen[-1] is viewer.layers[map_layers.HEATMAP]
    viewer.layers[map_layers.HEATMAP].visible = False  # no map visible: the canvas says nothing
    qtbot.waitUntil(lambda: on_show.caption_shown(viewer) is None, timeout=WAIT_MS)
    assert seen[-1] is None and map_layers.legend_shown(viewer) == []
    viewer.layers[map_layers.LABELS].visible = True
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)


@pytest.mark.slow
def test_a_map_moved_on_top_is_the_one_described(maps, qtbot):
    viewer, _ = maps
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)
    viewer.layers.move(viewer.layers.index(map_layers.HEATMAP), len(viewer.layers))
    qtbot.waitUntil(lambda: on_show.caption_shown(viewer) is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == [], timeout=WAIT_MS)
    viewer.layers.remove(map_layers.HEATMAP)  # nothing drawn: no GL context involved
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)
    assert on_show.caption_shown(viewer) is None  # hidden first, then the legend shown


def test_a_range_map_on_show_has_a_colour_bar_on_the_canvas(maps, qtbot):
    viewer, _ = maps
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)
    assert on_show.colorbar_shown(viewer) == []  # a labels map: the legend, no colour bar
    heat = viewer.layers[map_layers.HEATMAP]
    viewer.layers[map_layers.LABELS].visible = False
    inferno = on_show.colorbar_colors("inferno")
    qtbot.waitUntil(lambda: on_show.colorbar_shown(viewer) == inferno, timeout=WAIT_MS)
    assert len(inferno) == on_show.COLORBAR_ROWS >= 3
    top, bottom = inferno[0], inferno[-1]
    assert top[0] > 200 and top[1] > 200 and max(bottom) < 40  # yellow on top, black under
    last = on_show.COLORBAR_KEY.format(on_show.COLORBAR_ROWS - 1)
    qtbot.waitUntil(lambda: viewer.canvas.overlays[last].box, timeout=WAIT_MS)
    framed = viewer.canvas.overlays[last]  # the black end, framed
    assert np.allclose(framed.box_color, on_show.COLORBAR_FRAME)
    keys = list(viewer.canvas.overlays)
    # napari stacks the overlays of a corner in this order: the bar under the caption
    assert keys.index(on_show.CAPTION_KEY) < keys.index(on_show.COLORBAR_KEY.format(0))
    # another map on show: its colours; the map hidden: no bar
    on_show.describe_range(heat, "probability of 'tumor'", "viridis", 0.0, 1.0)
    viewer.layers.move(viewer.layers.index(map_layers.HEATMAP), 0)
    viewer.layers.move(viewer.layers.index(map_layers.HEATMAP), len(viewer.layers))
    viridis = on_show.colorbar_colors("viridis")
    qtbot.waitUntil(lambda: on_show.colorbar_shown(viewer) == viridis, timeout=WAIT_MS)
    heat.visible = False
    qtbot.waitUntil(lambda: on_show.colorbar_shown(viewer) == [], timeout=WAIT_MS)
    # shown again at once: the steps of the follows before (hiding the legend) are dropped
    viewer.layers[map_layers.LABELS].visible = True
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)
    qtbot.wait(500)  # no older step hides a line afterwards
    assert map_layers.legend_shown(viewer) == ["tumor", "stroma"]
    assert on_show.colorbar_shown(viewer) == [] and on_show.caption_shown(viewer) is None


def test_the_dock_key_of_each_kind_of_map(maps):
    viewer, _ = maps
    key = on_show.dock_html(viewer.layers[map_layers.HEATMAP])
    assert key.startswith("similarity of 'stroma': 0.120 to 0.310<br>") and "bgcolor" in key
    key = on_show.dock_html(viewer.layers[map_layers.LABELS])
    assert "tumor" in key and "stroma" in key and "similarity" not in key
    assert on_show.dock_html(viewer.layers["slide"]) == on_show.dock_html(None) == ""


@pytest.mark.slow
def test_learned_colours_are_the_legend_colours(maps, qtbot):
    viewer, _ = maps
    on_show.describe_classes(
        viewer.layers[map_layers.LABELS], ["a", "b"], [(255, 0, 0), (0, 0, 255)]
    )
    on_show.follow(viewer).refresh()
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["a", "b"], timeout=WAIT_MS)
    second = viewer.canvas.overlays[map_layers.LEGEND_KEY.format(2)]
    np.testing.assert_allclose(second.color, (0, 0, 1, 1))
