"""Maps as pyramidal OME-TIFFs that other viewers place on the slide.

A query's cell map (:meth:`QueryResult.cell_map`) is painted onto a raster that covers the whole
slide from its level-0 corner: map pixel ``(i, j)`` covers level-0 pixels ``i * s .. (i + 1) * s``
by ``j * s .. (j + 1) * s`` (``s``, the *map pixel size*, in level-0 pixels) and takes the value
of the cell under its centre (NaN where no cell is). The raster is ``ceil(H / s)`` by
``ceil(W / s)`` for a level-0 slide of ``H`` x ``W``, so a viewer that knows only the pixel size
(QuPath, ImageJ/Fiji, OpenSlide) lays it over the slide where it belongs.

What the file holds:

- float32 channels (``YX`` for one prompt, ``CYX`` for the probabilities and the label), tiled
  256 x 256, zlib; reduced levels in SubIFDs, each half the one before, down to 512 pixels;
- OME-XML with ``PhysicalSizeX/Y`` in µm (``s`` times the slide's MPP), the channel names, the
  map's offset to the slide (``Plane PositionX/Y``: 0 µm, the corner is the slide's) and, in a
  ``MapAnnotation`` of namespace :data:`NAMESPACE`, our JSON description (key ``napari_conch``);
- TIFF resolution tags in pixels per centimetre (``ResolutionUnit`` 3). Without a slide MPP the
  physical sizes are left out and the tags give map pixels per level-0 pixel (unit NONE).

The map pixel size is chosen with :func:`parse_map_scale` / :func:`map_pixel_size`: ``auto``
(the default) uses the slide level whose downsample lies in 8-16 (the coarsest such level,
rounded to a whole number), and 8 when the slide has none; ``full`` is 1 (slide size); a number
gives ``s`` directly. ``tile`` is not written here: it keeps the one-pixel-per-cell TIFF of
:func:`napari_conch.engine.export.writers.write_tiff`.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_conch.engine.overlap import MapGeometry
from napari_conch.errors import InputError

#: ``MapAnnotation`` namespace of our description in the OME-XML.
NAMESPACE = "napari-conch.org/map"
#: Names the map scale may take besides a number.
MAP_SCALES = ("auto", "tile", "full")
DEFAULT_MAP_SCALE = "auto"
#: ``auto`` takes a slide level whose downsample lies in this range (level-0 px per map px).
AUTO_RANGE = (8.0, 16.0)
#: Side of the TIFF tiles, and the longest side under which no further level is made.
TILE = 256
SMALLEST_LEVEL = 512


@dataclass(frozen=True)
class SlideFrame:
    """What a map must know of its slide: level-0 size, level downsamples and MPP."""

    shape: tuple[int, int]
    downsamples: tuple[float, ...] = (1.0,)
    mpp: float | None = None

    @classmethod
    def from_slide(cls, slide: Any) -> SlideFrame:
        """The frame of an open :class:`~napari_conch.slide.Slide`."""
        return cls(tuple(slide.shape), tuple(float(d) for d in slide.downsamples), slide.mpp)

    @classmethod
    def from_grid(cls, grid: Any, mpp: float | None = None) -> SlideFrame:
        """The frame a tile grid implies (when the slide itself cannot be opened).

        Level 0's size is the grid level's size times its downsample (exact for a grid at
        level 0); the known downsamples are 1 and the grid level's.
        """
        down = float(grid.level_downsample)
        shape = tuple(round(n * down) for n in grid.level_shape)
        return cls(shape, tuple(sorted({1.0, down})), mpp)


def parse_map_scale(value: Any) -> str | float:
    """``"auto"``, ``"tile"``, ``"full"`` or a positive number of level-0 pixels per map pixel.

    Raises
    ------
    InputError
        For anything else.
    """
    if isinstance(value, str) and value.strip().lower() in MAP_SCALES:
        return value.strip().lower()
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise InputError(
            f"map scale {value!r}: expected auto, tile, full or a positive number of "
            "slide pixels per map pixel"
        )
    return number


def map_pixel_size(scale: Any, frame: SlideFrame) -> float:
    """Level-0 pixels per map pixel for the map scale ``scale`` on the slide ``frame``."""
    scale = parse_map_scale(scale)
    if scale == "tile":
        raise InputError("map scale 'tile' is the one-pixel-per-cell TIFF, not a pixel size")
    if scale == "full":
        return 1.0
    if scale == "auto":
        low, high = AUTO_RANGE
        fitting = [d for d in frame.downsamples if low - 0.5 <= d <= high + 0.5]
        return float(round(max(fitting))) if fitting else low
    return float(scale)


def level_shapes(frame: SlideFrame, pixel_size: float) -> list[tuple[int, int]]:
    """``(H, W)`` of every level of the map: the full map, then halves down to 512 px."""
    shapes = []
    size = pixel_size
    while True:
        shape = tuple(max(1, math.ceil(n / size)) for n in frame.shape)
        shapes.append(shape)
        if max(shape) <= SMALLEST_LEVEL:
            return shapes
        size *= 2


def paint(
    cells: np.ndarray,
    geometry: MapGeometry,
    pixel_size: float,
    start: tuple[int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    """``cells [C, h, w]`` painted on map pixels ``start .. start + shape``: ``[C, *shape]``."""
    from napari_conch.engine.render import cells_at

    rows, cols, inside = cells_at(geometry, shape, pixel_size, start)
    out = cells[:, rows, cols]
    out[:, ~inside] = np.nan
    return out


def _tiles(cells: np.ndarray, geometry: MapGeometry, shape: tuple[int, int], size: float):
    """The map's 256 x 256 tiles, plane by plane, row by row (NaN beyond its edge)."""
    for plane in range(cells.shape[0]):
        for y in range(0, shape[0], TILE):
            for x in range(0, shape[1], TILE):
                h, w = min(TILE, shape[0] - y), min(TILE, shape[1] - x)
                tile = np.full((TILE, TILE), np.nan, np.float32)
                tile[:h, :w] = paint(cells[plane : plane + 1], geometry, size, (y, x), (h, w))[0]
                yield tile


