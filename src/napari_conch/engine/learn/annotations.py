"""Examples from annotations: QuPath GeoJSON shapes to tiles of a store's grid, and back.

An *example* is a tile of the grid with a class name. A tile is an example of a class when its
centre lies inside a shape of that class (even-odd rule, so holes are left out); where shapes of
two classes cover one centre, the later shape wins, as it would be drawn on top.

QuPath GeoJSON: a FeatureCollection, a list of Features or one Feature, each with a Polygon or
MultiPolygon geometry in level-0 pixels (``[x, y]`` pairs; holes as further rings) and
``properties.classification`` holding ``name`` and ``color`` (``[r, g, b]``; QuPath's older
packed integer is read too). Features without a classification are not examples; they are
counted in :attr:`Shapes.unclassified`.

Exported examples are QuPath annotations again: per class, the union of its example tiles'
cells (the stride-sized square centred on each tile, see
:func:`~napari_conch.engine.overlap.tile_geometry`), traced by
:func:`~napari_conch.engine.export.polygons.label_polygons`. Every exported cell contains its own
tile's centre and no other's, so importing the export gives back the same examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.colors import label_color
from napari_conch.engine.export.polygons import label_polygons
from napari_conch.engine.export.writers import atomic_path
from napari_conch.engine.overlap import tile_geometry
from napari_conch.errors import InputError
from napari_conch.json_input import read_json

#: Largest GeoJSON file read (QuPath exports of many detailed shapes run to tens of MiB).
MAX_GEOJSON_BYTES = 256 * 2**20

Color = tuple[int, int, int]


@dataclass
class Shape:
    """One classified shape: ``polygons`` are ``[outer, hole, ...]`` lists of ``[M, 2]`` (x, y)."""

    name: str
    color: Color | None
    polygons: list[list[np.ndarray]]

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the outer rings."""
        points = np.concatenate([poly[0] for poly in self.polygons])
        return (*points.min(axis=0), *points.max(axis=0))


@dataclass
class Shapes:
    """Shapes read from a file, and how many features had no classification."""

    shapes: list[Shape] = field(default_factory=list)
    unclassified: int = 0

    def colors(self) -> dict[str, Color]:
        """The colour of each class, from its first shape that has one."""
        out: dict[str, Color] = {}
        for shape in self.shapes:
            if shape.color is not None:
                out.setdefault(shape.name, shape.color)
        return out


@dataclass
class Examples:
    """Example tiles: grid positions and class names, in the order they were given."""

    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cols: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64).reshape(-1)
        self.cols = np.asarray(self.cols, dtype=np.int64).reshape(-1)
        self.names = [str(n) for n in self.names]
        if not len(self.rows) == len(self.cols) == len(self.names):
            raise InputError("examples need as many rows, columns and class names")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def classes(self) -> list[str]:
        """Class names with examples, in order of first appearance."""
        return list(dict.fromkeys(self.names))

    def as_dict(self) -> dict[tuple[int, int], str]:
        """``{(row, col): name}``."""
        return {
            (int(r), int(c)): n for r, c, n in zip(self.rows, self.cols, self.names, strict=True)
        }

    @classmethod
    def from_dict(cls, mapping: dict[tuple[int, int], str]) -> Examples:
        """Build from ``{(row, col): name}``."""
        keys = list(mapping)
        return cls([k[0] for k in keys], [k[1] for k in keys], [mapping[k] for k in keys])

    def with_tiles(self, tiles: Iterable[tuple[int, int]], name: str | None) -> Examples:
        """A copy where ``tiles`` are examples of ``name`` (or no longer examples if None)."""
        mapping = self.as_dict()
        for row, col in tiles:
            key = (int(row), int(col))
            mapping.pop(key, None)
            if name is not None:
                mapping[key] = name
        return Examples.from_dict(mapping)

    def counts(self) -> dict[str, int]:
        """Examples per class."""
        return {n: self.names.count(n) for n in self.classes}

    def to_json(self) -> list[list[Any]]:
        """``[[row, col, name], ...]``."""
        return [
            [int(r), int(c), n] for r, c, n in zip(self.rows, self.cols, self.names, strict=True)
        ]

    @classmethod
    def from_json(cls, data: Any) -> Examples:
        """Inverse of :meth:`to_json`."""
        try:
            rows, cols, names = zip(*data, strict=True) if data else ((), (), ())
            return cls(list(map(int, rows)), list(map(int, cols)), list(names))
        except (TypeError, ValueError) as exc:
            raise InputError(f"examples must be [row, col, class] triples ({exc})") from None


# ---------------------------------------------------------------------------------- reading
def _color(value: Any) -> Color | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):  # QuPath's packed ARGB / RGB
        return ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    if isinstance(value, list | tuple) and len(value) >= 3:
        try:
            return tuple(int(v) for v in value[:3])  # type: ignore[return-value]
        except (TypeError, ValueError):
            return None
    return None


def _ring(coords: Any, where: str) -> np.ndarray:
    try:
        ring = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: a ring is not a list of [x, y] points") from None
    if ring.ndim != 2 or ring.shape[1] < 2 or len(ring) < 3 or not np.isfinite(ring).all():
        raise InputError(f"{where}: a ring needs three or more finite [x, y] points")
    return ring[:, :2]


def _polygons(geometry: Any, where: str) -> list[list[np.ndarray]]:
    if not isinstance(geometry, dict):
        raise InputError(f"{where}: no geometry")
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        parts = [coords]
    elif kind == "MultiPolygon":
        parts = coords
    else:
        raise InputError(f"{where}: geometry {kind!r} is not a Polygon or MultiPolygon")
    if not isinstance(parts, list) or not all(isinstance(p, list) and p for p in parts):
        raise InputError(f"{where}: malformed {kind} coordinates")
    return [[_ring(ring, where) for ring in part] for part in parts]


