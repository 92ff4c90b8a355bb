"""The Prompt highlighter with a CLIP model: a folder laid out as QuiltNet's Hugging Face
repository (random weights written by the test) loaded in the Model panel, on the shipped sample,
at the model's own tile size, with its own templates (Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari.layers import map_layers
from napari_conch.engine.prompts import QUILTNET_TEMPLATES, text_queries
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.model import clear_model_cache
from napari_conch.samples import CMU_SMALL_REGION
from tests.model.clip_folders import write_open_clip_folder

pytestmark = pytest.mark.gui

WAIT_MS = 60_000
PROMPTS = ["tumor", "stroma"]


@pytest.fixture
def dock(make_napari_viewer, tmp_path, qtbot):
    clear_model_cache()
    folder = write_open_clip_folder(tmp_path / "QuiltNet-B-32")
    viewer = make_napari_viewer()
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    widget.model_panel.source.value = str(folder)
    widget.model_panel.device.value = "cpu"
    widget.load_model()
    qtbot.waitUntil(lambda: widget.model is not None or bool(widget.errors), timeout=WAIT_MS)
    assert widget.model is not None, widget.errors
    widget.slide_panel.store_root.value = tmp_path / "stores"
    widget.slide_panel.min_tissue.value = 0.1
    yield widget
    widget.cancel_embedding()
    qtbot.waitUntil(lambda: not widget.embedding, timeout=WAIT_MS)
    clear_model_cache()


@pytest.mark.slow
def test_quiltnet_folder_shows_maps_for_two_prompts(dock, qtbot):
    model = dock.model
    assert model.config.name == "QuiltNet-B-32" and not model.has_decoder
    assert "QuiltNet-B-32" in dock.model_panel.info.value
    assert dock.slide_panel.tile_size.value == 0  # "model's own": 224 for QuiltNet
    assert dock.start_embedding() is not None, dock.errors
    qtbot.waitUntil(lambda: not dock.embedding, timeout=WAIT_MS)
    store = dock.session.store
    assert store.grid.tile_size == 224 and store.counts().get("done", 0) > 0

    dock.prompt_panel.text.value = "\n".join(PROMPTS)
    qtbot.waitUntil(
        lambda: dock.result is not None and dock.result.names[:2] == PROMPTS and not dock.drawing,
        timeout=WAIT_MS,
    )
    assert dock.request().templates == "quiltnet"  # the model's own templates
    assert dock.viewer.layers[map_layers.LABELS].visible
    # the map is the engine's, with QuiltNet's templates and its own temperature
    names, queries = text_queries(model, PROMPTS, QUILTNET_TEMPLATES)
    expected = run_query(
        QueryIndex.from_store(store), names, queries, store.grid,
        logit_scale=float(model.logit_scale),
    )  # fmt: skip
    assert np.allclose(dock.result.probs, expected.probs, atol=1e-5, equal_nan=True)
