from __future__ import annotations

import itertools
import logging

import imagecodecs
import numpy as np
import pytest

from napari_conch.engine.options import DEFAULTS
from napari_conch.slide import make_grid, open_slide, scan_tissue, tissue_mask
from napari_conch.slide.tissue import dilate_3x3, erode_3x3, otsu_threshold

#: The tissue fraction a run keeps by default (``RunOptions.min_tissue``).
MIN_TISSUE = DEFAULTS.min_tissue


@pytest.fixture(scope="module")
def svs(svs_path):
    with open_slide(svs_path) as slide:
        yield slide


def test_svs_glass_is_skipped(svs):
    grid = make_grid(svs, tile_size=224)
    mask, fraction = tissue_mask(svs, grid, MIN_TISSUE)
    assert mask.shape == fraction.shape == (14, 10)
    assert fraction.dtype == np.float32 and 0 <= fraction.min() and fraction.max() <= 1
    # about a third of this skin section is tissue (checked by eye); glass tiles are skipped
    assert 0.25 <= mask.mean() <= 0.55
    assert not mask[:, :2].any() and not mask[:, -2:].any()  # the glass left and right
    assert mask[4, 5] and mask[8, 5]  # the epidermis in the middle
    assert np.array_equal(mask, fraction >= 0.25)


def test_svs_overlapping_grid(svs):
    grid = make_grid(svs, tile_size=224, stride=56)
    mask, fraction = tissue_mask(svs, grid, min_tissue=0.5)
    assert mask.shape == grid.shape == (50, 37)
    assert 0.15 <= mask.mean() <= 0.55
    assert mask.sum() <= (fraction >= 0.25).sum()


def test_blank_glass_has_no_tissue(tmp_path):
    import imagecodecs

    rng = np.random.default_rng(0)
    glass = (245 + rng.integers(-3, 4, size=(256, 256, 3))).astype(np.uint8)
    imagecodecs.imwrite(tmp_path / "glass.png", glass)
    slide = open_slide(tmp_path / "glass.png")
    mask, fraction = tissue_mask(slide, make_grid(slide, tile_size=64), MIN_TISSUE)
    assert not mask.any() and fraction.max() == 0


def test_tissue_everywhere_on_the_pyramid(nest_pyramid):
    with open_slide(nest_pyramid[0]) as slide:
        grid = make_grid(slide, tile_size=64)
        mask, _ = tissue_mask(slide, grid, min_tissue=0.0)
        assert mask.all()
        mask, _ = tissue_mask(slide, grid, MIN_TISSUE)
        assert mask.mean() > 0.5


def test_otsu_splits_two_modes():
    rng = np.random.default_rng(1)
    values = np.clip(
        np.concatenate([rng.normal(0.1, 0.02, 5000), rng.normal(0.6, 0.05, 2000)]), 0, 1
    )
    threshold = otsu_threshold(values)
    assert 0.15 < threshold < 0.45  # in the gap between the modes

    def between(t):
        low, high = values[values <= t], values[values > t]
        return low.size * high.size * (low.mean() - high.mean()) ** 2

    assert all(between(threshold) >= between(t) for t in np.linspace(0.05, 0.7, 27))


# --------------------------------------------------------------------------- damaged data
def _expected_damaged(grid, level_box):
    """Tiles whose level-0 box overlaps ``level_box`` (x0, y0, x1, y1) of a level-0 chunk."""
    boxes = grid.boxes()
    x0, y0, x1, y1 = level_box
    return (boxes[..., 0] < x1) & (boxes[..., 2] > x0) & (boxes[..., 1] < y1) & (boxes[..., 3] > y0)


@pytest.mark.parametrize("how", ["start", "eoi"])
def test_damaged_svs_tile_is_reported_not_fatal(tmp_path, svs_path, svs, how):
    """Garbage at the start of one JPEG tile, or a stray end marker inside it: the scan goes on."""
    from tests.slide.damage import svs_with_bad_tile

    path = svs_with_bad_tile(svs_path, tmp_path / "bad.svs", how)
    grid = make_grid(svs, tile_size=224)
    clean = scan_tissue(svs, grid, MIN_TISSUE)
    with open_slide(path) as slide:
        scan = scan_tissue(slide, grid, MIN_TISSUE)
    expected = _expected_damaged(grid, (1200, 960, 1440, 1200))  # SVS chunk 45
    np.testing.assert_array_equal(scan.damaged, expected)
    assert set(scan.reasons) == set(map(tuple, np.argwhere(expected).tolist()))
    reason = scan.reasons[(4, 5)]
    assert "rows 960:1200, columns 1200:1440" in reason and "TIFF chunk 45" in reason
    assert ("not a JPEG stream" if how == "start" else "end-of-image marker") in reason
    assert not (scan.mask & scan.damaged).any()
    # the rest of the slide is judged as before (Otsu sees almost the same cells)
    same = (scan.mask == clean.mask)[~expected]
    assert same.mean() >= 0.97 and scan.mask.sum() >= clean.mask.sum() - expected.sum() - 3
    assert clean.damaged.sum() == 0 and clean.reasons == {}


