"""Tissue masks: which tiles hold enough tissue to be worth embedding (glass never is).

1. A low-resolution image: the coarsest level with at least :data:`PIXELS_PER_TILE` pixels
   across a tile, averaged over cells when that level is finer still (point samples of textured
   tissue are too noisy). It is read block by block (:mod:`~napari_conch.slide.lowres`): memory
   is that of the small image, and a chunk of the file that cannot be decoded is recorded as
   damaged instead of stopping the scan.
2. HSV saturation ``(max - min) / max`` of the cells' mean colours, thresholded with Otsu's
   method (256 bins over the values' range; the same threshold as
   ``skimage.filters.threshold_otsu``, without the 0.3 s of importing scikit-image), never below
   :data:`MIN_SATURATION` (so a slide of clean glass stays empty). A *colourless* slide
   (greyscale, or RGB with no cell reaching :data:`MIN_SATURATION`) has no saturation to
   threshold: darkness ``1 - mean / 255`` is used instead, never below :data:`MIN_DARKNESS`,
   and the switch is logged.
3. A 3x3 closing then opening (fills gaps between nuclei, removes specks), each 3x3 pass as a
   row pass and a column pass (what ``scipy.ndimage``'s binary morphology gives, five times
   faster). Outside the image counts as tissue for erosion and as glass for dilation, so tissue
   touching the border is kept.
4. Each tile's tissue fraction: the share of its box covered by tissue cells. Parts of the box
   outside the image count as glass, as their pixels are padded white.
5. Damaged tiles: those whose box touches a chunk that could not be read. When the level read
   is damaged and a finer level is not too large (:data:`FALLBACK_PIXELS`), the finer level is
   read instead if fewer tiles are damaged there (a truncated pyramid loses its coarse levels
   first). The tissue of the tiles still damaged cannot be known: :func:`scan_tissue` reports
   them with the reader's reason and leaves them out of the mask.

Steps 2 to 4 are computed in bands of rows on threads at once
(:mod:`~napari_conch.slide.row_bands`), with the numbers of one piece.

:func:`scan_tissue_steps` is the scan as a generator of ``(done, total)`` steps (blocks read,
bands of colour measured, a last step), for a caller that reports progress while it goes on;
:func:`scan_tissue` drains it, passing the steps to its optional ``progress`` callback.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from napari_conch.slide import row_bands
from napari_conch.slide.base import Slide
from napari_conch.slide.grid import TileGrid
from napari_conch.slide.lowres import LowResolution, choose_level, iter_low_resolution
from napari_conch.slide.row_bands import on_threads, with_halo
from napari_conch.slide.steps import Progress, StepCount, Steps, counted, run_steps

logger = logging.getLogger("napari_conch")

#: Wanted pixels across one tile in the low-resolution image.
PIXELS_PER_TILE = 16
#: Lowest saturation threshold: unstained glass stays below it.
MIN_SATURATION = 0.05
#: Lowest darkness threshold on colourless slides: bright glass (above 90 % white) stays below.
MIN_DARKNESS = 0.1
#: Largest finer level (pixels) read again when the scanned level has damaged chunks.
FALLBACK_PIXELS = 2**28
#: Cells of the low-resolution image per progress step of the colour measure: about the work of
#: reading one block of the level (measured on the 50k x 50k synthetic sample).
BAND_CELLS = 2**19
#: Rows a cell's tissue reaches through the 3x3 closing and opening (four passes of one row).
MORPHOLOGY_HALO = 4
#: Fewest values in each part of Otsu's histogram computed on threads at once.
HISTOGRAM_PART = 2**20


@dataclass
class TissueScan:
    """What the tissue scan found over a grid.

    Attributes
    ----------
    mask : numpy.ndarray
        ``bool [rows, cols]``: tiles to embed (``fraction >= min_tissue`` and not damaged).
    fraction : numpy.ndarray
        ``float32 [rows, cols]`` tissue fraction in ``[0, 1]`` (of the readable part).
    damaged : numpy.ndarray
        ``bool [rows, cols]``: tiles over data that could not be read; their tissue is unknown.
    reasons : dict
        ``(row, col) -> str`` for each damaged tile.
    method : str
        ``"saturation"``, or ``"darkness"`` on a colourless slide.
    threshold : float
        The threshold applied to the method's values.
    """

    mask: np.ndarray
    fraction: np.ndarray
    damaged: np.ndarray
    reasons: dict[tuple[int, int], str] = field(default_factory=dict)
    method: str = "saturation"
    threshold: float = MIN_SATURATION


def scan_tissue(
    slide: Slide, grid: TileGrid, min_tissue: float, progress: Progress | None = None
) -> TissueScan:
    """Find the tissue tiles of a grid, and the tiles whose data is damaged.

    Parameters
    ----------
    slide : Slide
    grid : TileGrid
    min_tissue : float
        Minimum tissue fraction of a tile for it to count as tissue (0 keeps every tile that
        can be read); the caller's, with no default here (a run's is
        ``RunOptions.min_tissue``).
    progress : callable, optional
        Called as ``progress(done, total)`` at each step of :func:`scan_tissue_steps` (a block
        of the low-resolution level read, a band of its colours measured, the last step).

    Returns
    -------
    TissueScan
    """
    return run_steps(scan_tissue_steps(slide, grid, min_tissue), progress)


def scan_tissue_steps(slide: Slide, grid: TileGrid, min_tissue: float) -> Steps[TissueScan]:
    """:func:`scan_tissue` as a generator of ``(done, total)`` steps; returns the scan.

    The steps are units of similar work: each block of the low-resolution level read (most of
    the time), each band of :data:`BAND_CELLS` cells whose colour is measured, then one last
    step for the threshold and the tiles' fractions. The first step, before any read, says the
    total; a damaged level read again at a finer level adds that level's blocks to it.
    """
    downsample = _scan_downsample(grid)
    bands = _colour_bands(_low_shape(slide, downsample))
    count = StepCount(total=bands + 1)  # the read's blocks join at its first step
    low, damaged, reasons = yield from _read_least_damaged(slide, grid, count)
    values = yield from _saturation_steps(low.rgb, bands, count)
    method, floor = "saturation", MIN_SATURATION
    colourless = _colourless(values)
    if colourless:
        method, floor = "darkness", MIN_DARKNESS
        values = darkness_of(low.rgb)
    low.rgb = None  # the largest array of the scan: not needed any more
    if colourless:
        logger.warning(
            "%s: no colour found (greyscale slide?): tissue is found by darkness instead of "
            "saturation",
            slide.path,
        )
    tissue, threshold = tissue_pixels(values, floor)
    fraction = _box_fractions(tissue, low, grid, slide.downsamples[low.level])
    mask = (fraction >= min_tissue) & ~damaged
    yield count.advance()
    return TissueScan(mask, fraction, damaged, reasons, method, threshold)


def tissue_mask(slide: Slide, grid: TileGrid, min_tissue: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mask, fraction)`` over the grid (:func:`scan_tissue` without the damage report).

    Returns
    -------
    mask : numpy.ndarray
        ``bool [rows, cols]``, ``fraction >= min_tissue``, damaged tiles left out.
    fraction : numpy.ndarray
        ``float32 [rows, cols]`` in ``[0, 1]``.
    """
    scan = scan_tissue(slide, grid, min_tissue)
    return scan.mask, scan.fraction


