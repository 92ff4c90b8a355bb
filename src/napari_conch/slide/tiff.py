"""TIFF-family slides through tifffile: SVS, NDPI, OME-TIFF, tiled pyramids, strip TIFF.

Levels are those of tifffile's first series (``series[0].levels``: reduced pages, SubIFDs or
Aperio's pyramid). Associated images (SVS thumbnail, label, macro) are other series and never
levels. Each level is a lazy dask array over tifffile's zarr store; regions for tiles are decoded
chunk by chunk (see ``readers.py``). A level stored uncompressed in one piece (a flat TIFF in one
strip, of any size) is memory-mapped instead, so a region reads only its own rows. A slide
without a pyramid gets overview levels, made once and cached (``overview.py``).

Vendor TIFFs tifffile misreads (Leica SCN, Ventana BIF: :data:`~napari_conch.slide.
openslide_slide.TIFFFILE_MISREADS`) and TIFFs whose series tifffile cannot lay out are handed to
OpenSlide when the ``openslide`` extra is installed; without it, the first are read by tifffile
with a warning naming the extra, the second refused in one line naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dask.array as da
import numpy as np
import tifffile
import zarr

from napari_conch.errors import SlideError, SlideRefusedError
from napari_conch.slide.base import PAD_VALUE, Slide, refuse_huge
from napari_conch.slide.fingerprint import file_fingerprint
from napari_conch.slide.layout import make_layout
from napari_conch.slide.mpp import aperio_mpp, ome_mpp, philips_mpp, resolution_mpp
from napari_conch.slide.openslide_slide import (
    misread_by_tifffile,
    openslide_available,
    retry_with_openslide,
)
from napari_conch.slide.overview import with_overview
from napari_conch.slide.readers import ArrayReader, ChunkCache, TiffChunkReader

log = logging.getLogger("napari_conch")

#: Dask chunks over a memory-mapped level (rows, columns, samples).
MEMMAP_CHUNKS = (1024, 1024, -1)


def open_tiff(path: Path) -> Slide:
    """Open a TIFF-based slide; raise :class:`SlideError` when tifffile cannot read it."""
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise SlideError(f"{path}: cannot read as TIFF ({_one_line(exc)})") from exc
    misread = misread_by_tifffile(tif)
    if misread is not None and openslide_available():
        from napari_conch.slide.openslide_slide import open_openslide

        try:
            slide = open_openslide(path)
        except SlideError as exc:  # said, then read as tifffile reads it
            log.warning("%s; read by tifffile instead", exc)
        else:
            tif.close()
            return slide
    try:
        slide = _slide_from_tiff(path, tif)
    except TiffLayoutError as exc:  # tifffile opens the file but cannot read it as a slide
        tif.close()
        return retry_with_openslide(path, exc)
    except BaseException:
        tif.close()
        raise
    if misread is not None and not openslide_available():
        log.warning("%s", misread)
    return slide


class TiffLayoutError(SlideError):
    """tifffile opened the file but cannot lay out its images (its series) as a slide."""


def _slide_from_tiff(path: Path, tif: tifffile.TiffFile) -> Slide:
    try:
        first = tif.pages.first
        width, height = getattr(first, "imagewidth", 1), getattr(first, "imagelength", 1)
    except Exception:  # no first page: said by the series below
        width = height = 1
    if width < 1 or height < 1:  # before tifffile lays out series (it divides by the size)
        raise SlideRefusedError(f"{path}: its image is {width} x {height} px, without pixels")
    try:
        series_list = tif.series
    except Exception as exc:  # damaged headers (a zero width divides), vendor XML it refuses
        raise TiffLayoutError(f"{path}: cannot read as TIFF ({_one_line(exc)})") from exc
    if not series_list:
        raise SlideError(f"{path}: cannot read as TIFF (it holds no image)")
    series = series_list[0]
    _check_image_data_present(path, tif, series)
    tif.filehandle.set_lock(True)
    try:
        root = zarr.open(tif.aszarr(series=0, fillvalue=PAD_VALUE), mode="r")
    except Exception as exc:
        raise TiffLayoutError(
            f"{path}: cannot read the TIFF's image data ({_one_line(exc)})"
        ) from exc
    arrays = (
        [root]
        if isinstance(root, zarr.Array)
        else [root[str(i)] for i in range(len(series.levels))]
    )
    cache = ChunkCache()
    levels, readers = [], []
    for i, (level, array) in enumerate(zip(series.levels, arrays, strict=True)):
        layout = make_layout(
            level.axes,
            array.shape,
            array.dtype,
            f"{path} level {i}",
            premultiplied=_associated_alpha(level.keyframe),
        )
        refuse_huge(path, layout.width, layout.height)  # before dask lists its chunks
        mapped = _memmap(path, level)
        if mapped is not None:  # uncompressed and contiguous: read in place, any strip size
            levels.append(layout.to_rgb(da.from_array(mapped, chunks=MEMMAP_CHUNKS[: mapped.ndim])))
            readers.append(ArrayReader(mapped, layout))
            continue
        levels.append(layout.to_rgb(da.from_zarr(array)[layout.full_index()]))
        if TiffChunkReader.supports(level):
            readers.append(TiffChunkReader(level.pages[0], tif.filehandle, layout, cache, i))
        else:
            readers.append(ArrayReader(array, layout))
    mpp, source = tiff_mpp(tif)
    slide = Slide(
        path,
        levels,
        readers,
        mpp=mpp,
        mpp_source=source,
        fingerprint=file_fingerprint(path, [lv.shape for lv in levels]),
        close=tif.close,
        reader="tifffile",
    )
    return with_overview(slide)


def _memmap(path: Path, level) -> np.ndarray | None:
    """The level's pixels mapped from the file when they are stored uncompressed in one piece
    (a flat TIFF written in one strip), else ``None``: read lazily, without decoding the strip."""
    page = level.keyframe
    if len(level.pages) != 1 or not level.pages[0].is_memmappable or page.imagedepth != 1:
        return None
    try:
        return np.memmap(
            path, dtype=page.dtype, mode="r", offset=level.pages[0].dataoffsets[0],
            shape=level.shape,
        )  # fmt: skip
    except (ValueError, OSError):  # a truncated file: the chunk reader says so when read
        return None


def _check_image_data_present(path: Path, tif: tifffile.TiffFile, series) -> None:
    """Raise :class:`SlideError` when the file ends before the image data of every level.

    Such a file (a TIFF cut a few hundred bytes in: its header and directory are there, no
    pixel is) used to open, and each of its tiles then FAILED, as if some of it were there.
    """
    size = tif.filehandle.size
    whole = 0
    for level in series.levels:
        for page in level.pages:
            if page is None:
                continue
            counts = getattr(page, "databytecounts", ()) or ()
            offsets = getattr(page, "dataoffsets", ()) or ()
            for offset, count in zip(offsets, counts, strict=False):
                if count == 0 or offset + count <= size:
                    return  # some image data is in the file (or a chunk that is meant empty)
                whole = max(whole, offset + count)
    if whole:
        raise SlideError(
            f"{path}: cannot read as TIFF (the file ends after {size} bytes, before any of its "
            f"image data, which runs to byte {whole}: cut short?)"
        )


def tiff_mpp(tif: tifffile.TiffFile) -> tuple[float | None, str]:
    """Return ``(mpp, source)`` of a TIFF's level 0 (``(None, "unknown")`` when absent)."""
    page = tif.pages.first
    if tif.is_svs:
        mpp = aperio_mpp(page.description)
        if mpp is not None:
            return mpp, "aperio"
    if tif.is_ome and tif.ome_metadata:
        mpp = ome_mpp(tif.ome_metadata)
        if mpp is not None:
            return mpp, "ome"
    if tif.is_philips:
        mpp = philips_mpp(tif.philips_metadata)
        if mpp is not None:
            return mpp, "philips"
    mpp = resolution_mpp(page)
    if mpp is not None:
        return mpp, "tiff-resolution"
    return None, "unknown"


def _associated_alpha(page) -> bool:
    """Whether a TIFF page's extra sample is premultiplied alpha (ExtraSamples = 1)."""
    extra = getattr(page, "extrasamples", None) or ()
    return len(extra) > 0 and int(extra[0]) == 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