@pytest.mark.parametrize("compression", ["jpeg", "zlib"])
def test_truncated_pyramid(tmp_path, nest, compression):
    """Cut at 90 %: the coarse levels are lost, level 0 is read instead and nothing is damaged.
    Cut at 50 %: the tiles whose data is gone are damaged, the others are scanned."""
    from tests.slide.damage import truncated_pyramid

    image = np.concatenate([nest, nest[::-1]])[:1024, :384]  # 1024 x 384, tissue everywhere
    results = {}
    for fraction in (0.9, 0.5):
        path = truncated_pyramid(image, tmp_path / f"cut{fraction}.tif", fraction, compression)
        with open_slide(path) as slide:
            grid = make_grid(slide, tile_size=128)
            results[fraction] = scan_tissue(slide, grid, min_tissue=0.0)
    assert results[0.9].damaged.sum() == 0 and results[0.9].mask.all()
    half = results[0.5]
    assert 0 < half.damaged.sum() < half.damaged.size
    assert half.damaged[-1].all() and not half.damaged[0].any()  # the end of the file is gone
    np.testing.assert_array_equal(half.mask, ~half.damaged)
    assert all("ends after" in r or "JPEG data cut short" in r for r in half.reasons.values())


def test_corrupt_zarr_chunk(tmp_path, nest):
    from tests.slide.damage import zarr_with_corrupt_chunk

    path = zarr_with_corrupt_chunk(nest[:512, :384].copy(), tmp_path / "slide.zarr", (1, 1))
    slide = open_slide(path)
    grid = make_grid(slide, tile_size=64)
    scan = scan_tissue(slide, grid, min_tissue=0.0)
    expected = np.zeros(grid.shape, bool)
    expected[2:4, 2:4] = True  # the 128 px chunk (1, 1) holds tiles 2..3 x 2..3
    np.testing.assert_array_equal(scan.damaged, expected)
    assert "rows 128:256, columns 128:256" in scan.reasons[(2, 2)]
    np.testing.assert_array_equal(scan.mask, ~expected)


# --------------------------------------------------------------------------- input rules
def test_greyscale_slide_uses_darkness_and_says_so(tmp_path, svs, caplog):
    """Saturation finds nothing on a grey slide: darkness finds the same tissue, logged."""
    import imagecodecs

    rgb = svs.read_region(0, 0, 0, svs.shape[1], svs.shape[0])
    grey = np.rint(rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])).astype(np.uint8)
    imagecodecs.imwrite(tmp_path / "grey.png", grey)
    grid = make_grid(svs, tile_size=224)
    colour = scan_tissue(svs, grid, MIN_TISSUE)
    with caplog.at_level(logging.WARNING, logger="napari_conch"):
        scan = scan_tissue(open_slide(tmp_path / "grey.png"), grid, MIN_TISSUE)
    assert colour.method == "saturation" and scan.method == "darkness"
    assert any("no colour found" in r.getMessage() for r in caplog.records)
    assert scan.mask.sum() > 0.8 * colour.mask.sum()
    assert (scan.mask == colour.mask).mean() > 0.95


def test_transparent_parts_of_an_rgba_slide_are_glass(tmp_path, nest):
    import imagecodecs

    alpha = np.full((*nest.shape[:2], 1), 255, np.uint8)
    alpha[:, :256] = 0
    imagecodecs.imwrite(tmp_path / "rgba.png", np.concatenate([nest, alpha], -1))
    slide = open_slide(tmp_path / "rgba.png")
    grid = make_grid(slide, tile_size=64)
    mask, _ = tissue_mask(slide, grid, MIN_TISSUE)
    assert not mask[:, :4].any()  # columns 0..255: transparent, composited to white
    assert mask[:, 4:].mean() > 0.7
    assert (grid.read_tile(slide, 0, 0) == 255).all()


