"""Embedding damaged and odd slides to the end: damaged tiles FAILED with a reason, the rest DONE.

Each test builds a real damaged file (tests/slide/damage.py) and runs the real embedding loop
with the tiny reference model.
"""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from napari_conch.engine.embed import embed_slide, open_store
from napari_conch.engine.options import DEFAULTS
from napari_conch.engine.store.embedding_store import TileStatus
from napari_conch.errors import InputError
from napari_conch.slide import make_grid, open_slide, scan_tissue
from tests.conftest import require_fixture


@pytest.fixture(scope="module")
def nest() -> np.ndarray:
    """A 600 x 500 RGB crop of the real H&E image (as tests/slide/conftest.py's)."""
    image = imagecodecs.imread(require_fixture("images/hgsc_nest.jpg"))
    return np.ascontiguousarray(image[300:900, 200:700])


def run(slide, model, grid, root, **options):
    store = open_store(slide, model, grid, root)
    return store, embed_slide(slide, model, grid, store, batch_size=16, **options)


def check_outcome(store, summary, expected_failed):
    """Failed tiles are exactly ``expected_failed``, FAILED with a reason; tissue tiles DONE."""
    status = store.status()
    failed = {(r, c) for r, c, _ in summary.failed_tiles}
    assert failed == expected_failed and len(summary.failed_tiles) == len(failed)
    assert {tuple(p) for p in np.argwhere(status == TileStatus.FAILED).tolist()} == failed
    assert all(reason and "\n" not in reason for _, _, reason in summary.failed_tiles)
    done = status == TileStatus.DONE
    assert done.sum() == summary.done > 0 and not (status == TileStatus.PENDING).any()
    assert np.isfinite(store.embeddings()[done]).all()
    assert summary.total == summary.done + summary.failed


def test_svs_with_a_bad_jpeg_tile(tmp_path, svs_path, tiny_model):
    from tests.slide.damage import svs_with_bad_tile

    path = svs_with_bad_tile(svs_path, tmp_path / "bad.svs", "start")
    with open_slide(path) as slide:
        grid = make_grid(slide, tile_size=256)
        store, summary = run(slide, tiny_model, grid, tmp_path / "stores")
        scan = scan_tissue(slide, grid, DEFAULTS.min_tissue)
    damaged = {tuple(p) for p in np.argwhere(scan.damaged).tolist()}
    assert damaged == {(3, 4), (3, 5), (4, 4), (4, 5)}
    check_outcome(store, summary, damaged)
    assert all("not a JPEG stream" in reason for _, _, reason in summary.failed_tiles)
    assert store.tissue()[tuple(np.array(sorted(damaged)).T)].all()  # recorded as tissue
    # a second run tries the damaged tiles again (still FAILED) and recomputes nothing else
    with open_slide(path) as slide:
        _, again = run(slide, tiny_model, grid, tmp_path / "stores")
    assert again.computed == 0 and {(r, c) for r, c, _ in again.failed_tiles} == damaged


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_pyramid(tmp_path, nest, tiny_model, fraction):
    from tests.slide.damage import truncated_pyramid

    image = np.concatenate([nest, nest[::-1]])[:1024, :384]
    path = truncated_pyramid(image, tmp_path / "cut.tif", fraction, "jpeg")
    with open_slide(path) as slide:
        grid = make_grid(slide, tile_size=128)
        store, summary = run(slide, tiny_model, grid, tmp_path / "stores", min_tissue=0.0)
        scan = scan_tissue(slide, grid, min_tissue=0.0)
    damaged = {tuple(p) for p in np.argwhere(scan.damaged).tolist()}
    assert bool(damaged) == (fraction == 0.5)
    check_outcome(store, summary, damaged)


def test_zarr_slide_with_a_corrupt_chunk(tmp_path, nest, tiny_model):
    from tests.slide.damage import zarr_with_corrupt_chunk

    slide = open_slide(zarr_with_corrupt_chunk(nest[:512, :384].copy(), tmp_path / "s.zarr"))
    grid = make_grid(slide, tile_size=64)
    store, summary = run(slide, tiny_model, grid, tmp_path / "stores", min_tissue=0.0)
    check_outcome(store, summary, {(2, 2), (2, 3), (3, 2), (3, 3)})
    assert all("Zstd" in reason or "decod" in reason for _, _, reason in summary.failed_tiles)


def test_damage_only_at_the_read_level_fails_those_tiles_at_read_time(tmp_path, nest, tiny_model):
    """The scan reads a coarse level (intact); level 0 has a bad tile: the reader fails it."""
    import tifffile

    from tests.slide.conftest import write_tiff_pyramid

    path = tmp_path / "p.tif"
    image = np.concatenate([nest, nest[::-1]])[:1024, :384]
    write_tiff_pyramid(path, image, levels=3, compression="jpeg", subifds=True)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[4]  # level 0 chunk 4: rows 128:256, columns 128:256
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(32))
    with open_slide(path) as slide:
        grid = make_grid(slide, tile_size=128)
        assert not scan_tissue(slide, grid, min_tissue=0.0).damaged.any()
        store, summary = run(slide, tiny_model, grid, tmp_path / "stores", min_tissue=0.0)
    check_outcome(store, summary, {(1, 1)})
    assert "TIFF chunk 4" in summary.failed_tiles[0][2]


@pytest.mark.slow
def test_greyscale_slide_is_embedded(tmp_path, nest, tiny_model):
    imagecodecs.imwrite(tmp_path / "grey.png", nest[..., 1].copy())
    slide = open_slide(tmp_path / "grey.png")
    grid = make_grid(slide, tile_size=64)
    store, summary = run(slide, tiny_model, grid, tmp_path / "stores")
    assert summary.done > 0.5 * grid.rows * grid.cols and summary.failed == 0
    assert store.attrs["tissue_method"] == "darkness"


def test_one_pixel_slide_is_one_padded_tile(tmp_path, tiny_model):
    imagecodecs.imwrite(tmp_path / "one.png", np.array([[[120, 40, 90]]], np.uint8))
    slide = open_slide(tmp_path / "one.png")
    grid = make_grid(slide, tile_size=64)
    with pytest.raises(InputError, match=r"no tissue found at min_tissue 0\.25"):
        run(slide, tiny_model, grid, tmp_path / "a")  # 1 pixel of 4096: glass, nothing to embed
    store, summary = run(slide, tiny_model, grid, tmp_path / "b", min_tissue=0.0)
    assert summary.done == 1 and np.isfinite(store.embeddings()[0, 0]).all()
