"""Every command with a CLIP model: QuiltNet-layout and PLIP-layout folders of random weights
written by the test, through ``learn``, ``classify-slides``, ``search``, ``rank-texts`` and
``caption``; each model's own templates by default; stores of two models never mixed."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.engine.prompts import (
    CONCH_TEMPLATES,
    PLIP_TEMPLATES,
    QUILTNET_TEMPLATES,
    TEMPLATE_SETS,
    chosen_templates,
    model_templates,
)
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.model import clear_model_cache, load_model
from tests.cli.conftest import refused
from tests.model.clip_folders import write_open_clip_folder, write_transformers_folder

BOX = ["--box", "1200", "800", "1400", "960"]
#: CONCH's released prompt-file form (wrapped in "0"), with templates of its own.
PROMPT_FILE = {
    "0": {
        "classnames": {"tumor": ["tumor", "carcinoma"], "stroma": ["stroma"]},
        "templates": ["CLASSNAME.", "an image of CLASSNAME."],
    }
}


@pytest.fixture(autouse=True)
def _fresh_models():
    clear_model_cache()
    yield
    clear_model_cache()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, svs_path):
    """A QuiltNet-layout and a PLIP-layout folder, each with a store of the shipped slide."""
    root = tmp_path_factory.mktemp("clip_commands")
    folders = {
        "quiltnet": write_open_clip_folder(root / "QuiltNet-B-32"),
        "plip": write_transformers_folder(root / "plip"),
    }
    stores = {}
    for kind, folder in folders.items():
        out = root / f"stores-{kind}"
        argv = ["embed", str(svs_path), "--model", str(folder), "--device", "cpu", "--quiet"]
        assert main([*argv, "--store", str(out)]) == 0
        stores[kind] = next(out.rglob("*.zarr"))
    prompts = root / "prompts.json"
    prompts.write_text(json.dumps(PROMPT_FILE))
    clear_model_cache()
    return {"folders": folders, "stores": stores, "prompts": prompts, "root": root}


def model_argv(setup, kind):
    return ["--model", str(setup["folders"][kind]), "--device", "cpu"]


def test_template_sets_and_each_models_own():
    assert TEMPLATE_SETS["quiltnet"] == QUILTNET_TEMPLATES
    assert TEMPLATE_SETS["plip"] == PLIP_TEMPLATES
    assert TEMPLATE_SETS["conch"] == CONCH_TEMPLATES and len(CONCH_TEMPLATES) == 22
    assert all("CLASSNAME" in t for name in ("quiltnet", "plip") for t in TEMPLATE_SETS[name])

    class Conch:  # a CONCH model has no ``templates``: CONCH's own
        pass

    assert model_templates(Conch()) == "conch"
    assert chosen_templates(None, Conch()) == "conch"
    assert chosen_templates("none", Conch()) == "none"


@pytest.mark.slow
def test_known_models_name_their_template_set(setup, tmp_path):
    """A folder named as a known model gets that model's templates; an unknown one none."""
    quilt = load_model(str(setup["folders"]["quiltnet"]), device="cpu")
    assert model_templates(quilt) == "quiltnet"
    plip = load_model(str(write_transformers_folder(tmp_path / "PLIP")), device="cpu")
    assert model_templates(plip) == "plip"
    other = load_model(str(write_open_clip_folder(tmp_path / "my-clip")), device="cpu")
    assert model_templates(other) == "none"


def search_rows(capsys, argv):
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_search_default_templates_are_the_models_own(setup, capsys):
    store = str(setup["stores"]["quiltnet"])
    argv = ["search", store, "--prompt", "tumor", "-k", "5", *model_argv(setup, "quiltnet")]
    default = search_rows(capsys, argv)
    assert default == search_rows(capsys, [*argv, "--templates", "quiltnet"])
    assert default != search_rows(capsys, [*argv, "--templates", "conch"])
    assert len(default) == 6  # header + 5 hits


