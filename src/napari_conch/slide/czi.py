"""Zeiss CZI slides through ``pylibCZIrw`` (the ``czi`` extra).

Level 0 is the CZI's full-resolution plane (the first Z, T and scene planes together: the bounding
box of all scenes, glass between them white). Coarser levels are offered lazily, each 4 times
coarser than the one before, down to the last whose longer side is at least
:data:`MIN_LEVEL_SIDE` px: a region of one is read with ``CziReader.read(zoom=...)``, which uses the
file's own pyramid subblocks when it has them and samples the nearest pixel otherwise (a level
pixel ``(y, x)`` is level-0 pixel ``(y * d, x * d)``). The MPP is the CZI's scaling
(``Metadata/Scaling/Items/Distance``, in metres). Only brightfield RGB is read: a CZI whose one
channel is not ``Bgr24`` (grey fluorescence channels, 16-bit colour) is refused in one line.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from napari_conch.errors import SlideError
from napari_conch.slide.base import PAD_VALUE, Slide
from napari_conch.slide.fingerprint import file_fingerprint
from napari_conch.slide.readers import RegionArray, needs_extra, open_through

#: A CZI file's first bytes (the file header segment's id).
CZI_MAGIC = b"ZISRAWFILE"
#: Coarser levels stop before one whose longer side would be under this (px).
MIN_LEVEL_SIDE = 256
#: Chunk side of the lazy levels (px).
CHUNK = 1024


def is_czi_file(path: Path) -> bool:
    """Whether ``path`` starts like a CZI file."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(CZI_MAGIC)) == CZI_MAGIC
    except OSError:
        return False


class CziLevelReader(RegionArray):
    """Reads ``[y0:y1, x0:x1]`` of one level (level-0 box scaled by ``downsample``)."""

    def __init__(self, czi, box, downsample: int, lock: threading.Lock) -> None:
        self._czi, self._box, self._d, self._lock = czi, box, downsample, lock
        self.shape = (math.ceil(box.h / downsample), math.ceil(box.w / downsample), 3)
        self.tile = (min(CHUNK, self.shape[0]), min(CHUNK, self.shape[1]))

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        d = self._d
        roi = (self._box.x + x0 * d, self._box.y + y0 * d, (x1 - x0) * d, (y1 - y0) * d)
        with self._lock:
            bgr = self._czi.read(
                roi=roi, plane={"C": 0, "Z": 0, "T": 0}, zoom=1.0 / d,
                background_pixel=(1.0, 1.0, 1.0),
            )  # fmt: skip
        out = np.full((y1 - y0, x1 - x0, 3), PAD_VALUE, np.uint8)
        h, w = min(bgr.shape[0], y1 - y0), min(bgr.shape[1], x1 - x0)
        out[:h, :w] = bgr[:h, :w, ::-1]  # BGR -> RGB
        return out


def open_czi(path: Path) -> Slide:
    """Open a Zeiss CZI file as a slide of lazy RGB levels.

    Raises
    ------
    SlideError
        When the ``czi`` extra is missing, the file cannot be read as a CZI, or it holds no
        brightfield RGB (8-bit ``Bgr24``) image.
    """
    try:
        from pylibCZIrw import czi as pyczi
    except ImportError:
        raise needs_extra(path, "a Zeiss CZI file", "czi") from None
    return open_through(
        path,
        lambda: pyczi.CziReader(str(path)),
        "cannot read as a Zeiss CZI file",
        lambda czi: _slide(path, czi),
    )


def _slide(path: Path, czi) -> Slide:
    types = czi.pixel_types
    if list(types.values()) != ["Bgr24"]:
        kinds = ", ".join(sorted(set(types.values()))) or "none"
        raise SlideError(
            f"{path}: the CZI holds no brightfield RGB image ({len(types)} channel(s) of {kinds} "
            "pixels; napari-conch reads 8-bit RGB (Bgr24) brightfield slides, not fluorescence)"
        )
    box = czi.total_bounding_rectangle
    if box.w < 1 or box.h < 1:
        raise SlideError(f"{path}: the CZI holds no image ({box.w} x {box.h} px)")
    lock = threading.Lock()
    readers = [CziLevelReader(czi, box, 1, lock)]
    while max(readers[-1].shape[:2]) // 4 >= MIN_LEVEL_SIDE:
        readers.append(CziLevelReader(czi, box, readers[-1]._d * 4, lock))
    levels = [r.dask(f"czi-{id(r)}") for r in readers]
    mpp = czi_mpp(czi.metadata)
    return Slide(
        path,
        levels,
        readers,
        mpp=mpp,
        mpp_source="czi" if mpp is not None else "unknown",
        fingerprint=file_fingerprint(path, [r.shape for r in readers]),
        close=czi.close,
        reader="pylibCZIrw",
    )


def czi_mpp(metadata: dict) -> float | None:
    """Microns per pixel from a CZI's scaling (metres per pixel in X and Y); ``None`` when absent
    or zero."""
    try:
        items = metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    except (KeyError, TypeError):
        return None
    items = items if isinstance(items, list) else [items]
    sizes = {}
    for item in items:
        try:
            sizes[item["@Id"]] = float(item["Value"]) * 1e6
        except (KeyError, TypeError, ValueError):
            continue
    found = [sizes[a] for a in ("X", "Y") if a in sizes]
    found = [v for v in found if math.isfinite(v) and v > 0]
    return sum(found) / len(found) if found else None
