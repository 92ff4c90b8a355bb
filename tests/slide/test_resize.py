from __future__ import annotations

import numpy as np

from napari_conch.slide.resize import resize_area


def test_integer_factor_is_block_mean(nest):
    image = nest[:128, :128]
    out = resize_area(image, 64)
    blocks = image.reshape(64, 2, 64, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.clip(np.rint(blocks), 0, 255).astype(np.uint8))


def test_fractional_factor_keeps_constants_and_mean(nest):
    constant = np.full((90, 90, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_area(constant, 64), np.full((64, 64, 3), 77, np.uint8))
    out = resize_area(nest[:150, :150], 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert abs(out.astype(float).mean() - nest[:150, :150].mean()) < 0.5


def test_same_size_is_untouched(nest):
    image = nest[:64, :64]
    assert resize_area(image, 64) is image


def test_taps_weights_sum_to_one():
    from napari_conch.slide.resize import area_taps

    for n, size in [(896, 448), (700, 448), (449, 448), (100, 7)]:
        index, weights = area_taps(n, size)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
        assert index.min() >= 0 and index.max() == n - 1
