"""Tile grids over a slide level, or at a requested physical pixel size.

A grid is laid out in *grid pixels*: the pixels of level ``level`` resampled by ``resample``
(level pixels per grid pixel, >= 1; exactly 1 when tiling a level as it is). Tile ``(row, col)``
starts at ``(col * stride, row * stride)`` grid pixels and is ``tile_size`` wide and high.

Edge tiles are kept: a tile that overlaps the image only in part is read padded with white, so
the grid covers the whole image. Along each axis ``n = ceil((L - tile_size) / stride) + 1`` (at
least 1), with ``L`` the level's length in grid pixels. Boxes are not clipped to the image.

Odd sizes: an image smaller than a tile (down to 1 x 1 pixel) is one tile, padded white. What
cannot be read with bounded memory is refused with one line: a tile side above
:data:`MAX_TILE_SIZE`, a tile that needs more than :data:`MAX_READ_SIZE` level pixels per side
(an ``mpp`` far coarser than the slide's coarsest level), or an ``mpp`` at which the whole slide
is smaller than one pixel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide
from napari_conch.slide.resize import resize_area

#: A level whose MPP is within this relative distance of the requested one is used as is.
MPP_TOLERANCE = 0.02
#: Largest tile side, in grid pixels (the same bound as ``engine.options.MAX_TILE_SIZE``).
MAX_TILE_SIZE = 8192
#: Largest side of the level region read for one tile (``tile_size * resample``).
MAX_READ_SIZE = 8192


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one embedding run are; JSON-able through ``to_dict``.

    Attributes
    ----------
    level : int
        The pyramid level read.
    level_downsample : float
        Level-0 pixels per pixel of that level.
    resample : float
        Level pixels per grid pixel (>= 1; 1.0 when no resampling).
    tile_size, stride : int
        In grid pixels.
    rows, cols : int
        Number of tiles.
    level_shape : tuple of int
        ``(H, W)`` of the level, in level pixels.
    mpp : float or None
        Microns per grid pixel, ``None`` when the slide's MPP is unknown.
    """

    level: int
    level_downsample: float
    resample: float
    tile_size: int
    stride: int
    rows: int
    cols: int
    level_shape: tuple[int, int]
    mpp: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def scale_level0(self) -> float:
        """Level-0 pixels per grid pixel."""
        return self.level_downsample * self.resample

    @property
    def cell_size_level0(self) -> float:
        """The stride in level-0 pixels: the side of one cell of a ``[rows, cols]`` map."""
        return self.stride * self.scale_level0

    @property
    def tile_size_level0(self) -> float:
        """The tile side in level-0 pixels."""
        return self.tile_size * self.scale_level0

    @property
    def origin_level0(self) -> tuple[float, float]:
        """``(y, x)`` level-0 position of the top-left corner of cell ``(0, 0)``.

        Cell ``(r, c)`` of a ``[rows, cols]`` map is the stride-sized square centred on tile
        ``(r, c)``; without overlap it is the tile itself and the origin is ``(0, 0)``.
        """
        offset = (self.tile_size - self.stride) / 2 * self.scale_level0
        return (offset, offset)

    def tile_box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of tile ``(row, col)`` in level-0 pixels (not clipped)."""
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise IndexError(f"tile ({row}, {col}) is outside the {self.rows} x {self.cols} grid")
        step, size = self.cell_size_level0, self.tile_size_level0
        x0, y0 = col * step, row * step
        return (x0, y0, x0 + size, y0 + size)

    def boxes(self) -> np.ndarray:
        """``[rows, cols, 4]`` float64 boxes ``(x0, y0, x1, y1)`` in level-0 pixels."""
        step, size = self.cell_size_level0, self.tile_size_level0
        y0 = np.arange(self.rows, dtype=np.float64)[:, None] * step
        x0 = np.arange(self.cols, dtype=np.float64)[None, :] * step
        y0, x0 = np.broadcast_arrays(y0, x0)
        return np.stack([x0, y0, x0 + size, y0 + size], axis=-1)

    def level_origin(self, row: int, col: int) -> tuple[int, int]:
        """``(x, y)`` of tile ``(row, col)``'s top-left corner in level pixels (rounded)."""
        step = self.stride * self.resample
        return (round(col * step), round(row * step))

    @property
    def read_size(self) -> int:
        """Level pixels read per tile side (``tile_size`` when no resampling)."""
        return round(self.tile_size * self.resample)

    def read_tile(self, slide: Slide, row: int, col: int) -> np.ndarray:
        """Read tile ``(row, col)`` as ``(tile_size, tile_size, 3)`` uint8, padded white.

        When ``resample != 1`` it reads ``round(tile_size * resample)`` level pixels and shrinks
        them by area averaging.
        """
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise IndexError(f"tile ({row}, {col}) is outside the {self.rows} x {self.cols} grid")
        x, y = self.level_origin(row, col)
        n = self.read_size
        return resize_area(slide.read_region(self.level, x, y, n, n), self.tile_size)

    def to_dict(self) -> dict:
        """A JSON-able dict (``TileGrid.from_dict`` inverts it)."""
        d = asdict(self)
        d["level_shape"] = list(self.level_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TileGrid:
        """Rebuild a grid from :meth:`to_dict`'s output."""
        d = dict(d)
        d["level_shape"] = tuple(int(v) for v in d["level_shape"])
        return cls(**d)


def make_grid(
    slide: Slide,
    *,
    level: int | None = None,
    mpp: float | None = None,
    tile_size: int,
    stride: int | None = None,
) -> TileGrid:
    """Lay a tile grid over a slide, at a level or at a physical pixel size.

    Parameters
    ----------
    slide : Slide
    level : int, optional
        Tile this level as it is. Give ``level`` or ``mpp``, not both (neither: level 0).
    mpp : float, optional
        Microns per grid pixel wanted. The coarsest level at least as fine is read (a level
        within 2% of ``mpp`` counts as equal) and resampled to ``mpp``.
    tile_size : int
        Tile side in grid pixels (the caller's: a run takes ``RunOptions.tile_size_for``).
    stride : int, optional
        Step between tiles in grid pixels (default ``tile_size``; e.g. ``tile_size // 4`` for
        75% overlap).

    Raises
    ------
    SlideError
        For both ``level`` and ``mpp``, a missing level, an ``mpp`` on a slide without MPP, an
        ``mpp`` finer than level 0, a tile size / stride that is not a positive integer or is
        above :data:`MAX_TILE_SIZE`, an ``mpp`` at which the slide is under one pixel, or a
        tile needing more than :data:`MAX_READ_SIZE` level pixels per side.
    """
    stride = tile_size if stride is None else stride
    for name, value in (("tile size", tile_size), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise SlideError(f"{slide.path}: {name} must be a positive integer, got {value!r}")
        if value > MAX_TILE_SIZE:
            raise SlideError(
                f"{slide.path}: {name} {value} px is too large (at most {MAX_TILE_SIZE} px; "
                "tiles are resized to the model input anyway)"
            )
    if level is not None and mpp is not None:
        raise SlideError(f"{slide.path}: give a level or an mpp for the tile grid, not both")
    if mpp is not None:
        level, resample = _level_for_mpp(slide, mpp)
    else:
        level = 0 if level is None else level
        slide.level_shape(level)  # raises SlideError for a missing level
        resample = 1.0
    height, width = slide.level_shape(level)
    _check_read_size(slide, level, resample, int(tile_size), mpp)
    level_mpp = slide.level_mpp(level)
    return TileGrid(
        level=int(level),
        level_downsample=float(slide.downsamples[level]),
        resample=float(resample),
        tile_size=int(tile_size),
        stride=int(stride),
        rows=_count(height / resample, tile_size, stride),
        cols=_count(width / resample, tile_size, stride),
        level_shape=(height, width),
        mpp=None if level_mpp is None else level_mpp * resample,
    )


def _check_read_size(
    slide: Slide, level: int, resample: float, tile_size: int, mpp: float | None
) -> None:
    """Refuse grids at which the slide is under one pixel or a tile is too large to read."""
    height, width = slide.level_shape(level)
    if min(height, width) < 1:  # slides refuse this when opened; a grid of one is no grid
        raise SlideError(f"{slide.path}: level {level} is {width} x {height} px, without pixels")
    if min(height, width) / resample < 1:
        raise SlideError(
            f"{slide.path}: at {mpp:g} um/px the whole slide ({width} x {height} px at "
            f"{slide.level_mpp(level):g} um/px) is smaller than one pixel; choose a finer mpp"
        )
    read = round(tile_size * resample)
    if read > MAX_READ_SIZE:
        finest = slide.level_mpp(level) * MAX_READ_SIZE / tile_size
        raise SlideError(
            f"{slide.path}: one {tile_size} px tile at {mpp:g} um/px needs {read} x {read} px of "
            f"level {level}, the coarsest at hand (at most {MAX_READ_SIZE}); choose an mpp of "
            f"at most {finest:.3g} or a smaller tile"
        )


def _count(length: float, tile: int, stride: int) -> int:
    return max(1, math.ceil((length - tile) / stride - 1e-9) + 1)


def _level_for_mpp(slide: Slide, mpp: float) -> tuple[int, float]:
    """Return ``(level, resample)`` for a requested microns per pixel."""
    if not (isinstance(mpp, (int, float, np.floating)) and math.isfinite(mpp) and mpp > 0):
        raise SlideError(f"{slide.path}: requested microns per pixel {mpp!r} must be positive")
    if slide.mpp is None:
        raise SlideError(
            f"{slide.path}: the slide has no microns-per-pixel metadata, so a grid at "
            f"{mpp:g} um/px cannot be made; choose a pyramid level instead, or give the "
            "slide's microns per pixel"
        )
    best = None
    for level in range(slide.level_count):
        level_mpp = slide.level_mpp(level)
        if level_mpp <= mpp * (1 + MPP_TOLERANCE):
            best = level
    if best is None:
        raise SlideError(
            f"{slide.path}: requested {mpp:g} um/px is finer than the slide's full resolution "
            f"({slide.mpp:g} um/px); tiles are never upsampled"
        )
    ratio = mpp / slide.level_mpp(best)
    return best, (1.0 if abs(ratio - 1) <= MPP_TOLERANCE else ratio)
