"""Stores remember the number format they were made in; one format's store is never continued
in another (reading it is allowed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.embed import open_store
from napari_conch.errors import StoreError
from napari_conch.model import clear_model_cache, load_model
from napari_conch.model import precision_gate as gate_mod
from napari_conch.samples import HGSC_HELDOUT
from napari_conch.slide import make_grid, open_slide


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gate_mod, "GATE_MAX_TILES", 8)
    clear_model_cache()
    fp32 = load_model("demo", device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match="emulated"):  # the suite's CPU has no native bf16
        bf16 = load_model("demo", device="cpu", precision="bf16")
    yield fp32, bf16
    clear_model_cache()


def test_a_bf16_store_is_never_continued_in_fp32_nor_the_other_way(models, tmp_path):
    fp32, bf16 = models
    slide = open_slide(HGSC_HELDOUT)
    grid = make_grid(slide, level=0, tile_size=128)
    with open_store(slide, bf16, grid, tmp_path) as store:
        assert store.precision == "bf16"
        store.write_embeddings([0], [0], np.ones((1, bf16.embed_dim)) / bf16.embed_dim**0.5)
    with pytest.raises(StoreError, match=r"precision \('bf16' != 'fp32'\)") as info:
        open_store(slide, fp32, grid, tmp_path)
    assert "\n" not in str(info.value)
    with open_store(slide, bf16, grid, tmp_path) as store:  # the same format continues it
        assert store.counts()["done"] == 1


def test_an_int8_store_is_not_continued_in_bf16(models, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    _, bf16 = models
    int8 = load_model("demo", device="cpu", precision="int8")
    slide = open_slide(HGSC_HELDOUT)
    grid = make_grid(slide, level=0, tile_size=128)
    with open_store(slide, int8, grid, tmp_path) as store:
        assert store.precision == "int8"
    with pytest.raises(StoreError, match=r"precision \('int8' != 'bf16'\)"):
        open_store(slide, bf16, grid, tmp_path)
