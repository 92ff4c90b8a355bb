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
