"""Writing a Hamamatsu VMU slide in a test: a key file and raw NGR image files.

An NGR file is ``GN``, then little-endian int32 width, height and column width at byte 4, the
pixel data's offset at byte 24, and the pixels column by column (each column ``column width``
pixels wide, top to bottom), three uint16 per pixel holding 12 bits (OpenSlide reads ``v >> 4``):
8-bit values shifted left by 4 are read back exactly. The key file names the level-0 image and a
4 times coarser map image (OpenSlide's level 1); ``PhysicalWidth`` / ``PhysicalHeight`` (nm) give
the MPP.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

HEADER = 32


def write_ngr(path: Path, image: np.ndarray, column: int) -> None:
    """Save an ``(H, W, 3)`` uint8 image (``W`` a multiple of ``column``) as an NGR file."""
    h, w, _ = image.shape
    columns = image.reshape(h, w // column, column, 3).transpose(1, 0, 2, 3)
    head = b"GN\0\0" + struct.pack("<iii", w, h, column) + bytes(8) + struct.pack("<i", HEADER)
    path.write_bytes(head.ljust(HEADER, b"\0") + (columns.astype("<u2") << 4).tobytes())


def write_vmu(folder: Path, image: np.ndarray, mpp: float, column: int = 256) -> Path:
    """Save ``image`` as ``folder/slide.vmu`` (+ NGR files); returns the key file."""
    folder.mkdir(parents=True, exist_ok=True)
    write_ngr(folder / "slide.ngr", image, column)
    small = np.ascontiguousarray(image[::4, ::4])
    write_ngr(folder / "map.ngr", small, small.shape[1])
    h, w, _ = image.shape
    key = folder / "slide.vmu"
    key.write_text(
        "[Uncompressed Virtual Microscope Specimen]\n"
        "NoLayers=1\nImageFile=slide.ngr\nMapFile=map.ngr\nBitsPerPixel=36\nPixelOrder=RGB\n"
        f"PhysicalWidth={round(w * mpp * 1000)}\nPhysicalHeight={round(h * mpp * 1000)}\n"
    )
    return key
