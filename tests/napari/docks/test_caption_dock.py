"""The caption and retrieval widget in a real napari viewer (Xvfb), tiny model, real SVS."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_conch._napari.docks.caption_panels import CLICK_TEXT
from napari_conch._napari.layers import regions
from napari_conch._napari.layers.map_layers import viewer_camera
from napari_conch.engine.embed import embed_slide, open_job
from napari_conch.engine.prompts import load_prompt_set
from napari_conch.engine.query import QueryIndex
from napari_conch.engine.region import Region, caption_region, rank_texts
from napari_conch.engine.retrieval import top_tiles_for_prompt
from napari_conch.model.generation import GenerationConfig

pytestmark = pytest.mark.gui

WIDGET = "Caption and retrieval"
WAIT_MS = 20_000
BOX = (1200.0, 800.0, 1320.0, 900.0)  # x0, y0, x1, y1: tissue, one padded image for the tiny model
TEXTS = ["tumor", "stroma", "glass"]


def _open(make_napari_viewer, svs_path):
    viewer = make_napari_viewer()
    [slide_layer] = viewer.open(str(svs_path), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    assert widget.slide_layer is slide_layer
    return viewer, widget, slide_layer


def _load(widget, qtbot, ckpt, config, tokenizer):
    m = widget.model_panel
    m.source.value, m.config.value, m.tokenizer.value = str(ckpt), config, tokenizer
    m.device.value = "cpu"
    assert widget.load_model() is not None, widget.errors
    qtbot.waitUntil(lambda: widget.model is not None and not widget.busy(), timeout=WAIT_MS)


def _world_rectangle(slide_layer, box):
    """The corners ``[4, (y, x)]`` of a level-0 box in world coordinates (microns here)."""
    scale, translate = np.asarray(slide_layer.scale), np.asarray(slide_layer.translate)
    x0, y0, x1, y1 = box
    edges = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    return translate + (edges - 0.5) * scale


def _wait_idle(widget, qtbot):
    qtbot.waitUntil(lambda: not widget.busy(), timeout=WAIT_MS)


@pytest.fixture(scope="module")
def decoderless_checkpoint(tiny_reference, tmp_path_factory):
    """The tiny model's weights without ``text_decoder.*``, as the public CONCH release ships."""
    folder = tmp_path_factory.mktemp("no_decoder")
    state = {k: v for k, v in tiny_reference["state_dict"].items() if "text_decoder." not in k}
    ckpt = folder / "pytorch_model.bin"
    torch.save(state, ckpt)
    return ckpt


@pytest.fixture(scope="module")
def embedded_store(svs_path, tiny_checkpoint, tokenizer_path, tmp_path_factory):
    """The real SVS embedded by the engine with the tiny model at a coarse grid (tile 512)."""
    ckpt, config = tiny_checkpoint
    root = tmp_path_factory.mktemp("stores")
    job = open_job(
        svs_path, ckpt, config=config, tokenizer=tokenizer_path,
        tile_size=512, stride=512, device="cpu", store_root=root,
    )  # fmt: skip
    embed_slide(job.slide, job.model, job.grid, job.store, min_tissue=0.1)
    return root, job


@pytest.mark.slow
def test_rectangle_and_click_captions(
    make_napari_viewer, svs_path, tiny_checkpoint, tokenizer_path, qtbot
):
    viewer, widget, slide_layer = _open(make_napari_viewer, svs_path)
    assert not widget.caption_panel.caption.enabled  # no model yet
    assert "decoder" not in widget.model_panel.note.value  # nothing said of a model not loaded
    _load(widget, qtbot, *tiny_checkpoint, tokenizer_path)
    model = widget.model
    assert model.has_decoder and widget.caption_panel.caption.enabled
    assert widget.caption_panel.reason.value == ""
    # every message of the dock is true to the model: it has a decoder
    assert "Captioning decoder loaded" in widget.model_panel.note.value
    assert "no captioning decoder" not in widget.model_panel.info.value
    c = widget.caption_panel
    c.strategy.value, c.max_length.value, c.num_beams.value = "beam", 8, 2
    cfg = GenerationConfig("beam", max_length=8, min_length=5, num_beams=2)

    # a rectangle drawn in world coordinates (the slide layer is in microns) captions itself
    layer = widget.draw_region()
    assert str(layer.mode) == "add_rectangle"
    assert viewer.layers.selection.active.name == regions.REGION_LAYER
    world = _world_rectangle(slide_layer, BOX)
    layer.add_rectangles([np.array([layer.world_to_data(w) for w in world])])
    region = widget.current_region()
    assert (region.x0, region.y0, region.x1, region.y1) == pytest.approx(BOX, abs=1e-6)
    qtbot.waitUntil(lambda: widget.caption_text is not None, timeout=WAIT_MS)
    _wait_idle(widget, qtbot)
    slide = widget.slide()
    assert widget.caption_text == caption_region(model, slide, Region(*BOX), cfg)
    assert c.text.value == widget.caption_text and "1200-1320" in widget.region_panel.box.value

    # a click makes a box of "Click box" pixels around the point; it is captioned too
    widget.region_panel.box_size.value = 100
    widget.arm_click_region()
    assert str(layer.mode) == "pan_zoom"
    point = np.asarray(slide_layer.translate) + (np.array([1000.0, 700.0]) - 0.5) * np.asarray(
        slide_layer.scale
    )
    widget.caption_text = None
    press = SimpleNamespace(type="mouse_press", position=tuple(point))
    for callback in viewer.mouse_drag_callbacks:  # what napari calls on a click
        callback(viewer, press)
    clicked = widget.current_region()
    assert (clicked.x0, clicked.y0, clicked.x1, clicked.y1) == (650.0, 950.0, 750.0, 1050.0)
    assert len(layer.data) == 2 and widget.region_panel.click.text == CLICK_TEXT
    qtbot.waitUntil(lambda: widget.caption_text is not None, timeout=WAIT_MS)
    _wait_idle(widget, qtbot)
    assert widget.caption_text == caption_region(model, slide, clicked, cfg)
    assert not widget.errors