def saturation_of(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation ``(max - min) / max`` of RGB values (0..255), float32; NaN stays NaN.

    The maximum and minimum are taken plane by plane (``np.maximum`` of the three channels):
    the same numbers as a reduction over the last axis, at a third of its time. The divisor is
    at least 1, so black is 0 (not a division by zero) and NaN carries through.
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = np.maximum(np.maximum(red, green), blue).astype(np.float32, copy=False)
    spread = np.minimum(np.minimum(red, green), blue).astype(np.float32, copy=False)
    np.subtract(high, spread, out=spread)
    np.maximum(high, 1, out=high)
    return np.divide(spread, high, out=spread)


def darkness_of(rgb: np.ndarray) -> np.ndarray:
    """``1 - mean / 255`` of RGB values (0..255), float32; NaN stays NaN."""
    return (1.0 - rgb.mean(axis=-1) / 255.0).astype(np.float32)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of the finite values: the centre of the 256-bin histogram's bin that
    maximises the variance between the values up to it and those above.

    The histogram spans the values' range; counts are float32 and the class means cumulative,
    as in ``skimage.filters.threshold_otsu``, whose thresholds this one equals (a test compares).
    """
    values = np.asarray(values)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("inf")
    low, high = finite.min(), finite.max()
    if low == high:
        return float(low)
    parts = [finite[a:b] for a, b in row_bands.bands(finite.size, min_rows=HISTOGRAM_PART)]
    histograms = on_threads(_histogram, [(part, low, high) for part in parts])
    counts, edges = sum(h[0] for h in histograms), histograms[0][1]  # the same edges in each
    centres = (edges[:-1] + edges[1:]) / 2.0
    counts = counts.astype(np.float32)
    below = np.cumsum(counts)
    above = np.cumsum(counts[::-1])[::-1]
    mass = counts * centres
    mean_below = np.cumsum(mass) / below
    mean_above = (np.cumsum(mass[::-1]) / above[::-1])[::-1]
    between = below[:-1] * above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
    return float(centres[np.argmax(between)])


def _histogram(values: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    return np.histogram(values, bins=256, range=(low, high))


def tissue_pixels(values: np.ndarray, floor: float) -> tuple[np.ndarray, float]:
    """Tissue cells: values above Otsu's threshold (at least ``floor``), 3x3 closed and opened.

    NaN cells (nothing readable) are glass. Returns ``(mask, threshold)``. Computed in bands of
    rows on threads at once (:mod:`~napari_conch.slide.row_bands`), each band with the
    :data:`MORPHOLOGY_HALO` rows its four 3x3 passes reach.
    """
    threshold = max(otsu_threshold(values), floor)
    height = values.shape[0]
    mask = np.empty(values.shape, bool)

    def band(top: int, bottom: int) -> None:
        start, stop, keep = with_halo(top, bottom, height, MORPHOLOGY_HALO)
        with np.errstate(invalid="ignore"):  # NaN > threshold is False: glass
            mask[top:bottom] = _closed_and_opened(values[start:stop] > threshold)[keep]

    on_threads(band, row_bands.bands(height))
    return mask, threshold


def _closed_and_opened(mask: np.ndarray) -> np.ndarray:
    mask = erode_3x3(dilate_3x3(mask))  # closing
    return dilate_3x3(erode_3x3(mask))  # opening


def dilate_3x3(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by a 3x3 square; outside the image is False."""
    return _square_pass(mask, outside=False, combine=np.logical_or)


def erode_3x3(mask: np.ndarray) -> np.ndarray:
    """Binary erosion by a 3x3 square; outside the image is True (the border is not eaten)."""
    return _square_pass(mask, outside=True, combine=np.logical_and)


def _square_pass(mask: np.ndarray, outside: bool, combine: np.ufunc) -> np.ndarray:
    """Each cell combined with its 8 neighbours: with the two beside it on one axis, then the
    same on the other axis."""
    out = np.asarray(mask, bool)
    for axis in (0, 1):
        lines = np.moveaxis(out, axis, 0)
        padded = np.empty((lines.shape[0] + 2, *lines.shape[1:]), bool)
        padded[0] = padded[-1] = outside
        padded[1:-1] = lines
        merged = combine(padded[:-2], padded[1:-1])
        combine(merged, padded[2:], out=merged)
        out = np.moveaxis(merged, 0, axis)
    return np.ascontiguousarray(out)


def _read_least_damaged(
    slide: Slide, grid: TileGrid, count: StepCount
) -> Steps[tuple[LowResolution, np.ndarray, dict[tuple[int, int], str]]]:
    """The low-resolution image, from a finer level when that spares damaged tiles."""
    downsample = _scan_downsample(grid)
    low = yield from counted(iter_low_resolution(slide, downsample), count)
    damaged, reasons = _damaged_tiles(low, grid, slide.downsamples[low.level])
    level = low.level
    while damaged.any() and level > 0:
        level -= 1
        height, width = slide.level_shape(level)
        if height * width > FALLBACK_PIXELS:
            break
        finer = yield from counted(iter_low_resolution(slide, downsample, level=level), count)
        finer_damaged, finer_reasons = _damaged_tiles(finer, grid, slide.downsamples[level])
        if finer_damaged.sum() < damaged.sum():
            low, damaged, reasons = finer, finer_damaged, finer_reasons
    return low, damaged, reasons


def _scan_downsample(grid: TileGrid) -> float:
    """Level-0 pixels per cell of the low-resolution image."""
    return grid.tile_size_level0 / PIXELS_PER_TILE


def _low_shape(slide: Slide, downsample: float) -> tuple[int, int]:
    """``(h, w)``: cells of the low-resolution image first read at ``downsample``."""
    level, step = choose_level(slide, downsample)
    height, width = slide.level_shape(level)
    return math.ceil(height / step), math.ceil(width / step)


def _band_rows(width: int) -> int:
    """Rows of cells in one band of :data:`BAND_CELLS` cells."""
    return max(1, BAND_CELLS // max(1, width))


def _colour_bands(shape: tuple[int, int]) -> int:
    """Bands of :func:`_saturation_steps` over a low-resolution image of ``shape`` cells."""
    height, width = shape
    return math.ceil(height / _band_rows(width))


def _saturation_steps(rgb: np.ndarray, bands: int, count: StepCount) -> Steps[np.ndarray]:
    """:func:`saturation_of` in ``bands`` bands of rows, one step each.

    ``bands`` is said before the read (a finer level read instead gives about the same cells),
    so the total of the scan's steps never has to shrink.
    """
    height, width = rgb.shape[:2]
    values = np.empty((height, width), np.float32)
    edges = np.linspace(0, height, bands + 1).round().astype(int)

    def band(top: int, bottom: int) -> None:
        values[top:bottom] = saturation_of(rgb[top:bottom])

    pairs = list(itertools.pairwise(edges))
    at_once = row_bands.THREADS
    for first in range(0, len(pairs), at_once):  # bands on threads at once, a step each
        group = pairs[first : first + at_once]
        on_threads(band, group)
        for _ in group:
            yield count.advance()
    return values


def _colourless(saturation: np.ndarray) -> bool:
    """Whether no readable cell reaches :data:`MIN_SATURATION` (saturation would find nothing)."""
    if saturation.size == 0:
        return False
    highest = float(np.fmax.reduce(saturation, axis=None))  # NaN (nothing readable) ignored
    return not np.isnan(highest) and highest < MIN_SATURATION


def _box_fractions(
    tissue: np.ndarray, low: LowResolution, grid: TileGrid, downsample: float
) -> np.ndarray:
    """Share of each tile's box covered by tissue cells, over the tile's full area."""
    h, w = tissue.shape
    cell = low.step * downsample  # level-0 pixels per cell side
    rows, cols = low.cell_sides()
    height, width = low.level_shape  # the sums reach the level's pixel count at most
    wide = np.int32 if height * width < 2**31 else np.int64
    integral = np.zeros((h + 1, w + 1), wide)  # tissue level pixels, summed in place
    inner = integral[1:, 1:]

    def across(top: int, bottom: int) -> None:  # each row band: its own rows
        part = inner[top:bottom]
        part[...] = tissue[top:bottom]
        part *= rows[top:bottom, None]
        part *= cols[None, :]
        np.cumsum(part, axis=1, out=part)

    def down(left: int, right: int) -> None:  # each column band: down its columns
        np.cumsum(inner[:, left:right], axis=0, out=inner[:, left:right])

    on_threads(across, row_bands.bands(h))
    on_threads(down, row_bands.bands(w))
    boxes = grid.boxes()
    x0 = np.clip(np.rint(boxes[..., 0] / cell), 0, w).astype(np.int64)
    x1 = np.clip(np.rint(boxes[..., 2] / cell), 0, w).astype(np.int64)
    y0 = np.clip(np.rint(boxes[..., 1] / cell), 0, h).astype(np.int64)
    y1 = np.clip(np.rint(boxes[..., 3] / cell), 0, h).astype(np.int64)
    covered = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    covered = covered * downsample**2  # level-0 pixels
    return np.clip(covered / grid.tile_size_level0**2, 0.0, 1.0).astype(np.float32)


def _damaged_tiles(
    low: LowResolution, grid: TileGrid, downsample: float
) -> tuple[np.ndarray, dict[tuple[int, int], str]]:
    """Tiles whose box touches a damaged chunk, with the first such chunk's reason."""
    if not low.damaged.any():
        return np.zeros(grid.shape, bool), {}
    ch, cw = low.chunk
    height, width = low.level_shape
    n_y, n_x = low.damaged.shape
    boxes = grid.boxes() / downsample  # level pixels of the scanned level
    cx0 = np.clip(np.floor(boxes[..., 0] / cw), 0, n_x).astype(np.int64)
    cy0 = np.clip(np.floor(boxes[..., 1] / ch), 0, n_y).astype(np.int64)
    cx1 = np.clip(np.ceil(np.minimum(boxes[..., 2], width) / cw), 0, n_x).astype(np.int64)
    cy1 = np.clip(np.ceil(np.minimum(boxes[..., 3], height) / ch), 0, n_y).astype(np.int64)
    integral = np.zeros((n_y + 1, n_x + 1), np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(low.damaged, axis=0), axis=1)
    hits = integral[cy1, cx1] - integral[cy0, cx1] - integral[cy1, cx0] + integral[cy0, cx0]
    damaged = hits > 0
    reasons = {}
    for row, col in zip(*np.nonzero(damaged), strict=True):
        window = low.damaged[cy0[row, col] : cy1[row, col], cx0[row, col] : cx1[row, col]]
        dy, dx = np.argwhere(window)[0]
        key = (int(cy0[row, col] + dy), int(cx0[row, col] + dx))
        reasons[(int(row), int(col))] = low.reasons[key]
    return damaged, reasons
