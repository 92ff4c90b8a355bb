"""QuPath GeoJSON to example tiles and back, and the annotation project saved in the store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_conch.engine.learn.annotations import (
    Examples,
    examples_from_shapes,
    points_in_polygon,
    read_geojson,
    shapes_from_geojson,
    tile_centres,
    write_examples_geojson,
)
from napari_conch.engine.learn.classifier import LinearClassifier
from napari_conch.engine.learn.project import (
    AnnotationProject,
    load_project,
    project_path,
    save_project,
)
from napari_conch.engine.store.embedding_store import EmbeddingStore
from napari_conch.errors import InputError, StoreError
from napari_conch.slide import TileGrid


def make_grid(rows=10, cols=12, tile=16, stride=8, down=2.0) -> TileGrid:
    shape = ((rows - 1) * stride + tile, (cols - 1) * stride + tile)
    return TileGrid(0, down, 1.0, tile, stride, rows, cols, shape)


def square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def feature(geometry, name=None, color=None):
    props = {"objectType": "annotation"}
    if name is not None:
        props["classification"] = {"name": name, **({"color": color} if color else {})}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def test_points_in_polygon_with_a_hole():
    outer, hole = np.array(square(0, 0, 10, 10), float), np.array(square(3, 3, 6, 6), float)
    pts = np.array([[1, 1], [4, 4], [9, 5], [11, 5], [5, -1]], float)
    assert points_in_polygon(pts, [outer, hole]).tolist() == [True, False, True, False, False]


def test_tiles_whose_centre_lies_in_a_shape_become_examples():
    grid = make_grid()  # tiles 32 level-0 px, 16 apart: centres at 16 + 16 * index
    centres = tile_centres(grid)
    assert tuple(centres[2, 3]) == (16 + 48, 16 + 32)
    data = {
        "type": "FeatureCollection",
        "features": [
            # a square with a hole around tile (2, 3)'s centre: covers tiles 1..3 x 2..4
            feature(
                {
                    "type": "Polygon",
                    "coordinates": [square(40, 20, 90, 70), square(60, 44, 68, 52)],
                },
                "Tumor",
                [200, 0, 0],
            ),
            # a MultiPolygon of two small squares around single centres, QuPath's packed colour
            feature(
                {
                    "type": "MultiPolygon",
                    "coordinates": [[square(140, 140, 150, 150)], [square(172, 12, 180, 20)]],
                },
                "Stroma",
                0x00FF00,
            ),
            feature({"type": "Polygon", "coordinates": [square(0, 0, 5, 5)]}),  # unclassified
        ],
    }
    shapes = shapes_from_geojson(data)
    assert shapes.unclassified == 1 and shapes.colors() == {
        "Tumor": (200, 0, 0),
        "Stroma": (0, 255, 0),
    }
    examples = examples_from_shapes(grid, shapes)
    got = examples.as_dict()
    tumour = {(r, c) for r in (1, 2, 3) for c in (2, 3, 4)} - {(2, 3)}  # the hole
    assert {k for k, v in got.items() if v == "Tumor"} == tumour
    assert {k for k, v in got.items() if v == "Stroma"} == {(8, 8), (0, 10)}
    # a list of features reads the same; a later shape wins where two overlap
    later = [
        *data["features"],
        feature({"type": "Polygon", "coordinates": [square(40, 20, 60, 40)]}, "Stroma"),
    ]
    again = examples_from_shapes(grid, shapes_from_geojson(later)).as_dict()
    assert again[(1, 2)] == "Stroma" and again[(1, 3)] == "Tumor"


def test_export_then_import_gives_the_same_examples(tmp_path):
    for grid in (make_grid(), make_grid(tile=16, stride=16), make_grid(tile=20, stride=8)):
        rng = np.random.default_rng(0)
        mapping = {}
        for _ in range(40):
            mapping[(int(rng.integers(grid.rows)), int(rng.integers(grid.cols)))] = str(
                rng.choice(["tumour", "stroma", "immune cells"])
            )
        examples = Examples.from_dict(mapping)
        path = write_examples_geojson(
            tmp_path / "examples.geojson", examples, grid, {"stroma": (1, 2, 3)}
        )
        shapes = read_geojson(path)
        assert examples_from_shapes(grid, shapes).as_dict() == mapping
        assert shapes.colors()["stroma"] == (1, 2, 3)
        data = json.loads(path.read_text())
        assert all(f["properties"]["objectType"] == "annotation" for f in data["features"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"type": "Topology"}', "expected a GeoJSON FeatureCollection"),
        (
            json.dumps([feature({"type": "Point", "coordinates": [1, 2]}, "x")]),
            "feature 0: geometry 'Point' is not a Polygon",
        ),
        (
            json.dumps([feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "x")]),
            "three or more finite",
        ),
    ],
)
def test_bad_annotation_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_geojson(path)
    with pytest.raises(InputError, match="does not exist"):
        read_geojson(tmp_path / "missing.geojson")


def test_a_shape_outside_the_slide_is_an_error():
    grid = make_grid()
    shapes = shapes_from_geojson(
        [feature({"type": "Polygon", "coordinates": [square(5000, 5000, 5100, 5100)]}, "Tumor")]
    )
    with pytest.raises(InputError, match=r"shape 0 \('Tumor'.*outside the slide \(208 x 176"):
        examples_from_shapes(grid, shapes)


def make_store(tmp_path, grid, name="s.zarr"):
    signature = {"format": 1, "grid": grid.to_dict(), "embed_dim": 4, "model_fingerprint": "x"}
    return EmbeddingStore.open_or_create(tmp_path / name, signature)


def test_project_is_saved_in_the_store_and_found_again(tmp_path):
    grid = make_grid()
    store = make_store(tmp_path, grid)
    assert load_project(store) is None
    classifier = LinearClassifier(
        ("tumour", "stroma"),
        np.eye(2, 4, dtype=np.float32),
        np.array([0.5, -0.5], np.float32),
        14.0,
    )
    project = AnnotationProject(
        classes={"tumour": ["tumour", "carcinoma"], "stroma": []},
        colors={"tumour": (255, 0, 0), "stroma": (0, 0, 255)},
        templates="none",
        examples=Examples([1, 2], [3, 4], ["tumour", "stroma"]),
        strength=0.3,
        classifier=classifier,
    )
    path = save_project(store, project)
    assert path == project_path(store.path) == store.path / "annotations" / "project.json"
    assert not list(path.parent.glob("*.partial"))
    back = load_project(EmbeddingStore.open(store.path))
    assert back.classes == project.classes and back.colors == project.colors
    assert back.prompts == {"tumour": ["tumour", "carcinoma"]}
    assert back.examples.as_dict() == {(1, 3): "tumour", (2, 4): "stroma"}
    assert back.templates == "none" and back.strength == 0.3
    np.testing.assert_array_equal(back.classifier.weights, classifier.weights)
    np.testing.assert_array_equal(back.classifier.bias, classifier.bias)
    # the store still opens as a store (the annotations folder is not part of it)
    assert EmbeddingStore.open(store.path).shape == grid.shape


def test_a_project_of_another_store_or_a_damaged_one_is_refused(tmp_path):
    store = make_store(tmp_path, make_grid())
    save_project(store, AnnotationProject(classes={"a": ["a"]}))
    other = make_store(tmp_path, make_grid(rows=11), "other.zarr")
    save_project(other, AnnotationProject(classes={"b": ["b"]}))
    (other.path / "annotations" / "project.json").write_bytes(project_path(store.path).read_bytes())
    with pytest.raises(StoreError, match="saved for another store"):
        load_project(other)
    project_path(store.path).write_text("{not json")
    with pytest.raises(InputError, match=r"annotation project .* is not valid JSON"):
        load_project(store)
    project_path(store.path).write_text('{"format": 1, "classes": 3}')
    with pytest.raises(InputError, match="malformed annotation project"):
        load_project(store)