@pytest.mark.slow
def test_checkpoint_without_decoder(
    make_napari_viewer,
    svs_path,
    decoderless_checkpoint,
    tiny_checkpoint,
    tokenizer_path,
    qtbot,
    tmp_path,
):
    _, widget, slide_layer = _open(make_napari_viewer, svs_path)
    _load(widget, qtbot, decoderless_checkpoint, tiny_checkpoint[1], tokenizer_path)
    model = widget.model
    assert not model.has_decoder
    assert not widget.caption_panel.caption.enabled
    assert "no captioning decoder" in widget.caption_panel.reason.value
    assert "no captioning decoder" in widget.model_panel.info.value
    assert widget.model_panel.info.tooltip == model.describe()

    layer = widget.draw_region()
    world = _world_rectangle(slide_layer, BOX)
    widget.rank_panel.texts.value = "\n".join(TEXTS)
    layer.add_rectangles([np.array([layer.world_to_data(w) for w in world])])  # ranks itself
    qtbot.waitUntil(lambda: len(widget.ranking) == 3, timeout=WAIT_MS)
    _wait_idle(widget, qtbot)
    expected = rank_texts(model, widget.slide(), Region(*BOX), TEXTS, "none")
    assert [name for name, _, _ in widget.ranking] == [name for name, _, _ in expected]
    np.testing.assert_allclose(
        [p for _, p, _ in widget.ranking], [p for _, p, _ in expected], atol=1e-6
    )
    assert widget.rank_panel.table.shape == (3, 3)
    assert widget.rank_panel.table.data[0][0] == expected[0][0]
    assert widget.caption_text is None  # nothing was captioned

    # the caption button's handler says why, in one line
    assert widget.caption() is None
    assert "no captioning decoder" in widget.errors[-1] and "\n" not in widget.errors[-1]

    # a prompt-set JSON ranks its classes, CONCH-style
    prompts = tmp_path / "classes.json"
    prompts.write_text(
        json.dumps({"classnames": {"tumour": ["tumor", "carcinoma"], "fat": ["fat"]}})
    )
    widget.rank_panel.prompt_file.value = prompts
    widget.ranking = []
    assert widget.rank() is not None
    qtbot.waitUntil(lambda: len(widget.ranking) == 2, timeout=WAIT_MS)
    _wait_idle(widget, qtbot)
    expected = rank_texts(model, widget.slide(), Region(*BOX), load_prompt_set(prompts, "none"))
    assert [name for name, _, _ in widget.ranking] == [name for name, _, _ in expected]
    np.testing.assert_allclose(
        [p for _, p, _ in widget.ranking], [p for _, p, _ in expected], atol=1e-6
    )

    # top tiles before any embedding: one clear line, the widget still usable
    widget.tiles_panel.store_root.value = tmp_path
    widget.tiles_panel.prompt.value = "tumor"
    assert widget.find_top_tiles() is not None
    qtbot.waitUntil(lambda: not widget.busy(), timeout=WAIT_MS)
    assert widget.errors[-1].startswith("embed the slide first")
    assert widget.tiles_panel.find.enabled and widget.hits == []


