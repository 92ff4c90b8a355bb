"""Maps as coloured pyramidal TIFFs that QuPath and OpenSlide open over the slide.

The float map (:mod:`napari_conch.engine.export.map_tiff`) keeps the values, but OpenSlide, and
QuPath through it, read only RGB(A) tiled TIFFs whose levels follow each other in the main directory
chain. This writes the same raster (map pixel ``(i, j)`` covers level-0 pixels ``i * s .. (i +
1) * s`` by ``j * s .. (j + 1) * s``, ``s`` the map pixel size of :func:`~napari_conch.engine.
map_tiff.map_pixel_size`) as 8-bit RGBA:

- one prompt: the similarity through :data:`~napari_conch.engine.render.RAMP`, stretched to the
  map's own range (as the demo's picture; the float map keeps the raw values);
- several prompts: each cell in its label's colour (:func:`~napari_conch.engine.export.writers.
  label_color`), label 0 (background, below the threshold) left transparent;
- alpha 0 where no cell was computed, 255 elsewhere (unassociated alpha: a viewer may draw the
  map over the slide with its own opacity).

Levels: the full map, then halves down to 512 px, tiled 256 x 256, zlib, each a directory of
the main chain (reduced ones with NewSubfileType 1), TIFF resolution tags in pixels per
centimetre (OpenSlide's ``openslide.mpp-x`` is then ``s`` times the slide's MPP). The
ImageDescription is ``napari-conch map `` followed by the JSON description (with ``"map"`` as
in the float map).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from napari_conch.engine.export.map_tiff import (
    DEFAULT_MAP_SCALE,
    TILE,
    SlideFrame,
    level_shapes,
    map_pixel_size,
    paint,
    placement,
    resolution_tags,
)
from napari_conch.errors import InputError

#: How a ``.tif`` map is rendered: float32 values (OME-TIFF) or colours (RGBA TIFF).
MAP_RENDERS = ("float", "rgb")
DEFAULT_MAP_RENDER = "float"
#: What the ImageDescription of a coloured map starts with.
DESCRIPTION_PREFIX = "napari-conch map "


def parse_map_render(value: Any) -> str:
    """``"float"`` or ``"rgb"``.

    Raises
    ------
    InputError
        For anything else.
    """
    if isinstance(value, str) and value.strip().lower() in MAP_RENDERS:
        return value.strip().lower()
    raise InputError(f"map render {value!r}: expected float or rgb")


def cell_colours(result: Any) -> np.ndarray:
    """``[4, rows, cols]`` float32 RGBA (whole numbers 0-255) of every cell of ``result``'s
    map."""
    from napari_conch.engine.export.writers import label_color
    from napari_conch.engine.render import colorize

    if result.cell_probs is None:
        values = np.asarray(result.cell_cosine[0], np.float32)
        rgb = colorize(values)
        shown = np.isfinite(values)
    else:
        labels = np.asarray(result.cell_labels)
        finite = np.isfinite(np.asarray(result.cell_probs, np.float32)).all(axis=0)
        shown = finite & (labels > 0)
        top = int(labels.max()) if labels.size else 0
        lut = np.array([(0, 0, 0), *(label_color(i) for i in range(1, top + 1))], np.float32)
        rgb = lut[np.clip(labels, 0, top)]
    rgba = np.zeros((4, *shown.shape), np.float32)
    rgba[:3] = np.moveaxis(rgb, -1, 0)
    rgba[:, ~shown] = 0
    rgba[3, shown] = 255
    return rgba.round()


def _tiles(cells: np.ndarray, geometry: Any, shape: tuple[int, int], size: float):
    """The map's 256 x 256 RGBA tiles, row by row (transparent beyond its edge)."""
    for y in range(0, shape[0], TILE):
        for x in range(0, shape[1], TILE):
            h, w = min(TILE, shape[0] - y), min(TILE, shape[1] - x)
            tile = np.zeros((TILE, TILE, 4), np.uint8)
            painted = np.nan_to_num(paint(cells, geometry, size, (y, x), (h, w)), nan=0.0)
            tile[:h, :w] = np.moveaxis(painted, 0, -1).astype(np.uint8)
            yield tile


def write_rgb_map_tiff(
    path: str | os.PathLike,
    result: Any,
    frame: SlideFrame,
    *,
    scale: Any = DEFAULT_MAP_SCALE,
    description: dict[str, Any] | None = None,
) -> None:
    """Write ``result``'s map as a coloured pyramidal TIFF over the slide ``frame``.

    Parameters are those of :func:`~napari_conch.engine.export.map_tiff.write_map_tiff`; the file is
    written to a temporary sibling and renamed into place.
    """
    import tifffile

    from napari_conch.engine.export.writers import atomic_path

    size = map_pixel_size(scale, frame)
    cells = cell_colours(result)
    shapes = level_shapes(frame, size)
    place = placement(scale, size, shapes, frame)
    description = {
        **(description or {}),
        "map": {"scale": place.pop("scale"), "render": "rgb", **place},
    }
    text = DESCRIPTION_PREFIX + json.dumps(description)
    big = sum(h * w for h, w in shapes) * 4 > 2**32 - 2**25
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=big) as tif:
        for level, shape in enumerate(shapes):
            level_size = size * 2**level
            per_cm, unit = resolution_tags(frame, level_size)
            tif.write(
                _tiles(cells, result.geometry, shape, level_size),
                shape=(*shape, 4),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                extrasamples=(2,),  # unassociated alpha
                compression="zlib",
                resolution=(per_cm, per_cm),
                resolutionunit=unit,
                subfiletype=1 if level else 0,
                description=text if level == 0 else None,
                metadata=None,
            )


def read_rgb_map_description(path: str | os.PathLike) -> dict[str, Any] | None:
    """The description of a map written by :func:`write_rgb_map_tiff`, ``None`` for other
    files."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            text = tif.pages.first.description
    except (tifffile.TiffFileError, OSError, ValueError, IndexError):
        return None
    if not text.startswith(DESCRIPTION_PREFIX):
        return None
    try:
        value = json.loads(text[len(DESCRIPTION_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("map"), dict) else None


def open_rgb_map(path: str | os.PathLike) -> Any:
    """Open a coloured map lazily: an :class:`~napari_conch.engine.export.map_tiff.OpenedMap` whose
    levels are ``[H, W, 4]`` uint8 (RGBA) and whose one channel is ``"rgba"``.

    Raises
    ------
    InputError
        When the file is not such a map, or cannot be read.
    """
    import dask.array as da
    import tifffile
    import zarr

    from napari_conch.engine.export.map_tiff import OpenedMap

    description = read_rgb_map_description(path)
    if description is None:
        raise InputError(f"{path}: not a napari-conch coloured map (no map description)")
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
    return OpenedMap([da.from_zarr(a) for a in arrays], ["rgba"], description)
