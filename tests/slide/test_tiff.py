from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide
from napari_conch.slide.readers import ArrayReader, TiffChunkReader


def test_svs_opens_with_aperio_mpp(svs_path):
    with open_slide(svs_path) as slide:
        assert slide.shape == (2967, 2220)  # (H, W): 2220 px wide, 2967 px high
        assert len(slide.levels) == 1  # thumbnail, label and macro are not levels
        assert slide.levels[0].shape == (2967, 2220, 3)
        assert slide.levels[0].dtype == np.uint8
        assert slide.downsamples == [1.0]
        assert slide.mpp == pytest.approx(0.499)
        assert slide.mpp_source == "aperio"
        assert slide.name == "cmu_small_region"
        assert isinstance(slide._readers[0], TiffChunkReader)


def test_svs_regions_match_tifffile(svs_path):
    reference = tifffile.imread(svs_path)
    with open_slide(svs_path) as slide:
        for x, y, w, h in [(0, 0, 448, 448), (1000, 1700, 300, 200), (1771, 2518, 449, 449)]:
            np.testing.assert_array_equal(
                slide.read_region(0, x, y, w, h), reference[y : y + h, x : x + w]
            )
        np.testing.assert_array_equal(
            slide.levels[0][500:700, 100:400].compute(), reference[500:700, 100:400]
        )


@pytest.mark.parametrize("subifds", [True, False], ids=["subifds", "pages"])
def test_pyramid_levels_and_regions(tmp_path, nest, tiff_pyramid, subifds):
    path = tmp_path / "p.tif"
    arrays = tiff_pyramid(path, nest, levels=3, subifds=subifds)
    with open_slide(path) as slide:
        assert [lv.shape[:2] for lv in slide.levels] == [a.shape[:2] for a in arrays]
        assert slide.downsamples[0] == 1.0
        assert slide.downsamples[1] == pytest.approx(2.0)
        assert slide.downsamples[2] == pytest.approx((600 / 150 + 500 / 125) / 2)
        for k, array in enumerate(arrays):
            np.testing.assert_array_equal(slide.read_region(k, 3, 5, 110, 70), array[5:75, 3:113])
            np.testing.assert_array_equal(slide.levels[k].compute(), array)
        assert slide.mpp is None and slide.mpp_source == "unknown"


def test_jpeg_pyramid_matches_tifffile_decoding(tmp_path, nest, tiff_pyramid):
    path = tmp_path / "jpeg.tif"
    tiff_pyramid(path, nest, levels=2, compression="jpeg")
    with tifffile.TiffFile(path) as tif:
        references = [level.asarray() for level in tif.series[0].levels]
    with open_slide(path) as slide:
        for k, ref in enumerate(references):
            np.testing.assert_array_equal(
                slide.read_region(k, 100, 60, 140, 150), ref[60:210, 100:240]
            )


def test_resolution_tags_give_mpp(nest_pyramid):
    path, _ = nest_pyramid
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(0.25)
        assert slide.mpp_source == "tiff-resolution"


def test_72_dpi_default_is_unknown(tmp_path, nest):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, nest, resolution=(72, 72), resolutionunit="INCH")
    with open_slide(path) as slide:
        assert slide.mpp is None and slide.mpp_source == "unknown"


def test_ome_tiff_physical_size_with_unit(tmp_path, nest, tiff_pyramid):
    path = tmp_path / "x.ome.tif"
    metadata = {
        "axes": "YXS",
        "PhysicalSizeX": 250,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 250,
        "PhysicalSizeYUnit": "nm",
    }
    arrays = tiff_pyramid(path, nest, levels=2, ome=True, metadata=metadata)
    with open_slide(path) as slide:
        assert slide.name == "x"
        assert slide.mpp == pytest.approx(0.25)
        assert slide.mpp_source == "ome"
        assert len(slide.levels) == 2
        np.testing.assert_array_equal(slide.read_region(1, 0, 0, 250, 300), arrays[1])


def test_strip_tiff_is_one_level(tmp_path, nest):
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, nest, rowsperstrip=64, compression="zlib", photometric="rgb")
    with open_slide(path) as slide:
        assert len(slide.levels) == 1
        assert isinstance(slide._readers[0], TiffChunkReader)
        np.testing.assert_array_equal(slide.read_region(0, 7, 60, 300, 140), nest[60:200, 7:307])


def test_planar_tiff_uses_zarr_reader(tmp_path, nest):
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, np.moveaxis(nest, -1, 0), photometric="rgb", planarconfig="separate")
    with open_slide(path) as slide:
        assert isinstance(slide._readers[0], ArrayReader)
        assert slide.shape == (600, 500)
        np.testing.assert_array_equal(slide.read_region(0, 10, 20, 30, 40), nest[20:60, 10:40])
        np.testing.assert_array_equal(slide.levels[0].compute(), nest)


