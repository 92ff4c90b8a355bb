from __future__ import annotations

import numpy as np
import pytest

from napari_conch.slide import make_grid, open_slide, tissue_mask
from napari_conch.slide.tissue import otsu_threshold


@pytest.fixture(scope="module")
def svs(svs_path):
    with open_slide(svs_path) as slide:
        yield slide


def test_svs_glass_is_skipped(svs):
    grid = make_grid(svs, tile_size=224)
    mask, fraction = tissue_mask(svs, grid)
    assert mask.shape == fraction.shape == (14, 10)
    assert fraction.dtype == np.float32 and 0 <= fraction.min() and fraction.max() <= 1
    # about a third of this skin section is tissue (checked by eye); glass tiles are skipped
    assert 0.25 <= mask.mean() <= 0.55
    assert not mask[:, :2].any() and not mask[:, -2:].any()  # the glass left and right
    assert mask[4, 5] and mask[8, 5]  # the epidermis in the middle
    assert np.array_equal(mask, fraction >= 0.25)


def test_svs_overlapping_grid(svs):
    grid = make_grid(svs, tile_size=224, stride=56)
    mask, fraction = tissue_mask(svs, grid, min_tissue=0.5)
    assert mask.shape == grid.shape == (50, 37)
    assert 0.15 <= mask.mean() <= 0.55
    assert mask.sum() <= (fraction >= 0.25).sum()


def test_blank_glass_has_no_tissue(tmp_path):
    import imagecodecs

    rng = np.random.default_rng(0)
    glass = (245 + rng.integers(-3, 4, size=(256, 256, 3))).astype(np.uint8)
    imagecodecs.imwrite(tmp_path / "glass.png", glass)
    slide = open_slide(tmp_path / "glass.png")
    mask, fraction = tissue_mask(slide, make_grid(slide, tile_size=64))
    assert not mask.any() and fraction.max() == 0


def test_tissue_everywhere_on_the_pyramid(nest_pyramid):
    with open_slide(nest_pyramid[0]) as slide:
        grid = make_grid(slide, tile_size=64)
        mask, _ = tissue_mask(slide, grid, min_tissue=0.0)
        assert mask.all()
        mask, _ = tissue_mask(slide, grid)
        assert mask.mean() > 0.5


def test_otsu_splits_two_modes():
    rng = np.random.default_rng(1)
    values = np.clip(
        np.concatenate([rng.normal(0.1, 0.02, 5000), rng.normal(0.6, 0.05, 2000)]), 0, 1
    )
    threshold = otsu_threshold(values)
    assert 0.15 < threshold < 0.45  # in the gap between the modes

    def between(t):
        low, high = values[values <= t], values[values > t]
        return low.size * high.size * (low.mean() - high.mean()) ** 2

    assert all(between(threshold) >= between(t) for t in np.linspace(0.05, 0.7, 27))
