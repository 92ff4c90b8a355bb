"""Writing query results: CSV, TIFF, GeoJSON and NPY.

:func:`export_result` picks the writer from the file extension:

- ``.csv``: one row per computed tile: ``row,col,x0,y0,x1,y1`` (the tile's level-0 box), the
  cosine similarity of each prompt (a column named by the prompt), then with several prompts
  ``prob_<prompt>`` columns and ``label``.
- ``.tif`` / ``.tiff``: by default a pyramidal OME-TIFF over the whole slide, at a map pixel
  size the caller chooses (``map_scale``), with physical pixel sizes, the offset to the slide and
  resolution tags in centimetres, so that QuPath, ImageJ and OpenSlide place it on the slide
  (:mod:`napari_conch.engine.export.map_tiff`). With ``map_scale="tile"``: the cell map
  (:meth:`QueryResult.cell_map`) as float32, one pixel per
  stride cell. ImageDescription holds tifffile's JSON ``{"shape": [...], "napari_conch": {...}}``
  with ``cell_size_level0``,
  ``origin_level0_yx`` and the channel names; the resolution tags give cells per centimetre when
  the slide's microns per pixel are known, else cells per level-0 pixel (unit NONE).
- ``.geojson``: a FeatureCollection, one Polygon feature per connected labelled region (holes as
  interior rings) in level-0 pixel coordinates, with QuPath's ``classification`` property.
- ``.npy``: the cell map, the same array as the TIFF.

Every writer writes a temporary sibling file and renames it into place, so a reader never sees a
half-written file. An ``OSError`` while writing (full disk, read-only folder, ``path`` naming a
folder) is raised as :class:`~napari_conch.errors.OutputError` naming the file, and the temporary
file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_conch.engine.colors import label_color
from napari_conch.engine.export.map_rgb import parse_map_render, write_rgb_map_tiff
from napari_conch.engine.export.map_tiff import (
    DEFAULT_MAP_SCALE,
    SlideFrame,
    parse_map_scale,
    read_map_description,
    write_map_tiff,
)
from napari_conch.engine.export.polygons import label_polygons
from napari_conch.engine.query import QueryResult
from napari_conch.errors import InputError, OutputError, describe_os_error

if TYPE_CHECKING:
    import pandas as pd

#: File extensions and the writer each one uses.
FORMATS = {".csv": "csv", ".tif": "tiff", ".tiff": "tiff", ".geojson": "geojson", ".npy": "npy"}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` when the block succeeds.

    Raises
    ------
    InputError
        When the folder of ``path`` does not exist.
    OutputError
        When ``path`` is a folder, or writing or renaming fails with an ``OSError`` (nothing is
        left behind: neither the temporary file nor a partial ``path``).
    """
    path = Path(path)
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise InputError(f"cannot write {path}: folder {path.parent} {what}")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path} ({describe_os_error(exc)})") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def export_result(
    path: str | os.PathLike,
    result: QueryResult,
    grid: Any,
    *,
    mpp: float | None = None,
    metadata: dict[str, Any] | None = None,
    map_scale: Any = DEFAULT_MAP_SCALE,
    frame: SlideFrame | None = None,
    map_render: str = "float",
) -> Path:
    """Write ``result`` to ``path`` in the format its extension names; return the path.

    Parameters
    ----------
    path
        ``.csv``, ``.tif``/``.tiff``, ``.geojson`` or ``.npy``.
    result
        What :func:`~napari_conch.engine.query.run_query` returned.
    grid
        The tile grid (for the tile boxes of the CSV).
    mpp
        Microns per level-0 pixel, when known (TIFF physical size).
    metadata
        Extra JSON-able entries for the TIFF description (store, prompts, ...).
    map_scale
        TIFF only: ``"auto"``, ``"full"``, level-0 pixels per map pixel, or ``"tile"`` (one
        pixel per cell); see :mod:`napari_conch.engine.export.map_tiff`.
    frame
        TIFF only: the slide's level-0 size, downsamples and MPP; by default what ``grid`` and
        ``mpp`` imply (:meth:`SlideFrame.from_grid`).
    map_render
        TIFF only, not with ``"tile"``: ``"float"`` (the values, an OME-TIFF) or ``"rgb"``
        (colours QuPath and OpenSlide open: :mod:`napari_conch.engine.export.map_rgb`).
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(FORMATS)
        raise InputError(f"cannot export to {path}: unknown extension {path.suffix!r} ({known})")
    scale = parse_map_scale(map_scale)
    render = parse_map_render(map_render)
    if kind == "tiff" and render == "rgb" and scale == "tile":
        raise InputError(f"cannot export to {path}: map render rgb needs a map scale other than "
                         "tile (the coloured map is laid over the slide)")  # fmt: skip
    if kind == "csv":
        write_csv(path, result, grid)
    elif kind == "tiff" and scale == "tile":
        write_tiff(path, result, mpp=mpp, metadata=metadata)
    elif kind == "tiff":
        frame = frame or SlideFrame.from_grid(grid, mpp)
        described = map_metadata(result, result.cell_map()[1], frame.mpp, metadata)
        write = write_rgb_map_tiff if render == "rgb" else write_map_tiff
        write(path, result, frame, scale=scale, description=described)
    elif kind == "geojson":
        write_geojson(path, result)
    else:
        write_npy(path, result)
    return path


def tile_table(result: QueryResult, grid: Any, header: list[str], what: str) -> pd.DataFrame:
    """The computed tiles as a table: ``row``, ``col`` and the level-0 box ``x0,y0,x1,y1``.

    ``header`` is the whole CSV header the caller will write; a name that stands in it twice is
    an :class:`~napari_conch.errors.InputError` naming the ``what`` (a prompt or a class) that
    clashes. Box coordinates that are whole numbers are written without a decimal point.
    """
    clashes = sorted({h for h in header if header.count(h) > 1})
    if clashes:
        raise InputError(f"{what} {clashes[0]!r} clashes with another CSV column name")
    import pandas as pd  # here: importing the engine (every command, the docks) stays light

    rows, cols = np.nonzero(result.valid)
    boxes = np.asarray(grid.boxes(), dtype=np.float64)[rows, cols].reshape(-1, 4)
    table = pd.DataFrame({"row": rows, "col": cols})
    for i, name in enumerate(("x0", "y0", "x1", "y1")):
        # an object column of int and float: pandas writes each as str(), "256" and "256.5"
        table[name] = pd.Series(
            [int(v) if v.is_integer() else float(v) for v in boxes[:, i].tolist()], dtype=object
        )
    return table


def per_tile(values: np.ndarray, result: QueryResult) -> np.ndarray:
    """``values[..., rows, cols]`` at the computed tiles, as float64 (written as ``repr``)."""
    return np.asarray(values[..., result.valid], dtype=np.float64)


def write_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write ``table`` as CSV atomically (comma, minimal quoting, CRLF rows, floats as ``repr``)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\r\n", na_rep="nan", encoding="utf-8")


def write_csv(path: str | os.PathLike, result: QueryResult, grid: Any) -> None:
    """One row per computed tile: its box, the cosine of each class, probabilities and label."""
    names = list(result.names)
    header = ["row", "col", "x0", "y0", "x1", "y1", *names]
    if result.probs is not None:
        header += [f"prob_{n}" for n in names] + ["label"]
    table = tile_table(result, grid, header, "prompt")
    columns = {}
    for name, values in zip(names, per_tile(result.cosine, result), strict=True):
        columns[name] = values
    if result.probs is not None:
        for name, values in zip(names, per_tile(result.probs, result), strict=True):
            columns[f"prob_{name}"] = values
        columns["label"] = result.labels[result.valid].astype(np.int64)
    import pandas as pd

    table = pd.concat([table, pd.DataFrame(columns)], axis=1)
    write_table(path, table)


def map_metadata(
    result: QueryResult, channels: list[str], mpp: float | None, extra: dict | None = None
) -> dict[str, Any]:
    """JSON-able description of a cell map: placement on the slide, channels and classes."""
    meta = {
        "kind": "cosine" if result.cell_probs is None else "probabilities+label",
        "channels": channels,
        "classes": list(result.names),
        "background": result.background,
        "threshold": result.threshold,
        **result.geometry.to_dict(),
        "mpp_level0": mpp,
        "cell_size_um": None if mpp is None else float(mpp) * result.geometry.cell_size,
    }
    meta.update(extra or {})
    return meta


def write_tiff(
    path: str | os.PathLike,
    result: QueryResult,
    *,
    mpp: float | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write the cell map as a float32 TIFF with its placement in the description and tags."""
    import tifffile

    data, channels = result.cell_map()
    meta = map_metadata(result, channels, mpp, metadata)
    cell = result.geometry.cell_size
    if mpp is not None:
        per_unit, unit = 1e4 / (float(mpp) * cell), tifffile.RESUNIT.CENTIMETER
    else:
        per_unit, unit = 1.0 / cell, tifffile.RESUNIT.NONE
    options = {"planarconfig": "separate"} if data.ndim == 3 else {}
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            photometric="minisblack",
            metadata={"napari_conch": meta},  # JSON description {"shape": ..., "napari_conch": ...}
            resolution=(per_unit, per_unit),
            resolutionunit=unit,
            compression="zlib",
            **options,
        )


