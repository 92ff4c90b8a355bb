"""Block-by-block low-resolution images: exact cell means, damage kept local, bounded reads."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from napari_conch.slide import open_slide
from napari_conch.slide.lowres import bin_sums, read_low_resolution, read_region_reduced


def cell_means(image: np.ndarray, step: int) -> np.ndarray:
    """Brute force: the mean of every ``step`` x ``step`` cell (edge cells smaller)."""
    h, w = image.shape[:2]
    out = np.zeros((-(-h // step), -(-w // step), 3))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = image[i * step : (i + 1) * step, j * step : (j + 1) * step].mean((0, 1))
    return out


@pytest.mark.parametrize(
    ("y0", "x0", "step"),
    [(0, 0, 1), (0, 0, 2), (1, 1, 2), (5, 3, 4), (7, 0, 7), (0, 2, 50), (0, 0, 23), (22, 30, 8)],
)
def test_bin_sums_at_any_offset(y0, x0, step):
    pixels = np.random.default_rng(0).integers(0, 256, (23, 31, 3), np.uint8)
    cy, cx, sums, counts = bin_sums(pixels, y0, x0, step)
    assert (cy, cx) == (y0 // step, x0 // step)
    canvas = np.zeros((y0 + 23, x0 + 31, 3), np.float64)
    canvas[y0:, x0:] = pixels
    seen = np.zeros(canvas.shape[:2])
    seen[y0:, x0:] = 1
    for i in range(sums.shape[0]):
        for j in range(sums.shape[1]):
            rows = slice((cy + i) * step, (cy + i + 1) * step)
            cols = slice((cx + j) * step, (cx + j + 1) * step)
            np.testing.assert_allclose(sums[i, j], canvas[rows, cols].sum((0, 1)))
            assert counts[i, j] == seen[rows, cols].sum()


def test_low_resolution_equals_brute_force(tmp_path, nest):
    imagecodecs.imwrite(tmp_path / "n.png", nest)
    slide = open_slide(tmp_path / "n.png")  # 600 x 500, one level
    low = read_low_resolution(slide, 7)
    assert (low.level, low.step) == (0, 7) and low.rgb.shape == (86, 72, 3)
    np.testing.assert_allclose(low.rgb, cell_means(nest, 7), atol=1e-3)
    assert not low.damaged.any() and low.reasons == {}
    rows, cols = low.cell_sides()
    assert rows.sum() == 600 and cols.sum() == 500 and rows[-1] == 600 - 85 * 7


def test_a_damaged_chunk_is_left_out_and_reported(tmp_path, nest):
    from tests.slide.damage import zarr_with_corrupt_chunk

    image = nest[:512, :384].copy()
    slide = open_slide(zarr_with_corrupt_chunk(image, tmp_path / "s.zarr", (2, 1)))
    low = read_low_resolution(slide, 16)
    assert low.chunk == (128, 128)
    assert np.argwhere(low.damaged).tolist() == [[2, 1]]
    assert "rows 256:384, columns 128:256" in low.reasons[(2, 1)]
    bad = np.zeros(low.rgb.shape[:2], bool)
    bad[16:24, 8:16] = True  # the chunk's cells
    assert np.isnan(low.rgb[bad]).all() and np.isfinite(low.rgb[~bad]).all()
    np.testing.assert_allclose(low.rgb[~bad], cell_means(image, 16)[~bad], atol=1e-3)


def test_region_reduced_is_an_area_mean_within_bounded_bands(tmp_path, nest):
    imagecodecs.imwrite(tmp_path / "n.png", nest)
    slide = open_slide(tmp_path / "n.png")
    small = read_region_reduced(slide, 0, 10, 20, 490, 580, 6)
    assert small.shape == (97, 82, 3) and small.dtype == np.uint8
    expected = cell_means(nest[20:600, 10:500], 6)
    assert np.abs(small - expected).max() <= 0.5 + 1e-6