def ome_metadata(
    description: dict[str, Any],
    channels: list[str],
    pixel_size: float,
    mpp: float | None,
    name: str,
) -> dict[str, Any]:
    """tifffile's OME ``metadata`` for a map: axes, physical size, channels, offset, our JSON."""
    n = len(channels)
    meta: dict[str, Any] = {
        "axes": "CYX" if n > 1 else "YX",
        "Name": name,
        "Channel": {"Name": list(channels)},
        "MapAnnotation": {"Namespace": NAMESPACE, "napari_conch": json.dumps(description)},
    }
    if mpp is not None:
        size = float(mpp) * pixel_size
        meta.update(
            PhysicalSizeX=size, PhysicalSizeXUnit="µm", PhysicalSizeY=size,
            PhysicalSizeYUnit="µm",
            Plane={
                "PositionX": [0.0] * n, "PositionXUnit": ["µm"] * n,
                "PositionY": [0.0] * n, "PositionYUnit": ["µm"] * n,
            },
        )  # fmt: skip
    return meta


def placement(scale: Any, size: float, shapes: list, frame: SlideFrame) -> dict[str, Any]:
    """The ``"map"`` entry of a map file's description: where its pixels lie on the slide."""
    return {
        "scale": parse_map_scale(scale),
        "pixel_size_level0": size,
        "origin_level0_yx": [0.0, 0.0],
        "shape": list(shapes[0]),
        "slide_shape_level0": list(frame.shape),
        "levels": len(shapes),
    }