# --------------------------------------------------------------------------- odd sizes
def test_one_pixel_slide_is_one_padded_tile(tmp_path):
    import imagecodecs

    imagecodecs.imwrite(tmp_path / "one.png", np.array([[[120, 40, 90]]], np.uint8))
    slide = open_slide(tmp_path / "one.png")
    grid = make_grid(slide, tile_size=64)
    assert grid.shape == (1, 1)
    scan = scan_tissue(slide, grid, MIN_TISSUE)
    assert not scan.mask.any() and scan.fraction[0, 0] < 1 / 4000  # 1 pixel of 64 x 64
    assert scan_tissue(slide, grid, min_tissue=0.0).mask.all()
    tile = grid.read_tile(slide, 0, 0)
    assert tile.shape == (64, 64, 3) and (tile[0, 0] == [120, 40, 90]).all()
    assert (tile[1:] == 255).all()


def test_tile_larger_than_the_slide(svs):
    grid = make_grid(svs, tile_size=4096)
    assert grid.shape == (1, 1)
    scan = scan_tissue(svs, grid, min_tissue=0.0)
    # padding counts as glass: the 2220 x 2967 slide covers 39 % of the tile
    assert scan.mask.all() and 0.05 < scan.fraction[0, 0] < 0.39


def test_fixture_tissue_count_is_kept(svs):
    """52 tissue tiles of 140 on this grid since the cells became exact (14 px, not 14.06 px;
    55 before), with scikit-image's Otsu and scipy's morphology as with ours."""
    scan = scan_tissue(svs, make_grid(svs, tile_size=224), MIN_TISSUE)
    assert scan.mask.sum() == 52


def test_otsu_equals_scikit_image():
    """The same threshold as ``skimage.filters.threshold_otsu`` (installed with napari) on
    skewed, two-mode, tied and NaN-holding values."""
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(7)
    cases = [rng.random(int(rng.integers(2, 6000))).astype(np.float32) ** (3 * rng.random())
             for _ in range(150)]  # fmt: skip
    cases += [np.repeat([0.1, 0.5, 0.9], [10, 10, 10]), np.array([0.2, 0.7])]
    for values in cases:
        assert otsu_threshold(values) == float(threshold_otsu(values, nbins=256))  # exactly
    with_nan = np.array([np.nan, 0.1, 0.12, 0.8, 0.82, np.nan], np.float32)
    assert otsu_threshold(with_nan) == float(threshold_otsu(with_nan[1:-1], nbins=256))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (2, 3), (37, 29)])
def test_square_morphology_equals_scipy(shape):
    """3x3 dilation and erosion equal ``scipy.ndimage``'s with the borders the scan uses."""
    from scipy import ndimage

    square = np.ones((3, 3), bool)
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        mask = rng.random(shape) < density
        expected = ndimage.binary_dilation(mask, square, border_value=0)
        np.testing.assert_array_equal(dilate_3x3(mask), expected)
        expected = ndimage.binary_erosion(mask, square, border_value=1)
        np.testing.assert_array_equal(erode_3x3(mask), expected)


# --------------------------------------------------------------------------- progress
def _assert_same_scan(scan, reference):
    np.testing.assert_array_equal(scan.mask, reference.mask)
    np.testing.assert_array_equal(scan.fraction, reference.fraction)
    np.testing.assert_array_equal(scan.damaged, reference.damaged)
    assert scan.reasons == reference.reasons and scan.method == reference.method
    assert scan.threshold == reference.threshold


def _assert_steps_rise_to_the_total(calls):
    """From (0, total) to (total, total): done never goes back, each call brings news."""
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] > 0
    for (d0, t0), (d1, t1) in itertools.pairwise(calls):
        assert d1 >= d0 and t1 >= t0 and (d1, t1) != (d0, t0)
    assert all(d <= t for d, t in calls)


