"""Readers that fetch one in-bounds region of one level straight from its store.

``Slide.read_region`` is on the embedding engine's hot path (one call per tile, from several
threads), so it does not go through dask. Measured on the real SVS (448 px regions, 240 px JPEG
tiles, 2 threads): a dask slice + compute took about 6 ms, a zarr slice 2.4 ms and decoding the
TIFF tiles directly 1.1 ms. Tiled and stripped TIFF levels therefore use
:class:`TiffChunkReader`; everything else slices its zarr / numpy array (:class:`ArrayReader`).
All readers are thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import dask.array as da
import numpy as np

from napari_conch.errors import SlideError
from napari_conch.slide.jpeg_check import jpeg_problem
from napari_conch.slide.layout import Layout

#: Bytes of decoded TIFF chunks kept per slide (overlapping tiles decode each chunk once).
CHUNK_CACHE_BYTES = 64 * 2**20
#: TIFF compression code of (new-style) JPEG.
_TIFF_JPEG = 7


Handle = TypeVar("Handle")


def extra_hint(extra: str) -> str:
    """How to install the optional ``extra``: ``pip install 'napari-conch[extra]'``."""
    return f"pip install 'napari-conch[{extra}]'"


def needs_extra(path: Any, what: str, extra: str) -> SlideError:
    """The error for ``path``, ``what`` it is, whose reader is the optional ``extra`` not
    installed: ``"{path}: {what}; reading it needs the {extra} extra (pip install ...)"``."""
    hint = extra_hint(extra)
    return SlideError(f"{path}: {what}; reading it needs the {extra} extra ({hint})")


def open_through(
    path: Any, opener: Callable[[], Handle], cannot: str, build: Callable[[Handle], Any]
) -> Any:
    """A slide read through a library's file handle (OpenSlide, pylibCZIrw, wsidicom).

    ``opener()`` opens the handle; any exception it raises becomes one :class:`SlideError` line
    ``"{path}: {cannot} ({the library's reason})"``. ``build(handle)`` makes the slide; when it
    fails the handle is closed before the error goes on.
    """
    try:
        handle = opener()
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SlideError(f"{path}: {cannot} ({reason})") from exc
    try:
        return build(handle)
    except BaseException:
        handle.close()
        raise


class DamagedChunkError(ValueError):
    """A stored chunk (TIFF tile or strip) that cannot be decoded into trustworthy pixels."""


class LevelReader(Protocol):
    """Reads ``[y0:y1, x0:x1]`` of one level (inside its bounds) as ``(h, w, 3)`` uint8."""

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray: ...


class ArrayReader:
    """Region reader over any sliceable array (zarr array, numpy array).

    Parameters
    ----------
    array : array-like
        The stored level (zarr arrays are safe to read from several threads).
    layout : Layout
        Its axes.
    """

    def __init__(self, array: Any, layout: Layout) -> None:
        self._array = array
        self._layout = layout

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        region = self._array[self._layout.index(y0, y1, x0, x1)]
        if hasattr(region, "compute"):
            # a dask array (a napari layer's levels): computed in this reader thread, whose
            # callers run several at once, not in dask's shared pool of full-priority threads
            region = region.compute(scheduler="synchronous")
        return np.ascontiguousarray(self._layout.to_rgb(np.asarray(region)))


class CutImageReader(ArrayReader):
    """:class:`ArrayReader` over an image whose rows from ``valid_rows`` on are lost.

    A region that reaches those rows raises :class:`DamagedChunkError` with ``reason``, so the
    tissue scan records it as damaged and its tiles are FAILED, never read as pixels the file
    does not hold (see :mod:`~napari_conch.slide.cut_image`).
    """

    def __init__(self, array: Any, layout: Layout, valid_rows: int, reason: str) -> None:
        super().__init__(array, layout)
        self._valid_rows, self._reason = valid_rows, reason

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if y1 > self._valid_rows:
            raise DamagedChunkError(self._reason)
        return super().read(y0, y1, x0, x1)


class ChunkCache:
    """A small thread-safe LRU of decoded chunks, bounded in bytes."""

    def __init__(self, max_bytes: int = CHUNK_CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: np.ndarray) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += value.nbytes
            while self._bytes > self._max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes


class TiffChunkReader:
    """Region reader decoding a TIFF page's tiles or strips directly.

    Only the chunks that overlap the region are read (under the file handle's lock) and decoded
    (outside it, so threads decode in parallel). Missing chunks (byte count 0) read as white.
    A chunk whose bytes end before its byte count (a truncated file), or a JPEG chunk whose
    stream is broken (see :mod:`~napari_conch.slide.jpeg_check`), raises
    :class:`DamagedChunkError` rather than decode to garbage.

    Parameters
    ----------
    page : tifffile.TiffPage
        The level's page: contiguous samples, depth 1, axes ``YXS`` or ``YX``.
    filehandle : tifffile.FileHandle
        The open file, with its lock enabled.
    layout : Layout
        The level's axes.
    cache : ChunkCache
        Decoded chunks shared by the slide's levels.
    key : int
        This level's number, to key the cache.
    """

    def __init__(self, page, filehandle, layout: Layout, cache: ChunkCache, key: int) -> None:
        keyframe = page.keyframe
        self._decode = keyframe.decode
        self._chunk_h, self._chunk_w = keyframe.chunks[:2]
        self._n_cols = keyframe.chunked[1]
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._fh = filehandle
        self._layout = layout
        self._cache = cache
        self._key = key
        self._samples = layout.channels
        self._has_c = "C" in layout.axes
        self._decode_args: dict[str, Any] = {"_fullsize": True}
        # NDPI-style chunks (a shared JPEG header) are not whole JPEG streams: not checked
        self._check_jpeg = keyframe.compression == _TIFF_JPEG and keyframe.jpegheader is None
        if page.jpegtables is not None:
            self._decode_args["jpegtables"] = page.jpegtables
        if keyframe.jpegheader is not None:
            self._decode_args["jpegheader"] = keyframe.jpegheader

    @staticmethod
    def supports(level) -> bool:
        """Whether a tifffile series level can be read chunk by chunk by this class."""
        keyframe = level.keyframe
        return (
            len(level.pages) == 1
            and level.axes in ("YXS", "YX")
            and keyframe.imagedepth == 1
            and (keyframe.samplesperpixel == 1 or keyframe.planarconfig == 1)
            and len(keyframe.chunked) >= 2
            and all(n == 1 for n in keyframe.chunked[2:])
        )

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.empty((y1 - y0, x1 - x0, self._samples), np.uint8)
        ch, cw = self._chunk_h, self._chunk_w
        for cy in range(y0 // ch, (y1 - 1) // ch + 1):
            for cx in range(x0 // cw, (x1 - 1) // cw + 1):
                chunk = self._chunk(cy * self._n_cols + cx)
                top, left = cy * ch, cx * cw
                sy0, sy1 = max(y0, top), min(y1, top + ch)
                sx0, sx1 = max(x0, left), min(x1, left + cw)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = chunk[
                    sy0 - top : sy1 - top, sx0 - left : sx1 - left
                ]
        return np.ascontiguousarray(self._layout.to_rgb(out if self._has_c else out[..., 0]))

    def _chunk(self, index: int) -> np.ndarray:
        key = (self._key, index)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        count = self._counts[index] if index < len(self._counts) else 0
        if count == 0:
            chunk = np.full((self._chunk_h, self._chunk_w, self._samples), 255, np.uint8)
        else:
            with self._fh.lock:
                self._fh.seek(self._offsets[index])
                data = self._fh.read(count)
            self._check(data, count, index)
            decoded = self._decode(data, index, **self._decode_args)[0]
            chunk = decoded.reshape(self._chunk_h, self._chunk_w, self._samples)
        self._cache.put(key, chunk)
        return chunk

    def _check(self, data: bytes, count: int, index: int) -> None:
        where = f"TIFF chunk {index}"
        if len(data) < count:
            raise DamagedChunkError(
                f"{where}: the file ends after {len(data)} of its {count} bytes (truncated file?)"
            )
        if self._check_jpeg:
            problem = jpeg_problem(data)
            if problem is not None:
                raise DamagedChunkError(f"{where}: {problem}")


class RegionArray:
    """Base of readers that decode a region on request (a library's ``read_region``).

    Subclasses set ``shape`` (``(H, W, 3)``) and ``tile`` (``(th, tw)``, the chunk napari and the
    tissue scan read at once) and define ``read``; indexing ``[y0:y1, x0:x1]`` calls it, so the
    reader is also the lazy array under a level's dask array.
    """

    dtype = np.dtype(np.uint8)
    ndim = 3
    shape: tuple[int, int, int]
    tile: tuple[int, int]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        ys, xs = key[0], key[1]
        out = self.read(ys.start or 0, ys.stop, xs.start or 0, xs.stop)
        return out[(slice(None), slice(None), *key[2:])] if len(key) > 2 else out

    def dask(self, name: str) -> da.Array:
        """The level as a dask array of ``tile``-sized chunks."""
        return da.from_array(self, chunks=(*self.tile, 3), asarray=True, fancy=False, name=name)
