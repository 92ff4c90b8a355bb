"""``napari-conch demo``: runs headless, offline, and writes a heatmap and an overlay."""

from __future__ import annotations

import imagecodecs
import numpy as np
import tifffile

from napari_conch.cli import main
from napari_conch.engine.export import read_tiff_metadata
from napari_conch.engine.store import EmbeddingStore, TileStatus


def test_demo_writes_heatmap_and_overlay(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "demo model (not CONCH)" in out and "prompts: stroma" in out
    heatmap = tifffile.imread(tmp_path / "heatmap.tif")
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

    # a second run reuses the store and computes nothing
    assert (
        main(
            [
                "demo",
                "--out",
                str(tmp_path),
                "--quiet",
                "--prompt",
                "tumor cells",
                "--prompt",
                "stroma",
            ]
        )
        == 0
    )
    assert "prompts: tumor cells, stroma" in capsys.readouterr().out
    labelled = tifffile.imread(tmp_path / "heatmap.tif")
    assert labelled.shape == (3, *store.grid.shape)  # two probabilities and the label


def test_demo_missing_slide_is_one_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--slide", str(tmp_path / "nope.svs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.svs" in err
