"""Low-resolution images of a slide, read block by block so that memory and damage stay local.

:func:`read_low_resolution` averages a level over ``step`` x ``step`` pixel cells. It reads the
level in blocks aligned on the file's own chunks (TIFF tiles, zarr chunks), a few threads at a
time, and keeps only the per-cell sums, so memory is that of the small image whatever the size of
the slide. A block that cannot be read is read again chunk by chunk: the chunks that still fail
are recorded as damaged (with the reader's reason) and left out of the averages; the rest of the
slide is unaffected. Cells at the right and bottom edges average the pixels they hold (nothing is
trimmed), so even a 1 x 1 image gives one cell. :func:`iter_low_resolution` is the same read
as a generator of ``(blocks read, blocks)`` steps (:mod:`~napari_conch.slide.steps`), for
callers that report progress.

:func:`read_region_reduced` reads a large region shrunk by an integer factor, band by band, with
the same cell averaging, so that the memory it needs is bounded by its output.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide
from napari_conch.slide.steps import Steps, run_steps

#: Level pixels per side of one read (a few native chunks together).
BLOCK_PIXELS = 1024
#: Largest side of the chunk grid used to locate damage (huge chunks are cut into pieces).
MAX_CHUNK = 1024
#: Threads reading blocks.
READ_THREADS = 4


@dataclass
class LowResolution:
    """A level averaged over ``step`` x ``step`` cells, and where it could not be read.

    Attributes
    ----------
    rgb : numpy.ndarray
        ``float32 [h, w, 3]`` mean colour of each cell's readable pixels (0..255); NaN for a cell
        with none.
    level, step : int
        The level read and its pixels per cell side.
    level_shape : tuple of int
        ``(H, W)`` of that level; ``h = ceil(H / step)``, ``w = ceil(W / step)``.
    chunk : tuple of int
        ``(ch, cw)``: level pixels per cell of :attr:`damaged`.
    damaged : numpy.ndarray
        ``bool [ceil(H / ch), ceil(W / cw)]``: chunks that could not be read.
    reasons : dict
        ``(chunk_row, chunk_col) -> str``: why each damaged chunk could not be read.
    """

    rgb: np.ndarray | None
    level: int
    step: int
    level_shape: tuple[int, int]
    chunk: tuple[int, int]
    damaged: np.ndarray
    reasons: dict[tuple[int, int], str] = field(default_factory=dict)

    def cell_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, cols)`` int64: level pixels of each cell row and column (the last smaller)."""
        height, width = self.level_shape
        h, w = math.ceil(height / self.step), math.ceil(width / self.step)
        rows = np.diff(np.minimum(np.arange(h + 1, dtype=np.int64) * self.step, height))
        cols = np.diff(np.minimum(np.arange(w + 1, dtype=np.int64) * self.step, width))
        return rows, cols


def choose_level(slide: Slide, downsample: float) -> tuple[int, int]:
    """``(level, step)``: the coarsest level at least as fine as ``downsample``, and the cell side
    in its pixels that gives about ``downsample`` level-0 pixels per cell."""
    level = 0
    for i, d in enumerate(slide.downsamples):
        if d <= max(downsample, 1.0):
            level = i
    return level, max(1, round(downsample / slide.downsamples[level]))


def read_low_resolution(
    slide: Slide, downsample: float, *, level: int | None = None, threads: int = READ_THREADS
) -> LowResolution:
    """Average the slide over cells of about ``downsample`` level-0 pixels (see module doc).

    ``level`` forces the level read (default: :func:`choose_level`'s).
    """
    return run_steps(iter_low_resolution(slide, downsample, level=level, threads=threads))


