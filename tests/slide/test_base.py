from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile

from napari_conch.errors import SlideError
from napari_conch.slide import open_slide


def expected_region(array, x0, y0, w, h):
    """numpy slicing with white padding: what read_region must return."""
    out = np.full((h, w, 3), 255, np.uint8)
    ys, xs = (
        slice(max(y0, 0), min(y0 + h, array.shape[0])),
        slice(max(x0, 0), min(x0 + w, array.shape[1])),
    )
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = array[ys, xs]
    return out


@pytest.mark.parametrize(
    "box", [(-10, -20, 64, 64), (450, 560, 100, 100), (-5, 100, 600, 30), (700, 700, 10, 10)]
)
def test_out_of_bounds_padded_white(nest_pyramid, box):
    path, levels = nest_pyramid
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region(0, *box), expected_region(levels[0], *box))


def test_bad_level_and_size(nest_pyramid):
    path, _ = nest_pyramid
    with open_slide(path) as slide:
        with pytest.raises(
            SlideError, match=r"level 3 does not exist \(the slide has 3 levels: 0..2\)"
        ):
            slide.read_region(3, 0, 0, 10, 10)
        with pytest.raises(ValueError, match="must be positive"):
            slide.read_region(0, 0, 0, 0, 10)
        with pytest.raises(TypeError):
            slide.read_region(0, 0.5, 0, 10, 10)


def test_threads_read_the_same_as_one(svs_path):
    reference = tifffile.imread(svs_path)
    rng = np.random.default_rng(0)
    boxes = [(int(x), int(y), 200, 200) for x, y in rng.integers(-100, 2200, size=(48, 2))]
    with open_slide(svs_path) as slide:
        with ThreadPoolExecutor(4) as pool:
            regions = list(pool.map(lambda b: slide.read_region(0, *b), boxes))
    for box, region in zip(boxes, regions, strict=True):
        np.testing.assert_array_equal(region, expected_region(reference, *box))


def test_repr_and_level_helpers(nest_pyramid):
    path, _ = nest_pyramid
    with open_slide(path) as slide:
        assert (
            repr(slide)
            == "<Slide 'nest_pyramid' 500 x 600 px, 3 levels, 0.25 um/px (tiff-resolution)>"
        )
        assert slide.level_shape(1) == (300, 250)
        assert slide.level_mpp(1) == pytest.approx(0.5)


@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 0, 3)])
def test_a_level_without_pixels_is_refused_whatever_the_format(tmp_path, shape):
    import dask.array as da

    from napari_conch.errors import SlideRefusedError
    from napari_conch.slide.base import Slide

    level = da.zeros(shape, dtype=np.uint8)
    with pytest.raises(SlideRefusedError, match=r"level 0 is \d+ x \d+ px, an image without"):
        Slide(tmp_path / "x.zarr", [level], [None], mpp=None, mpp_source="unknown", fingerprint="")
