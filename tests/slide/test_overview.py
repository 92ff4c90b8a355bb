"""Flat TIFFs of any size: read lazily (tiles, strips, one uncompressed strip), overview cached."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_conch.slide import open_slide
from napari_conch.slide import overview as ov


@pytest.fixture
def small_overview(monkeypatch, tmp_path):
    """Overviews for anything longer than 200 px, blocks of 64 x 128, cache under tmp_path."""
    monkeypatch.setattr(ov, "OVERVIEW_SIDE", 200)
    monkeypatch.setattr(ov, "BLOCK_ROWS", 64)
    monkeypatch.setattr(ov, "BLOCK_COLUMNS", 128)
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "overviews"


def area_mean(image: np.ndarray, f: int) -> np.ndarray:
    """Mean over f x f cells, edge cells averaging what they hold."""
    h, w = image.shape[:2]
    rows, cols = -(-h // f), -(-w // f)
    padded = np.full((rows * f, cols * f, 3), np.nan)
    padded[:h, :w] = image
    return np.nanmean(padded.reshape(rows, f, cols, f, 3), axis=(1, 3))


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout",
    [{"tile": (64, 64), "compression": "zlib"}, {"compression": "zlib", "rowsperstrip": 16}, {}],
    ids=["tiled", "strips", "one-uncompressed-strip"],
)
def test_a_flat_tiff_reads_lazily_and_gets_a_cached_overview(
    tmp_path, small_overview, monkeypatch, layout
):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (900, 1000, 3), dtype=np.uint8)
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, image, photometric="rgb", **layout)

    slide = open_slide(path)
    assert slide.level_count == 3  # 900 x 1000, then 225 x 250, then 57 x 63
    assert [slide.level_shape(i) for i in range(3)] == [(900, 1000), (225, 250), (57, 63)]
    assert slide.downsamples[1] == pytest.approx(4.0, rel=0.01)
    np.testing.assert_array_equal(slide.read_region(0, 333, 517, 70, 90), image[517:607, 333:403])
    level1 = area_mean(image, 4)
    np.testing.assert_allclose(slide.read_region(1, 0, 0, 250, 225), level1, atol=0.51)
    assert np.abs(np.asarray(slide.levels[2]).astype(float) - area_mean(image, 16)).max() <= 1.5
    if not layout:  # one uncompressed strip: memory-mapped, chunked, never decoded whole
        assert isinstance(slide._readers[0]._array, np.memmap)
    (cached,) = small_overview.iterdir()
    assert cached.name == f"{slide.fingerprint}.zarr"
    slide.close()

    def never(*args):
        raise AssertionError("the overview was made again")

    monkeypatch.setattr(ov, "_build", never)
    again = open_slide(path)  # the cache serves the second opening
    assert again.level_count == 3 and again.fingerprint == slide.fingerprint
    np.testing.assert_array_equal(np.asarray(again.levels[1]), np.asarray(slide.levels[1]))
    again.close()


def test_a_changed_file_gets_a_new_overview_and_a_small_one_none(tmp_path, small_overview):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, np.full((300, 400, 3), 10, np.uint8), photometric="rgb")
    first = open_slide(path)
    assert int(np.asarray(first.levels[1]).max()) == 10
    first.close()
    tifffile.imwrite(path, np.full((300, 400, 3), 200, np.uint8), photometric="rgb")
    second = open_slide(path)
    assert second.fingerprint != first.fingerprint
    assert int(np.asarray(second.levels[1]).min()) == 200  # not the old overview
    assert len(list(small_overview.iterdir())) == 2
    second.close()
    tifffile.imwrite(small := tmp_path / "small.tif", np.zeros((150, 200, 3), np.uint8))
    assert open_slide(small).level_count == 1  # nothing to add


def test_an_unreadable_block_leaves_the_slide_without_overview(
    tmp_path, small_overview, monkeypatch, caplog
):
    path = tmp_path / "flat.tif"
    tifffile.imwrite(path, np.zeros((300, 400, 3), np.uint8), photometric="rgb", tile=(64, 64))

    def broken(self, *args):
        raise OSError("disk went away")

    monkeypatch.setattr(ov.Slide, "read_region", broken)
    slide = open_slide(path)
    assert slide.level_count == 1
    assert "no overview made (disk went away)" in caplog.text
    assert not small_overview.exists() or list(small_overview.iterdir()) == []
