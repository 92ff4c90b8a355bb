"""Small plain images (PNG, JPEG) as one-level slides, decoded whole with imagecodecs.

A file cut short keeps the rows that decoded; the regions past them cannot be read (their tiles
are FAILED): see :mod:`~napari_conch.slide.cut_image`.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide
from napari_conch.slide.cut_image import decode_plain
from napari_conch.slide.fingerprint import file_fingerprint
from napari_conch.slide.layout import make_layout
from napari_conch.slide.readers import ArrayReader, CutImageReader

#: Chunk size of the dask array over a decoded plain image.
CHUNK = 1024
#: Chunk height over an image cut short: the tissue scan locates damage to this many rows.
CUT_CHUNK_ROWS = 16


def open_plain(path: Path) -> Slide:
    """Open a PNG or JPEG file (in memory) as a one-level slide without MPP."""
    try:
        decoded = decode_plain(path)
    except OSError as exc:
        raise SlideError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:
        raise SlideError(f"{path}: cannot decode the image ({_first_line(exc)})") from exc
    image = decoded.image
    axes = "YX" if image.ndim == 2 else "YXC"
    layout = make_layout(axes, image.shape, image.dtype, str(path))
    rgb = layout.to_rgb(image)
    if decoded.reason is None:
        reader = ArrayReader(image, layout)
        level = da.from_array(rgb, chunks=(CHUNK, CHUNK, 3))
    else:
        reader = CutImageReader(image, layout, decoded.valid_rows, decoded.reason)
        level = da.from_array(rgb, chunks=(CUT_CHUNK_ROWS, CHUNK, 3))
    return Slide(
        path,
        [level],
        [reader],
        mpp=None,
        mpp_source="unknown",
        fingerprint=file_fingerprint(path, [rgb.shape]),
        reader="imagecodecs",
    )


def _first_line(exc: BaseException) -> str:
    """The decoder's message in one line: imagecodecs lists every codec it tried, one a line;
    the JPEG or PNG codec's line says what is wrong with the file."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    own = [line for line in lines if line.startswith(("JPEG8_DECODE", "PNG_DECODE"))]
    return (own or lines or [type(exc).__name__])[0]
