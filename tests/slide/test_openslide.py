"""OpenSlide as an optional backend: a Hamamatsu VMU slide written in the test from a crop of the
shipped SVS (raw 12-bit pixels: lossless), and the shipped SVS read by both OpenSlide and
tifffile."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide
from napari_conch.slide.openslide_slide import openslide_available
from tests.slide import backend_helpers
from tests.slide.vmu_fixture import write_vmu

MPP = 0.499
#: The tests that read with OpenSlide; the others (without the extra) run everywhere.
needs_openslide = pytest.mark.skipif(
    not openslide_available(),
    reason="the openslide extra is not installed (napari-conch[openslide])",
)


@pytest.fixture(scope="module")
def svs_crop(svs_path) -> np.ndarray:
    return backend_helpers.svs_crop(svs_path, 1024, 1536)


@pytest.fixture(scope="module")
def vmu_path(svs_crop, tmp_path_factory):
    return write_vmu(tmp_path_factory.mktemp("vmu") / "slide", svs_crop, MPP)


def test_without_the_extra_a_vmu_says_which_extra_reads_it(vmu_path, monkeypatch):
    message = r"a VMU slide; reading it needs the openslide extra \(pip install"
    backend_helpers.assert_needs_extra(monkeypatch, vmu_path, "openslide", message)


def test_without_the_extra_an_scn_is_left_to_tifffile(tmp_path, monkeypatch):
    from napari_conch.slide.openslide_slide import wants_openslide

    backend_helpers.block_import(monkeypatch, "openslide")
    assert not wants_openslide(tmp_path / "a.scn") and wants_openslide(tmp_path / "a.mrxs")


@needs_openslide
def test_a_vmu_opens_with_openslide_levels_pixels_and_mpp(vmu_path, svs_crop):
    with open_slide(vmu_path) as slide:
        assert slide.reader == "openslide"
        assert slide.mpp == pytest.approx(MPP) and slide.mpp_source == "openslide"
        assert [slide.level_shape(i) for i in range(slide.level_count)] == [
            (1536, 1024),
            (384, 256),
        ]
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 1024, 1536), svs_crop)
        np.testing.assert_array_equal(
            slide.read_region(0, 301, 517, 203, 99), svs_crop[517:616, 301:504]
        )
        np.testing.assert_array_equal(np.asarray(slide.levels[1]), svs_crop[::4, ::4])
        np.testing.assert_array_equal(  # a level-1 region away from the corner
            slide.read_region(1, 30, 40, 50, 60), svs_crop[::4, ::4][40:100, 30:80]
        )


@needs_openslide
def test_a_broken_vmu_is_one_line(vmu_path, tmp_path):
    bad = tmp_path / "bad.vmu"
    bad.write_text(vmu_path.read_text().replace("BitsPerPixel=36", "BitsPerPixel=24"))
    with pytest.raises(SlideError, match="OpenSlide cannot read it") as info:
        open_slide(bad)
    assert "\n" not in str(info.value)


@needs_openslide
def test_openslide_and_tifffile_read_the_same_svs_pixels(svs_path):
    from napari_conch.slide.openslide_slide import open_openslide

    with open_slide(svs_path) as ours, open_openslide(svs_path) as theirs:
        assert ours.reader == "tifffile" and theirs.reader == "openslide"
        assert theirs.level_count >= 1 and theirs.shape == ours.shape
        assert theirs.mpp == pytest.approx(ours.mpp)
        h, w = ours.shape
        np.testing.assert_array_equal(theirs.read_region(0, 0, 0, w, h),
                                      ours.read_region(0, 0, 0, w, h))  # fmt: skip


@pytest.mark.slow
@needs_openslide
def test_embed_and_query_a_vmu_from_the_cli(vmu_path, tmp_path, capsys):
    from napari_conch.cli import main

    assert main(["info", str(vmu_path)]) == 0
    assert "reader: openslide" in capsys.readouterr().out
    shape = backend_helpers.embed_and_query(
        vmu_path, tmp_path, capsys, MPP, "--min-tissue", "0.05", "--tile-size", "448"
    )
    assert shape == (192, 128)  # 1536 x 1024 at 8 px a map pixel


@needs_openslide
def test_the_napari_reader_opens_a_vmu(vmu_path):
    from napari_conch._napari.reader import get_reader

    [(data, kwargs, kind)] = get_reader(str(vmu_path))(str(vmu_path))
    assert kind == "image" and kwargs["multiscale"] and len(data) == 2
    assert kwargs["scale"] == pytest.approx((MPP, MPP))


# Leica SCN and Ventana BIF written in the test (tests/slide/vendor_tiff_fixture.py), lossless.

SCN_MARGIN = 64
BIF_GRID = (5, 7, 16)  # columns, rows, overlap (px)


@pytest.fixture(scope="module")
def scn_path(svs_crop, tmp_path_factory):
    from tests.slide.vendor_tiff_fixture import write_scn

    return write_scn(tmp_path_factory.mktemp("scn") / "slide.scn", svs_crop, MPP, SCN_MARGIN)


@pytest.fixture(scope="module")
def bif_source(svs_path) -> np.ndarray:
    from tests.slide.vendor_tiff_fixture import bif_size

    h, w = bif_size(*BIF_GRID)
    with open_slide(svs_path) as svs:
        return svs.read_region(0, 0, 0, w, h)


@pytest.fixture(scope="module")
def bif_path(bif_source, tmp_path_factory):
    from tests.slide.vendor_tiff_fixture import write_bif

    return write_bif(tmp_path_factory.mktemp("bif") / "slide.bif", bif_source, MPP, *BIF_GRID)


@pytest.fixture(scope="module")
def mrxs_path(svs_crop, tmp_path_factory):
    from tests.slide.mrxs_fixture import write_mrxs

    return write_mrxs(tmp_path_factory.mktemp("mrxs"), svs_crop, MPP)


@needs_openslide
def test_an_mrxs_opens_with_openslide_levels_pixels_and_mpp(mrxs_path, svs_crop):
    import openslide

    assert openslide.OpenSlide.detect_format(str(mrxs_path)) == "mirax"
    with open_slide(mrxs_path) as slide:
        assert slide.reader == "openslide"
        assert slide.mpp == pytest.approx(MPP) and slide.mpp_source == "openslide"
        shapes = [slide.level_shape(i) for i in range(slide.level_count)]
        assert shapes == [(1536, 1024), (768, 512)]
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 1024, 1536), svs_crop)
        np.testing.assert_array_equal(np.asarray(slide.levels[1]), svs_crop[::2, ::2])


def test_without_the_extra_an_mrxs_says_which_extra_reads_it(mrxs_path, monkeypatch):
    backend_helpers.block_import(monkeypatch, "openslide")
    with pytest.raises(SlideError, match=r"an? MRXS slide; reading it needs the openslide extra"):
        open_slide(mrxs_path)


@pytest.fixture(scope="module")
def philips_source(svs_path) -> np.ndarray:
    with open_slide(svs_path) as svs:  # sides that are not whole tiles: padded coarser levels
        return svs.read_region(0, 0, 0, 1000, 1500)


@pytest.fixture(scope="module")
def philips_path(philips_source, tmp_path_factory):
    from tests.slide.vendor_tiff_fixture import write_philips_tiff

    path = tmp_path_factory.mktemp("philips") / "slide.tiff"
    return write_philips_tiff(path, philips_source, MPP)


def test_a_philips_tiff_is_read_by_tifffile_with_its_mpp_from_the_xml(philips_path,
                                                                      philips_source):  # fmt: skip
    with open_slide(philips_path) as slide:
        assert slide.reader == "tifffile"
        assert slide.mpp == pytest.approx(MPP) and slide.mpp_source == "philips"
        shapes = [slide.level_shape(i) for i in range(slide.level_count)]
        assert shapes == [(1500, 1000), (750, 500), (375, 250)]  # the padding clipped
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 1000, 1500), philips_source)


@needs_openslide
def test_openslide_and_tifffile_read_the_same_philips_tiff(philips_path):
    import openslide

    from napari_conch.slide.openslide_slide import open_openslide

    assert openslide.OpenSlide.detect_format(str(philips_path)) == "philips"
    with open_slide(philips_path) as ours, open_openslide(philips_path) as theirs:
        assert theirs.reader == "openslide" and theirs.mpp == pytest.approx(ours.mpp)
        assert theirs.level_count == ours.level_count == 3
        for level in range(3):
            assert theirs.level_shape(level) == ours.level_shape(level)
            np.testing.assert_array_equal(np.asarray(theirs.levels[level]),
                                          np.asarray(ours.levels[level]))  # fmt: skip


@needs_openslide
def test_openslide_itself_detects_the_scn_and_bif_fixtures(scn_path, bif_path):
    import openslide

    assert openslide.OpenSlide.detect_format(str(scn_path)) == "leica"
    assert openslide.OpenSlide.detect_format(str(bif_path)) == "ventana"
    with openslide.OpenSlide(str(scn_path)) as osr:
        assert osr.level_count == 2 and float(osr.properties["openslide.mpp-x"]) == MPP
        assert osr.properties["openslide.bounds-x"] == str(SCN_MARGIN)
    with openslide.OpenSlide(str(bif_path)) as osr:
        assert osr.level_count == 2 and float(osr.properties["openslide.mpp-x"]) == MPP


@needs_openslide
def test_an_scn_opens_with_openslide_the_main_image_in_its_place(scn_path, svs_crop):
    m = SCN_MARGIN
    with open_slide(scn_path) as slide:
        assert slide.reader == "openslide"
        assert slide.mpp == pytest.approx(MPP) and slide.mpp_source == "openslide"
        assert [slide.level_shape(i) for i in range(slide.level_count)] == [
            (1536 + 2 * m, 1024 + 2 * m),
            ((1536 + 2 * m) // 4, (1024 + 2 * m) // 4),
        ]
        np.testing.assert_array_equal(slide.read_region(0, m, m, 1024, 1536), svs_crop)
        level1 = np.asarray(slide.levels[1])
        np.testing.assert_array_equal(level1[m // 4:-m // 4, m // 4:-m // 4],
                                      svs_crop[::4, ::4])  # fmt: skip
        assert (slide.read_region(0, 0, 0, m, m) == 255).all()  # the glass around it: white


@needs_openslide
def test_a_bif_opens_with_openslide_its_tiles_stitched(bif_path, bif_source):
    h, w, _ = bif_source.shape
    with open_slide(bif_path) as slide:
        assert slide.reader == "openslide" and slide.mpp == pytest.approx(MPP)
        shapes = [slide.level_shape(i) for i in range(slide.level_count)]
        assert shapes == [(h, w), (h // 4, w // 4)]
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, w, h), bif_source)
        np.testing.assert_array_equal(np.asarray(slide.levels[1]), bif_source[::4, ::4])


@needs_openslide
def test_a_bif_under_another_suffix_goes_to_openslide_too(bif_path, bif_source, tmp_path):
    renamed = tmp_path / "slide.tif"
    renamed.write_bytes(bif_path.read_bytes())
    with open_slide(renamed) as slide:
        assert slide.reader == "openslide" and slide.shape == bif_source.shape[:2]


def test_without_the_extra_tifffile_reads_a_bif_and_a_warning_names_the_extra(
    bif_path, bif_source, monkeypatch, caplog
):
    backend_helpers.block_import(monkeypatch, "openslide")
    with caplog.at_level("WARNING", logger="napari_conch"), open_slide(bif_path) as slide:
        assert slide.reader == "tifffile"
        assert slide.shape != bif_source.shape[:2]  # the tiles side by side: 1280 x 1792
    [line] = [r.getMessage() for r in caplog.records if "Ventana BIF" in r.getMessage()]
    assert "without stitching" in line and "napari-conch[openslide]" in line


@pytest.fixture(scope="module")
def scn_z_stack(svs_crop, tmp_path_factory):
    """An SCN whose main image says it has two z planes: tifffile refuses its series
    (NotImplementedError), OpenSlide reads plane 0. Named ``.tif``: no suffix routes it."""
    from tests.slide.vendor_tiff_fixture import write_scn

    return write_scn(tmp_path_factory.mktemp("scnz") / "slide.tif", svs_crop, MPP, z_planes=2)


def test_the_z_stack_scn_is_a_tiff_tifffile_cannot_read_as_a_slide(scn_z_stack):
    import tifffile

    from napari_conch.slide.tiff import TiffLayoutError, _slide_from_tiff

    with tifffile.TiffFile(scn_z_stack) as tif, pytest.raises(TiffLayoutError, match="Z-Stacks"):
        _slide_from_tiff(scn_z_stack, tif)


@needs_openslide
def test_a_tiff_tifffile_cannot_read_is_retried_with_openslide(scn_z_stack, svs_crop):
    m = SCN_MARGIN
    with open_slide(scn_z_stack) as slide:
        assert slide.reader == "openslide" and slide.mpp == pytest.approx(MPP)
        np.testing.assert_array_equal(slide.read_region(0, m, m, 1024, 1536), svs_crop)


def test_without_the_extra_a_tiff_tifffile_cannot_read_names_the_extra(scn_z_stack, monkeypatch):
    backend_helpers.block_import(monkeypatch, "openslide")
    with pytest.raises(SlideError, match=r"cannot read as TIFF .*Z-Stacks.*; OpenSlide may read "
                       r"it: install the openslide extra \(pip install 'napari-conch\[openslide"
                       ) as info:  # fmt: skip
        open_slide(scn_z_stack)
    assert "\n" not in str(info.value)


@needs_openslide
def test_when_openslide_cannot_read_it_either_both_reasons_are_said(svs_crop, tmp_path):
    from tests.slide.vendor_tiff_fixture import write_scn

    # tifffile refuses the Z-stack, OpenSlide finds no brightfield main image
    path = write_scn(tmp_path / "dark.tif", svs_crop, MPP, z_planes=2, illumination="fluorescence")
    with pytest.raises(SlideError, match=r"Z-Stacks.*; OpenSlide cannot read it \(.*main image"
                       ) as info:  # fmt: skip
        open_slide(path)
    assert str(info.value).count(str(path)) == 1 and "\n" not in str(info.value)


@needs_openslide
def test_embed_and_query_an_scn_a_bif_and_an_mrxs_from_the_cli(
    scn_path, bif_path, mrxs_path, tmp_path, capsys
):
    import openslide

    from napari_conch.cli import main
    from napari_conch.engine.export.map_tiff import open_map
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    for path, shape in ((scn_path, (1664, 1152)), (bif_path, (1696, 1216)),
                        (mrxs_path, (1536, 1024))):  # fmt: skip
        assert main(["info", str(path)]) == 0
        assert "reader: openslide" in capsys.readouterr().out
        argv = ["embed", str(path), "--model", "demo", "--device", "cpu", "--quiet"]
        argv += ["--min-tissue", "0.05", "--tile-size", "448"]
        assert main([*argv, "--store", str(tmp_path / "stores")]) == 0
        store = EmbeddingStore.open(capsys.readouterr().out.strip())
        assert store.attrs["slide_mpp"] == pytest.approx(MPP) and store.counts()["done"] > 0
        out = tmp_path / f"{path.stem}-{path.suffix[1:]}.tif"
        query = ["query", str(store.path), "--model", "demo", "--device", "cpu"]
        assert main([*query, "--prompt", "tumor", "--out", str(out)]) == 0
        assert open_map(out).levels[0].shape[1:] == (shape[0] // 8, shape[1] // 8)
        coloured = tmp_path / f"{path.stem}-{path.suffix[1:]}-rgb.tif"
        rgb = ["--prompt", "tumor", "--out", str(coloured), "--map-render", "rgb"]
        assert main([*query, *rgb]) == 0
        with openslide.OpenSlide(str(coloured)) as osr:  # what QuPath opens through OpenSlide
            assert osr.dimensions == (shape[1] // 8, shape[0] // 8)
            assert float(osr.properties["openslide.mpp-x"]) == pytest.approx(MPP * 8)


@needs_openslide
def test_the_napari_reader_opens_an_scn_a_bif_and_an_mrxs(scn_path, bif_path, mrxs_path):
    from napari_conch._napari.reader import get_reader

    for path in (scn_path, bif_path, mrxs_path):
        [(data, kwargs, kind)] = get_reader(str(path))(str(path))
        assert kind == "image" and kwargs["multiscale"] and len(data) == 2
        assert kwargs["scale"] == pytest.approx((MPP, MPP))
