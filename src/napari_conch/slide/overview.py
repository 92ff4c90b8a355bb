"""Overview levels for slides without a pyramid (a flat TIFF of any size), made once and cached.

A slide whose coarsest level is longer than :data:`OVERVIEW_SIDE` pixels gets overview levels,
each :data:`FACTOR` times coarser than the one before, until the longest side is at most
:data:`OVERVIEW_SIDE`. They are what napari shows when zoomed out and what the tissue scan reads,
so neither has to read the whole image again.

They are made by one pass over the coarsest stored level, block by block (:data:`BLOCK_ROWS` x
:data:`BLOCK_COLUMNS` level pixels at a time, so memory stays bounded whatever the slide's size),
each overview pixel the mean of the pixels it covers (edge pixels cover what is left), and
written to a zarr group in the user's cache folder (``overviews/<fingerprint>.zarr``), keyed by
the slide's fingerprint: the next opening of the same file reads them from there, a changed file
gets new ones. The group is written to a temporary folder and renamed into place, so a killed
run leaves no half overview behind. A block that cannot be read stops the overview (the slide
then opens without one, with a warning), never gives wrong pixels.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from pathlib import Path

import dask.array as da
import numpy as np

from napari_conch.slide.base import Slide
from napari_conch.slide.layout import make_layout
from napari_conch.slide.readers import ArrayReader

log = logging.getLogger("napari_conch")

#: A coarsest level longer than this (pixels) gets overview levels.
OVERVIEW_SIDE = 4096
#: Largest level (pixels) whose overview is made when the slide is opened: the pass reads it
#: whole (a 30,000 x 30,000 JPEG-tiled TIFF: 0.9 Gpx, 31 s here). Larger ones open without an
#: overview, with a warning, instead of blocking the opening for minutes.
MAX_OVERVIEW_PIXELS = 1_000_000_000
#: Each overview level is this many times coarser than the level before it.
FACTOR = 4
#: Level pixels read at once to make the overviews (multiples of FACTOR ** levels).
BLOCK_ROWS = 1024
BLOCK_COLUMNS = 8192
#: Chunk side of the cached overview arrays.
CHUNK = 256


def overview_shapes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """``(H, W)`` of the overview levels a level of ``shape`` needs (none when it is small)."""
    shapes = []
    while max(shape) > OVERVIEW_SIDE:
        shape = (math.ceil(shape[0] / FACTOR), math.ceil(shape[1] / FACTOR))
        shapes.append(shape)
    return shapes


def overview_folder(fingerprint: str, root: str | os.PathLike | None = None) -> Path:
    """Where the overview of the slide of ``fingerprint`` is cached."""
    from napari_conch.cache_dir import user_cache_root

    base = Path(root).expanduser() if root is not None else user_cache_root()
    return base / "overviews" / f"{fingerprint}.zarr"


def with_overview(slide: Slide, root: str | os.PathLike | None = None) -> Slide:
    """``slide`` with its overview levels added (made and cached the first time).

    Returns ``slide`` itself when it needs none. The slide's fingerprint is unchanged (it names
    the file, not the overview).
    """
    coarsest = slide.level_shape(slide.level_count - 1)
    shapes = overview_shapes(coarsest)
    if not shapes:
        return slide
    folder = overview_folder(slide.fingerprint, root)
    arrays = _cached(folder, shapes)
    if arrays is None:
        pixels = coarsest[0] * coarsest[1]
        if pixels > MAX_OVERVIEW_PIXELS:
            log.warning("%s: no overview made (%d x %d px: reading it whole would take long); "
                        "zoomed-out views read the image", slide.path, *coarsest)  # fmt: skip
            return slide
        try:
            _build(slide, shapes, folder)
        except Exception as exc:  # a damaged block or a full disk: the slide, without overview
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("%s: no overview made (%s); zoomed-out views read the image", slide.path,
                        reason)  # fmt: skip
            return slide
        arrays = _cached(folder, shapes)
    if arrays is None:
        return slide
    levels, readers = list(slide.levels), list(slide._readers)
    for i, array in enumerate(arrays):
        layout = make_layout("YXS", array.shape, array.dtype, f"{folder} level {i + 1}")
        levels.append(da.from_zarr(array))
        readers.append(ArrayReader(array, layout))
    return Slide(
        slide.path,
        levels,
        readers,
        mpp=slide.mpp,
        mpp_source=slide.mpp_source,
        fingerprint=slide.fingerprint,
        name=slide.name,
        close=slide._close,
        reader=slide.reader,
    )


def _cached(folder: Path, shapes: list[tuple[int, int]]) -> list | None:
    """The cached overview arrays when the folder holds all of them with the right shapes."""
    import zarr

    if not folder.is_dir():
        return None
    try:
        group = zarr.open_group(folder, mode="r")
        arrays = [group[str(i + 1)] for i in range(len(shapes))]
    except Exception:  # a foreign or damaged folder: made again
        return None
    if [tuple(a.shape[:2]) for a in arrays] != shapes:
        return None
    return arrays


def _build(slide: Slide, shapes: list[tuple[int, int]], folder: Path) -> None:
    """Make the overview levels block by block into a temporary group, then rename it."""
    import zarr

    source = slide.level_count - 1
    height, width = slide.level_shape(source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        group = zarr.open_group(tmp, mode="w")
        arrays = [
            group.create_array(
                str(i + 1), shape=(*shape, 3), chunks=(CHUNK, CHUNK, 3), dtype="uint8"
            )
            for i, shape in enumerate(shapes)
        ]
        for y in range(0, height, BLOCK_ROWS):
            for x in range(0, width, BLOCK_COLUMNS):
                h, w = min(BLOCK_ROWS, height - y), min(BLOCK_COLUMNS, width - x)
                block = slide.read_region(source, x, y, w, h).astype(np.float32)
                step = 1
                for array in arrays:
                    block = _mean_cells(block, FACTOR)
                    step *= FACTOR
                    y0, x0 = y // step, x // step
                    array[y0 : y0 + block.shape[0], x0 : x0 + block.shape[1]] = np.rint(block)
        if not folder.exists():  # another process may have made it meanwhile: keep theirs
            os.replace(tmp, folder)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)


def _mean_cells(block: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` cells of a ``(h, w, 3)`` block (edge cells: what is
    there)."""
    for axis in (0, 1):
        n = block.shape[axis]
        starts = np.arange(0, n, factor)
        sums = np.add.reduceat(block, starts, axis=axis)
        counts = np.diff(np.append(starts, n)).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        block = sums / counts.reshape(shape)
    return block