def test_greyscale_replicated_and_alpha_composited(tmp_path, nest, tiff_pyramid):
    grey = nest[..., 1].copy()
    tiff_pyramid(tmp_path / "g.tif", grey, levels=2)
    with open_slide(tmp_path / "g.tif") as slide:
        np.testing.assert_array_equal(
            slide.read_region(0, 0, 0, 50, 40), np.stack([grey[:40, :50]] * 3, -1)
        )
        np.testing.assert_array_equal(slide.levels[1].compute()[..., 2], grey[::2, ::2])
    alpha = np.full((*nest.shape[:2], 1), 255, np.uint8)
    alpha[:, :30] = 0
    alpha[:, 30:60] = 128
    tiff_pyramid(tmp_path / "a.tif", np.concatenate([nest, alpha], axis=-1), levels=1)
    half = (nest[5:65, 35:60].astype(np.uint16) * 128 + 255 * 127 + 127) // 255
    with open_slide(tmp_path / "a.tif") as slide:
        region = slide.read_region(0, 5, 5, 60, 60)  # the chunk reader
        assert (region[:, :25] == 255).all()
        np.testing.assert_array_equal(region[:, 30:55], half)
        np.testing.assert_array_equal(region[:, 55:], nest[5:65, 60:65])
        np.testing.assert_array_equal(slide.levels[0][5:65, 5:65].compute(), region)  # dask
        assert slide.levels[0].shape == (600, 500, 3)


def test_uint16_is_refused(tmp_path):
    path = tmp_path / "deep.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint16), photometric="rgb")
    with pytest.raises(SlideError, match=r"deep\.tif.*uint16.*only 8-bit"):
        open_slide(path)


def test_z_stack_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((4, 32, 32), np.uint8), metadata={"axes": "ZYX"})
    with pytest.raises(SlideError, match=r"stack\.tif.*size 4.*only 2-D"):
        open_slide(path)


def test_corrupt_tiff_is_a_slide_error(tmp_path):
    path = tmp_path / "broken.svs"
    path.write_bytes(b"II*\x00" + b"\xff" * 100)
    with pytest.raises(SlideError, match=r"broken\.svs: cannot read as TIFF") as info:
        open_slide(path)
    assert "\n" not in str(info.value)


def test_truncated_file_fails_per_region(tmp_path, nest, tiff_pyramid):
    path = tmp_path / "cut.tif"
    tiff_pyramid(path, nest, levels=1, subifds=False)
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        last = int(np.argmax(page.dataoffsets))
        cut = page.dataoffsets[last] + page.databytecounts[last] // 2
    path.write_bytes(data[:cut])
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 64, 64), nest[:64, :64])
        with pytest.raises(SlideError, match=r"cut\.tif: cannot read level 0 rows") as info:
            slide.read_region(0, 400, 500, 100, 100)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("tiled", [True, False])
def test_a_tiff_without_pixels_is_refused(tmp_path, tiled):
    """Width 0 ended in ZeroDivisionError (tifffile) or a TypeError in the grid's check."""
    from napari_conch.errors import SlideRefusedError
    from tests.slide.forged import tiff_claiming

    path = tiff_claiming(tmp_path / "zero.tif", 0, 256, tiled=tiled)
    with pytest.raises(SlideRefusedError) as info:
        open_slide(path)
    assert str(info.value) == f"{path}: its image is 0 x 256 px, without pixels"


@pytest.mark.slow
def test_a_header_claiming_4e9_by_3e9_px_is_refused_before_any_allocation(tmp_path):
    """It was opened, and embed then asked numpy for 666 TiB (ArrayMemoryError)."""
    from napari_conch.errors import SlideRefusedError
    from napari_conch.slide.base import MAX_SLIDE_SIDE
    from tests.slide.forged import tiff_claiming

    path = tiff_claiming(tmp_path / "huge.tif", 4_000_000_000, 3_000_000_000)
    with pytest.raises(SlideRefusedError) as info:
        open_slide(path)
    assert str(info.value) == (
        f"{path}: the file says its image is 4000000000 x 3000000000 px, more than any slide "
        f"(at most {MAX_SLIDE_SIDE} px a side); it is damaged or not a slide"
    )


#: Opens a slide in a child whose address space is capped, printing the error's class and text.
_OPEN_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
from napari_conch.slide import open_slide
try:
    open_slide(sys.argv[1])
except BaseException as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tiff", "zarr"])
def test_a_huge_claim_in_small_chunks_is_refused_before_dask_lists_them(tmp_path, kind):
    """4e9 x 3e9 px in 16 px chunks: dask's chunk lists alone took 22 GB and the process was
    killed for memory before the slide's size check; now each level is checked first. Run in a
    child capped at 3 GiB, so that a regression fails here instead of taking the machine."""
    import subprocess
    import sys

    import zarr

    from tests.slide.forged import tiff_claiming

    if kind == "tiff":
        path = tiff_claiming(tmp_path / "huge.tif", 4_000_000_000, 3_000_000_000, tile=16)
    else:
        path = tmp_path / "huge.zarr"
        zarr.create_array(
            path, shape=(3_000_000_000, 4_000_000_000, 3), chunks=(16, 16, 3), dtype="uint8"
        )
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_CAPPED, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.startswith("SlideRefusedError "), done.stdout + done.stderr[-2000:]
    assert "4000000000 x 3000000000 px, more than any slide" in done.stdout
