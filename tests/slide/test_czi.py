"""Zeiss CZI through pylibCZIrw: levels, pixels and MPP of a CZI written in the test from a crop
of the shipped SVS (uncompressed: lossless, so the pixels must be equal)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide
from tests.slide import backend_helpers

pyczi = pytest.importorskip(
    "pylibCZIrw.czi", reason="the czi extra is not installed (napari-conch[czi])"
)

MPP = 0.499


@pytest.fixture(scope="module")
def svs_crop(svs_path) -> np.ndarray:
    return backend_helpers.svs_crop(svs_path, 1536, 2048)


def write_czi(path, image: np.ndarray | None, mpp: float | None, grey_channels: int = 0):
    """A CZI of one BGR24 plane (``image``, RGB), or of ``grey_channels`` Gray16 channels."""
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        if image is not None:
            czi.write(np.ascontiguousarray(image[..., ::-1]), location=(0, 0))
        for c in range(grey_channels):
            czi.write(np.full((64, 64), 1000 * c, np.uint16), plane={"C": c})
        if mpp is not None:
            czi.write_metadata(scale_x=mpp * 1e-6, scale_y=mpp * 1e-6)
    return path


@pytest.fixture(scope="module")
def czi_path(svs_crop, tmp_path_factory):
    return write_czi(tmp_path_factory.mktemp("czi") / "slide.czi", svs_crop, MPP)


def test_levels_pixels_and_mpp_are_the_sources(czi_path, svs_crop):
    with open_slide(czi_path) as slide:
        assert slide.reader == "pylibCZIrw"
        assert slide.mpp == pytest.approx(MPP) and slide.mpp_source == "czi"
        assert [slide.level_shape(i) for i in range(slide.level_count)] == [
            (2048, 1536),
            (512, 384),
        ]
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 1536, 2048), svs_crop)
        np.testing.assert_array_equal(
            slide.read_region(0, 301, 517, 203, 99), svs_crop[517:616, 301:504]
        )
        np.testing.assert_array_equal(np.asarray(slide.levels[0][1000:1300, 10:1100]),
                                      svs_crop[1000:1300, 10:1100])  # fmt: skip
        # a coarser level samples the nearest pixel (no pyramid in this file)
        np.testing.assert_array_equal(np.asarray(slide.levels[1]), svs_crop[::4, ::4])
        np.testing.assert_array_equal(
            slide.read_region(1, 100, 50, 61, 33), svs_crop[::4, ::4][50:83, 100:161]
        )
        edge = slide.read_region(1, 380, 500, 20, 20)  # past the image: white
        assert (edge[12:] == 255).all() and (edge[:, 4:] == 255).all()


def test_a_czi_without_scaling_has_no_mpp(svs_crop, tmp_path):
    with open_slide(write_czi(tmp_path / "plain.czi", svs_crop[:300, :300], None)) as slide:
        assert slide.mpp is None and slide.mpp_source == "unknown"
        assert slide.level_count == 1


def test_a_fluorescence_czi_says_it_holds_no_brightfield_rgb(tmp_path):
    path = write_czi(tmp_path / "fluo.czi", None, MPP, grey_channels=2)
    with pytest.raises(SlideError, match=r"holds no brightfield RGB image \(2 channel\(s\) of "
                       r"Gray16") as info:  # fmt: skip
        open_slide(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_damaged_czi_is_one_line(czi_path, tmp_path):
    cut = tmp_path / "cut.czi"
    cut.write_bytes(czi_path.read_bytes()[:200])
    with pytest.raises(SlideError, match="cannot read as a Zeiss CZI file") as info:
        open_slide(cut)
    assert "\n" not in str(info.value)


def test_without_the_extra_a_czi_says_which_extra_reads_it(czi_path, monkeypatch):
    message = r"a Zeiss CZI file; reading it needs the czi extra \(pip install"
    backend_helpers.assert_needs_extra(monkeypatch, czi_path, "pylibCZIrw", message)


def test_embed_and_query_a_czi_from_the_cli(czi_path, tmp_path, capsys):
    from napari_conch.cli import main

    assert main(["info", str(czi_path)]) == 0
    assert "reader: pylibCZIrw" in capsys.readouterr().out
    shape = backend_helpers.embed_and_query(
        czi_path, tmp_path, capsys, MPP, "--min-tissue", "0.05", "--tile-size", "448"
    )
    assert shape == (256, 192)  # 2048 x 1536 at 8 px a map pixel


def test_the_napari_reader_opens_a_czi(czi_path):
    from napari_conch._napari.reader import get_reader

    [(data, kwargs, kind)] = get_reader(str(czi_path))(str(czi_path))
    assert kind == "image" and kwargs["multiscale"] and len(data) == 2
    assert kwargs["scale"] == pytest.approx((MPP, MPP))
