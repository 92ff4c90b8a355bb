"""Coloured maps (``map_render="rgb"``) read back with tifffile and OpenSlide: size, pixel size
and map pixel (i, j) covering the slide region the tile grid says."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import tifffile

from napari_conch.engine.export.map_rgb import DESCRIPTION_PREFIX, cell_colours, parse_map_render
from napari_conch.engine.export.map_tiff import SlideFrame
from napari_conch.engine.export.writers import export_result, label_color
from napari_conch.errors import InputError
from napari_conch.slide.openslide_slide import openslide_available
from tests.engine.export.test_map_tiff import GRID, SLIDE, result

MPP = 0.25
needs_openslide = pytest.mark.skipif(
    not openslide_available(),
    reason="the openslide extra is not installed (napari-conch[openslide])",
)


def write(tmp_path, names=("tumor", "stroma"), scale=8):
    res = result(names)
    frame = SlideFrame(SLIDE, (1.0, 2.0, 8.0), mpp=MPP)
    path = export_result(
        tmp_path / "map.tif", res, GRID, map_scale=scale, frame=frame, map_render="rgb"
    )
    return res, path


def check_cells(res, data: np.ndarray, s: float) -> None:
    """Every cell's level-0 box holds that cell's colour; the rest is transparent."""
    colours = cell_colours(res)
    covered = np.zeros(data.shape[:2], bool)
    for i in range(res.geometry.shape[0]):
        for j in range(res.geometry.shape[1]):
            x0, y0, x1, y1 = (int(v / s) for v in res.geometry.cell_box(i, j))
            region = data[y0:y1, x0:x1]
            assert region.size
            np.testing.assert_array_equal(region, np.broadcast_to(colours[:, i, j], region.shape))
            covered[y0:y1, x0:x1] = True
    assert (data[~covered] == 0).all() and covered.any() and not covered.all()


@pytest.mark.parametrize("names", [("tumor", "stroma"), ("tumor",)])
def test_rgb_map_read_back_with_tifffile_covers_the_cells_the_grid_says(tmp_path, names):
    res, path = write(tmp_path, names)
    s = 8
    height, width = math.ceil(SLIDE[0] / s), math.ceil(SLIDE[1] / s)
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        data = pages[0].asarray()
        shapes = [p.shape for p in pages]
        assert pages[0].tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        num, den = pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / (MPP * s), rel=1e-6)
        assert pages[0].description.startswith(DESCRIPTION_PREFIX)
        described = json.loads(pages[0].description[len(DESCRIPTION_PREFIX) :])
        assert [p.subfiletype for p in pages] == [0] + [1] * (len(pages) - 1)
    assert data.shape == (height, width, 4) and data.dtype == np.uint8
    assert described["map"]["render"] == "rgb" and described["map"]["pixel_size_level0"] == s
    for finer, coarser in itertools.pairwise(shapes):
        assert coarser[:2] == tuple(math.ceil(n / 2) for n in finer[:2])
    check_cells(res, data, s)
    if len(names) > 1:  # labels in the export's colours, label 0 transparent
        shown = res.cell_labels > 0
        r, c = np.argwhere(shown)[0]
        assert tuple(cell_colours(res)[:3, r, c]) == label_color(res.cell_labels[r, c])


@needs_openslide
def test_rgb_map_read_back_with_openslide_at_the_slides_geometry(tmp_path):
    import openslide

    res, path = write(tmp_path)
    s = 8
    with tifffile.TiffFile(path) as tif:
        pages = [p.asarray() for p in tif.pages]
    assert openslide.OpenSlide.detect_format(str(path)) == "generic-tiff"
    with openslide.OpenSlide(str(path)) as osr:
        assert osr.level_dimensions == tuple((p.shape[1], p.shape[0]) for p in pages)
        assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(MPP * s)
        assert float(osr.properties["openslide.mpp-y"]) == pytest.approx(MPP * s)
        # slide size = map size x map pixel size x MPP, as a viewer places it
        width, height = osr.dimensions
        assert (height * s, width * s) == tuple(math.ceil(n / s) * s for n in SLIDE)
        rgba = np.asarray(osr.read_region((0, 0), 0, osr.dimensions))
    # OpenSlide returns premultiplied-then-unpremultiplied colour: where opaque, the file's own
    opaque = pages[0][..., 3] == 255
    np.testing.assert_array_equal(rgba[opaque], pages[0][opaque])
    assert (rgba[..., 3][~opaque] == 0).all()
    data = rgba.copy()
    data[~opaque] = 0
    check_cells(res, data, s)


def test_rgb_needs_a_map_scale_other_than_tile(tmp_path):
    with pytest.raises(InputError, match="map render rgb needs a map scale other than tile"):
        export_result(tmp_path / "m.tif", result(), GRID, map_scale="tile", map_render="rgb")
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.parametrize("bad", ["png", "", None, 3])
def test_a_bad_map_render_is_one_line(bad):
    with pytest.raises(InputError, match="expected float or rgb"):
        parse_map_render(bad)


def test_the_cli_refuses_rgb_with_tile_before_loading_anything(tmp_path, capsys):
    from napari_conch.cli import main

    argv = ["query", str(tmp_path / "no-store"), "--prompt", "tumor", "--out"]
    code = main([*argv, str(tmp_path / "m.tif"), "--map-scale", "tile", "--map-render", "rgb"])
    assert code == 2
    assert "--map-render rgb needs a --map-scale other than tile" in capsys.readouterr().err


@pytest.mark.parametrize(("scale", "s"), [(8, 8), ("full", 1)])  # one level, two levels
def test_the_napari_reader_opens_the_rgb_map_where_it_puts_the_float_map(tmp_path, scale, s):
    from napari_conch._napari.reader import get_reader, read_map, read_rgb_map

    res, path = write(tmp_path, scale=scale)
    floats = export_result(tmp_path / "float.tif", res, GRID, map_scale=scale,
                           frame=SlideFrame(SLIDE, (1.0, 2.0, 8.0), mpp=MPP))  # fmt: skip
    assert get_reader(str(path)) is read_rgb_map
    [(data, kwargs, kind)] = read_rgb_map(str(path))
    _, placed, _ = read_map(str(floats))[0]
    assert kind == "image" and kwargs["rgb"] and kwargs["multiscale"] == isinstance(data, list)
    assert kwargs["scale"] == pytest.approx(placed["scale"])
    assert kwargs["translate"] == pytest.approx(placed["translate"])
    assert kwargs["scale"] == pytest.approx((MPP * s, MPP * s))
    assert kwargs["multiscale"] == (scale == "full")
    finest = data[0] if isinstance(data, list) else data
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(np.asarray(finest), tif.pages[0].asarray())
