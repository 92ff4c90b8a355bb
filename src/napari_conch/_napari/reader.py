"""The npe2 reader: whole-slide images as multiscale RGB image layers.

A map that ``napari-conch query --out map.tif`` wrote (a pyramidal OME-TIFF placed on the slide,
:mod:`napari_conch.engine.export.map_tiff`) opens as layers laid over its slide: :func:`read_map`.

``get_reader`` returns ``None`` for paths that are not ours (another extension, bytes that are not
a TIFF, a folder that is not zarr, an image we cannot show as RGB) so that napari tries other
readers; it never raises for those. A file that looks like a slide but turns out broken (a
truncated or corrupt TIFF) is claimed, and its reader raises a one-line
:class:`~napari_conch.errors.SlideError`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_conch._napari.layers.slide_source import META_KEY
from napari_conch.errors import SlideError, SlideRefusedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_conch.slide import Slide

#: File name endings we read (case-insensitive). Folders: zarr groups and arrays.
#: Whole-slide formats read by their own library (an extra): pylibCZIrw, OpenSlide.
LIBRARY_SUFFIXES = (".czi", ".mrxs", ".vms", ".vmu", ".scn", ".bif")
SUFFIXES = (
    ".svs", ".ndpi", ".tif", ".tiff", ".ome.tif", ".ome.tiff", ".zarr", ".ome.zarr",
    *LIBRARY_SUFFIXES,
)  # fmt: skip
#: Suffixes of formats that are only ever whole-slide images.
WSI_SUFFIXES = (".svs", ".ndpi", *LIBRARY_SUFFIXES)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return a function reading ``path`` into layers, or ``None`` when it is not ours."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if path.name.lower().endswith(".dcm") and path.is_file():
        return _dicom_reader(path)
    if not path.name.lower().endswith(SUFFIXES):
        return None
    if path.name.lower().endswith((".tif", ".tiff")) and path.is_file():
        from napari_conch.engine.export.map_tiff import read_map_description

        if read_map_description(path) is not None:
            return read_map
        from napari_conch.engine.export.map_rgb import read_rgb_map_description

        if read_rgb_map_description(path) is not None:
            return read_rgb_map
    from napari_conch.slide import open_slide
    from napari_conch.slide.open import existing_slide_path

    try:
        existing_slide_path(path)  # a FIFO or device named .tif: refused before it is opened
    except SlideRefusedError as exc:
        return functools.partial(_raise_broken, exc)
    except SlideError:
        return None
    if not _looks_like_slide(path):
        return None

    try:
        slide = open_slide(path)
    except SlideError as exc:
        if not _claims(path, exc):
            return None
        return functools.partial(_raise_broken, exc)
    return functools.partial(read_slide, slide=slide)


def _dicom_reader(path: Path) -> Callable[[Any], list[LayerData]] | None:
    """A DICOM whole-slide file opens the series of its folder (one file per level)."""
    from napari_conch.slide import open_slide
    from napari_conch.slide.dicom import is_dicom_file

    if not is_dicom_file(path):
        return None
    try:
        slide = open_slide(path.parent)
    except SlideError as exc:
        return functools.partial(_raise_broken, exc)
    return functools.partial(read_slide, slide=slide)


def _claims(path: Path, error: SlideError) -> bool:
    """Whether a file we failed to open is a broken slide (raise) or not ours (decline).

    Whole-slide formats (``.svs``, ``.ndpi``) are always ours. Generic TIFF and zarr are ours
    only when reading them failed underneath (a corrupt file); an image that reads fine but is
    not 8-bit RGB or greyscale (float data, many channels) is left to other readers.
    """
    if isinstance(error, SlideRefusedError):  # a size no slide has: said, never read
        return True
    return path.name.lower().endswith(WSI_SUFFIXES) or error.__cause__ is not None


def _looks_like_slide(path: Path) -> bool:
    """Cheap check of a file's first bytes (TIFF) or a folder's zarr metadata."""
    if path.is_file() and path.name.lower().endswith(LIBRARY_SUFFIXES):
        return True  # CZI, MRXS, VMS/VMU (text), SCN, BIF: the opener checks the file
    try:
        if path.is_dir():
            return any((path / marker).is_file() for marker in _ZARR_MARKERS)
        with path.open("rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _raise_broken(error: SlideError, path: Any) -> list[LayerData]:
    raise SlideError(str(error)) from None


def read_slide(path: Any, *, slide: Slide | None = None) -> list[LayerData]:
    """Read a slide file as one multiscale RGB image layer.

    Parameters
    ----------
    path
        The file or zarr folder (napari passes it again to the function ``get_reader`` gave).
    slide
        The already opened slide (``get_reader`` opens it to decide whether it is ours).

    Returns
    -------
    list of LayerData
        One ``(levels, kwargs, "image")`` tuple: the levels are lazy dask arrays, ``scale`` is in
        microns when the slide's MPP is known (else in pixels), and ``metadata["napari_conch"]``
        holds the path, MPP and levels.

    Raises
    ------
    SlideError
        When the slide's pixels cannot be decoded.
    """
    from napari_conch._napari.fastpaths.process import freeze_long_lived_objects
    from napari_conch._napari.warmup import prefetch_docks

    freeze_long_lived_objects()  # the viewer is up: its objects (see fastpaths/process.py)
    prefetch_docks()  # a dock comes next, as a rule
    if slide is None:
        from napari_conch.slide import open_slide

        slide = open_slide(Path(path[0] if isinstance(path, list | tuple) else path))
    _check_decodes(slide)
    _watch_current_viewer()
    return [layer_data(slide)]


def _watch_current_viewer() -> None:
    """The viewer reading the slide fits it to its canvas and shows the scale bar when it is
    added (:mod:`.slide_view`); nothing without a viewer (a script calling the reader)."""
    import napari

    from napari_conch._napari.layers.slide_view import watch

    viewer = napari.current_viewer()
    if viewer is not None:
        watch(viewer)


def _check_decodes(slide: Slide) -> None:
    """Decode a few pixels of the coarsest level, so that a corrupt file fails here, clearly."""
    level = len(slide.levels) - 1
    height, width = slide.level_shape(level)
    try:
        slide.read_region(level, 0, 0, min(width, 64), min(height, 64))
    except SlideError:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise SlideError(f"{slide.path}: cannot decode the image data ({message})") from None


def slide_metadata(slide: Slide) -> dict[str, Any]:
    """The ``metadata["napari_conch"]`` entry of a slide's layer."""
    return {
        "path": str(Path(slide.path).resolve()),
        "name": slide.name,
        "mpp": slide.mpp,
        "mpp_source": slide.mpp_source,
        "levels": len(slide.levels),
        "level_shapes": [list(slide.level_shape(i)) for i in range(len(slide.levels))],
        "downsamples": [float(d) for d in slide.downsamples],
        "fingerprint": slide.fingerprint,
    }


