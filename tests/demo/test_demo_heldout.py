"""End to end on held-out regions of the real images (never used in training): the demo model's
prompts score the tiles that have the concept above those that do not."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.demo import load_demo_model
from tests.conftest import require_fixture

pytest.importorskip("train", reason="the training folder is not present (installed package)")
from train.evaluate_demo import heldout_tiles
from train.images import read_json
from train.metrics import roc_auc


def _entry(name: str) -> dict:
    entries = {e["name"]: e for e in read_json()["images"]}
    entry = entries[name]
    require_fixture(entry["file"])
    if "file" in entry["labels"]:
        require_fixture(entry["labels"]["file"])
    return entry


def _scores(prompt: str, tiles: np.ndarray) -> np.ndarray:
    model = load_demo_model(device="cpu")
    return (model.embed_images(tiles) @ model.embed_texts([prompt])[0]).numpy()


@pytest.mark.slow
def test_tumour_prompt_scores_tumour_tiles_above_stroma_tiles():
    pytest.importorskip("pyarrow", reason="nucleus polygons need pyarrow")
    pytest.importorskip("shapely", reason="nucleus polygons need shapely")
    tiles, labels = [], []
    for name in ("hgsc_nest", "hgsc_stromal_he"):
        t, lab, _ = heldout_tiles(_entry(name))
        keep = np.isin(lab, ["tumor", "stroma"])
        tiles.append(t[keep])
        labels.append(lab[keep])
    tiles, labels = np.concatenate(tiles), np.concatenate(labels)
    assert (labels == "tumor").sum() >= 10 and (labels == "stroma").sum() >= 10
    assert roc_auc(_scores("tumor cells", tiles), labels == "tumor") >= 0.8


@pytest.mark.slow
def test_dab_prompt_scores_positive_tiles_above_negative_tiles():
    tiles, labels, _ = heldout_tiles(_entry("ihc"))
    keep = np.isin(labels, ["dab_positive", "dab_negative"])
    tiles, labels = tiles[keep], labels[keep]
    assert (labels == "dab_positive").sum() >= 10 and (labels == "dab_negative").sum() >= 5
    assert roc_auc(_scores("dab positive staining", tiles), labels == "dab_positive") >= 0.8


@pytest.mark.slow
def test_engine_heatmap_lights_up_the_heldout_tumour(tmp_path):
    """Through the engine: embed the slide into a store, query a prompt, read the heatmap."""
    pytest.importorskip("pyarrow", reason="nucleus polygons need pyarrow")
    pytest.importorskip("shapely", reason="nucleus polygons need shapely")
    from napari_conch.engine.embed import embed_slide, open_store
    from napari_conch.engine.query import QueryIndex, similarity_map
    from napari_conch.slide import make_grid, open_slide
    from train.images import fixtures_root, read_rgb
    from train.labels import label_map_for

    entry = _entry("hgsc_nest")
    path = require_fixture(entry["file"])
    model = load_demo_model(device="cpu")
    slide = open_slide(path)
    grid = make_grid(slide, tile_size=entry["tile"], stride=entry["eval_stride"])
    store = open_store(slide, model, grid, tmp_path)
    embed_slide(slide, model, grid, store, min_tissue=0.0, batch_size=64)
    heat = similarity_map(QueryIndex.from_store(store), model.embed_texts(["tumor cells"])[0])

    boxes = grid.boxes().reshape(-1, 4).astype(np.int64)
    (hx0, hy0, hx1, hy1), size = entry["heldout_boxes"][0], slide.shape
    inside = (
        (boxes[:, 0] >= hx0) & (boxes[:, 1] >= hy0) & (boxes[:, 2] <= hx1) & (boxes[:, 3] <= hy1)
    )
    inside &= (boxes[:, 2] <= size[1]) & (boxes[:, 3] <= size[0])
    labels = np.full(len(boxes), "", dtype=object)
    labels[inside] = label_map_for(entry, read_rgb(path), fixtures_root()).labels(boxes[inside])
    keep = np.isin(labels.astype(str), ["tumor", "stroma"])
    scores = heat.reshape(-1)[keep]
    assert np.isfinite(scores).all()
    assert (labels[keep] == "tumor").sum() >= 10 and (labels[keep] == "stroma").sum() >= 10
    assert roc_auc(scores, labels[keep] == "tumor") >= 0.8
