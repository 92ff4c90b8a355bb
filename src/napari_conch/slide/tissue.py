"""Tissue masks: which tiles hold enough tissue to be worth embedding (glass never is).

1. A low-resolution image: the coarsest level with at least :data:`PIXELS_PER_TILE` pixels
   across a tile; when that level is finer still (a slide with one big level), it is
   block-averaged (``dask.array.coarsen``; point samples of textured tissue are too noisy).
2. HSV saturation ``(max - min) / max``, computed chunk by chunk on the block-averaged colours so
   that only the small saturation image is ever held whole (memory proportional to the number of
   tiles, not to the slide), thresholded with Otsu's method, never below
   :data:`MIN_SATURATION` (so a slide of clean glass stays empty).
3. A 3x3 closing then opening (fills gaps between nuclei, removes specks).
4. Each tile's tissue fraction: the share of its box covered by tissue pixels. Parts of the
   box outside the image count as glass, as their pixels are padded white.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from napari_conch.slide.base import Slide
from napari_conch.slide.grid import TileGrid

#: Wanted pixels across one tile in the low-resolution image.
PIXELS_PER_TILE = 16
#: Lowest saturation threshold: unstained glass stays below it.
MIN_SATURATION = 0.05


def tissue_mask(
    slide: Slide, grid: TileGrid, min_tissue: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mask, fraction)`` over the grid.

    Parameters
    ----------
    slide : Slide
    grid : TileGrid
    min_tissue : float
        Minimum tissue fraction of a tile for it to count as tissue (0 keeps every tile).

    Returns
    -------
    mask : numpy.ndarray
        ``bool [rows, cols]``, ``fraction >= min_tissue``.
    fraction : numpy.ndarray
        ``float32 [rows, cols]`` in ``[0, 1]``.
    """
    saturation = low_resolution_saturation(slide, grid.tile_size_level0 / PIXELS_PER_TILE)
    tissue = tissue_pixels(saturation)
    fraction = _box_fractions(tissue, grid, slide.shape)
    return fraction >= min_tissue, fraction


def low_resolution_saturation(slide: Slide, downsample: float) -> np.ndarray:
    """HSV saturation of the slide at about ``downsample`` level-0 pixels per pixel, float32."""
    level = 0
    for i, d in enumerate(slide.downsamples):
        if d <= max(downsample, 1.0):
            level = i
    step = max(1, round(downsample / slide.downsamples[level]))
    data = slide.levels[level]
    if step > 1:
        data = da.coarsen(np.mean, data, {0: step, 1: step}, trim_excess=True)
    saturation = data.map_blocks(saturation_of, dtype=np.float32, drop_axis=2)
    return np.asarray(saturation.compute())


def saturation_of(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation ``(max - min) / max`` of an RGB array (0..255 values), float32."""
    high = rgb.max(axis=-1).astype(np.float32)
    low = rgb.min(axis=-1).astype(np.float32)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0.0).astype(np.float32)


def tissue_pixels(saturation: np.ndarray) -> np.ndarray:
    """Boolean tissue mask from saturation: Otsu threshold, 3x3 closing and opening."""
    threshold = max(otsu_threshold(saturation), MIN_SATURATION)
    mask = saturation > threshold
    closed = _filter3(_filter3(mask, np.logical_or, False), np.logical_and, True)
    return _filter3(_filter3(closed, np.logical_and, True), np.logical_or, False)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in ``[0, 1]``: maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(hist).astype(np.float64)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _filter3(mask: np.ndarray, combine, pad: bool) -> np.ndarray:
    """3x3 erosion (``np.logical_and``, pad True) or dilation (``np.logical_or``, pad False)."""
    padded = np.pad(mask, 1, constant_values=pad)
    h, w = mask.shape
    out = padded[1 : h + 1, 1 : w + 1].copy()
    for dy in range(3):
        for dx in range(3):
            combine(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


def _box_fractions(tissue: np.ndarray, grid: TileGrid, shape0: tuple[int, int]) -> np.ndarray:
    """Share of each tile's box covered by tissue pixels, over the tile's full area."""
    h, w = tissue.shape
    sy, sx = shape0[0] / h, shape0[1] / w
    integral = np.zeros((h + 1, w + 1), np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(tissue, axis=0), axis=1)
    boxes = grid.boxes()
    x0 = np.clip(np.rint(boxes[..., 0] / sx), 0, w).astype(np.int64)
    x1 = np.clip(np.rint(boxes[..., 2] / sx), 0, w).astype(np.int64)
    y0 = np.clip(np.rint(boxes[..., 1] / sy), 0, h).astype(np.int64)
    y1 = np.clip(np.rint(boxes[..., 3] / sy), 0, h).astype(np.int64)
    counts = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = (grid.tile_size_level0 / sy) * (grid.tile_size_level0 / sx)
    return np.clip(counts / area, 0.0, 1.0).astype(np.float32)
