"""Exports read back: CSV, TIFF (tifffile), GeoJSON (json), NPY; polygon tracing."""

from __future__ import annotations

import csv
import json
from collections import deque

import numpy as np
import pytest
import tifffile

from napari_conch.engine.export.polygons import label_polygons, mask_polygons, signed_area
from napari_conch.engine.export.writers import (
    atomic_path,
    export_result,
    label_color,
    read_tiff_metadata,
)
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.errors import InputError
from napari_conch.slide import TileGrid


def make_grid(rows, cols, tile=4, stride=2, down=2.0):
    shape = ((rows - 1) * stride + tile, (cols - 1) * stride + tile)
    return TileGrid(0, down, 1.0, tile, stride, rows, cols, shape)


@pytest.fixture
def grid():
    return make_grid(4, 5)


@pytest.fixture
def index():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 5, 8)).astype(np.float32)
    emb[0, 0] = emb[3, 2] = np.nan
    return QueryIndex(emb)


def queries(k):
    q = np.random.default_rng(k).normal(size=(k, 8))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def several(index, grid):
    return run_query(index, ["tumor", "stroma"], queries(2), grid, logit_scale=30.0)


def test_csv_one_row_per_computed_tile(tmp_path, index, grid, several) -> None:
    path = export_result(tmp_path / "scores.csv", several, grid)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        *("row", "col", "x0", "y0", "x1", "y1", "tumor", "stroma"),
        *("prob_tumor", "prob_stroma", "label"),
    ]
    assert len(rows) == index.size == 18
    boxes = grid.boxes()
    for line in rows:
        r, c = int(line["row"]), int(line["col"])
        assert [float(line[k]) for k in ("x0", "y0", "x1", "y1")] == list(boxes[r, c])
        assert float(line["tumor"]) == several.cosine[0, r, c]
        assert float(line["prob_stroma"]) == several.probs[1, r, c]
        assert int(line["label"]) == several.labels[r, c]
    assert (0, 0) not in {(int(x["row"]), int(x["col"])) for x in rows}


def test_csv_bytes_are_those_of_python_s_csv_module(tmp_path) -> None:
    """The pandas writers keep the bytes the csv module wrote: CRLF rows, minimal quoting,
    floats as ``repr``, whole box coordinates without a point, the learned class by name."""
    from types import SimpleNamespace

    from napari_conch.engine.learn.export import write_learned_csv
    from napari_conch.engine.query import QueryResult

    cosine = np.array([[[0.1, 0.2], [0.3, 0.4]], [[1e-7, -0.5], [0.25, 0.75]]], np.float32)
    probs = np.array([[[0.6, 0.3], [0.5, 0.5]], [[0.4, 0.7], [0.5, 0.5]]], np.float32)
    labels = np.array([[1, 2], [0, 0]])
    valid = np.array([[True, True], [False, False]])
    names = ["tumor", 'stroma, "loose"']
    result = QueryResult(
        names, None, None, cosine, probs, labels, cosine, probs, labels, None, valid
    )
    boxes = np.array([[[0, 0, 256, 256], [256.5, 0, 512, 256]]] * 2, float)
    grid = SimpleNamespace(boxes=lambda: boxes)

    def expected(rows):
        return "".join(",".join(row) + "\r\n" for row in rows).encode()

    def f(value):
        return repr(float(np.float32(value)))

    export_result(tmp_path / "q.csv", result, grid)
    quoted = '"stroma, ""loose"""'
    assert (tmp_path / "q.csv").read_bytes() == expected(
        [
            ["row", "col", "x0", "y0", "x1", "y1", "tumor", quoted, "prob_tumor",
             '"prob_stroma, ""loose"""', "label"],
            ["0", "0", "0", "0", "256", "256", f(0.1), f(1e-7), f(0.6), f(0.4), "1"],
            ["0", "1", "256.5", "0", "512", "256", f(0.2), f(-0.5), f(0.3), f(0.7), "2"],
        ]
    )  # fmt: skip
    write_learned_csv(tmp_path / "l.csv", result, grid)
    assert (tmp_path / "l.csv").read_bytes() == expected(
        [
            ["row", "col", "x0", "y0", "x1", "y1", "class", "prob_tumor",
             '"prob_stroma, ""loose"""'],
            ["0", "0", "0", "0", "256", "256", "tumor", f(0.6), f(0.4)],
            ["0", "1", "256.5", "0", "512", "256", quoted, f(0.3), f(0.7)],
        ]
    )  # fmt: skip


