"""``open_slide``: pick the reader from the file's first bytes (or a zarr folder)."""

from __future__ import annotations

import math
import numbers
import os
import stat
from pathlib import Path

from napari_conch.errors import SlideError, SlideRefusedError
from napari_conch.slide.base import Slide
from napari_conch.slide.czi import CZI_MAGIC

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")


def open_slide(path: str | os.PathLike, *, mpp: float | None = None) -> Slide:
    """Open a slide as a pyramid of lazy RGB levels.

    Formats: Aperio SVS, NDPI, OME-TIFF and any tiled or stripped TIFF (read by tifffile; SVS
    thumbnail, label and macro images are not levels), OME-Zarr and plain zarr folders, PNG and
    JPEG files, Philips TIFF; DICOM WSI (``dicom`` extra), Zeiss CZI (``czi`` extra), and MRXS,
    VMS/VMU, SCN and BIF through OpenSlide (``openslide`` extra, which also gets the TIFFs
    tifffile cannot read; see ``docs/slides.md``). See
    :mod:`napari_conch.slide.layout` for how axes, channels and dtypes are normalised to
    ``(H, W, 3)`` uint8.

    Parameters
    ----------
    path : str or path-like
        A file, or a zarr folder.
    mpp : float, optional
        Microns per pixel at level 0, given by the caller. It takes precedence over the file's
        metadata (``mpp_source`` becomes ``"caller"``); use it for files that lack an MPP or
        carry a wrong one. Without it and without metadata, ``slide.mpp`` is ``None``.

    Returns
    -------
    Slide

    Raises
    ------
    SlideError
        When the path is empty or missing, is a folder that is not zarr, is an empty file, or
        is not a format we read, or when ``mpp`` is not a positive number.
    """
    path = existing_slide_path(path)
    if mpp is not None and not _positive(mpp):
        raise SlideError(f"{path}: the given microns per pixel {mpp!r} must be a positive number")
    slide = _open_by_kind(path)
    if mpp is not None:
        slide.mpp, slide.mpp_source = float(mpp), "caller"
    return slide


def existing_slide_path(path: str | os.PathLike) -> Path:
    """``path`` (``~`` expanded) when it names something that exists.

    Every slide is opened through here, so this is where what is not a file is refused, before
    anything opens it: a FIFO would make the first read wait for a writer for ever, a device
    would be read without end.

    Raises
    ------
    SlideError
        When the path is empty (``Path("")`` would be the current folder) or does not exist.
    SlideRefusedError
        When it names neither a regular file nor a folder (a FIFO, a socket, a device).
    """
    if not str(path).strip():
        raise SlideError("no slide path given (an empty name): give a slide file or zarr folder")
    found = Path(path).expanduser()
    try:
        mode = found.stat().st_mode
    except FileNotFoundError:
        raise SlideError(f"{found}: no such file or folder") from None
    except OSError as exc:
        raise SlideError(f"{found}: cannot be read ({exc.strerror or exc})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SlideRefusedError(
            f"{found}: not a regular file ({_kind(mode)}); give a slide file or zarr folder"
        )
    return found


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "a special file"


def _positive(value) -> bool:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return ok and math.isfinite(value) and value > 0


def _open_by_kind(path: Path) -> Slide:
    from napari_conch.slide.dicom import dicom_files, open_dicom

    if dicom_files(path):  # a DICOM file, or a folder of one series' files
        return open_dicom(path)
    from napari_conch.slide.openslide_slide import open_openslide, wants_openslide

    if path.is_file() and wants_openslide(path):  # MRXS, VMS/VMU; SCN, BIF with the extra
        return open_openslide(path)
    if path.is_dir():
        if not any((path / marker).is_file() for marker in _ZARR_MARKERS):
            raise SlideError(f"{path}: a folder that is not a zarr array or group")
        from napari_conch.slide.zarr_slide import open_zarr

        return open_zarr(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise SlideError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not head:
        raise SlideError(f"{path}: the file is empty (0 bytes)")
    if head.startswith(_TIFF_MAGIC):
        from napari_conch.slide.tiff import open_tiff

        return open_tiff(path)
    if head.startswith(CZI_MAGIC[:8]) or path.suffix.lower() == ".czi":
        from napari_conch.slide.czi import open_czi

        return open_czi(path)
    if head.startswith((_PNG_MAGIC, _JPEG_MAGIC)):
        from napari_conch.slide.plain import open_plain

        return open_plain(path)
    raise SlideError(
        f"{path}: not a slide format we read (TIFF/SVS/NDPI/OME-TIFF, OME-Zarr/zarr, DICOM, CZI, "
        "PNG, JPEG; MRXS, VMS/VMU, SCN, BIF with the openslide extra)"
    )