def iter_low_resolution(
    slide: Slide, downsample: float, *, level: int | None = None, threads: int = READ_THREADS
) -> Steps[LowResolution]:
    """:func:`read_low_resolution` as steps: yields ``(blocks read, blocks)``.

    The first step, ``(0, blocks)``, comes before any read; then one per block, in the order
    the blocks are added (a damaged block re-read chunk by chunk is one step). Closing the
    generator cancels the blocks not yet started.
    """
    if level is None:
        level, step = choose_level(slide, downsample)
    else:
        step = max(1, round(downsample / slide.downsamples[level]))
    chunk = _chunk_shape(slide, level)
    sums = _CellSums(slide.level_shape(level), step, chunk)
    boxes = _blocks(slide.level_shape(level), chunk)

    def work(box: tuple[int, int, int, int]):
        try:
            return [_binned(slide, level, box, step)], []
        except SlideError:
            return _chunk_by_chunk(slide, level, box, step, chunk)

    yield 0, len(boxes)
    threads = max(1, threads)
    pending: deque = deque()
    done = 0
    with ThreadPoolExecutor(threads, thread_name_prefix="napari-conch-lowres") as pool:
        try:
            for box in boxes:  # at most 2 x threads blocks in flight: memory stays bounded
                pending.append(pool.submit(work, box))
                if len(pending) >= 2 * threads:
                    sums.add(*pending.popleft().result())
                    done += 1
                    yield done, len(boxes)
            while pending:
                sums.add(*pending.popleft().result())
                done += 1
                yield done, len(boxes)
        finally:
            for future in pending:
                future.cancel()
    return sums.result(level)