def layer_data(slide: Slide) -> LayerData:
    """``(data, kwargs, "image")`` for a slide: multiscale when it has several levels."""
    kwargs: dict[str, Any] = {
        "name": slide.name,
        "rgb": True,
        "contrast_limits": (0, 255),
        "metadata": {META_KEY: slide_metadata(slide)},
    }
    if slide.mpp is not None:
        kwargs["scale"] = (slide.mpp, slide.mpp)
        kwargs["units"] = ("um", "um")
    if len(slide.levels) > 1:
        return list(slide.levels), {**kwargs, "multiscale": True}, "image"
    return slide.levels[0], {**kwargs, "multiscale": False}, "image"


def read_map(path: Any) -> list[LayerData]:
    """Read an exported map as layers aligned over its slide.

    Each probability (or cosine) channel becomes an image layer, the ``label`` channel a labels
    layer. ``scale`` and ``translate`` put map pixel ``(i, j)`` on the level-0 pixels it covers,
    in microns when the map records the slide's MPP (as the slide's own layer is), else in
    level-0 pixels.
    """
    import dask.array as da
    import numpy as np

    from napari_conch.engine.export.map_tiff import open_map
    from napari_conch.engine.overlap import MapGeometry

    path = Path(path[0] if isinstance(path, list | tuple) else path)
    opened = open_map(path)
    unit = opened.mpp or 1.0
    size = opened.pixel_size
    shape = tuple(opened.levels[0].shape[-2:])
    geometry = MapGeometry(shape, size, opened.origin)
    common: dict[str, Any] = {
        "scale": tuple(v * unit for v in geometry.scale),
        "translate": tuple(v * unit for v in geometry.napari_translate),
        "metadata": {META_KEY: {"map": opened.description, "path": str(path.resolve())}},
    }
    if opened.mpp is not None:
        common["units"] = ("um", "um")
    multiscale = len(opened.levels) > 1
    stem = path.name.split(".")[0]
    layers: list[LayerData] = []
    for c, channel in enumerate(opened.channels):
        data = [level[c] for level in opened.levels]
        kwargs = {**common, "name": f"{stem} {channel}", "multiscale": multiscale}
        if channel == "label":
            data = [da.nan_to_num(d).astype(np.uint8) for d in data]
            layers.append((data if multiscale else data[0], kwargs, "labels"))
            continue
        coarse = np.asarray(data[-1])
        finite = coarse[np.isfinite(coarse)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if channel.startswith("prob_"):
            low, high = 0.0, 1.0
        kwargs.update(
            colormap="inferno",
            opacity=0.6,
            contrast_limits=(low, high if high > low else low + 1.0),
        )
        layers.append((data if multiscale else data[0], kwargs, "image"))
    return layers


def read_rgb_map(path: Any) -> list[LayerData]:
    """Read a coloured map (``--map-render rgb``) as one RGBA image layer aligned over its
    slide, as :func:`read_map` places the float map."""
    from napari_conch.engine.export.map_rgb import open_rgb_map
    from napari_conch.engine.overlap import MapGeometry

    path = Path(path[0] if isinstance(path, list | tuple) else path)
    opened = open_rgb_map(path)
    unit = opened.mpp or 1.0
    geometry = MapGeometry(tuple(opened.levels[0].shape[:2]), opened.pixel_size, opened.origin)
    kwargs: dict[str, Any] = {
        "name": path.name.split(".")[0],
        "rgb": True,
        "contrast_limits": (0, 255),
        "scale": tuple(v * unit for v in geometry.scale),
        "translate": tuple(v * unit for v in geometry.napari_translate),
        "metadata": {META_KEY: {"map": opened.description, "path": str(path.resolve())}},
        "multiscale": len(opened.levels) > 1,
    }
    if opened.mpp is not None:
        kwargs["units"] = ("um", "um")
    data = opened.levels if len(opened.levels) > 1 else opened.levels[0]
    return [(data, kwargs, "image")]
