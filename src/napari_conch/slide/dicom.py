"""DICOM whole-slide images (the VL Whole Slide Microscopy IOD) through ``wsidicom``.

A slide is a folder holding the files of one series (one file per pyramid level, as a PACS
export gives them) or one such file. Levels are the series' pyramid levels, finest first; the
MPP is the level-0 pixel spacing. Regions are read with ``WsiDicom.read_region`` (the frames that
overlap, decoded by wsidicom's codecs); each level is also a lazy dask array of tile-sized
chunks for napari. Reading needs the ``dicom`` extra (``pip install 'napari-conch[dicom]'``);
without it, a DICOM file says so in one line.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import dask.array as da
import numpy as np

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide
from napari_conch.slide.fingerprint import file_fingerprint
from napari_conch.slide.readers import needs_extra, open_through

#: The DICOM file's preamble is 128 bytes, then this.
DICOM_MAGIC = b"DICM"


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == DICOM_MAGIC
    except OSError:
        return False


def dicom_files(path: Path) -> list[Path]:
    """The DICOM files a path names: itself, or the DICOM files directly in a folder."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and is_dicom_file(p))
    return [path] if is_dicom_file(path) else []


class DicomLevelReader:
    """Reads ``[y0:y1, x0:x1]`` of one pyramid level; also a lazy array for dask."""

    def __init__(self, wsi, level, lock: threading.Lock) -> None:
        self._wsi = wsi
        self._level = level.level
        self.shape = (level.size.height, level.size.width, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.tile = (level.tile_size.height, level.tile_size.width)
        self._lock = lock

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        with self._lock:  # one WsiDicom file handle per level file
            image = self._wsi.read_region((x0, y0), self._level, (x1 - x0, y1 - y0))
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))

    def __getitem__(self, key) -> np.ndarray:
        ys, xs = key[0], key[1]
        out = self.read(ys.start or 0, ys.stop, xs.start or 0, xs.stop)
        return out[(slice(None), slice(None), *key[2:])] if len(key) > 2 else out


def open_dicom(path: Path) -> Slide:
    """Open a DICOM whole-slide image (a folder of one series, or one file).

    Raises
    ------
    SlideError
        When the ``dicom`` extra is missing, or wsidicom cannot read the files.
    """
    files = dicom_files(path)
    if not files:
        raise SlideError(f"{path}: holds no DICOM file")
    try:
        from wsidicom import WsiDicom
    except ImportError:
        raise needs_extra(path, "a DICOM slide", "dicom") from None
    return open_through(
        path,
        lambda: WsiDicom.open(files if len(files) > 1 else files[0]),
        "cannot read as a DICOM whole-slide image",
        lambda wsi: _slide(path, files, wsi),
    )


def _slide(path: Path, files: list[Path], wsi) -> Slide:
    if not len(wsi.levels):
        raise SlideError(f"{path}: the DICOM series holds no pyramid level")
    lock = threading.Lock()
    readers = [DicomLevelReader(wsi, level, lock) for level in wsi.levels]
    levels = [
        da.from_array(r, chunks=(*r.tile, 3), asarray=True, fancy=False, name=f"dicom-{id(r)}")
        for r in readers
    ]
    spacing = wsi.levels[0].mpp  # um per pixel (SizeMm of microns, as wsidicom reports it)
    mpp = None if spacing is None else (float(spacing.width) + float(spacing.height)) / 2
    shapes = [r.shape for r in readers]
    return Slide(
        path,
        levels,
        readers,
        mpp=mpp,
        mpp_source="dicom" if mpp is not None else "unknown",
        fingerprint=_fingerprint(files, shapes),
        name=path.stem if path.is_file() else path.name,
        close=wsi.close,
        reader="wsidicom",
    )


def _fingerprint(files: list[Path], shapes) -> str:
    """A folder's fingerprint: its DICOM files' (each as :func:`file_fingerprint`)."""
    if len(files) == 1:
        return file_fingerprint(files[0], shapes)
    digest = hashlib.sha256(b"dicom")
    for f in files:
        digest.update(file_fingerprint(f, ()).encode())
    for shape in shapes:
        digest.update(repr(tuple(int(s) for s in shape)).encode())
    return digest.hexdigest()[:32]
