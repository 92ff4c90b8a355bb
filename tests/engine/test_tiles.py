"""The tile reader: order of the tiles, and damaged tiles reported with their reason."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.tiles import TileReader, tile_order
from napari_conch.errors import InputError
from napari_conch.slide import make_grid, open_slide


def test_a_damaged_tile_is_failed_with_its_reason_and_the_rest_is_read(tmp_path, svs_path):
    from tests.slide.damage import svs_with_bad_tile

    path = svs_with_bad_tile(svs_path, tmp_path / "bad.svs", "eoi")  # decodes "fine" otherwise
    with open_slide(path) as slide, open_slide(svs_path) as clean:
        grid = make_grid(slide, tile_size=256)
        rows, cols = tile_order(np.ones(grid.shape, bool), grid)
        with TileReader(slide, grid, num_readers=2) as reader:
            batches = list(reader.batches(rows, cols, batch_size=16))
        failed = [f for b in batches for f in b.failed]
        # chunk 45 (rows 960:1200, columns 1200:1440) lies in tiles (3..4, 4..5) of 256 px
        assert sorted((r, c) for r, c, _ in failed) == [(3, 4), (3, 5), (4, 4), (4, 5)]
        for _, _, reason in failed:
            assert "bad.svs" in reason and "TIFF chunk 45" in reason and "\n" not in reason
            assert "end-of-image marker" in reason
        good = sum(len(b.rows) for b in batches)
        assert good == grid.rows * grid.cols - 4
        first = batches[0]
        np.testing.assert_array_equal(
            first.tiles[0], grid.read_tile(clean, int(first.rows[0]), int(first.cols[0]))
        )


def test_failure_reasons_are_one_line():
    from napari_conch.engine.tiles import failure_reason
    from napari_conch.errors import SlideError

    assert failure_reason(SlideError("s.svs: cannot read level 0 (bad)")) == (
        "s.svs: cannot read level 0 (bad)"
    )
    assert failure_reason(OSError("JPEG decode\nerror")) == "OSError: JPEG decode error"
    assert failure_reason(MemoryError()) == "MemoryError"


def test_reader_refuses_bad_numbers(svs_path):
    with open_slide(svs_path) as slide:
        grid = make_grid(slide, tile_size=256)
        with pytest.raises(InputError, match="num_readers=0"):
            TileReader(slide, grid, num_readers=0)
        with TileReader(slide, grid) as reader, pytest.raises(InputError, match="batch_size=0"):
            list(reader.batches(np.zeros(1, int), np.zeros(1, int), 0))


class CountingSlide:
    """The real slide, counting the regions read."""

    def __init__(self, slide):
        self._slide, self.reads = slide, 0

    def __getattr__(self, name):
        return getattr(self._slide, name)

    def read_region(self, level, x0, y0, w, h):
        self.reads += 1
        return self._slide.read_region(level, x0, y0, w, h)


class OddGrid:
    """The real grid, except that tile ``odd`` comes back a pixel too wide."""

    def __init__(self, grid, odd):
        self._grid, self._odd = grid, odd

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def read_tile(self, slide, row, col):
        tile = self._grid.read_tile(slide, row, col)
        return np.pad(tile, ((0, 0), (0, 1), (0, 0))) if (row, col) == self._odd else tile


def test_reads_stay_a_bounded_number_of_batches_ahead(svs_path):
    import time

    with open_slide(svs_path) as real:
        grid = make_grid(real, tile_size=64)
        slide = CountingSlide(real)
        rows, cols = tile_order(np.ones(grid.shape, bool), grid)
        with TileReader(slide, grid, num_readers=2, prefetch=8) as reader:
            batches = reader.batches(rows, cols, batch_size=4)
            next(batches)  # the consumer holds one batch and waits
            time.sleep(0.5)
            assert slide.reads <= 4 * (1 + max(2, 8 // 4))  # held + read ahead, no more
        assert len(rows) > 100


def test_a_tile_of_the_wrong_shape_fails_alone(svs_path):
    with open_slide(svs_path) as slide:
        grid = OddGrid(make_grid(slide, tile_size=256), odd=(0, 1))
        rows, cols = tile_order(np.ones(grid.shape, bool), grid)
        with TileReader(slide, grid) as reader:
            first = next(reader.batches(rows[:4], cols[:4], batch_size=4))
        assert [(r, c) for r, c, _ in first.failed] == [(0, 1)]
        assert "unexpected tile of shape (256, 257, 3)" in first.failed[0][2]
        assert first.tiles.shape == (3, 256, 256, 3)
        assert (0, 1) not in zip(first.rows.tolist(), first.cols.tolist(), strict=True)