@pytest.mark.slow
def test_classify_slides_with_a_conch_prompt_file(setup, tmp_path, capsys):
    """A prompt file in CONCH's format works with a CLIP model; probabilities use its own
    temperature."""
    out = tmp_path / "slides.csv"
    argv = ["classify-slides", str(setup["stores"]["plip"]), "--prompts", str(setup["prompts"])]
    assert main([*argv, "--out", str(out), *model_argv(setup, "plip")]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    (row,) = rows
    assert row["pred_top1"] in ("tumor", "stroma")
    scale = load_model(str(setup["folders"]["plip"]), device="cpu").logit_scale
    a, b = float(row["score_top1_tumor"]), float(row["score_top1_stroma"])
    assert float(row["prob_top1_tumor"]) == pytest.approx(1 / (1 + np.exp(-scale * (a - b))),
                                                          abs=1e-5)  # fmt: skip


@pytest.mark.slow
def test_query_with_a_conch_prompt_file(setup, tmp_path):
    out = tmp_path / "scores.csv"
    argv = ["query", str(setup["stores"]["quiltnet"]), "--prompts", str(setup["prompts"])]
    assert main([*argv, "--out", str(out), *model_argv(setup, "quiltnet")]) == 0
    with open(out, newline="") as f:
        header = next(csv.reader(f))
    assert any("tumor" in h for h in header) and any("stroma" in h for h in header)


def test_classify_slides_and_search_refuse_stores_of_two_models(setup, tmp_path, capsys):
    quilt, plip = str(setup["stores"]["quiltnet"]), str(setup["stores"]["plip"])
    out = tmp_path / "slides.csv"
    argv = ["classify-slides", quilt, plip, "--prompts", str(setup["prompts"])]
    line = refused(main, [*argv, "--out", str(out), *model_argv(setup, "quiltnet")], capsys)
    assert "another model" in line and not out.exists()
    line = refused(main, ["search", quilt, plip, "--prompt", "tumor"], capsys)
    assert "another model" in line


@pytest.mark.slow
def test_query_refuses_the_other_models_folder(setup, tmp_path, capsys):
    """A QuiltNet store is not read with PLIP's weights."""
    argv = ["query", str(setup["stores"]["quiltnet"]), "--prompt", "tumor"]
    line = refused(main, [*argv, "--out", str(tmp_path / "s.csv"), *model_argv(setup, "plip")],
                   capsys)  # fmt: skip
    assert "model" in line


def embedded_boxes(store_path, n):
    """Level-0 boxes (as GeoJSON rings, inset) of the first ``n`` embedded tiles of a store."""
    store = EmbeddingStore.open(store_path)
    rows, cols = np.nonzero(store.status() == TileStatus.DONE)
    rings = []
    for row, col in list(zip(rows, cols, strict=True))[:n]:
        x0, y0, x1, y1 = store.grid.tile_box(int(row), int(col))
        x0, y0, x1, y1 = x0 + 5, y0 + 5, x1 - 5, y1 - 5
        rings.append([[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]])
    return rings


@pytest.mark.slow
def test_learn_with_a_clip_store(setup, tmp_path, capsys):
    store = setup["stores"]["quiltnet"]
    rings = embedded_boxes(store, 8)
    assert len(rings) == 8
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": rings[i::2]},
            "properties": {"objectType": "annotation", "classification": {"name": name}},
        }
        for i, name in enumerate(("tumor", "stroma"))
    ]
    shapes = tmp_path / "examples.geojson"
    shapes.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    out = tmp_path / "learned.csv"
    argv = ["learn", str(store), "--annotations", str(shapes), "--prompt", "tumor"]
    argv += ["--prompt", "stroma", "--out", str(out), *model_argv(setup, "quiltnet")]
    assert main(argv) == 0
    assert "8 example tiles: tumor 4, stroma 4" in capsys.readouterr().out
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) > 0


@pytest.mark.parametrize("kind", ["quiltnet", "plip"])
def test_rank_texts_works_with_clip_models(setup, svs_path, kind, capsys):
    argv = ["rank-texts", str(svs_path), *BOX, "--text", "tumor", "--text", "stroma", "--json"]
    assert main([*argv, *model_argv(setup, kind), "--templates", kind]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert sorted(r["text"] for r in ranking) == ["stroma", "tumor"]
    assert abs(sum(r["probability"] for r in ranking) - 1) < 1e-5


def test_caption_says_in_one_line_a_clip_model_has_no_decoder(setup, svs_path, capsys):
    argv = ["caption", str(svs_path), *BOX, *model_argv(setup, "quiltnet")]
    line = refused(main, argv, capsys)
    assert "no captioning decoder" in line and "CLIP" in line and "rank-texts" in line


def test_top_tiles_with_a_clip_store(setup, capsys):
    argv = ["top-tiles", str(setup["stores"]["quiltnet"]), "--prompt", "tumor", "-k", "3"]
    rows = search_rows(capsys, [*argv, *model_argv(setup, "quiltnet")])
    assert rows == search_rows(capsys, [*argv, *model_argv(setup, "quiltnet"), "--templates",
                                        "quiltnet"])  # fmt: skip
    assert len(rows) == 4
