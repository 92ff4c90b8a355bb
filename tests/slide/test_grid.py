from __future__ import annotations

import json

import numpy as np
import pytest

from napari_conch.errors import SlideError
from napari_conch.slide import TileGrid, make_grid, open_slide
from napari_conch.slide.resize import resize_area


def padded(array, x0, y0, size):
    out = np.full((size, size, 3), 255, np.uint8)
    part = array[max(y0, 0) : y0 + size, max(x0, 0) : x0 + size]
    out[: part.shape[0], : part.shape[1]] = part
    return out


@pytest.fixture
def slide(nest_pyramid):
    with open_slide(nest_pyramid[0]) as opened:  # 600 x 500 (H x W) at 0.25 um/px, 3 levels
        yield opened


@pytest.mark.parametrize(
    ("tile", "stride", "shape"), [(128, None, (5, 4)), (128, 32, (16, 13)), (1000, None, (1, 1))]
)
def test_counts_cover_the_image(slide, tile, stride, shape):
    grid = make_grid(slide, tile_size=tile, stride=stride)
    assert grid.shape == shape
    _, _, x1, y1 = grid.tile_box(*(n - 1 for n in shape))
    assert x1 >= 500 and y1 >= 600  # the last tiles reach the image's edge
    assert grid.level == 0 and grid.resample == 1.0 and grid.mpp == pytest.approx(0.25)


def test_boxes_at_a_level_with_overlap(slide):
    grid = make_grid(slide, level=1, tile_size=64, stride=16)
    assert grid.level_downsample == pytest.approx(2.0)
    assert grid.tile_box(2, 3) == pytest.approx((96.0, 64.0, 224.0, 192.0))
    boxes = grid.boxes()
    assert boxes.shape == (*grid.shape, 4)
    for row, col in [(0, 0), (2, 3), (grid.rows - 1, grid.cols - 1)]:
        assert tuple(boxes[row, col]) == pytest.approx(grid.tile_box(row, col))
    assert grid.cell_size_level0 == pytest.approx(32.0)
    assert grid.origin_level0 == pytest.approx((48.0, 48.0))
    assert grid.mpp == pytest.approx(0.5)


def test_read_tile_and_edge_padding(slide, nest_pyramid):
    levels = nest_pyramid[1]
    grid = make_grid(slide, level=1, tile_size=64, stride=48)
    for row, col in [(0, 0), (1, 2), (grid.rows - 1, grid.cols - 1)]:
        tile = grid.read_tile(slide, row, col)
        assert tile.shape == (64, 64, 3) and tile.dtype == np.uint8
        np.testing.assert_array_equal(tile, padded(levels[1], col * 48, row * 48, 64))
    edge = grid.read_tile(slide, grid.rows - 1, grid.cols - 1)
    assert (edge[-1, -1] == 255).all()
    with pytest.raises(IndexError):
        grid.read_tile(slide, grid.rows, 0)


@pytest.mark.parametrize(
    ("mpp", "level", "resample"),
    [
        (0.25, 0, 1.0),
        (0.249, 0, 1.0),
        (0.5, 1, 1.0),
        (0.505, 1, 1.0),
        (0.75, 1, 1.5),
        (2.0, 2, 2.0),
    ],
)
def test_level_choice_for_mpp(slide, mpp, level, resample):
    grid = make_grid(slide, mpp=mpp, tile_size=64)
    assert (grid.level, grid.resample) == (level, pytest.approx(resample))
    assert grid.mpp == pytest.approx(slide.level_mpp(level) * resample)


def test_resampled_grid(slide, nest_pyramid):
    grid = make_grid(slide, mpp=0.75, tile_size=64, stride=32)
    # level 1 is 300 x 250; in grid pixels (1.5 level px each) 200 x 166.7
    assert grid.shape == (6, 5)  # ceil((200 - 64) / 32) + 1, ceil((166.7 - 64) / 32) + 1
    assert grid.read_size == 96
    assert grid.tile_box(1, 1) == pytest.approx((96.0, 96.0, 288.0, 288.0))
    tile = grid.read_tile(slide, 1, 1)
    source = nest_pyramid[1][1][48:144, 48:144]  # tile (1, 1) starts at 32 * 1.5 = 48
    np.testing.assert_array_equal(tile, resize_area(source, 64))
    assert abs(tile.mean() - source.mean()) < 1.0


def test_mpp_errors(slide, ihc_path):
    with pytest.raises(SlideError, match=r"finer than the slide's full resolution \(0.25 um/px\)"):
        make_grid(slide, mpp=0.1, tile_size=448)
    with pytest.raises(SlideError, match="give a level or an mpp for the tile grid, not both"):
        make_grid(slide, level=0, mpp=0.5, tile_size=448)
    with pytest.raises(SlideError, match="level 5 does not exist"):
        make_grid(slide, level=5, tile_size=448)
    with pytest.raises(SlideError, match="requested microns per pixel -1 must be positive"):
        make_grid(slide, mpp=-1, tile_size=448)
    with pytest.raises(SlideError, match="tile size must be a positive integer, got 0"):
        make_grid(slide, tile_size=0)
    with pytest.raises(SlideError, match=r"stride must be a positive integer, got 12\.5"):
        make_grid(slide, stride=12.5, tile_size=448)
    no_mpp = open_slide(ihc_path)
    with pytest.raises(SlideError, match=r"ihc\.png: the slide has no microns-per-pixel.*level"):
        make_grid(no_mpp, mpp=0.5, tile_size=448)
    grid = make_grid(no_mpp, level=0, tile_size=100)
    assert grid.mpp is None and grid.shape == (6, 6)


@pytest.mark.slow
def test_odd_sizes_are_one_line_errors_or_one_tile(slide):
    """The slide is 600 x 500 px at 0.25 um/px, its coarsest level 1 um/px."""
    with pytest.raises(SlideError, match=r"tile size 100000 px is too large \(at most 8192 px"):
        make_grid(slide, tile_size=100000)
    with pytest.raises(SlideError, match=r"stride 9000 px is too large"):
        make_grid(slide, tile_size=64, stride=9000)
    with pytest.raises(SlideError, match=r"at 1e\+06 um/px the whole slide .* smaller than one"):
        make_grid(slide, mpp=1e6, tile_size=448)
    with pytest.raises(SlideError, match=r"needs 12800 x 12800 px of level 2.*at most 64 or"):
        make_grid(slide, mpp=100, tile_size=128)  # 1.5 x 1.25 px, but one tile reads too much
    grid = make_grid(slide, tile_size=8192)  # larger than the slide: one tile, padded
    assert grid.shape == (1, 1) and grid.read_size == 8192
    grid = make_grid(slide, mpp=100, tile_size=64)  # 1.5 x 1.25 px: one tile
    assert grid.shape == (1, 1) and grid.read_size == 6400
    tile = grid.read_tile(slide, 0, 0)
    assert tile.shape == (64, 64, 3) and (tile[2:] == 255).all()


def test_dict_round_trip(slide):
    grid = make_grid(slide, mpp=0.75, tile_size=64, stride=16)
    restored = TileGrid.from_dict(json.loads(json.dumps(grid.to_dict())))
    assert restored == grid
    assert restored != make_grid(slide, mpp=0.75, tile_size=64, stride=32)
