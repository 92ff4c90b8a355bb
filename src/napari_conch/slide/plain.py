"""Small plain images (PNG, JPEG) as one-level slides, decoded whole with imagecodecs."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import imagecodecs

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide
from napari_conch.slide.fingerprint import file_fingerprint
from napari_conch.slide.layout import make_layout
from napari_conch.slide.readers import ArrayReader

#: Chunk size of the dask array over a decoded plain image.
CHUNK = 1024


def open_plain(path: Path) -> Slide:
    """Open a PNG or JPEG file (in memory) as a one-level slide without MPP."""
    try:
        image = imagecodecs.imread(path)
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise SlideError(f"{path}: cannot decode the image ({message})") from exc
    axes = "YX" if image.ndim == 2 else "YXC"
    layout = make_layout(axes, image.shape, image.dtype, str(path))
    rgb = layout.to_rgb(image)
    level = da.from_array(rgb, chunks=(CHUNK, CHUNK, 3))
    return Slide(
        path,
        [level],
        [ArrayReader(image, layout)],
        mpp=None,
        mpp_source="unknown",
        fingerprint=file_fingerprint(path, [rgb.shape]),
    )
