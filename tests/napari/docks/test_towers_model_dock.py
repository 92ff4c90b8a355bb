"""The Prompt highlighter with KEEP and BiomedCLIP: folders laid out as their Hugging Face
repositories (random weights written by the test) loaded in the Model panel, on the shipped
sample, at each model's own tile size, with its own templates (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.layers import map_layers
from napari_conch.engine.prompts import TEMPLATE_SETS, text_queries
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.model import clear_model_cache
from napari_conch.samples import CMU_SMALL_REGION
from tests.model.tower_folders import write_biomedclip_folder, write_keep_folder

pytestmark = pytest.mark.gui

WAIT_MS = 60_000
PROMPTS = ["tumor", "stroma"]
WRITERS = {"keep": (write_keep_folder, "KEEP", 224), "biomedclip": (write_biomedclip_folder,
                                                                    "BiomedCLIP", 160)}  # fmt: skip


@pytest.mark.parametrize("kind", ["keep", "biomedclip"])
def test_folder_shows_maps_with_its_own_templates(kind, make_napari_viewer, tmp_path, qtbot):
    write, name, tile = WRITERS[kind]
    clear_model_cache()
    folder = write(tmp_path / name)
    viewer = make_napari_viewer()
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    dock.model_panel.source.value = str(folder)
    dock.model_panel.device.value = "cpu"
    dock.load_model()
    qtbot.waitUntil(lambda: dock.model is not None or bool(dock.errors), timeout=WAIT_MS)
    assert dock.model is not None, dock.errors
    model = dock.model
    assert model.config.name == name and not model.has_decoder
    dock.slide_panel.store_root.value = tmp_path / "stores"
    dock.slide_panel.min_tissue.value = 0.1
    try:
        assert dock.start_embedding() is not None, dock.errors
        qtbot.waitUntil(lambda: not dock.embedding, timeout=WAIT_MS)
        store = dock.session.store
        assert store.grid.tile_size == tile and store.counts().get("done", 0) > 0
        dock.prompt_panel.text.value = "\n".join(PROMPTS)
        qtbot.waitUntil(
            lambda: (
                dock.result is not None and dock.result.names[:2] == PROMPTS and not dock.drawing
            ),
            timeout=WAIT_MS,
        )
        assert dock.request().templates == kind  # the model's own templates
        assert dock.viewer.layers[map_layers.LABELS].visible
        names, queries = text_queries(model, PROMPTS, TEMPLATE_SETS[kind])
        expected = run_query(
            QueryIndex.from_store(store), names, queries, store.grid,
            logit_scale=float(model.logit_scale),
        )  # fmt: skip
        assert np.allclose(dock.result.probs, expected.probs, atol=1e-5, equal_nan=True)
    finally:
        dock.cancel_embedding()
        qtbot.waitUntil(lambda: not dock.embedding, timeout=WAIT_MS)
        clear_model_cache()