@pytest.mark.parametrize("band_cells", [None, 64])
def test_progress_steps_rise_to_the_total_and_change_nothing(svs, monkeypatch, band_cells):
    """Blocks read, colour bands (many with tiny bands), a last step; the same scan."""
    from napari_conch.slide import tissue

    grid = make_grid(svs, tile_size=224)
    reference = scan_tissue(svs, grid, MIN_TISSUE)
    if band_cells is not None:
        monkeypatch.setattr(tissue, "BAND_CELLS", band_cells)
    calls = []
    scan = scan_tissue(
        svs, grid, MIN_TISSUE, progress=lambda done, total: calls.append((done, total))
    )
    _assert_same_scan(scan, reference)
    _assert_steps_rise_to_the_total(calls)
    assert len({t for _, t in calls}) == 1  # nothing damaged: the total is known at once
    assert [d for d, _ in calls] == list(range(len(calls)))  # then one step at a time
    if band_cells is not None:  # bands of one row of cells (224 / 16 = 14 px a cell)
        assert calls[-1][1] > -(-svs.shape[0] // 14)


def test_progress_total_grows_when_a_damaged_level_is_read_again(tmp_path, nest):
    """The coarse levels of a cut pyramid are lost: the finer levels' blocks join the total."""
    from tests.slide.damage import truncated_pyramid

    image = np.concatenate([nest, nest[::-1]])[:1024, :384]
    path = truncated_pyramid(image, tmp_path / "cut.tif", 0.9, "zlib")
    with open_slide(path) as slide:
        grid = make_grid(slide, tile_size=128)
        reference = scan_tissue(slide, grid, min_tissue=0.0)
        calls = []
        scan = scan_tissue(slide, grid, 0.0, lambda done, total: calls.append((done, total)))
    _assert_same_scan(scan, reference)
    _assert_steps_rise_to_the_total(calls)
    totals = [t for _, t in calls]
    assert totals == sorted(totals) and totals[-1] > totals[0]


def test_an_error_in_progress_stops_the_scan(svs):
    grid = make_grid(svs, tile_size=224)
    calls = []

    def stop(done, total):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_tissue(svs, grid, MIN_TISSUE, progress=stop)
    assert calls == [0, 1, 2]


def test_saturation_plane_by_plane_is_the_reduction_over_channels():
    from napari_conch.slide.tissue import saturation_of

    rng = np.random.default_rng(3)
    rgb = (rng.random((64, 48, 3)) * 255).astype(np.float32)
    rgb[rng.random((64, 48)) < 0.1] = np.nan  # unreadable cells
    rgb[rng.random((64, 48)) < 0.1, 1] = np.nan  # one channel lost
    rgb[rng.random((64, 48)) < 0.1] = 0  # black
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    with np.errstate(invalid="ignore"):
        expected = np.where(high > 0, (high - low) / np.maximum(high, 1), 0.0)
    expected = np.where(np.isnan(high), np.nan, expected).astype(np.float32)
    np.testing.assert_array_equal(saturation_of(rgb), expected)
    grey = np.full((4, 4, 3), 128, np.uint8)
    np.testing.assert_array_equal(saturation_of(grey), np.zeros((4, 4), np.float32))


def test_a_scan_imports_neither_scikit_image_nor_scipy_ndimage(tmp_path):
    """Their imports cost a scan 0.3 s (a third of it on the 20k benchmark slide; scipy itself
    comes with dask)."""
    from tests.conftest import loaded_after

    image = np.full((96, 96, 3), 240, np.uint8)
    image[20:70, 30:80] = (150, 60, 120)
    imagecodecs.imwrite(tmp_path / "blob.png", image)
    code = (
        "from napari_conch.slide import make_grid, open_slide, scan_tissue\n"
        f"slide = open_slide({str(tmp_path / 'blob.png')!r})\n"
        "assert scan_tissue(slide, make_grid(slide, tile_size=16), 0.5).mask.any()\n"
    )
    assert loaded_after(code, ("skimage", "scipy.ndimage")) == []


def test_the_scan_in_bands_on_threads_gives_the_numbers_of_one_piece(svs, monkeypatch):
    """Saturation, Otsu's histogram, the closing and opening and the tiles' box sums computed in
    bands of rows on threads (row_bands) equal those computed in one piece, exactly: on noise
    with NaN cells and on the fixture slide, with bands far smaller than the 4-row halo's reach
    would forgive."""
    from napari_conch.slide import row_bands, tissue

    rng = np.random.default_rng(7)
    values = rng.random((301, 97), dtype=np.float32)
    values[rng.random(values.shape) < 0.02] = np.nan
    values[120:180, 30:70] += 0.5  # a blob, so the closing and opening have work to do

    def computed():
        grid = make_grid(svs, tile_size=64, stride=48)
        scan = scan_tissue(svs, grid, MIN_TISSUE)
        return tissue.tissue_pixels(values, 0.05), tissue.otsu_threshold(values), scan

    monkeypatch.setattr(row_bands, "THREADS", 1)
    (mask, threshold), otsu, scan = computed()
    monkeypatch.setattr(row_bands, "THREADS", 4)
    monkeypatch.setattr(row_bands, "MIN_ROWS", 9)  # bands of 9+ rows: the halo crosses several
    monkeypatch.setattr(tissue, "HISTOGRAM_PART", 1000)
    (banded_mask, banded_threshold), banded_otsu, banded_scan = computed()
    assert threshold == banded_threshold and otsu == banded_otsu
    np.testing.assert_array_equal(mask, banded_mask)
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(scan.mask, banded_scan.mask)
    np.testing.assert_array_equal(scan.fraction, banded_scan.fraction)
    assert scan.threshold == banded_scan.threshold
