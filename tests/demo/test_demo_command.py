"""``napari-conch demo``: runs headless, offline, and writes a heatmap and an overlay."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from napari_conch.cli import main
from napari_conch.demo import DEMO_TILE_SIZE, DEMO_VIEW_PROMPTS
from napari_conch.engine.export.map_tiff import open_map
from napari_conch.engine.export.writers import read_tiff_metadata
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.samples import HGSC_HELDOUT


@pytest.mark.slow
def test_demo_writes_heatmap_and_overlay(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quiet", "--prompt", "stroma"]) == 0
    out = capsys.readouterr().out
    assert "demo model (not CONCH)" in out and "prompts: stroma" in out
    heatmap = open_map(tmp_path / "heatmap.tif").cell_values()[0]  # laid over the slide
    meta = read_tiff_metadata(tmp_path / "heatmap.tif")
    assert meta["model"] == "demo model (not CONCH)"
    (store_path,) = (tmp_path / "stores").iterdir()
    store = EmbeddingStore.open(store_path)
    assert heatmap.shape == store.grid.shape
    done = store.status() == TileStatus.DONE
    assert done.any() and np.isfinite(heatmap[done]).all() and np.isnan(heatmap[~done]).all()
    overlay = imagecodecs.png_decode((tmp_path / "overlay.png").read_bytes())
    assert overlay.ndim == 3 and overlay.shape[2] == 3 and max(overlay.shape[:2]) <= 1024
    assert overlay.std() > 10  # a picture, not a blank frame

    assert store.grid.tile_size == DEMO_TILE_SIZE
    assert store.attrs.get("slide_path") == str(HGSC_HELDOUT)  # the held-out sample by default

    # a second run, with the default prompts, reuses the store: a labelled map of three classes
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    assert "44 tissue tiles embedded" in (out := capsys.readouterr().out)
    assert f"prompts: {', '.join(DEMO_VIEW_PROMPTS)}" in out
    labelled = open_map(tmp_path / "heatmap.tif").cell_values()
    assert labelled.shape == (4, *store.grid.shape)  # three probabilities and the label
    assert set(np.unique(labelled[-1])) == {0, 1, 2, 3}


def test_demo_missing_slide_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--slide", str(tmp_path / "nope.svs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.svs" in err
