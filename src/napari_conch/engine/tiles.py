"""Which tiles to embed, in which order, and reading them in a small thread pool.

Reading and decoding (JPEG tiles, resampling) happen in ``num_readers`` threads while the model
runs in the caller's thread, a whole batch per task; at most ``max(num_readers, prefetch //
batch_size)`` batches are read ahead, so memory stays bounded whatever the size of the slide. A
tile whose reading raises is reported as failed with the error's message and does not stop the
others: a damaged chunk (see :mod:`napari_conch.slide.readers`) makes the tiles over it FAILED with
a one-line reason that names the file, the level, the rows and columns and the chunk.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_conch.engine.store.embedding_store import BLOCK
from napari_conch.errors import InputError, NapariConchError

#: A level-0 box ``(x0, y0, x1, y1)``.
Box = Sequence[float]


def region_mask(grid: Any, region: Box | None) -> np.ndarray:
    """Return bool ``[rows, cols]``: tiles whose level-0 box overlaps ``region``."""
    if region is None:
        return np.zeros(grid.shape, dtype=bool)
    if len(region) != 4:
        raise InputError(f"region {region!r}: expected a level-0 box (x0, y0, x1, y1)")
    x0, y0, x1, y1 = (float(v) for v in region)
    boxes = np.asarray(grid.boxes(), dtype=np.float64)
    return (boxes[..., 0] < x1) & (boxes[..., 2] > x0) & (boxes[..., 1] < y1) & (boxes[..., 3] > y0)


def tile_order(
    todo: np.ndarray, grid: Any, region: Box | None = None, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(rows, cols)`` of the tiles in ``todo``, in the order to embed them.

    Tiles overlapping ``region`` come first; within each part, tiles go block by block of the
    store's embeddings chunks (``block`` x ``block`` tiles), row-major inside a block, so that
    consecutive batches fill the same chunk and read neighbouring parts of the slide.
    """
    rows, cols = np.nonzero(np.asarray(todo, dtype=bool))
    first = region_mask(grid, region)[rows, cols]
    keys = (cols % block, rows % block, cols // block, rows // block, ~first)
    order = np.lexsort(keys)
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


@dataclass
class TileBatch:
    """Tiles read for one model call: the good ones stacked, the failed ones with a reason."""

    rows: np.ndarray
    cols: np.ndarray
    tiles: np.ndarray  # uint8 [N, t, t, 3]
    failed: list[tuple[int, int, str]] = field(default_factory=list)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a tile could not be read (our own errors already name the file)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, NapariConchError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_one(slide: Any, grid: Any, row: int, col: int) -> np.ndarray:
    tile = np.asarray(grid.read_tile(slide, row, col))
    side = int(grid.tile_size)
    if tile.shape != (side, side, 3) or tile.dtype != np.uint8:
        raise ValueError(
            f"unexpected tile of shape {tile.shape} and dtype {tile.dtype} "
            f"(expected ({side}, {side}, 3) uint8)"
        )
    return tile


class TileReader:
    """Read tiles of a grid in a thread pool, a bounded number of batches ahead of the consumer.

    Each batch is read whole by one reader thread into one array (one task per batch, not per
    tile: the hand-offs between threads cost less than the tiles' decoding), so ``num_readers``
    batches are decoded at once while the consumer works on the one before. Use as a context
    manager; leaving it cancels the reads not yet started and waits for the few running ones.
    """

    def __init__(self, slide: Any, grid: Any, *, num_readers: int = 2, prefetch: int = 64):
        if num_readers < 1:
            raise InputError(f"num_readers={num_readers}: must be at least 1")
        self.slide, self.grid = slide, grid
        self.num_readers = int(num_readers)
        self.prefetch = max(1, int(prefetch))
        self._pool = ThreadPoolExecutor(num_readers, thread_name_prefix="napari-conch-read")

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading: drop queued reads, wait for running ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def batches(self, rows: np.ndarray, cols: np.ndarray, batch_size: int) -> Iterator[TileBatch]:
        """Yield :class:`TileBatch` es of up to ``batch_size`` tiles in the given order.

        At most ``max(num_readers, prefetch // batch_size)`` batches are read ahead of the one
        the consumer holds: memory stays bounded whatever the size of the slide.
        """
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size}: must be at least 1")
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        ahead = max(self.num_readers, self.prefetch // batch_size)
        queue: collections.deque[Future] = collections.deque()
        starts = iter(range(0, len(rows), batch_size))

        def refill() -> None:
            while len(queue) < ahead:
                start = next(starts, None)
                if start is None:
                    return
                part = slice(start, start + batch_size)
                queue.append(self._pool.submit(self._read_batch, rows[part], cols[part]))

        refill()
        while queue:
            future = queue.popleft()
            refill()  # keep the readers busy while this batch is embedded
            yield future.result()

    def _read_batch(self, rows: np.ndarray, cols: np.ndarray) -> TileBatch:
        """Read the tiles of one batch (in a reader thread) into one array."""
        side = int(self.grid.tile_size)
        tiles = np.empty((len(rows), side, side, 3), dtype=np.uint8)
        good = np.zeros(len(rows), dtype=bool)
        failed = []
        for i, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            try:
                tiles[i] = _read_one(self.slide, self.grid, row, col)
            except Exception as exc:  # a corrupt or unreadable tile: record it, go on
                failed.append((row, col, failure_reason(exc)))
                continue
            good[i] = True
        if not good.any():
            tiles = np.zeros((0, 0, 0, 3), dtype=np.uint8)
        elif not good.all():
            tiles = tiles[good]
        return TileBatch(rows[good], cols[good], tiles, failed)