class _CellSums:
    """Per-cell sums and pixel counts of a level, and its damaged chunks, filled block by block."""

    def __init__(self, shape: tuple[int, int], step: int, chunk: tuple[int, int]) -> None:
        height, width = shape
        ch, cw = chunk
        h, w = math.ceil(height / step), math.ceil(width / step)
        self.shape, self.step, self.chunk = (height, width), step, chunk
        self.sums = np.zeros((h, w, 3), np.float32)  # exact up to 2**24: cells of 256 x 256 px
        self.counts = np.zeros((h, w), np.float32)
        self.damaged = np.zeros((math.ceil(height / ch), math.ceil(width / cw)), bool)
        self.reasons: dict[tuple[int, int], str] = {}

    def add(self, parts, failures) -> None:
        """Add a block's parts ``(cell_row, cell_col, sums, counts)`` and failed chunks."""
        ch, cw = self.chunk
        for cy, cx, part_sums, part_counts in parts:
            ny, nx = part_counts.shape
            self.sums[cy : cy + ny, cx : cx + nx] += part_sums
            self.counts[cy : cy + ny, cx : cx + nx] += part_counts
        for (y0, x0), reason in failures:
            self.damaged[y0 // ch, x0 // cw] = True
            self.reasons[(y0 // ch, x0 // cw)] = reason

    def result(self, level: int) -> LowResolution:
        """The mean colours (NaN where nothing was read), computed in place."""
        with np.errstate(invalid="ignore", divide="ignore"):
            self.sums /= self.counts[..., None]
        return LowResolution(
            self.sums, level, self.step, self.shape, self.chunk, self.damaged, self.reasons
        )


def _blocks(shape: tuple[int, int], chunk: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Boxes ``(y0, y1, x0, x1)`` of the reads: a few native chunks, about BLOCK_PIXELS a side."""
    height, width = shape
    ch, cw = chunk
    by = ch * max(1, BLOCK_PIXELS // ch)
    bx = cw * max(1, BLOCK_PIXELS // cw)
    return [
        (y, min(y + by, height), x, min(x + bx, width))
        for y in range(0, height, by)
        for x in range(0, width, bx)
    ]


def read_region_reduced(
    slide: Slide, level: int, x0: int, y0: int, w: int, h: int, factor: int
) -> np.ndarray:
    """Read an in-bounds region of a level shrunk ``factor`` times (area mean), ``uint8``.

    Returns ``[ceil(h / factor), ceil(w / factor), 3]``; it reads bands of ``factor`` rows times
    whatever keeps one band under :data:`BLOCK_PIXELS` squared pixels.
    """
    factor = max(1, int(factor))
    out_h, out_w = math.ceil(h / factor), math.ceil(w / factor)
    out = np.empty((out_h, out_w, 3), np.uint8)
    band = factor * max(1, BLOCK_PIXELS * BLOCK_PIXELS // max(1, w * factor))
    for top in range(0, h, band):
        rows = min(band, h - top)
        pixels = slide.read_region(level, x0, y0 + top, w, rows)
        _, _, part_sums, part_counts = bin_sums(pixels, 0, 0, factor)
        mean = part_sums.astype(np.float64) / part_counts[..., None]
        out[top // factor : top // factor + len(mean)] = np.clip(np.rint(mean), 0, 255)
    return out


def bin_sums(
    pixels: np.ndarray, y0: int, x0: int, step: int
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Sum the pixels of a block at level position ``(y0, x0)`` into ``step``-pixel cells.

    Returns ``(cell_row, cell_col, sums [ny, nx, C] float32, counts [ny, nx] float32)``: the
    first cell the block touches, and the sums and pixel counts of the cells it touches (exact
    for cells of up to 256 x 256 pixels, float32's 24-bit mantissa).
    """
    h, w = pixels.shape[:2]
    row_edges = [*_cell_starts(y0, h, step), h]  # where each cell starts, and the block's end
    col_edges = [*_cell_starts(x0, w, step), w]
    if step == 1:
        sums = pixels.astype(np.float32)
    else:
        first = np.uint16 if step * 255 < 2**16 else np.uint32
        second = np.uint32 if step * step * 255 < 2**32 else np.uint64
        sums = _cell_sums(pixels, row_edges[1], step, 0, first)
        sums = _cell_sums(sums, col_edges[1], step, 1, second).astype(np.float32)
    counts = np.outer(np.diff(row_edges), np.diff(col_edges)).astype(np.float32)
    return y0 // step, x0 // step, sums, counts


def _cell_sums(values: np.ndarray, lead: int, step: int, axis: int, dtype: type) -> np.ndarray:
    """Sums of cells along ``axis``: the first ``lead`` values (a cell cut by the block's
    edge, or a whole one), then cells of ``step``, the last of them possibly short.

    The same numbers as ``np.add.reduceat`` over the cells' starts, three to eight times
    faster: the whole cells are summed as ``step`` strided slices added in place (one pass over
    the data), only the first and last cells as reductions.
    """
    length = values.shape[axis]
    values = np.moveaxis(values, axis, 0)
    stop = lead + (length - lead) // step * step
    parts = [values[:lead].sum(axis=0, dtype=dtype, keepdims=True)]
    if stop > lead:
        whole = values[lead:stop:step].astype(dtype)
        for offset in range(1, step):
            whole += values[lead + offset : stop : step]
        parts.append(whole)
    if stop < length:
        parts.append(values[stop:].sum(axis=0, dtype=dtype, keepdims=True))
    return np.moveaxis(np.concatenate(parts) if len(parts) > 1 else parts[0], 0, axis)


def _cell_starts(start: int, length: int, step: int) -> list[int]:
    """Offsets inside a block where a new ``step``-pixel cell begins (the first is 0)."""
    first = (-start) % step
    return [0, *range(first if first else step, length, step)]


def _binned(slide: Slide, level: int, box: tuple[int, int, int, int], step: int):
    y0, y1, x0, x1 = box
    return bin_sums(slide.read_region(level, x0, y0, x1 - x0, y1 - y0), y0, x0, step)


def _chunk_by_chunk(slide: Slide, level: int, box, step: int, chunk: tuple[int, int]):
    """Read a failed block chunk by chunk: the good chunks' sums and the bad chunks' reasons."""
    y0, y1, x0, x1 = box
    ch, cw = chunk
    parts, failures = [], []
    for y in range(y0, y1, ch):
        for x in range(x0, x1, cw):
            sub = (y, min(y + ch, y1), x, min(x + cw, x1))
            try:
                parts.append(_binned(slide, level, sub, step))
            except SlideError as exc:
                failures.append(((y, x), _reason(exc)))
    return parts, failures


def _reason(exc: SlideError) -> str:
    """The error's message without the slide's path (the scan's caller names the slide)."""
    text = str(exc)
    cut = text.find(": cannot read ")
    return text[cut + 2 :] if cut >= 0 else text


def _chunk_shape(slide: Slide, level: int) -> tuple[int, int]:
    """The level's native chunk ``(height, width)`` (from its dask chunks), at most MAX_CHUNK."""
    chunks = slide.levels[level].chunks
    ch = max(1, min(int(chunks[0][0]), MAX_CHUNK))
    cw = max(1, min(int(chunks[1][0]), MAX_CHUNK))
    return ch, cw
