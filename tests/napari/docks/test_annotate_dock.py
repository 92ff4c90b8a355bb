"""The Annotate dock in a real napari viewer (Xvfb): the demo model on the shipped CC0 slide."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_conch._napari.layers import examples as A
from napari_conch._napari.layers import map_layers
from napari_conch._napari.layers.map_layers import viewer_camera
from napari_conch._napari.sample_data import CMU_SMALL_REGION
from napari_conch.engine.learn.annotations import read_geojson
from napari_conch.engine.learn.project import project_path
from napari_conch.engine.query import run_query
from napari_conch.engine.session.prompt_request import PromptRequest

pytestmark = pytest.mark.gui

WAIT_MS = 30_000
PROMPTS = ("tumor cells", "stroma")


@pytest.fixture
def annotate(make_napari_viewer, tmp_path, qtbot):
    """A viewer with the slide embedded by the demo model (256 px tiles) and the Annotate dock."""
    viewer = make_napari_viewer()
    [slide_layer] = viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    session = dock.session
    session.load_model("demo")
    session.set_options(store_root=tmp_path, tile_size=256, stride=256, min_tissue=0.1)
    assert dock.slide_layer is slide_layer
    dock.require_slide()
    session.embed()
    yield viewer, dock
    qtbot.waitUntil(lambda: not dock.busy(), timeout=WAIT_MS)


def _wait_outcome(dock, qtbot, examples: int):
    qtbot.waitUntil(
        lambda: dock.outcome is not None and dock.outcome.used == examples and not dock.busy(),
        timeout=WAIT_MS,
    )
    assert not dock.errors, dock.errors
    return dock.outcome


def _tile_world(dock, row, col):
    x0, y0, x1, y1 = dock.session.store.grid.tile_box(row, col)
    scale = np.asarray(dock.slide_layer.scale)
    return np.array([(y0 + y1) / 2, (x0 + x1) / 2]) * scale + np.asarray(dock.slide_layer.translate)


@pytest.mark.slow
def test_annotate_flow(annotate, qtbot, tmp_path):
    viewer, dock = annotate
    session = dock.session
    session.set_prompts(PromptRequest(PROMPTS, "none"))
    assert dock.classes == list(PROMPTS)
    outcome = _wait_outcome(dock, qtbot, 0)

    # no example: exactly the zero-shot map of the prompts
    live = session.live_embeddings()
    request = PromptRequest(PROMPTS, "none")
    texts = session.encode_texts(request)
    fingerprint = session.model.fingerprint
    queries = np.stack([texts[(fingerprint, request.sentences(n))] for n in PROMPTS])
    zero = run_query(
        live[0], PROMPTS, queries, live[1], logit_scale=float(session.model.logit_scale)
    )
    np.testing.assert_allclose(outcome.result.probs, zero.probs, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(outcome.result.labels, zero.labels)
    labels_layer = viewer.layers[A.LEARNED_LABELS]
    shown, _ = map_layers.clip_to_image(
        zero.cell_labels, zero.geometry, map_layers.image_shape(dock.slide_layer)
    )
    np.testing.assert_array_equal(labels_layer.data, shown)  # cut at the slide's edge

    # painting: the examples layer in paint mode with the chosen class; a stroke retrains
    valid = np.argwhere(live[0].valid)
    dock.class_panel.klass.value = "stroma"
    layer = dock.paint_examples()
    assert layer.mode == "paint" and layer.selected_label == 2
    assert layer.opacity <= 0.5 and layer.blending == "translucent"  # the tissue shows through
    assert layer in viewer.layers.selection
    for r, c in valid[:3]:
        layer.paint((int(r), int(c)), 2)
    outcome = _wait_outcome(dock, qtbot, 3)
    for r, c in valid[:3]:
        assert outcome.result.labels[r, c] == 2

    # drawing: a finished polygon's tiles (centre inside) become examples of the class, and the
    # polygon goes; vertices are level-0 pixel centres (napari's), tiles are 256 px here
    dock.class_panel.klass.value = "tumor cells"
    shapes = dock.draw_examples()
    assert shapes.mode == "add_polygon" and shapes in viewer.layers.selection
    r0, c0 = (int(v) for v in valid[len(valid) // 2])
    y0, x0 = r0 * 256 + 100, c0 * 256 + 100  # inside tile (r0, c0) and (r0, c0 + 1) only
    shapes.add_polygons([np.array([[y0, x0], [y0, x0 + 300], [y0 + 60, x0 + 300], [y0 + 60, x0]])])
    assert len(shapes.data) == 0
    drawn = {k: v for k, v in dock.examples().as_dict().items() if v == "tumor cells"}
    assert drawn == {(r0, c0): "tumor cells", (r0, c0 + 1): "tumor cells"}
    dock.label_tiles(list(drawn), None)  # and taken back
    assert "tumor cells" not in dock.examples().names
    outcome = _wait_outcome(dock, qtbot, 3)

    # a class learned from examples alone, and a correction by clicking a tile
    assert dock.class_panel.new_class.native.placeholderText()  # its row has no label
    dock.class_panel.new_class.value = "necrosis"
    assert dock.add_class() == "necrosis"
    assert dock.classes == ["tumor cells", "stroma", "necrosis"]
    dock.label_tiles([tuple(map(int, t)) for t in valid[-3:-1]], "necrosis")
    dock.arm_correct()
    r, c = map(int, valid[-1])
    assert dock.correct_at(_tile_world(dock, r, c)) == (r, c)
    outcome = _wait_outcome(dock, qtbot, 6)
    assert outcome.result.names == ["tumor cells", "stroma", "necrosis"]
    assert outcome.result.labels[r, c] == 3
    rows = [list(row) for row in dock.learn_panel.table.value["data"]]
    assert [row[0] for row in rows] == ["stroma", "necrosis", "tumor cells"]
    assert [row[3] for row in rows] == ["3", "3", "0"] and rows[2][1:3] == ["-", "-"]
    assert all(0 <= float(v) <= 1 for row in rows[:2] for v in row[1:3])
    assert "3-fold cross-validated accuracy" in dock.learn_panel.validation.value

    # a prompt taken away: its examples stay, as a class learned from them
    session.set_prompts(PromptRequest(("tumor cells",), "none"))
    assert dock.classes == ["tumor cells", "necrosis", "stroma"]
    assert dock.examples().counts() == {"stroma": 3, "necrosis": 3}
    outcome = _wait_outcome(dock, qtbot, 6)
    session.set_prompts(PromptRequest(PROMPTS, "none"))
    assert dock.classes == ["tumor cells", "stroma", "necrosis"]
    outcome = _wait_outcome(dock, qtbot, 6)

    # check next: choosing a tile centres the camera on it
    choices = list(dock.learn_panel.check_next.choices)
    assert choices
    dock.learn_panel.check_next.value = [choices[0]]
    row, col = dock._uncertain[choices[0]]
    camera = viewer_camera(viewer)
    np.testing.assert_allclose(camera.center[-2:], _tile_world(dock, row, col), atol=1e-3)

    # save, clear, load: the same examples come back from the store
    before = dock.examples().as_dict()
    path = dock.save_project()
    assert path == project_path(session.store.path) and path.is_file()
    dock.clear_examples()
    assert len(dock.examples()) == 0
    dock.load_project()
    assert dock.examples().as_dict() == before
    # the project is found again with its store
    dock.clear_examples()
    session.close_store()
    assert A.EXAMPLES not in viewer.layers
    session.open_store(create=False)
    assert dock.examples().as_dict() == before and dock.classes[-1] == "necrosis"
    _wait_outcome(dock, qtbot, 6)

    # exports: the learned map as CSV, the examples as QuPath GeoJSON that read back the same
    dock.project_panel.path.value = tmp_path / "learned.csv"
    out = dock.export_map()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"class", "prob_necrosis"} <= set(rows[0]) and len(rows) == live[0].size
    dock.project_panel.path.value = tmp_path / "examples.geojson"
    dock.export_examples()
    from napari_conch.engine.learn.annotations import examples_from_shapes

    again = examples_from_shapes(session.store.grid, read_geojson(tmp_path / "examples.geojson"))
    assert again.as_dict() == before

    # and importing it adds nothing new
    dock.project_panel.geojson.value = tmp_path / "examples.geojson"
    dock.import_annotations()
    assert dock.examples().as_dict() == before
    assert not dock.errors


@pytest.mark.slow
def test_user_mistakes_are_one_line_notices(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    assert dock.paint_examples() is None
    assert dock.retrain() is None
    assert dock.export_map() is None
    assert dock.errors[0].startswith("no class yet")
    assert any("embed the slide first" in e for e in dock.errors)


@pytest.mark.slow
def test_a_tile_outside_the_grid_is_refused(annotate):
    _, dock = annotate
    rows, cols = dock.session.store.grid.shape
    dock.label_tiles([(rows, 0)], "tumour")
    assert dock.errors == [f"tile ({rows}, 0) is outside the {rows} x {cols} grid"]
    assert len(dock.examples()) == 0


@pytest.mark.slow
def test_no_second_labels_map_before_the_first_example(annotate, qtbot):
    # With the Prompt highlighter's labels on screen, a learned map from no example would be the
    # same map again: it is drawn only from the first example, and never made the active layer.
    viewer, dock = annotate
    _, highlighter = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    highlighter.prompt_panel.text.value = "\n".join(PROMPTS)  # typed there, as a user would
    qtbot.waitUntil(
        lambda: map_layers.LABELS in viewer.layers and not highlighter.drawing, timeout=WAIT_MS
    )
    _wait_outcome(dock, qtbot, 0)
    qtbot.waitUntil(
        lambda: "shown as CONCH labels" in dock.learn_panel.status.value, timeout=WAIT_MS
    )
    qtbot.wait(50)  # a few turns more: still no learned map
    assert A.LEARNED_LABELS not in viewer.layers

    [(r, c)] = np.argwhere(dock.session.live_embeddings()[0].valid)[:1]
    dock.label_tiles([(int(r), int(c))], "stroma")
    active = viewer.layers.selection.active  # the examples layer, where the user works
    outcome = _wait_outcome(dock, qtbot, 1)

    learned = viewer.layers[A.LEARNED_LABELS]
    shown, _ = map_layers.clip_to_image(
        outcome.result.cell_labels,
        outcome.result.geometry,
        map_layers.image_shape(dock.slide_layer),
    )
    np.testing.assert_array_equal(learned.data, shown)
    assert learned.visible
    assert viewer.layers.selection.active is active


@pytest.mark.slow
def test_a_learned_map_from_no_example_goes_when_the_prompt_labels_come_after_it(annotate, qtbot):
    # The Prompt highlighter draws its labels in later event-loop turns than its result: a
    # retraining that ended first drew the same map as a learned one (no example yet).
    viewer, dock = annotate
    dock.session.set_prompts(PromptRequest(PROMPTS, "none"))
    outcome = _wait_outcome(dock, qtbot, 0)
    assert A.LEARNED_LABELS in viewer.layers  # no prompt labels yet: the zero-shot map
    place = map_layers.map_placement(outcome.result.geometry, dock.slide_layer)

    def prompt_labels_drawn():  # as the Prompt highlighter makes its labels layer
        map_layers.upsert_labels(
            viewer, outcome.result.cell_labels, list(PROMPTS), place, units=("pixel", "pixel"),
            opacity=0.6,
        )  # fmt: skip

    prompt_labels_drawn()
    assert A.LEARNED_LABELS not in viewer.layers and A.LEARNED_PROBABILITY not in viewer.layers
    assert "shown as CONCH labels" in dock.learn_panel.status.value

    # from an example on, the learned map is its own and stays when the labels are made again
    [(r, c)] = np.argwhere(dock.session.live_embeddings()[0].valid)[:1]
    dock.label_tiles([(int(r), int(c))], "stroma")
    _wait_outcome(dock, qtbot, 1)
    assert A.LEARNED_LABELS in viewer.layers
    map_layers.remove_layer(viewer, map_layers.LABELS, dock)
    prompt_labels_drawn()
    assert A.LEARNED_LABELS in viewer.layers


@pytest.mark.slow
def test_the_canvas_legend_follows_the_learned_classes_after_an_import(annotate, qtbot, tmp_path):
    from napari_conch._napari.layers import on_show
    from napari_conch.engine.learn.annotations import Examples, write_examples_geojson

    viewer, dock = annotate
    dock.session.set_prompts(PromptRequest(PROMPTS, "none"))
    _wait_outcome(dock, qtbot, 0)
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == list(PROMPTS), timeout=WAIT_MS)
    # QuPath annotations with a class the dock does not know yet
    valid = [tuple(map(int, t)) for t in np.argwhere(dock.session.live_embeddings()[0].valid)]
    names = ["necrosis", "necrosis", "stroma", "stroma"]
    examples = Examples([t[0] for t in valid[:4]], [t[1] for t in valid[:4]], names)
    path = tmp_path / "qupath.geojson"
    colors = {"necrosis": (10, 200, 30), "stroma": (200, 20, 200)}
    write_examples_geojson(path, examples, dock.session.store.grid, colors)
    dock.project_panel.geojson.value = path
    dock.import_annotations()
    _wait_outcome(dock, qtbot, 4)
    learned = [*PROMPTS, "necrosis"]
    assert on_show.map_on_show(viewer).name == A.LEARNED_LABELS
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == learned, timeout=WAIT_MS)
    overlays = viewer.canvas.overlays
    necrosis = overlays[map_layers.LEGEND_KEY.format(3)]
    np.testing.assert_allclose(np.asarray(necrosis.color)[:3] * 255, (10, 200, 30), atol=0.5)
    # the learned map hidden: the canvas names no class of it any more
    viewer.layers[A.LEARNED_LABELS].visible = False
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) != learned, timeout=WAIT_MS)
    assert "necrosis" not in map_layers.legend_shown(viewer)


@pytest.mark.slow
def test_the_table_and_path_fields_are_not_clipped_at_laptop_size(make_napari_viewer, qtbot):
    from napari_conch._napari.docks.annotate_panels import TABLE_COLUMNS, fit_table

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1366, 768)
    _, dock = viewer.window.add_plugin_dock_widget("napari-conch", "Annotate")
    qtbot.waitUntil(lambda: dock.on_screen, timeout=5000)  # opened over a few turns
    table = dock.learn_panel.table
    names = ["tumor cells", "stroma", "inflammatory cells", "necrosis"]
    table.value = dict(
        zip(TABLE_COLUMNS, [names, ["0.50"] * 4, ["1.00"] * 4, ["12"] * 4], strict=True)
    )
    fit_table(table)
    native = table.native
    edits = [e.line_edit.native for e in (dock.project_panel.geojson, dock.project_panel.path)]

    def laid_out():
        return (
            native.horizontalScrollBar().maximum() == 0  # every column in view
            and native.verticalScrollBar().maximum() == 0  # every row in view
            and all(edit.width() >= 120 for edit in edits)  # was 40-80 px beside "Select file"
        )

    qtbot.waitUntil(laid_out, timeout=5000)
