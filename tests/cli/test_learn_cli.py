"""``napari-conch learn`` on a store of the demo model: examples from QuPath GeoJSON, exports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.export.map_tiff import open_map
from napari_conch.engine.learn.annotations import read_geojson
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.slide import TileGrid
from tests.cli.conftest import refused

ROWS, COLS, TILE = 12, 18, 64


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def demo():
    from napari_conch.demo import load_demo_model

    return load_demo_model(device="cpu")


def make_store(path, demo, embeddings=True):
    """A store made 'by the demo model': tumour on the left, stroma in the middle, and a third
    kind of tissue no prompt names on the right; the top row is glass (not embedded)."""
    grid = TileGrid(0, 1.0, 1.0, TILE, TILE, ROWS, COLS, (ROWS * TILE, COLS * TILE), 0.5)
    signature = {
        "format": 1,
        "grid": grid.to_dict(),
        "embed_dim": demo.embed_dim,
        "model_fingerprint": demo.fingerprint,
    }
    info = {"model_source": "demo", "logit_scale": float(demo.logit_scale), "slide_mpp": 0.5}
    store = EmbeddingStore.open_or_create(path, signature, info=info)
    if not embeddings:
        return store
    rng = np.random.default_rng(0)
    texts = demo.embed_texts(["tumor", "stroma"]).numpy()
    other = unit(rng.normal(size=demo.embed_dim))
    centres = np.stack([texts[0], texts[1], other])
    kind = np.minimum(np.arange(COLS) // 6, 2)
    rows, cols = np.nonzero(np.ones((ROWS, COLS), bool))
    rows, cols = rows[rows > 0], cols[rows > 0]
    noise = 0.4 * rng.normal(size=(len(rows), demo.embed_dim)) / np.sqrt(demo.embed_dim)
    store.write_embeddings(rows, cols, unit(centres[kind[cols]] + noise))
    store.set_status(np.zeros(COLS, int), np.arange(COLS), TileStatus.BACKGROUND)
    return store


def box(col0, row0, col1, row1):
    """A square over tiles ``row0..row1 - 1`` x ``col0..col1 - 1`` (level-0 pixels)."""
    x0, y0, x1, y1 = col0 * TILE + 5, row0 * TILE + 5, col1 * TILE - 5, row1 * TILE - 5
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def annotation(name, *rings, color=None):
    classification = {"name": name, **({"color": color} if color else {})}
    return {
        "type": "Feature",
        "geometry": {"type": "MultiPolygon", "coordinates": list(rings)},
        "properties": {"objectType": "annotation", "classification": classification},
    }


@pytest.fixture(scope="module")
def setup(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    store = make_store(root / "slide.zarr", demo)
    shapes = {
        "type": "FeatureCollection",
        "features": [
            annotation("Tumor", box(0, 2, 2, 4), box(3, 8, 5, 10)),  # the prompt "tumor"
            annotation("stroma", box(7, 3, 9, 5)),
            annotation("necrosis", box(13, 2, 15, 4), box(16, 9, 18, 11), color=[10, 20, 30]),
        ],
    }
    path = root / "examples.geojson"
    path.write_text(json.dumps(shapes))
    return store, path, root


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_learn_writes_every_format_and_prints_the_validation(setup, tmp_path, capsys):
    store, annotations, _ = setup
    outs = [tmp_path / f"map.{ext}" for ext in ("csv", "tif", "npy", "geojson")]
    argv = ["learn", str(store.path), "--annotations", str(annotations)]
    argv += ["--prompt", "tumor", "--prompt", "stroma", "--templates", "none"]
    for out in outs:
        argv += ["--out", str(out)]
    argv += ["--examples-out", str(tmp_path / "examples_out.geojson")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "20 example tiles: tumor 8, stroma 4, necrosis 8" in printed
    assert "cross-validated accuracy 1.000" in printed and "necrosis" in printed

    rows = read_csv(outs[0])
    assert list(rows[0]) == [
        "row", "col", "x0", "y0", "x1", "y1", "class", "prob_tumor", "prob_stroma", "prob_necrosis"
    ]  # fmt: skip
    assert len(rows) == (ROWS - 1) * COLS  # the glass row is not scored
    truth = {0: "tumor", 1: "stroma", 2: "necrosis"}
    right = [r["class"] == truth[min(int(r["col"]) // 6, 2)] for r in rows]
    assert np.mean(right) > 0.95
    for r in rows[:5]:
        probs = [float(r[f"prob_{n}"]) for n in ("tumor", "stroma", "necrosis")]
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert r["class"] == ("tumor", "stroma", "necrosis")[int(np.argmax(probs))]

    tif = open_map(outs[1]).cell_values()  # read back at the cells' centres
    npy = np.load(outs[2])
    assert tif.shape == npy.shape == (4, ROWS, COLS)  # three probabilities and the label
    np.testing.assert_array_equal(tif, npy)

    features = json.loads(outs[3].read_text())["features"]
    colors = {f["properties"]["classification"]["name"]: f["properties"]["classification"]["color"]
              for f in features}  # fmt: skip
    assert set(colors) == {"tumor", "stroma", "necrosis"} and colors["necrosis"] == [10, 20, 30]

    # the examples written back read as the same example tiles
    from napari_conch.engine.learn.annotations import examples_from_shapes

    again = examples_from_shapes(store.grid, read_geojson(tmp_path / "examples_out.geojson"))
    first = examples_from_shapes(store.grid, read_geojson(annotations))
    canon = {"Tumor": "tumor"}
    assert again.as_dict() == {k: canon.get(v, v) for k, v in first.as_dict().items()}


def test_saved_project_is_found_again_with_the_store(setup, tmp_path, capsys):
    store, annotations, _ = setup
    base = ["learn", str(store.path)]
    first = tmp_path / "first.csv"
    argv = [*base, "--annotations", str(annotations), "--prompt", "tumor", "--prompt", "stroma"]
    assert main([*argv, "--templates", "none", "--save", "--out", str(first)]) == 0
    assert (store.path / "annotations" / "project.json").is_file()
    second = tmp_path / "second.csv"
    assert main([*base, "--out", str(second)]) == 0  # prompts and examples from the project
    assert "20 example tiles" in capsys.readouterr().out
    assert first.read_text() == second.read_text()


def test_prior_only_classes_and_examples_only(setup, tmp_path, capsys):
    """No prompt at all: every class is learned from its examples (no text encoder needed)."""
    store, annotations, _ = setup
    out = tmp_path / "map.csv"
    argv = ["learn", str(store.path), "--annotations", str(annotations), "--out", str(out)]
    assert main(argv) == 0
    rows = read_csv(out)
    assert {r["class"] for r in rows} == {"Tumor", "stroma", "necrosis"}


def test_errors_are_one_line_and_exit_2(setup, demo, tmp_path, capsys):
    store, annotations, _ = setup
    outside = tmp_path / "outside.geojson"
    outside.write_text(json.dumps([annotation("tumor", box(100, 100, 102, 102))]))
    glass_only = tmp_path / "glass.geojson"
    glass_only.write_text(json.dumps([annotation("glass", box(0, 0, 3, 1))]))
    empty = make_store(tmp_path / "empty.zarr", demo, embeddings=False)
    out = str(tmp_path / "x.csv")
    cases = [
        ([str(store.path), "--annotations", str(outside), "--prompt", "a", "--prompt", "b"],
         "outside the slide"),
        ([str(store.path), "--annotations", str(glass_only), "--prompt", "tumor"],
         "class 'glass' has no embedded example and no prompt"),
        ([str(empty.path), "--annotations", str(annotations)], "no embedded tiles"),
        ([str(store.path), "--annotations", str(tmp_path / "none.geojson")], "does not exist"),
        ([str(empty.path), "--prompt", "a"], "holds no saved annotation project"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(["learn", *argv, "--out", out]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert (
        main(["learn", str(store.path), "--annotations", str(annotations), "--out", "m.png"]) == 2
    )
    assert "unknown extension" in capsys.readouterr().err
    assert main(["learn", str(store.path), "--annotations", str(annotations)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_strength_must_be_a_finite_positive_number(setup, tmp_path, capsys, value):
    """``--strength nan`` was accepted and trained a classifier of NaNs (exit 0)."""
    store, annotations, _ = setup
    out = tmp_path / "map.csv"
    argv = ["learn", str(store.path), "--annotations", str(annotations), "--prompt", "tumor",
            "--strength", value, "--out", str(out)]  # fmt: skip
    assert f"argument --strength: {value}: " in refused(main, argv, capsys)
    assert not out.exists()


@pytest.mark.parametrize("option", ["--annotations", "--prompts"])
def test_json_nested_100000_deep_is_one_line(setup, tmp_path, capsys, option):
    """GeoJSON or a prompt file nested 100,000 deep ended in a RecursionError."""
    store, annotations, _ = setup
    deep = tmp_path / "deep.json"
    deep.write_text('{"type": "FeatureCollection", "features": ' + "[" * 100_000
                    + "]" * 100_000 + "}")  # fmt: skip
    given = {"--annotations": str(annotations), "--prompts": None, option: str(deep)}
    argv = ["learn", str(store.path), "--prompt", "tumor", "--out", str(tmp_path / "m.csv")]
    argv += [part for flag, path in given.items() if path for part in (flag, path)]
    assert f"{deep} is nested 100001 levels deep" in refused(main, argv, capsys)
