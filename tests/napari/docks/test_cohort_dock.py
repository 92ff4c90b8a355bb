"""The Cohort dock in a real napari viewer (Xvfb): two real slides classified, tiny model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_conch._napari.docks.cohort_dock import EVIDENCE, HIT, LABELS, PROBABILITY
from napari_conch._napari.layers import map_layers, regions
from napari_conch._napari.layers.map_layers import viewer_camera
from napari_conch._napari.layers.slide_source import META_KEY
from napari_conch.cli import main
from napari_conch.engine.cohort.search import SearchHit, write_hits_csv
from napari_conch.engine.store.embedding_store import EmbeddingStore
from tests.cli.test_region_cli import model_args
from tests.conftest import require_fixture

pytestmark = pytest.mark.gui

WAIT_MS = 60_000
PROMPTS = {
    "0": {
        "classnames": {"tumor": ["tumor", "carcinoma"], "glass": ["glass"]},
        "templates": ["CLASSNAME.", "an image of CLASSNAME."],
    }
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, tiny_checkpoint, tokenizer_path):
    """Two slides (JPEG, PNG) classified by ``classify-slides`` with the tiny model."""
    folder = tmp_path_factory.mktemp("cohort_dock")
    slides = []
    for name in ("hgsc_nest.jpg", "ihc.png"):
        slides.append(folder / name)
        shutil.copy(require_fixture(f"images/{name}"), slides[-1])
    prompts = folder / "prompts.json"
    prompts.write_text(json.dumps(PROMPTS))
    out = folder / "slides.csv"
    argv = ["classify-slides", *map(str, slides), "--prompts", str(prompts), "--topk", "1,5"]
    argv += ["--out", str(out), "--level", "0", "--tile-size", "256", "--quiet"]
    argv += ["--store", str(folder / "stores"), *model_args(tiny_checkpoint, tokenizer_path)]
    assert main(argv) == 0
    return {"csv": out, "prompts": prompts, "folder": folder}


def _dock(make_napari_viewer, cohort):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
    dock.slides_csv.value = cohort["csv"]
    dock.prompts.value = cohort["prompts"]
    return viewer, dock


def _wait_idle(dock, qtbot):
    qtbot.waitUntil(lambda: not dock.busy(), timeout=WAIT_MS)


@pytest.mark.slow
def test_slides_table_sorts_and_opens_a_slide_with_maps(make_napari_viewer, qtbot, cohort):
    viewer, dock = _dock(make_napari_viewer, cohort)
    table = dock.load_slides()
    assert dock.pooling.value == "top-5" and dock.slides.native.rowCount() == 2
    dock.slides.sort(3, descending=False)  # tiles: numbers sort as numbers (4 < 36)
    tiles = dock.slides.column(3)
    assert tiles == sorted(tiles) and tiles[0] == 4
    dock.slides.sort(2, descending=True)  # probability of the predicted class
    probs = dock.slides.column(2)
    assert probs == sorted(probs, reverse=True)
    expected = sorted((r.probability(5) for r in table.rows), reverse=True)
    assert probs == pytest.approx(expected, abs=1e-4) and min(probs) > 0
    assert float(dock.slides.text(0, 2)) == pytest.approx(probs[0], abs=1e-4)  # as drawn
    shown = dock.slides.source_row(1)  # the second row as sorted
    row = table.rows[shown]
    assert dock.slides.column(0)[1] == row.slide and dock.slides.column(1)[1] == row.preds[5]

    dock.slides.native.setCurrentCell(1, 0)
    dock.open_selected()
    _wait_idle(dock, qtbot)
    assert dock.errors == []
    opened = dock.opened
    assert opened.store.path == row.store and opened.predicted == row.preds[5]
    slide_layers = [ly for ly in viewer.layers if META_KEY in ly.metadata]
    assert [ly.metadata[META_KEY]["path"] for ly in slide_layers] == [str(opened.slide.path)]
    k = opened.maps.names.index(opened.predicted)
    # the maps as the docks show them: cut at the slide's edge
    shape, geometry = map_layers.image_shape(slide_layers[0]), opened.maps.geometry
    probs, _ = map_layers.clip_to_image(opened.maps.cell_probs[k], geometry, shape)
    labels, _ = map_layers.clip_to_image(opened.maps.cell_labels, geometry, shape)
    np.testing.assert_array_equal(viewer.layers[PROBABILITY].data, probs)
    np.testing.assert_array_equal(viewer.layers[LABELS].data, labels)
    ys = (np.arange(probs.shape[0]) + 1) * viewer.layers[PROBABILITY].scale[-2]
    assert ys[-1] + viewer.layers[PROBABILITY].translate[-2] <= (
        slide_layers[0].extent.world[1][-2] + viewer.layers[PROBABILITY].scale[-2]
    )
    assert len(viewer.layers[EVIDENCE].data) == min(5, row.tiles)
    # the session (every napari-conch dock of the viewer) now works on this slide and store
    assert dock.session.slide is opened.slide and dock.session.model is opened.model
    assert dock.session.store is not None and dock.session.store.path == opened.store.path


@pytest.mark.slow
def test_search_and_hits_navigate_to_the_slide_and_tile(make_napari_viewer, qtbot, cohort):
    viewer, dock = _dock(make_napari_viewer, cohort)
    table = dock.load_slides()
    dock.query.value = "tumor"
    dock.k.value = 3
    dock.search_cohort()
    _wait_idle(dock, qtbot)
    assert dock.errors == [] and len(dock.hits) == 3
    assert [h.score for h in dock.hits] == sorted((h.score for h in dock.hits), reverse=True)

    # a hits CSV naming a tile of each slide: opening one opens its slide and centres on the tile
    hits = []
    for r in table.rows:
        store = EmbeddingStore.open(r.store)
        row, col = np.argwhere(store.status() == 1)[-1]
        box = store.grid.tile_box(int(row), int(col))
        hits.append(SearchHit(r.slide, r.store, int(row), int(col), box, 0.5))
    dock.hits_csv.value = write_hits_csv(cohort["folder"] / "hits.csv", hits)
    dock.load_hits_csv()
    for i, hit in enumerate(hits):
        dock.go_to_hit(i)
        _wait_idle(dock, qtbot)
        assert dock.errors == []
        assert dock.opened.store.path == hit.store
        slide_layer = dock._slide_layer(dock.opened.slide)
        centre = regions.box_center_world(slide_layer, hit.box)
        np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre, atol=1e-6)
        np.testing.assert_allclose(viewer.layers[HIT].data[0], regions.box_rectangle(hit.box))
        if i == 0:
            outlines = (viewer.layers[HIT], viewer.layers[EVIDENCE])
    # opening the other slides emptied and reused the outline layers, never deleted them
    # (deleting a Shapes layer can crash napari: docs/reliability.md)
    assert viewer.layers[HIT] is outlines[0] and viewer.layers[EVIDENCE] is outlines[1]
    assert len(viewer.layers[HIT].data) == 1


def test_mistakes_are_one_line_notices(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
    dock.load_slides()  # nothing chosen yet
    dock.open_selected()
    dock.search_cohort()
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    dock.slides_csv.value = tmp_path / "bad.csv"
    dock.load_slides()
    assert dock.errors == [
        "choose the slides CSV that classify-slides wrote",
        "select a slide in the table first",
        "type what to look for",
        f"{tmp_path / 'bad.csv'}: not a classify-slides CSV (slide,store,tiles,pred_top<j>,...)",
    ]


def test_the_tables_are_not_clipped_at_laptop_size(make_napari_viewer, qtbot, cohort):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1366, 768)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
    dock.slides_csv.value = cohort["csv"]
    dock.prompts.value = cohort["prompts"]
    dock.load_slides()
    dock.hit_table.fill([["a slide with a long name.svs", 12, 34, 0.8612]] * 3)
    for table in (dock.slides.native, dock.hit_table.native):
        qtbot.waitUntil(lambda t=table: t.isVisible() and t.viewport().width() > 0, timeout=5000)
        assert table.horizontalScrollBar().maximum() == 0  # every column in view
        assert not table.verticalHeader().isVisible()
    assert dock.slides.native.item(0, 0).toolTip() == dock.slides.text(0, 0)


def test_the_empty_tables_headers_show_whole_at_laptop_size(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QStyle

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1366, 768)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Cohort")
    for table in (dock.slides.native, dock.hit_table.native):  # no CSV loaded: empty
        qtbot.waitUntil(lambda t=table: t.isVisible() and t.viewport().width() > 0, timeout=5000)
        header = table.horizontalHeader()
        margin = header.style().pixelMetric(QStyle.PixelMetric.PM_HeaderMargin, None, header)
        for i in range(header.count()):
            text = table.horizontalHeaderItem(i).text()
            # napari's style sheet pads a header section by 2 px each side, Qt's margin too
            need = header.fontMetrics().horizontalAdvance(text) + 2 * (2 + margin)
            assert header.sectionSize(i) >= need, f"header {text!r} cut"