def read_tiff_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the ``napari_conch`` description of a map TIFF (either kind :func:`export_result`
    writes: the OME-TIFF map, with its ``"map"`` placement, or the one-pixel-per-cell TIFF)."""
    import tifffile

    found = read_map_description(path)
    if found is not None:
        return found
    with tifffile.TiffFile(path) as tif:
        text = tif.pages[0].description
    try:
        return json.loads(text)["napari_conch"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{path} holds no napari-conch map description") from None


def write_npy(path: str | os.PathLike, result: QueryResult) -> None:
    """Write the cell map (:meth:`QueryResult.cell_map`) as a NumPy ``.npy`` file."""
    data, _ = result.cell_map()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, data)


def geojson_features(result: QueryResult) -> list[dict[str, Any]]:
    """QuPath-style features: one polygon per connected region of each label."""
    if result.cell_labels is None:
        raise InputError(
            "GeoJSON needs labelled regions: give two or more prompts, or --threshold for one"
        )
    geometry = result.geometry
    scale = np.array([geometry.cell_size, geometry.cell_size])
    offset = np.array([geometry.origin[1], geometry.origin[0]])  # rings are (x, y)
    names = result.label_names
    features = []
    for label, rings in label_polygons(result.cell_labels):
        coordinates = [(ring * scale + offset).tolist() for ring in rings]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": coordinates},
                "properties": {
                    "objectType": "annotation",
                    "classification": {
                        "name": names[label - 1],
                        "color": list(label_color(label)),
                    },
                    "label": int(label),
                },
            }
        )
    return features


def write_geojson(path: str | os.PathLike, result: QueryResult) -> None:
    """Write the labelled regions as a GeoJSON FeatureCollection in level-0 pixels."""
    collection = {"type": "FeatureCollection", "features": geojson_features(result)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection), encoding="utf-8")
