"""DICOM whole-slide images through wsidicom: levels, pixels and MPP of a series made in the test
from the shipped SVS (uncompressed: lossless, so the pixels must be equal)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.slide import open_slide
from tests.slide import backend_helpers

pytest.importorskip("wsidicom", reason="the dicom extra is not installed (napari-conch[dicom])")


@pytest.fixture(scope="module")
def svs_crop(svs_path) -> np.ndarray:
    return backend_helpers.svs_crop(svs_path, 768, 1024)


@pytest.fixture(scope="module")
def dicom_folder(svs_crop, tmp_path_factory):
    from tests.slide.dicom_fixture import write_dicom_wsi

    half = svs_crop.reshape(512, 2, 384, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    return write_dicom_wsi(tmp_path_factory.mktemp("dicom") / "slide", [svs_crop, half], 0.499)


def test_levels_pixels_and_mpp_are_the_sources(dicom_folder, svs_crop):
    with open_slide(dicom_folder) as slide:
        assert slide.level_count == 2
        assert [slide.level_shape(i) for i in range(2)] == [(1024, 768), (512, 384)]
        assert slide.downsamples[1] == 2.0
        assert slide.mpp == pytest.approx(0.499) and slide.mpp_source == "dicom"
        np.testing.assert_array_equal(slide.read_region(0, 0, 0, 768, 1024), svs_crop)
        np.testing.assert_array_equal(
            slide.read_region(0, 300, 500, 200, 100), svs_crop[500:600, 300:500]
        )
        np.testing.assert_array_equal(np.asarray(slide.levels[0][700:900, 10:300]),
                                      svs_crop[700:900, 10:300])  # fmt: skip
        # one file of the series opens as that level alone
        finest = max(dicom_folder.iterdir(), key=lambda p: p.stat().st_size)
    with open_slide(finest) as one:
        assert one.level_count == 1 and one.shape == (1024, 768)


def test_without_the_extra_a_dicom_slide_says_which_extra_reads_it(dicom_folder, monkeypatch):
    message = r"a DICOM slide; reading it needs the dicom extra \(pip install"
    backend_helpers.assert_needs_extra(monkeypatch, dicom_folder, "wsidicom", message)


def test_embed_and_query_a_dicom_slide_from_the_cli(dicom_folder, tmp_path, capsys):
    # --min-tissue 0.05: the crop is mostly glass
    shape = backend_helpers.embed_and_query(
        dicom_folder, tmp_path, capsys, 0.499, "--min-tissue", "0.05"
    )
    assert shape == (128, 96)  # 1024 x 768 at 8 px per map pixel


def test_the_napari_reader_opens_the_series_of_a_dcm_file(dicom_folder):
    from napari_conch._napari.reader import get_reader

    finest = max(dicom_folder.iterdir(), key=lambda p: p.stat().st_size)
    [(data, kwargs, kind)] = get_reader(str(finest))(str(finest))
    assert kind == "image" and kwargs["multiscale"] and len(data) == 2
    assert kwargs["scale"] == pytest.approx((0.499, 0.499))
