"""The held-out H&E sample: small, licensed, made only of held-out pixels, and tiled by the CLI
at the demo model's own tile size (the store the GUI finds)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.demo import DEMO_TILE_SIZE
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.samples import HGSC_HELDOUT
from napari_conch.slide import open_slide
from tests.conftest import require_fixture


def _pixels(path) -> np.ndarray:
    slide = open_slide(path)
    try:
        return np.asarray(slide.levels[0].compute())
    finally:
        slide.close()


def test_sample_is_small_and_carries_its_licence():
    assert HGSC_HELDOUT.stat().st_size < 1_000_000
    licence = (HGSC_HELDOUT.parent / "LICENSE-BSD-3-histolytics.txt").read_text()
    assert "BSD 3-Clause" in licence and "histolytics" in licence
    assert "hgsc_heldout.tif" in (HGSC_HELDOUT.parent / "README.md").read_text()
    slide = open_slide(HGSC_HELDOUT)
    assert slide.shape[:2] == (896, 1664) and slide.mpp is None


def test_sample_is_the_heldout_stripes_of_the_training_images():
    pytest.importorskip("train", reason="the training folder is not present (installed package)")
    from train.images import read_json
    from train.make_demo_sample import IMAGES, compose

    for entry in read_json()["images"]:
        if entry["name"] in IMAGES:
            require_fixture(entry["file"])
    expected, layout = compose(DEMO_TILE_SIZE)
    entries = {e["name"]: e for e in read_json()["images"]}
    for piece in layout:
        x0, y0, x1, y1 = piece["source_box"]
        ((hx0, hy0, hx1, hy1),) = entries[piece["image"]]["heldout_boxes"]
        assert hx0 <= x0 < x1 <= hx1 and hy0 <= y0 < y1 <= hy1  # never seen in training
        assert all(v % DEMO_TILE_SIZE == 0 for v in piece["at"])  # whole tiles of the grid
    shipped = _pixels(HGSC_HELDOUT).astype(np.int16)
    assert shipped.shape == expected.shape
    assert np.abs(shipped - expected).mean() < 3  # JPEG-compressed copy of the same pixels


@pytest.mark.slow
def test_cli_embeds_the_sample_at_the_demo_tile_size(tmp_path, capsys):
    args = ["embed", str(HGSC_HELDOUT), "--model", "demo", "--device", "cpu", "--quiet"]
    assert main([*args, "--store", str(tmp_path)]) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    store = EmbeddingStore.open(path)
    assert store.grid.tile_size == store.grid.stride == DEMO_TILE_SIZE
    assert store.grid.shape == (7, 13)
    assert (store.status() == TileStatus.DONE).sum() == 44  # 2 stripes of 2 x 11 tiles
    assert main(["info", path]) == 0
    assert f"{DEMO_TILE_SIZE} px" in capsys.readouterr().out


def test_cluster_workers_report_the_demo_tile_size():
    from napari_conch.engine.distributed import ModelSpec, model_facts

    facts = model_facts(ModelSpec("demo", device="cpu"))
    assert facts.default_tile_size == DEMO_TILE_SIZE and facts.image_size == 96
