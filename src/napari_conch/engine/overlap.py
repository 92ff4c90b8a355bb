"""Maps at stride resolution: averaging overlapping tiles, and placing maps on the slide.

With a stride smaller than the tile (the CONCH paper's zero-shot segmentation uses 75 % overlap,
stride = tile / 4), every tile covers ``k x k`` cells of size ``stride``, ``k = ceil(tile /
stride)``. The *cell map* gives each cell the mean of the scores of every computed tile covering
it, which is what a per-pixel average of overlapping tile predictions gives, at the resolution
where it can change. It is computed with cumulative sums over the ``[rows, cols]`` score arrays,
so memory and time are proportional to the grid, never to the slide's pixels.

Placement on the slide (level-0 pixels, ``(y, x)`` order): cell ``(i, j)`` of a cell map covers
``origin + (i, j) * cell_size`` to ``origin + (i + 1, j + 1) * cell_size`` where ``cell_size`` is
the stride in level-0 pixels (``grid.cell_size_level0``) and ``origin`` is the level-0 position
of the first tile's top-left corner (from ``grid.tile_box(0, 0)``). Tile ``(r, c)`` covers cells
``r .. r + k - 1`` and ``c .. c + k - 1``, so a cell map has ``rows + k - 1`` by ``cols + k - 1``
cells. When ``tile`` is not a multiple of the stride, the last cell a tile covers is covered only
partly; it still counts that tile. With stride = tile, ``k = 1`` and the cell map is the tile map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def overlap_factor(tile_size: int, stride: int) -> int:
    """Return ``k``: how many stride cells a tile covers along each axis."""
    if stride <= 0 or tile_size <= 0:
        raise ValueError(f"tile size {tile_size} and stride {stride} must be positive")
    return max(1, math.ceil(tile_size / stride))


def _window_sums(values: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Sums of ``k`` consecutive entries along ``axis`` for every placement touching the array.

    The result is ``n + k - 1`` long along ``axis``: entry ``j`` sums inputs ``j - k + 1 .. j``.
    """
    n = values.shape[axis]
    pad = [(0, 0)] * values.ndim
    pad[axis] = (k, k - 1)  # one extra leading zero makes the cumulative sum start at 0
    cumulative = np.cumsum(np.pad(values, pad), axis=axis)
    upper = [slice(None)] * values.ndim
    lower = [slice(None)] * values.ndim
    upper[axis], lower[axis] = slice(k, n + 2 * k - 1), slice(0, n + k - 1)
    return cumulative[tuple(upper)] - cumulative[tuple(lower)]


def overlap_average(maps: np.ndarray, k: int) -> np.ndarray:
    """Average overlapping tiles into a cell map.

    Parameters
    ----------
    maps
        ``[..., rows, cols]`` per-tile values; NaN where a tile was not computed.
    k
        Cells per tile along each axis (:func:`overlap_factor`).

    Returns
    -------
    np.ndarray
        float32 ``[..., rows + k - 1, cols + k - 1]``: each cell the mean over the computed
        tiles covering it, NaN where none is.
    """
    maps = np.asarray(maps)
    if k == 1:
        return maps.astype(np.float32, copy=True)
    valid = np.isfinite(maps)
    sums = np.where(valid, maps, 0.0).astype(np.float64)
    counts = valid.astype(np.float64)
    for axis in (-2, -1):  # separable: window sums along rows, then along columns
        sums = _window_sums(sums, k, axis)
        counts = _window_sums(counts, k, axis)
    counts = np.rint(counts)  # exact integers; cumulative differences may leave 1e-16 residue
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / counts, np.nan)
    return out.astype(np.float32)


@dataclass(frozen=True)
class MapGeometry:
    """Where a ``[height, width]`` map lies on the slide, in level-0 pixels.

    Attributes
    ----------
    shape
        ``(height, width)`` of the map in cells.
    cell_size
        Side of one cell in level-0 pixels.
    origin
        ``(y, x)`` level-0 position of cell ``(0, 0)``'s top-left corner.
    """

    shape: tuple[int, int]
    cell_size: float
    origin: tuple[float, float]

    @property
    def scale(self) -> tuple[float, float]:
        """Level-0 pixels per cell along ``(y, x)`` (napari's ``scale`` in level-0 units)."""
        return (self.cell_size, self.cell_size)

    @property
    def napari_translate(self) -> tuple[float, float]:
        """napari's ``translate`` in level-0 world units.

        napari centres data pixel ``i`` at ``translate + i * scale``, and a level-0 image layer
        centres pixel ``p`` at ``p``; the cell's corner ``origin`` therefore maps to
        ``origin + cell_size / 2 - 0.5``.
        """
        return tuple(o + self.cell_size / 2 - 0.5 for o in self.origin)

    def cell_box(self, i: int, j: int) -> tuple[float, float, float, float]:
        """Level-0 box ``(x0, y0, x1, y1)`` of cell ``(i, j)``."""
        y0 = self.origin[0] + i * self.cell_size
        x0 = self.origin[1] + j * self.cell_size
        return (x0, y0, x0 + self.cell_size, y0 + self.cell_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (used in exported files)."""
        return {
            "shape": list(self.shape),
            "cell_size_level0": float(self.cell_size),
            "origin_level0_yx": [float(v) for v in self.origin],
        }


def _tile_origin(grid: Any) -> tuple[float, float]:
    """``(y, x)`` level-0 top-left corner of tile ``(0, 0)``."""
    x0, y0, _, _ = grid.tile_box(0, 0)
    return (float(y0), float(x0))


def cell_geometry(grid: Any) -> MapGeometry:
    """Geometry of the cell map of a grid (:func:`overlap_average` of its tile maps)."""
    k = overlap_factor(grid.tile_size, grid.stride)
    rows, cols = grid.shape
    return MapGeometry(
        (rows + k - 1, cols + k - 1), float(grid.cell_size_level0), _tile_origin(grid)
    )


def tile_geometry(grid: Any) -> MapGeometry:
    """Geometry that shows a per-tile ``[rows, cols]`` map as one stride cell per tile.

    Each tile's value is drawn on the stride-sized cell at the tile's centre, so a tile map and
    the cell map of the same grid line up. With stride = tile this is the tile itself.
    """
    cell = float(grid.cell_size_level0)
    shift = (cell * grid.tile_size / grid.stride - cell) / 2
    origin = tuple(v + shift for v in _tile_origin(grid))
    return MapGeometry(tuple(grid.shape), cell, origin)
