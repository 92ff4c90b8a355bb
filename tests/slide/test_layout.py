from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_conch.errors import SlideError
from napari_conch.slide.layout import make_layout


@pytest.mark.parametrize(
    ("axes", "shape"),
    [("YXS", (4, 5, 3)), ("SYX", (3, 4, 5)), ("TCZYX", (1, 3, 1, 4, 5)), ("CYXS", (1, 4, 5, 3))],
)
def test_axes_normalised_to_yxc(axes, shape):
    data = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    layout = make_layout(axes, shape, np.uint8, "x")
    assert (layout.height, layout.width, layout.channels) == (4, 5, 3)
    numpy_rgb = layout.to_rgb(data[layout.index(1, 3, 2, 5)])
    lazy_rgb = layout.to_rgb(da.from_array(data)[layout.full_index()])[1:3, 2:5].compute()
    assert numpy_rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(numpy_rgb, lazy_rgb)


def test_channel_rules():
    alpha = np.array([[255, 0], [128, 64]], np.uint8)
    grey_alpha = np.dstack([np.full((2, 2), 9, np.uint8), alpha])
    layout = make_layout("YXC", grey_alpha.shape, np.uint8, "x")
    # over white: opaque keeps its value, transparent is white, the rest in between (rounded)
    expected = np.array([[9, 255], [132, 193]], np.uint8)
    np.testing.assert_array_equal(layout.to_rgb(grey_alpha), np.dstack([expected] * 3))
    lazy = layout.to_rgb(da.from_array(grey_alpha)).compute()
    np.testing.assert_array_equal(lazy, np.dstack([expected] * 3))
    rgba = np.dstack([np.full((2, 2, 3), 9, np.uint8), alpha])
    np.testing.assert_array_equal(
        make_layout("YXC", rgba.shape, np.uint8, "x").to_rgb(rgba), np.dstack([expected] * 3)
    )
    # premultiplied (associated) alpha: colour + (255 - alpha)
    premultiplied = make_layout("YXC", rgba.shape, np.uint8, "x", premultiplied=True)
    np.testing.assert_array_equal(
        premultiplied.to_rgb(rgba)[..., 0], np.array([[9, 255], [136, 200]], np.uint8)
    )
    grey = np.full((2, 2), 4, np.uint8)
    np.testing.assert_array_equal(
        make_layout("YX", (2, 2), np.uint8, "x").to_rgb(grey), np.full((2, 2, 3), 4)
    )


@pytest.mark.parametrize(
    ("axes", "shape", "dtype", "message"),
    [
        ("YX", (2, 2, 3), np.uint8, r"axes 'YX' do not match the array shape \(2, 2, 3\)"),
        ("ZXC", (2, 2, 3), np.uint8, "needs one Y and one X axis"),
        ("YXC", (2, 2, 5), np.uint8, "has 5 channels; expected 1"),
        ("CYXS", (3, 2, 2, 3), np.uint8, "several channel axes"),
        ("YXS", (2, 2, 3), np.uint16, "pixel type is uint16"),
        ("TYXS", (2, 2, 2, 3), np.uint8, "axis 'T' has size 2"),
    ],
)
def test_layout_errors(axes, shape, dtype, message):
    with pytest.raises(SlideError, match=message):
        make_layout(axes, shape, dtype, "f.tif level 0")
