"""Slides OpenSlide reads and tifffile does not, through ``openslide-python`` (the ``openslide``
extra: ``openslide-python`` and the ``openslide-bin`` library).

Files whose suffix is one of :data:`OPENSLIDE_ONLY` (3DHISTECH MRXS, Hamamatsu VMS / VMU) are
always opened here; Leica SCN and Ventana BIF (:data:`OPENSLIDE_PREFERRED`) are opened here when
the extra is installed, by tifffile otherwise; so are files of those formats under another
suffix (tifffile flags them: :data:`TIFFFILE_MISREADS`), and TIFFs tifffile opens but cannot
read as a slide (:func:`retry_with_openslide`; without the extra, one line names it). Levels
are OpenSlide's, pixels are
``read_region``'s RGBA composited over white (transparent areas are glass), the MPP is
``openslide.mpp-x`` / ``-y``, and the fingerprint is OpenSlide's quickhash (it covers the data
files beside the slide file) with the level shapes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from napari_conch.errors import SlideError
from napari_conch.slide.base import Slide
from napari_conch.slide.fingerprint import file_fingerprint
from napari_conch.slide.layout import over_white
from napari_conch.slide.readers import RegionArray, extra_hint, needs_extra, open_through

#: How to install the openslide extra.
EXTRA_HINT = extra_hint("openslide")

#: Suffixes only OpenSlide reads.
OPENSLIDE_ONLY = (".mrxs", ".vms", ".vmu")
#: TIFF-based formats OpenSlide reads better than tifffile (Leica's several images, Ventana's
#: overlapping tiles): OpenSlide when installed.
OPENSLIDE_PREFERRED = (".scn", ".bif")
#: Chunk side of the lazy levels (px).
CHUNK = 1024


#: tifffile's flags of the vendor TIFFs it misreads: the format's name and what goes wrong.
TIFFFILE_MISREADS = {
    "is_scn": ("Leica SCN", "reads one image of its XML (the first, often the macro) without "
               "its place in the slide"),
    "is_bif": ("Ventana BIF", "lays its overlapping tiles side by side without stitching them"),
}  # fmt: skip


def misread_by_tifffile(tif) -> str | None:
    """One line saying how tifffile misreads ``tif`` (an open ``tifffile.TiffFile``) and which
    extra reads it, or ``None`` for the TIFFs tifffile reads as they are meant."""
    for flag, (name, wrong) in TIFFFILE_MISREADS.items():
        try:
            flagged = bool(getattr(tif, flag))
        except Exception:  # a damaged first page: tifffile says so when the series is read
            flagged = False
        if flagged:
            return (f"{tif.filehandle.path}: a {name} slide; tifffile {wrong}: OpenSlide reads it "
                    f"with the openslide extra ({EXTRA_HINT})")  # fmt: skip
    return None


def retry_with_openslide(path: Path, error: SlideError) -> Slide:
    """Open ``path``, which tifffile opened but could not read as a slide (``error``), with
    OpenSlide.

    Raises
    ------
    SlideError
        ``error`` with what OpenSlide said, or, without the extra, with the extra to install.
    """
    if not openslide_available():
        raise SlideError(f"{error}; OpenSlide may read it: install the openslide extra "
                         f"({EXTRA_HINT})") from error  # fmt: skip
    try:
        return open_openslide(path)
    except SlideError as second:
        reason = str(second).removeprefix(f"{path}: ")
        raise SlideError(f"{error}; {reason}") from error


def wants_openslide(path: Path) -> bool:
    """Whether ``path`` is to be read by OpenSlide (see the module's note)."""
    suffix = path.suffix.lower()
    return suffix in OPENSLIDE_ONLY or (suffix in OPENSLIDE_PREFERRED and openslide_available())


def openslide_available() -> bool:
    """Whether the openslide extra is installed (the module and its library load)."""
    try:
        import openslide  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


class OpenSlideLevelReader(RegionArray):
    """Reads ``[y0:y1, x0:x1]`` of one OpenSlide level (safe from several threads)."""

    def __init__(self, osr, level: int) -> None:
        self._osr, self._level = osr, level
        self._downsample = float(osr.level_downsamples[level])
        width, height = osr.level_dimensions[level]
        self.shape = (int(height), int(width), 3)
        self.tile = (min(CHUNK, self.shape[0]), min(CHUNK, self.shape[1]))

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        d = self._downsample
        corner = (round(x0 * d), round(y0 * d))  # OpenSlide places regions in level-0 pixels
        rgba = np.asarray(self._osr.read_region(corner, self._level, (x1 - x0, y1 - y0)))
        return over_white(rgba[..., :3], rgba[..., 3:4])


def open_openslide(path: Path) -> Slide:
    """Open a slide with OpenSlide.

    Raises
    ------
    SlideError
        When the ``openslide`` extra is missing or OpenSlide cannot read the file.
    """
    try:
        import openslide
    except (ImportError, OSError):
        kind = f"a {path.suffix.lstrip('.').upper()} slide"
        raise needs_extra(path, kind, "openslide") from None
    return open_through(
        path,
        lambda: openslide.OpenSlide(str(path)),
        "OpenSlide cannot read it",
        lambda osr: _slide(path, osr),
    )


def _slide(path: Path, osr) -> Slide:
    readers = [OpenSlideLevelReader(osr, i) for i in range(osr.level_count)]
    levels = [r.dask(f"openslide-{id(r)}") for r in readers]
    props = osr.properties
    sizes = [_positive(props.get(f"openslide.mpp-{axis}")) for axis in "xy"]
    sizes = [s for s in sizes if s is not None]
    mpp = sum(sizes) / len(sizes) if sizes else None
    shapes = [r.shape for r in readers]
    quickhash = props.get("openslide.quickhash-1")
    if quickhash:
        digest = hashlib.sha256(f"openslide:{quickhash}".encode())
        for shape in shapes:
            digest.update(repr(shape).encode())
        fingerprint = digest.hexdigest()[:32]
    else:
        fingerprint = file_fingerprint(path, shapes)
    return Slide(
        path,
        levels,
        readers,
        mpp=mpp,
        mpp_source="openslide" if mpp is not None else "unknown",
        fingerprint=fingerprint,
        close=osr.close,
        reader="openslide",
    )


def _positive(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None
