"""Pictures of maps over slides (the headless demo's PNG)."""

from __future__ import annotations

import numpy as np

from napari_conch.engine.overlap import MapGeometry
from napari_conch.engine.render import cells_at, colorize, overlay, thumbnail
from napari_conch.slide import open_slide


def test_cells_under_pixels_follow_the_geometry():
    geometry = MapGeometry(shape=(2, 3), cell_size=10.0, origin=(5.0, 0.0))
    rows, cols, inside = cells_at(geometry, (4, 8), pixel_size=5.0)
    # pixel centres at 2.5, 7.5, ...: row 0 starts at y = 5, so pixel row 0 lies above the map
    assert not inside[0].any() and inside[1:, :6].all() and not inside[:, 6:].any()
    assert rows[1, 0] == 0 and rows[3, 0] == 1 and cols[0, 1] == 0 and cols[0, 2] == 1


def test_colorize_stretches_and_skips_nan():
    rgb = colorize(np.array([[0.1, 0.3], [np.nan, 0.2]], np.float32))
    assert (rgb[1, 0] == 0).all()
    assert rgb[0, 1].sum() > rgb[1, 1].sum() > rgb[0, 0].sum()


def test_overlay_paints_only_computed_cells():
    image = np.full((4, 4, 3), 200, np.uint8)
    geometry = MapGeometry(shape=(2, 2), cell_size=2.0, origin=(0.0, 0.0))
    values = np.array([[1.0, np.nan], [0.0, 0.5]], np.float32)
    out = overlay(image, 1.0, geometry, values=values)
    assert (out[:2, 2:] == 200).all()  # NaN cell untouched
    assert not (out[:2, :2] == 200).all()
    labels = np.array([[0, 1], [2, 1]], np.int32)
    out = overlay(image, 1.0, geometry, labels=labels)
    assert (out[:2, :2] == 200).all() and not (out[2:, :2] == 200).all()


def test_thumbnail_of_the_real_slide(svs_path):
    slide = open_slide(svs_path)
    image, pixel_size = thumbnail(slide, max_side=256)
    assert image.dtype == np.uint8 and max(image.shape[:2]) <= 256
    assert abs(image.shape[0] * pixel_size - slide.shape[0]) <= pixel_size