def resolution_tags(frame: SlideFrame, level_size: float) -> tuple[float, str]:
    """TIFF resolution of a map level whose pixel is ``level_size`` level-0 pixels: pixels per
    centimetre when the slide's MPP is known, else per level-0 pixel (unit NONE)."""
    if frame.mpp is not None:
        return 1e4 / (float(frame.mpp) * level_size), "CENTIMETER"
    return 1.0 / level_size, "NONE"


def write_map_tiff(
    path: str | os.PathLike,
    result: Any,
    frame: SlideFrame,
    *,
    scale: Any = DEFAULT_MAP_SCALE,
    description: dict[str, Any] | None = None,
) -> None:
    """Write ``result``'s cell map as a pyramidal OME-TIFF over the slide ``frame``.

    Parameters
    ----------
    path
        The file (written to a temporary sibling and renamed into place).
    result
        A :class:`~napari_conch.engine.query.QueryResult`.
    frame
        The slide's level-0 size, downsamples and MPP.
    scale
        ``"auto"``, ``"full"`` or level-0 pixels per map pixel (:func:`map_pixel_size`).
    description
        The JSON-able description (:func:`~napari_conch.engine.export.writers.map_metadata`); the
        map's own placement is added under ``"map"``.
    """
    import tifffile

    from napari_conch.engine.export.writers import atomic_path

    size = map_pixel_size(scale, frame)
    data, channels = result.cell_map()
    cells = np.asarray(data, np.float32).reshape(-1, *data.shape[-2:])
    shapes = level_shapes(frame, size)
    description = {**(description or {}), "map": placement(scale, size, shapes, frame)}
    meta = ome_metadata(description, channels, size, frame.mpp, _stem(path))
    n = cells.shape[0]
    with (
        atomic_path(path) as tmp,
        tifffile.TiffWriter(tmp, bigtiff=_big(shapes, n), ome=True) as tif,
    ):
        for level, shape in enumerate(shapes):
            level_size = size * 2**level
            per_cm, unit = resolution_tags(frame, level_size)
            options = {"metadata": meta, "subifds": len(shapes) - 1} if level == 0 else {
                "subfiletype": 1, "metadata": None
            }  # fmt: skip
            tif.write(
                _tiles(cells, result.geometry, shape, level_size),
                shape=(n, *shape) if n > 1 else shape,
                dtype=np.float32,
                tile=(TILE, TILE),
                photometric="minisblack",
                compression="zlib",
                resolution=(per_cm, per_cm),
                resolutionunit=unit,
                **options,
            )


def _big(shapes: list[tuple[int, int]], planes: int) -> bool:
    """Whether the map may pass 4 GB uncompressed (BigTIFF then)."""
    return sum(h * w for h, w in shapes) * planes * 4 > 2**32 - 2**25


