"""Writing a 3DHISTECH MRXS slide in a test: ``slide.mrxs`` beside a folder ``slide/`` holding
``Slidedat.ini``, ``Index.dat`` and one data file of PNG images.

What OpenSlide needs (facts from its ``openslide-vendor-mirax.c``), in the simplest layout a
scanner writes: one camera image per position (``CameraImageDivisionsPerSide=1``), no overlap and
no position record (OpenSlide then places image ``(x, y)`` at ``(x * w, y * h)``), no associated
images (``NONHIER_COUNT=0``).

- ``Slidedat.ini``: ``[GENERAL]`` ``SLIDE_ID``, ``IMAGENUMBER_X`` / ``_Y`` (images across and
  down at level 0); ``[HIERARCHICAL]`` ``INDEXFILE``, ``HIER_0_NAME=Slide zoom level`` with one
  section per level (``IMAGE_CONCAT_FACTOR``: 0 at level 0, then 1 = each image covers 2 x 2
  images of the level before; ``DIGITIZER_WIDTH`` / ``_HEIGHT``, ``OVERLAP_X`` / ``_Y``,
  ``MICROMETER_PER_PIXEL_X`` / ``_Y`` (the MPP), ``IMAGE_FILL_COLOR_BGR``, ``IMAGE_FORMAT``);
  ``[DATAFILE]`` the data files.
- ``Index.dat``: ``01.02`` and the ``SLIDE_ID``, then two int32 (little-endian) pointers: the
  hierarchical root (a table of one pointer per level) and the non-hierarchical root. Each
  level's pointer leads to ``0, first page``; a page is ``count, next page (0: none)`` then
  ``count`` records ``image index (y * IMAGENUMBER_X + x, level-0 image units), offset, length,
  data file number``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import imagecodecs
import numpy as np

SLIDE_ID = "napari-conch-test-slide-0001"
IMAGE = 256


def _ini(images_x: int, images_y: int, mpp: float, levels: int) -> str:
    sections = "".join(f"HIER_0_VAL_{i}_SECTION=LAYER_0_LEVEL_{i}_SECTION\n" for i in range(levels))
    text = (
        f"[GENERAL]\nSLIDE_ID={SLIDE_ID}\nIMAGENUMBER_X={images_x}\nIMAGENUMBER_Y={images_y}\n"
        "OBJECTIVE_MAGNIFICATION=20\nCameraImageDivisionsPerSide=1\n\n"
        "[HIERARCHICAL]\nINDEXFILE=Index.dat\nHIER_COUNT=1\nNONHIER_COUNT=0\n"
        f"HIER_0_NAME=Slide zoom level\nHIER_0_COUNT={levels}\n{sections}\n"
        "[DATAFILE]\nFILE_COUNT=1\nFILE_0=Data0000.dat\n"
    )
    for i in range(levels):
        text += (
            f"\n[LAYER_0_LEVEL_{i}_SECTION]\nIMAGE_CONCAT_FACTOR={min(i, 1)}\n"
            f"OVERLAP_X=0\nOVERLAP_Y=0\nMICROMETER_PER_PIXEL_X={mpp * 2**i}\n"
            f"MICROMETER_PER_PIXEL_Y={mpp * 2**i}\nIMAGE_FILL_COLOR_BGR=16777215\n"
            f"DIGITIZER_WIDTH={IMAGE}\nDIGITIZER_HEIGHT={IMAGE}\nIMAGE_FORMAT=PNG\n"
        )
    return text


def level_images(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """The slide's levels as written: level 0, then each the one before with every other pixel."""
    out = [image]
    for _ in range(1, levels):
        out.append(np.ascontiguousarray(out[-1][::2, ::2]))
    return out


def write_mrxs(folder: Path, image: np.ndarray, mpp: float, levels: int = 2) -> Path:
    """Save ``image`` ((H, W, 3) uint8, H and W multiples of ``256 * 2 ** (levels - 1)``) as
    ``folder/slide.mrxs`` and ``folder/slide/``; lossless (PNG). Returns the ``.mrxs`` file."""
    h, w, _ = image.shape
    images_x, images_y = w // IMAGE, h // IMAGE
    folder.mkdir(parents=True, exist_ok=True)
    data_dir = folder / "slide"
    data_dir.mkdir(exist_ok=True)
    data = bytearray()
    pages = []  # per level: the records (image index, offset, length, file number)
    for level, pixels in enumerate(level_images(image, levels)):
        step = 2**level  # level-0 images per image of this level, along each side
        records = []
        for y in range(0, images_y, step):
            for x in range(0, images_x, step):
                tile = pixels[y // step * IMAGE:(y // step + 1) * IMAGE,
                              x // step * IMAGE:(x // step + 1) * IMAGE]  # fmt: skip
                png = imagecodecs.png_encode(np.ascontiguousarray(tile))
                records.append((y * images_x + x, len(data), len(png), 0))
                data += png
        pages.append(records)
    (data_dir / "Data0000.dat").write_bytes(bytes(data))
    (data_dir / "Slidedat.ini").write_text(_ini(images_x, images_y, mpp, levels))

    head = b"01.02" + SLIDE_ID.encode()
    table = len(head) + 8  # the hierarchical root's table of level pointers
    body = bytearray()
    level_pointers = []
    cursor = table + 4 * levels + 4  # after the table and the (empty) non-hierarchical root
    for records in pages:
        level_pointers.append(cursor)
        first_page = cursor + 8
        page = struct.pack("<ii", 0, first_page)
        page += struct.pack("<ii", len(records), 0)
        page += b"".join(struct.pack("<iiii", *record) for record in records)
        body += page
        cursor += len(page)
    nonhier = table + 4 * levels
    index = head + struct.pack("<ii", table, nonhier)
    index += b"".join(struct.pack("<i", p) for p in level_pointers) + struct.pack("<i", 0)
    (data_dir / "Index.dat").write_bytes(bytes(index + body))
    key = folder / "slide.mrxs"
    key.write_bytes(b"")
    return key
