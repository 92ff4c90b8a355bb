"""Maps as pyramidal OME-TIFFs laid over the slide: read back with tifffile, placed by the grid."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile

from napari_conch.engine.export.map_tiff import (
    SlideFrame,
    map_pixel_size,
    open_map,
    parse_map_scale,
)
from napari_conch.engine.export.writers import export_result, read_tiff_metadata
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.errors import InputError
from napari_conch.slide import TileGrid

#: A 640 x 900 level-0 slide, a grid at level 1 (downsample 2): tiles 64, stride 32 (overlap).
SLIDE = (640, 900)
GRID = TileGrid(1, 2.0, 1.0, 64, 32, 9, 13, (320, 450))


def result(names=("tumor", "stroma")):
    rng = np.random.default_rng(len(names))
    emb = rng.normal(size=(*GRID.shape, 8)).astype(np.float32)
    emb[0, 0] = emb[4, 7] = np.nan  # tiles not computed
    q = rng.normal(size=(len(names), 8))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    return run_query(QueryIndex(emb), list(names), q, GRID, logit_scale=20.0)


def ome_pixels(path) -> dict:
    with tifffile.TiffFile(path) as tif:
        root = ET.fromstring(tif.ome_metadata)
    return next(el for el in root.iter() if el.tag.endswith("}Pixels"))


@pytest.mark.parametrize("scale", [8, "full"])
def test_map_pixels_cover_the_cells_the_grid_says(tmp_path, scale):
    res = result()
    frame = SlideFrame(SLIDE, (1.0, 2.0, 8.0), mpp=0.25)
    path = export_result(tmp_path / "map.tif", res, GRID, map_scale=scale, frame=frame)
    s = 8 if scale == 8 else 1
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        data = series.asarray()
        shapes = [level.shape for level in series.levels]
        page = tif.pages[0]
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        num, den = page.tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / (0.25 * s), rel=1e-6)  # pixels per cm
    height, width = math.ceil(SLIDE[0] / s), math.ceil(SLIDE[1] / s)
    assert data.shape == (3, height, width) and data.dtype == np.float32
    assert shapes[0] == (3, height, width) and max(shapes[-1][1:]) <= 512
    for finer, coarser in itertools.pairwise(shapes):
        assert coarser[1:] == tuple(math.ceil(n / 2) for n in finer[1:])
    pixels = ome_pixels(path)
    assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.25 * s)
    assert pixels.get("PhysicalSizeXUnit") == "µm"
    planes = [el for el in pixels if el.tag.endswith("}Plane")]
    assert len(planes) == 3 and all(float(p.get("PositionX")) == 0.0 for p in planes)

    # every cell's level-0 box is filled with that cell's value, everything else is NaN
    cells, channels = res.cell_map()
    covered = np.zeros((height, width), bool)
    for i in range(res.geometry.shape[0]):
        for j in range(res.geometry.shape[1]):
            x0, y0, x1, y1 = (v / s for v in res.geometry.cell_box(i, j))
            region = data[:, int(y0) : int(y1), int(x0) : int(x1)]
            expected = np.broadcast_to(cells[:, i, j, None, None], region.shape)
            np.testing.assert_array_equal(region, expected)
            covered[int(y0) : int(y1), int(x0) : int(x1)] = True
    assert np.isnan(data[:, ~covered]).all() and covered.any() and not covered.all()
    meta = read_tiff_metadata(path)
    assert meta["channels"] == channels and meta["map"]["pixel_size_level0"] == s
    assert meta["map"]["origin_level0_yx"] == [0.0, 0.0] and meta["mpp_level0"] == 0.25


def test_one_prompt_without_mpp_has_no_physical_size(tmp_path):
    res = result(("tumor",))
    path = export_result(tmp_path / "one.ome.tif", res, GRID, map_scale=4)
    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.NONE
        num, den = tags["XResolution"].value
        assert num / den == pytest.approx(1 / 4)  # map pixels per level-0 pixel
    assert data.shape == (160, 225)  # the grid's level (320 x 450) times 2, over 4
    assert ome_pixels(path).get("PhysicalSizeX") is None
    np.testing.assert_array_equal(open_map(path).cell_values()[0], res.cell_cosine[0])


def test_auto_scale_takes_the_slide_level_of_8_to_16():
    def frame(*downsamples):
        return SlideFrame((1000, 1000), downsamples)

    assert map_pixel_size("auto", frame(1.0, 4.0, 16.0, 64.0)) == 16
    assert map_pixel_size("auto", frame(1.0, 2.0, 4.0, 8.0, 16.0, 32.0)) == 16
    assert map_pixel_size("auto", frame(1.0, 2.0, 4.0, 8.0001, 32.0)) == 8
    assert map_pixel_size("auto", frame(1.0, 4.0, 32.0)) == 8  # no level in 8-16
    assert map_pixel_size("auto", frame(1.0)) == 8  # a flat slide
    assert map_pixel_size("full", frame(1.0, 4.0)) == 1
    assert map_pixel_size("2.5", frame(1.0)) == 2.5


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "nan", "inf", ""])
def test_a_bad_map_scale_is_one_line(bad):
    with pytest.raises(InputError, match="map scale") as info:
        parse_map_scale(bad)
    assert "\n" not in str(info.value)


def test_tile_scale_keeps_the_one_pixel_per_cell_tiff(tmp_path):
    res = result()
    path = export_result(tmp_path / "cells.tif", res, GRID, mpp=0.25, map_scale="tile")
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_ome
        np.testing.assert_array_equal(tif.asarray(), res.cell_map()[0])


def test_open_map_refuses_another_tiff(tmp_path):
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((8, 8), np.float32))
    with pytest.raises(InputError, match="not a napari-conch map"):
        open_map(other)