def _stem(path: str | os.PathLike) -> str:
    """The file name without its TIFF suffixes (the OME image name)."""
    name = os.path.basename(os.fspath(path))
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def ome_description(ome_xml: str | None) -> dict[str, Any] | None:
    """Our JSON description from an OME-XML text, ``None`` when it holds none."""
    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "MapAnnotation":
            continue
        if element.get("Namespace") != NAMESPACE:
            continue
        for entry in element.iter():
            if entry.tag.rsplit("}", 1)[-1] == "M" and entry.get("K") == "napari_conch":
                try:
                    value = json.loads(entry.text or "")
                except json.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def read_map_description(path: str | os.PathLike) -> dict[str, Any] | None:
    """The description of a map written by :func:`write_map_tiff`, ``None`` for other TIFFs."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return ome_description(tif.ome_metadata if tif.is_ome else None)
    except (tifffile.TiffFileError, OSError, ValueError):
        return None


def frame_for_store(store: Any) -> SlideFrame:
    """The frame of the slide a store was made from.

    The slide is opened again from the store's ``slide_path`` when it is still there unchanged
    (same fingerprint), for its exact size and levels; otherwise the frame comes from the store's
    grid (:meth:`SlideFrame.from_grid`). The MPP is the store's (as stated when it was made).
    """
    from napari_conch.errors import NapariConchError
    from napari_conch.slide import open_slide

    attrs = store.attrs
    mpp = attrs.get("slide_mpp")
    path = attrs.get("slide_path")
    if path and os.path.exists(path):
        try:
            with open_slide(path) as slide:
                if slide.fingerprint == store.signature.get("slide_fingerprint"):
                    found = SlideFrame.from_slide(slide)
                    return SlideFrame(found.shape, found.downsamples, mpp)
        except NapariConchError:
            pass  # moved, changed or unreadable: the grid says enough
    return SlideFrame.from_grid(store.grid, mpp)


@dataclass
class OpenedMap:
    """A map file opened lazily: its levels, channel names and description.

    Attributes
    ----------
    levels : list of dask.array.Array
        ``[C, H, W]`` float32, finest first (``C`` = 1 for a one-prompt map).
    channels : list of str
        The channel names.
    description : dict
        Our JSON description (``"map"`` holds the placement).
    """

    levels: list
    channels: list[str]
    description: dict[str, Any]

    @property
    def pixel_size(self) -> float:
        """Level-0 pixels per map pixel (level 0 of the map)."""
        return float(self.description["map"]["pixel_size_level0"])

    @property
    def origin(self) -> tuple[float, float]:
        """``(y, x)`` level-0 position of the map's corner."""
        y, x = self.description["map"].get("origin_level0_yx", (0.0, 0.0))
        return (float(y), float(x))

    @property
    def mpp(self) -> float | None:
        """Microns per level-0 pixel of the slide, ``None`` when unknown."""
        return self.description.get("mpp_level0")

    def cell_values(self) -> np.ndarray:
        """The cell map back from the map: one value per cell, ``[C, rows, cols]``.

        Each cell is read at the centre of its part inside the map (a cell at the slide's edge
        reaches beyond it); NaN for a cell wholly outside. Reads the map's finest level.
        """
        d = self.description
        cell = float(d["cell_size_level0"])
        index = []
        for n, origin, corner, length in zip(
            d["shape"], d["origin_level0_yx"], self.origin, self.levels[0].shape[1:], strict=True
        ):
            start = float(origin) - corner + np.arange(n) * cell  # level-0, from the map's corner
            low = np.maximum(start, 0.0)
            high = np.minimum(start + cell, length * self.pixel_size)
            index.append(np.floor((low + high) / 2 / self.pixel_size).astype(int))
            index.append(low < high)
        ys, y_ok, xs, x_ok = index
        level = np.asarray(self.levels[0])
        out = level[:, np.clip(ys, 0, level.shape[1] - 1)][:, :, np.clip(xs, 0, level.shape[2] - 1)]
        out[:, ~(y_ok[:, None] & x_ok[None, :])] = np.nan
        return out


def open_map(path: str | os.PathLike) -> OpenedMap:
    """Open a map written by :func:`write_map_tiff` without reading its pixels.

    Raises
    ------
    InputError
        When the file is not such a map, or cannot be read.
    """
    import dask.array as da
    import tifffile
    import zarr

    description = read_map_description(path)
    if description is None or "map" not in description:
        raise InputError(f"{path}: not a napari-conch map (no map description in its OME-XML)")
    try:
        tif = tifffile.TiffFile(path)
        series = tif.series[0]
        root = zarr.open(tif.aszarr(series=0), mode="r")
    except (tifffile.TiffFileError, OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read the map ({exc})") from exc
    arrays = (
        [root]
        if isinstance(root, zarr.Array)
        else [root[str(i)] for i in range(len(series.levels))]
    )
    levels = [da.from_zarr(a) for a in arrays]
    levels = [lv if lv.ndim == 3 else lv[None] for lv in levels]
    channels = list(
        description.get("channels") or [f"channel {i}" for i in range(levels[0].shape[0])]
    )
    return OpenedMap(levels, channels, description)