def test_csv_single_prompt_has_no_probabilities(tmp_path, index, grid) -> None:
    res = run_query(index, ["tumor"], queries(1), grid)
    path = export_result(tmp_path / "one.csv", res, grid)
    header = path.read_text().splitlines()[0]
    assert header == "row,col,x0,y0,x1,y1,tumor"


def test_csv_column_clash(tmp_path, index, grid) -> None:
    res = run_query(index, ["label"], queries(1), grid)
    res2 = run_query(index, ["row", "b"], queries(2), grid, logit_scale=10.0)
    export_result(tmp_path / "ok.csv", res, grid)  # no label column with one prompt
    with pytest.raises(InputError, match="clashes"):
        export_result(tmp_path / "bad.csv", res2, grid)
    assert not (tmp_path / "bad.csv").exists()


def test_tiff_single_prompt_with_mpp(tmp_path, index, grid) -> None:
    res = run_query(index, ["tumor"], queries(1), grid)
    path = export_result(
        tmp_path / "map.tif", res, grid, mpp=0.5, metadata={"store": "x"}, map_scale="tile"
    )
    data = tifffile.imread(path)
    np.testing.assert_array_equal(data, res.cell_cosine[0], strict=True)
    meta = read_tiff_metadata(path)
    assert meta["cell_size_level0"] == 4.0 and meta["origin_level0_yx"] == [0.0, 0.0]
    assert meta["channels"] == ["tumor"] and meta["store"] == "x"
    assert meta["cell_size_um"] == 2.0 and meta["shape"] == [5, 6]
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        num, den = tags["XResolution"].value
        assert num / den == pytest.approx(1e4 / 2.0)  # 2 um per cell


def test_tiff_several_prompts_without_mpp(tmp_path, grid, several) -> None:
    path = export_result(tmp_path / "map.tiff", several, grid, map_scale="tile")
    data = tifffile.imread(path)
    expected, channels = several.cell_map()
    assert data.shape == (3, 5, 6) and data.dtype == np.float32
    np.testing.assert_array_equal(data, expected)
    meta = read_tiff_metadata(path)
    assert meta["channels"] == channels == ["prob_tumor", "prob_stroma", "label"]
    assert meta["mpp_level0"] is None
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == tifffile.RESUNIT.NONE
        num, den = tags["XResolution"].value
        assert num / den == pytest.approx(1 / 4.0)  # cells per level-0 pixel


def test_npy_is_the_cell_map(tmp_path, grid, several) -> None:
    path = export_result(tmp_path / "map.npy", several, grid)
    np.testing.assert_array_equal(np.load(path), several.cell_map()[0])


