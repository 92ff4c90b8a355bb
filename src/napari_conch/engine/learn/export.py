"""Writing a learned map: CSV with class names, and the query writers with the classes' colours.

- ``.csv``: one row per computed tile: ``row,col,x0,y0,x1,y1`` (the tile's level-0 box),
  ``class`` (the winning class's name), then ``prob_<class>`` for every class.
- ``.tif`` / ``.tiff`` / ``.npy``: the cell map of probabilities and label, as
  :func:`~napari_conch.engine.export.writers.export_result` writes a query's (the TIFF a pyramidal
  OME-TIFF placed on the slide, or one pixel per cell with ``map_scale="tile"``).
- ``.geojson``: the labelled regions as QuPath annotations
  (:func:`~napari_conch.engine.export.writers.geojson_features`), each with its class's name and
  colour.

Every file is written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.export.map_tiff import DEFAULT_MAP_SCALE, SlideFrame
from napari_conch.engine.export.writers import (
    FORMATS,
    atomic_path,
    export_result,
    geojson_features,
    per_tile,
    tile_table,
    write_table,
)
from napari_conch.engine.learn.annotations import Color, class_colors
from napari_conch.engine.query import QueryResult


def write_learned_csv(path: str | os.PathLike, result: QueryResult, grid: Any) -> None:
    """One row per computed tile: box, class name, and the probability of each class."""
    probs = [f"prob_{n}" for n in result.names]
    header = ["row", "col", "x0", "y0", "x1", "y1", "class", *probs]
    table = tile_table(result, grid, header, "class")
    names = np.array(["", *result.label_names], dtype=object)
    table["class"] = names[result.labels[result.valid]]
    for name, values in zip(probs, per_tile(result.probs, result), strict=True):
        table[name] = values
    write_table(path, table)


def write_learned_geojson(
    path: str | os.PathLike, result: QueryResult, colors: dict[str, Color] | None = None
) -> None:
    """The labelled regions as QuPath annotations coloured by class."""
    colors = class_colors(result.names, colors)
    features = geojson_features(result)
    for f in features:
        name = f["properties"]["classification"]["name"]
        f["properties"]["classification"]["color"] = list(colors[name])
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8"
        )


def export_learned(
    path: str | os.PathLike,
    result: QueryResult,
    grid: Any,
    *,
    colors: dict[str, Color] | None = None,
    mpp: float | None = None,
    metadata: dict[str, Any] | None = None,
    map_scale: Any = DEFAULT_MAP_SCALE,
    frame: SlideFrame | None = None,
    map_render: str = "float",
) -> Path:
    """Write a learned map to ``path`` in the format its extension names; return the path.

    ``map_scale``, ``frame`` and ``map_render`` place and render a ``.tif`` map, as in
    :func:`~napari_conch.engine.export.writers.export_result`.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind == "csv":
        write_learned_csv(path, result, grid)
    elif kind == "geojson":
        write_learned_geojson(path, result, colors)
    else:
        export_result(
            path, result, grid, mpp=mpp, metadata=metadata, map_scale=map_scale, frame=frame,
            map_render=map_render,
        )  # fmt: skip
    return path