@pytest.mark.slow
def test_top_tiles_list_and_camera(
    make_napari_viewer, svs_path, embedded_store, tiny_checkpoint, tokenizer_path, qtbot
):
    from qtpy.QtCore import Qt

    root, job = embedded_store
    viewer = make_napari_viewer()
    [slide_layer] = viewer.open(str(svs_path), plugin="napari-conch")
    # the model loaded in a Prompt highlighter is picked up by the caption widget
    _, highlighter = viewer.window.add_plugin_dock_widget("napari-conch", "Prompt highlighter")
    m = highlighter.model_panel
    m.source.value, m.config.value = str(tiny_checkpoint[0]), tiny_checkpoint[1]
    m.tokenizer.value, m.device.value = tokenizer_path, "cpu"
    highlighter.load_model()
    qtbot.waitUntil(lambda: highlighter.model is not None, timeout=WAIT_MS)
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    assert widget.model.fingerprint == highlighter.model.fingerprint == job.model.fingerprint
    assert widget.model_panel.note.value == highlighter.model_panel.note.value
    assert widget.model_panel.info.tooltip == highlighter.model.describe()

    t = widget.tiles_panel
    t.store_root.value, t.prompt.value, t.k.value = root, "tumor", 5
    assert widget.find_top_tiles() is not None
    qtbot.waitUntil(lambda: len(widget.hits) == 5, timeout=WAIT_MS)
    _wait_idle(widget, qtbot)
    expected = top_tiles_for_prompt(
        QueryIndex.from_store(job.store), job.store.grid, job.model, "tumor", 5, "conch"
    )
    assert [(h.row, h.col, h.box) for h in widget.hits] == [(h.row, h.col, h.box) for h in expected]
    np.testing.assert_allclose(
        [h.score for h in widget.hits], [h.score for h in expected], atol=1e-6
    )
    assert (
        t.table.shape == (5, 3)
        and t.table.row_headers == (1, 2, 3, 4, 5)
        and "tile" in t.status.value
    )
    outlines = viewer.layers[regions.TOP_TILES_LAYER]
    assert len(outlines.data) == 5

    # clicking the second entry centres the camera on that tile (world coordinates, microns)
    table = t.table.native
    rect = table.visualItemRect(table.item(1, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    x0, y0, x1, y1 = expected[1].box
    centre = np.asarray(slide_layer.translate) + (
        np.array([(y0 + y1) / 2, (x0 + x1) / 2]) - 0.5
    ) * np.asarray(slide_layer.scale)
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre, atol=1e-6)
    assert viewer_camera(viewer).zoom == pytest.approx(320 / (512 * slide_layer.scale[-1]))
    np.testing.assert_allclose(outlines.edge_color[1], [0, 1, 1, 1])
    # searching again replaces the outlines instead of piling them up
    t.k.value = 3
    widget.find_top_tiles()
    qtbot.waitUntil(lambda: len(widget.hits) == 3, timeout=WAIT_MS)
    assert len(viewer.layers[regions.TOP_TILES_LAYER].data) == 3
    assert [ly.name for ly in viewer.layers].count(regions.TOP_TILES_LAYER) == 1
    assert not widget.errors
    # another slide chosen: the list and outlines of this one go (a click would land there)
    widget.region_panel.layer.value = slide_layer  # the same slide again: nothing goes
    assert len(widget.hits) == 3
    viewer.add_image(np.full((600, 700, 3), 120, np.uint8), name="other", rgb=True)
    assert widget.session.slide_source.name == "other"
    assert widget.hits == [] and t.table.shape[0] == 0 and t.status.value == ""
    assert len(viewer.layers[regions.TOP_TILES_LAYER].data) == 0


def test_caption_widget_demo_model_button(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", "Caption and retrieval")
    widget.model_panel.device.value = "cpu"
    widget.model_panel.demo.changed.emit(True)
    qtbot.waitUntil(lambda: widget.model is not None, timeout=30_000)
    assert widget.model.config.name == "demo model" and widget.model.has_decoder


@pytest.mark.slow
@pytest.mark.gui
def test_a_click_before_the_region_layer_was_shown_shows_it_whole(make_napari_viewer, svs_path):
    # "Click a point" adds the region layer hidden, to show it part by part in later turns; a
    # click that comes first shows it at once, with every part of its drawing.
    viewer, widget, slide_layer = _open(make_napari_viewer, svs_path)
    widget.arm_click_region()
    layer = viewer.layers[regions.REGION_LAYER]
    assert not layer.visible
    point = np.asarray(slide_layer.translate) + 700.0 * np.asarray(slide_layer.scale)
    press = SimpleNamespace(type="mouse_press", position=tuple(point))
    for callback in viewer.mouse_drag_callbacks:
        callback(viewer, press)

    node = viewer.window._qt_viewer.canvas.layer_to_visual[layer].node
    assert layer.visible and len(layer.data) == 1
    assert all(part.visible for part in node._subvisuals if part is not node.text)


def test_the_template_boxes_mean_the_models_own_templates(
    make_napari_viewer, svs_path, monkeypatch
):
    _, widget, _ = _open(make_napari_viewer, svs_path)
    quiltnet = SimpleNamespace(templates="quiltnet")
    monkeypatch.setattr(type(widget), "require_model", lambda self: quiltnet)
    widget.rank_panel.texts.value = "tumor\nstroma"
    assert widget.rank_panel.templates.text == "Model's templates"
    widget.rank_panel.templates.value = True
    assert widget.candidates() == (["tumor", "stroma"], "quiltnet")  # not CONCH's for QuiltNet
    widget.rank_panel.templates.value = False
    assert widget.candidates() == (["tumor", "stroma"], "none")
    conch = SimpleNamespace()  # CONCH and the demo model carry no template name: CONCH's 22
    monkeypatch.setattr(type(widget), "require_model", lambda self: conch)
    assert widget._templates(True) == "conch"
