"""The README's main command: the demo model embeds the sample slide and shows a heatmap."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch._napari import layers as L
from napari_conch._napari.demo import start_demo
from napari_conch.cli.view import WIDGET, slide_path
from napari_conch.demo import DEMO_MODEL_NAME
from napari_conch.engine.prompts import text_queries
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.engine.store import TileStatus

pytestmark = pytest.mark.gui


def test_start_demo_embeds_and_shows_the_prompt(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(slide_path(None)), plugin="napari-conch")  # the shipped sample slide
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    widget.slide_panel.store_root.value = tmp_path
    widget.model_panel.device.value = "cpu"
    assert start_demo(widget, ["stroma"]) is not None
    qtbot.waitUntil(lambda: widget.model is not None, timeout=30_000)
    assert DEMO_MODEL_NAME in widget.model_panel.info.value
    assert "Demo model, not CONCH" in widget.model_panel.note.value
    qtbot.waitUntil(lambda: widget.session is not None and not widget.embedding, timeout=60_000)
    qtbot.waitUntil(lambda: L.HEATMAP in viewer.layers, timeout=30_000)
    store = widget.session.store
    status = store.status()
    assert (status == TileStatus.DONE).sum() > 50 and not (status == TileStatus.PENDING).any()
    names, queries = text_queries(widget.model, ["stroma"], "conch")
    expected = run_query(QueryIndex.from_store(store), names, queries, store.grid)
    shown = L.clip_to_image(expected.cell_cosine[0], expected.geometry, L.image_shape(
        viewer.layers[0]))[0]  # fmt: skip
    qtbot.waitUntil(
        lambda: np.isfinite(viewer.layers[L.HEATMAP].data).sum() == np.isfinite(shown).sum(),
        timeout=30_000,
    )
    np.testing.assert_allclose(viewer.layers[L.HEATMAP].data, shown, atol=1e-5, equal_nan=True)


def test_demo_model_button_loads_the_demo_model(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    assert widget.model_panel.source.value == ""
    widget.model_panel.device.value = "cpu"
    widget.model_panel.demo.changed.emit(True)  # the button's click signal
    qtbot.waitUntil(lambda: widget.model is not None, timeout=30_000)
    assert widget.model.config.name == DEMO_MODEL_NAME
    assert widget.slide_panel.tile_size.value == 128
    assert "Demo model, not CONCH" in widget.model_panel.note.value
