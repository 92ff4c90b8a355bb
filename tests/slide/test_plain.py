from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide


def test_png_is_one_level(ihc_path):
    source = imagecodecs.imread(ihc_path)
    slide = open_slide(ihc_path)
    assert slide.shape == source.shape[:2]
    assert len(slide.levels) == 1 and slide.downsamples == [1.0]
    assert slide.mpp is None and slide.mpp_source == "unknown"
    np.testing.assert_array_equal(slide.read_region(0, 30, 40, 100, 90), source[40:130, 30:130, :3])
    np.testing.assert_array_equal(slide.levels[0].compute(), source[..., :3])


def test_jpeg_is_one_level(nest_jpg):
    source = imagecodecs.imread(nest_jpg)
    slide = open_slide(nest_jpg, mpp=0.5)
    assert slide.shape == (1500, 1500)
    assert slide.mpp == 0.5 and slide.mpp_source == "caller"
    np.testing.assert_array_equal(slide.read_region(0, 1400, 0, 100, 50), source[:50, 1400:])


def test_grey_and_rgba_png(tmp_path, nest):
    imagecodecs.imwrite(tmp_path / "grey.png", nest[..., 2].copy())
    grey = open_slide(tmp_path / "grey.png").read_region(0, 0, 0, 20, 10)
    np.testing.assert_array_equal(grey, np.stack([nest[:10, :20, 2]] * 3, -1))
    alpha = np.zeros((*nest.shape[:2], 1), np.uint8)
    alpha[:, 250:] = 255  # left half transparent, right half opaque
    imagecodecs.imwrite(tmp_path / "rgba.png", np.concatenate([nest, alpha], -1))
    level = open_slide(tmp_path / "rgba.png").levels[0].compute()
    assert (level[:, :250] == 255).all()  # composited over white, as empty glass
    np.testing.assert_array_equal(level[:, 250:], nest[:, 250:])


def test_16_bit_png_refused(tmp_path):
    imagecodecs.imwrite(tmp_path / "deep.png", np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(SlideError, match=r"deep\.png: pixel type is uint16"):
        open_slide(tmp_path / "deep.png")


def test_truncated_png_refused(tmp_path, ihc_path):
    (tmp_path / "cut.png").write_bytes(ihc_path.read_bytes()[:2000])
    with pytest.raises(SlideError, match=r"cut\.png: cannot decode the image") as info:
        open_slide(tmp_path / "cut.png")
    assert "\n" not in str(info.value)