def rasterize(polygons, shape):
    """Cells whose centre lies inside a polygon (outer minus holes), by even-odd counting."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    inside = np.zeros(shape, int)
    for rings in polygons:
        crossings = np.zeros(shape, int)
        for ring in rings:
            x0, y0, x1, y1 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
            cross = (y0[:, None, None] > ys) != (y1[:, None, None] > ys)
            with np.errstate(divide="ignore", invalid="ignore"):
                xi = (
                    x0[:, None, None]
                    + (ys - y0[:, None, None]) * ((x1 - x0) / (y1 - y0))[:, None, None]
                )
            crossings += np.count_nonzero(cross & (xs < xi), axis=0)
        inside += crossings % 2
    return inside


def components(mask):
    """Number of 4-connected components (breadth-first search)."""
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        count += 1
        queue = deque([start])
        seen[start] = True
        while queue:
            y, x = queue.popleft()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                if inside and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
    return count


@pytest.mark.parametrize("seed", range(8))
def test_traced_polygons_cover_exactly_the_mask(seed) -> None:
    mask = np.random.default_rng(seed).random((9, 11)) < 0.35 + 0.06 * seed
    polygons = mask_polygons(mask)
    np.testing.assert_array_equal(rasterize(polygons, mask.shape), mask.astype(int))
    assert len(polygons) == components(mask)
    for outer, *holes in polygons:
        assert signed_area(outer) > 0 and all(signed_area(h) < 0 for h in holes)
        assert np.array_equal(outer[0], outer[-1])
        assert len({tuple(p) for p in outer[:-1]}) == len(outer) - 1  # no self-touching


def test_ring_with_hole_and_island() -> None:
    mask = np.zeros((7, 7), bool)
    mask[0:7, 0:7] = True
    mask[1:6, 1:6] = False
    mask[3, 3] = True  # an island inside the hole
    polygons = mask_polygons(mask)
    assert sorted(len(p) for p in polygons) == [1, 2]
    frame = next(p for p in polygons if len(p) == 2)
    assert signed_area(frame[0]) == 49 and signed_area(frame[1]) == -25
    np.testing.assert_array_equal(rasterize(polygons, mask.shape), mask.astype(int))


def test_label_polygons_per_label() -> None:
    labels = np.array([[1, 1, 0], [2, 1, 0], [2, 0, 1]])
    found = label_polygons(labels)
    assert sorted(label for label, _ in found) == [1, 1, 2]


def test_geojson_regions_in_level0_pixels(tmp_path, grid, several) -> None:
    path = export_result(tmp_path / "regions.geojson", several, grid)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and data["features"]
    geo = several.geometry
    for label, name in ((1, "tumor"), (2, "stroma")):
        feats = [f for f in data["features"] if f["properties"]["label"] == label]
        for f in feats:
            assert f["geometry"]["type"] == "Polygon"
            assert f["properties"]["classification"] == {
                "name": name,
                "color": list(label_color(label)),
            }
        polygons = [
            [(np.array(ring) - [geo.origin[1], geo.origin[0]]) / geo.cell_size for ring in rings]
            for rings in (f["geometry"]["coordinates"] for f in feats)
        ]
        drawn = rasterize(polygons, geo.shape)
        np.testing.assert_array_equal(drawn, (several.cell_labels == label).astype(int))


def test_geojson_needs_labels(tmp_path, index, grid) -> None:
    res = run_query(index, ["tumor"], queries(1), grid)
    with pytest.raises(InputError, match="threshold"):
        export_result(tmp_path / "r.geojson", res, grid)
    res = run_query(index, ["tumor"], queries(1), grid, threshold=0.0)
    data = json.loads(export_result(tmp_path / "r.geojson", res, grid).read_text())
    assert {f["properties"]["classification"]["name"] for f in data["features"]} == {"tumor"}


def test_unknown_extension_and_missing_folder(tmp_path, grid, several) -> None:
    with pytest.raises(InputError, match="unknown extension"):
        export_result(tmp_path / "map.png", several, grid)
    with pytest.raises(InputError, match="does not exist"):
        export_result(tmp_path / "nope" / "map.npy", several, grid)


def test_atomic_path_leaves_nothing_when_writing_fails(tmp_path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_region_touching_itself_at_a_corner_gets_a_touching_hole() -> None:
    mask = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]], bool)
    (polygon,) = mask_polygons(mask)
    outer, hole = polygon
    assert signed_area(outer) == 8 and signed_area(hole) == -1
    assert {tuple(p) for p in outer} & {tuple(p) for p in hole} == {(2.0, 1.0)}
