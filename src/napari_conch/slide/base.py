"""The :class:`Slide`: a pyramid of lazy RGB levels with its physical pixel size."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from pathlib import Path

import dask.array as da
import numpy as np

from napari_conch.errors import SlideError, SlideRefusedError
from napari_conch.slide.readers import LevelReader

#: Value of the pixels read outside the image (white, like glass).
PAD_VALUE = 255
#: Largest side of a slide's level 0 (pixels): 26 cm at 0.25 um/px, more than any glass slide
#: scanned at 0.1 um/px. A header claiming more is damaged or not a slide, and refused before
#: anything the size of the image is made (a 4e9 x 3e9 px header asked for 666 TiB).
MAX_SLIDE_SIDE = 2**20


class Slide:
    """An opened slide: levels of ``(H, W, 3)`` uint8 dask arrays, finest first.

    Build one with :func:`napari_conch.slide.open_slide`.

    Attributes
    ----------
    path : pathlib.Path
        The file or folder it was opened from.
    name : str
        A display name (the file name without its image suffixes).
    levels : list of dask.array.Array
        ``(H, W, 3)`` uint8, level 0 = full resolution. Nothing is read until computed.
    downsamples : list of float
        Level-0 pixels per pixel of each level (level 0 -> 1.0), the mean over both axes.
    mpp : float or None
        Microns per pixel at level 0, ``None`` when unknown.
    mpp_source : str
        Where ``mpp`` came from: ``"aperio"``, ``"ome"``, ``"philips"``, ``"tiff-resolution"``,
        ``"zarr"``, ``"dicom"``, ``"czi"``, ``"openslide"``, ``"caller"`` or ``"unknown"``.
    fingerprint : str
        A cheap, stable hex digest that changes when the file does (see ``fingerprint.py``).
    reader : str
        The library that reads the pixels (``"tifffile"``, ``"zarr"``, ``"imagecodecs"``,
        ``"wsidicom"``, ``"pylibCZIrw"``, ``"openslide"``); ``napari-conch info`` names it.
    """

    def __init__(
        self,
        path: Path,
        levels: Sequence[da.Array],
        readers: Sequence[LevelReader],
        *,
        mpp: float | None,
        mpp_source: str,
        fingerprint: str,
        name: str | None = None,
        close: Callable[[], None] | None = None,
        reader: str = "unknown",
    ) -> None:
        self.path = Path(path)
        self.name = name or _display_name(self.path)
        self.levels = list(levels)
        self._readers = list(readers)
        _check_sizes(self.path, self.levels)
        h0, w0 = self.levels[0].shape[:2]
        self.downsamples = [
            1.0 if i == 0 else (h0 / lv.shape[0] + w0 / lv.shape[1]) / 2
            for i, lv in enumerate(self.levels)
        ]
        self.mpp = mpp
        self.mpp_source = mpp_source
        self.fingerprint = fingerprint
        self._close = close
        self.reader = reader

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of level 0."""
        return tuple(int(s) for s in self.levels[0].shape[:2])

    @property
    def level_count(self) -> int:
        return len(self.levels)

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(H, W)`` of a level."""
        self._check_level(level)
        return tuple(int(s) for s in self.levels[level].shape[:2])

    def level_mpp(self, level: int) -> float | None:
        """Microns per pixel of a level, ``None`` when the slide's MPP is unknown."""
        self._check_level(level)
        return None if self.mpp is None else self.mpp * self.downsamples[level]

    def read_region(self, level: int, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Read a ``w`` x ``h`` region whose top-left corner is ``(x0, y0)`` in level pixels.

        Only the chunks that overlap the region are read. Parts outside the image are white
        (255). Safe to call from several threads at once.

        Returns
        -------
        numpy.ndarray
            ``(h, w, 3)`` uint8.
        """
        self._check_level(level)
        x0, y0, w, h = (operator.index(v) for v in (x0, y0, w, h))
        if w <= 0 or h <= 0:
            raise ValueError(f"region size must be positive, got w={w}, h={h}")
        height, width = self.level_shape(level)
        cy0, cy1 = max(y0, 0), min(y0 + h, height)
        cx0, cx1 = max(x0, 0), min(x0 + w, width)
        if cy0 == y0 and cx0 == x0 and cy1 == y0 + h and cx1 == x0 + w:
            return self._read(level, cy0, cy1, cx0, cx1)
        out = np.full((h, w, 3), PAD_VALUE, np.uint8)
        if cy0 < cy1 and cx0 < cx1:
            out[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = self._read(level, cy0, cy1, cx0, cx1)
        return out

    def _read(self, level: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Read an in-bounds region; a damaged file becomes a one-line SlideError."""
        try:
            return self._readers[level].read(y0, y1, x0, x1)
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise SlideError(
                f"{self.path}: cannot read level {level} rows {y0}:{y1}, columns {x0}:{x1} "
                f"({reason})"
            ) from exc

    def close(self) -> None:
        """Release the open file (the levels cannot be read afterwards)."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        h, w = self.shape
        mpp = f"{self.mpp:g} um/px ({self.mpp_source})" if self.mpp else "mpp unknown"
        return f"<Slide {self.name!r} {w} x {h} px, {len(self.levels)} levels, {mpp}>"

    def _check_level(self, level: int) -> None:
        if not isinstance(level, (int, np.integer)) or not 0 <= level < len(self.levels):
            raise SlideError(
                f"{self.path}: level {level!r} does not exist (the slide has "
                f"{len(self.levels)} level{'s' if len(self.levels) != 1 else ''}: "
                f"0..{len(self.levels) - 1})"
            )


def _check_sizes(path: Path, levels: Sequence[da.Array]) -> None:
    """Refuse levels without pixels and a level 0 larger than :data:`MAX_SLIDE_SIDE`."""
    for i, level in enumerate(levels):
        height, width = (int(s) for s in level.shape[:2])
        if height < 1 or width < 1:
            raise SlideRefusedError(
                f"{path}: level {i} is {width} x {height} px, an image without pixels"
            )
    height, width = (int(s) for s in levels[0].shape[:2])
    refuse_huge(path, width, height)


def refuse_huge(path: Path, width: int, height: int) -> None:
    """Refuse an image larger than :data:`MAX_SLIDE_SIDE` a side.

    Readers call it on each stored level before making a dask array of it: a damaged header's
    4e9 x 3e9 px in 16 px tiles made dask list 250 million chunks a side and the process was
    killed for memory (22 GB) before the check of the slide's levels could say why.
    """
    if max(height, width) > MAX_SLIDE_SIDE:
        raise SlideRefusedError(
            f"{path}: the file says its image is {width} x {height} px, more than any slide "
            f"(at most {MAX_SLIDE_SIDE} px a side); it is damaged or not a slide"
        )


def _display_name(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name
