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