def _features(data: Any, source: str) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if isinstance(features, list):
            return features
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    raise InputError(f"{source}: expected a GeoJSON FeatureCollection or a list of Features")


def shapes_from_geojson(data: Any, source: str = "annotations") -> Shapes:
    """Classified shapes of QuPath GeoJSON data (see the module docstring)."""
    out = Shapes()
    for i, feature in enumerate(_features(data, source)):
        where = f"{source}: feature {i}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise InputError(f"{where} is not a GeoJSON Feature")
        props = feature.get("properties") or {}
        classification = props.get("classification") if isinstance(props, dict) else None
        name = classification.get("name") if isinstance(classification, dict) else None
        if not isinstance(name, str) or not name.strip():
            out.unclassified += 1
            continue
        polygons = _polygons(feature.get("geometry"), where)
        out.shapes.append(Shape(name.strip(), _color(classification.get("color")), polygons))
    return out


def read_geojson(path: str | os.PathLike) -> Shapes:
    """Read QuPath GeoJSON annotations from a file.

    Raises
    ------
    InputError
        When the file is missing, not JSON (or larger than :data:`MAX_GEOJSON_BYTES` or nested
        too deeply, see :func:`~napari_conch.json_input.read_json`), or not GeoJSON features
        with polygons.
    """
    data = read_json(path, "annotation file", max_bytes=MAX_GEOJSON_BYTES)
    return shapes_from_geojson(data, str(path))


# ---------------------------------------------------------------------------------- tiles
def points_in_polygon(points: np.ndarray, rings: list[np.ndarray]) -> np.ndarray:
    """bool ``[N]``: which ``(x, y)`` points lie inside a polygon with holes (even-odd rule)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    for ring in rings:
        a = np.asarray(ring, dtype=np.float64)
        b = np.roll(a, -1, axis=0)
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            if ya == yb:
                continue
            crosses = (ya > y) != (yb > y)
            x_at = xa + (y - ya) * (xb - xa) / (yb - ya)
            inside ^= crosses & (x < x_at)
    return inside


def tile_centres(grid: Any) -> np.ndarray:
    """``[rows, cols, 2]`` level-0 ``(x, y)`` centres of the grid's tiles."""
    boxes = grid.boxes()
    return np.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], -1)


def slide_extent(grid: Any) -> tuple[float, float]:
    """``(width, height)`` of the slide in level-0 pixels."""
    h, w = grid.level_shape
    return (w * grid.level_downsample, h * grid.level_downsample)


def examples_from_shapes(grid: Any, shapes: Shapes | list[Shape]) -> Examples:
    """The grid's tiles whose centre lies in a shape, each with that shape's class.

    Raises
    ------
    InputError
        When a shape lies wholly outside the slide.
    """
    shape_list = shapes.shapes if isinstance(shapes, Shapes) else list(shapes)
    centres = tile_centres(grid).reshape(-1, 2)
    width, height = slide_extent(grid)
    owner = np.full(len(centres), -1, dtype=np.int64)
    names = [s.name for s in shape_list]
    for i, shape in enumerate(shape_list):
        x0, y0, x1, y1 = shape.bounds()
        if x1 < 0 or y1 < 0 or x0 > width or y0 > height:
            raise InputError(
                f"shape {i} ({shape.name!r}, x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}) lies "
                f"outside the slide ({width:.0f} x {height:.0f} level-0 pixels)"
            )
        near = np.flatnonzero(
            (centres[:, 0] >= x0)
            & (centres[:, 0] <= x1)
            & (centres[:, 1] >= y0)
            & (centres[:, 1] <= y1)
        )
        for polygon in shape.polygons:
            hit = near[points_in_polygon(centres[near], polygon)]
            owner[hit] = i
    flat = np.flatnonzero(owner >= 0)
    cols = grid.shape[1]
    return Examples(flat // cols, flat % cols, [names[owner[f]] for f in flat])


# ---------------------------------------------------------------------------------- writing
def class_colors(names: Iterable[str], given: dict[str, Color] | None = None) -> dict[str, Color]:
    """A colour per class: the given one, else the map colour of its position (label k + 1)."""
    given = given or {}
    return {n: tuple(given.get(n, label_color(k + 1))) for k, n in enumerate(names)}


def examples_geojson(
    examples: Examples, grid: Any, colors: dict[str, Color] | None = None
) -> dict[str, Any]:
    """The examples as a QuPath GeoJSON FeatureCollection of annotations (level-0 pixels).

    One Polygon feature per connected group of example cells of a class; each cell is the
    stride-sized square centred on its tile.
    """
    classes = examples.classes
    colors = class_colors(classes, colors)
    geometry = tile_geometry(grid)  # one stride-sized cell per tile, centred on the tile
    labels = np.zeros(grid.shape, dtype=np.int32)
    number = {n: i + 1 for i, n in enumerate(classes)}
    labels[examples.rows, examples.cols] = [number[n] for n in examples.names]
    scale = geometry.cell_size
    offset = np.array([geometry.origin[1], geometry.origin[0]])
    features = []
    for label, rings in label_polygons(labels):
        name = classes[label - 1]
        features.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [(ring * scale + offset).tolist() for ring in rings],
                },
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": name, "color": list(colors[name])},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_examples_geojson(
    path: str | os.PathLike,
    examples: Examples,
    grid: Any,
    colors: dict[str, Color] | None = None,
) -> Path:
    """Write :func:`examples_geojson` to ``path`` atomically; return the path."""
    path = Path(path)
    collection = examples_geojson(examples, grid, colors)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection), encoding="utf-8")
    return path
