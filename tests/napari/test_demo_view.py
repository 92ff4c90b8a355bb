"""The README's main command: ``napari-conch view`` starts the demo model on the held-out H&E
sample and shows a labels map of the concepts it knows; the demo button loads it too."""

from __future__ import annotations

import argparse

import napari
import numpy as np
import pytest

from napari_conch._napari import demo as demo_module
from napari_conch._napari.demo import DEMO_PROMPT_HINT, start_demo
from napari_conch._napari.docks.notices import fits_toast
from napari_conch._napari.layers import map_layers
from napari_conch.cli import main, view
from napari_conch.cli.view import WIDGET, slide_path
from napari_conch.demo import DEMO_CONCEPTS, DEMO_MODEL_NAME, DEMO_TILE_SIZE, DEMO_VIEW_PROMPTS
from napari_conch.engine.prompts import text_queries
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.engine.store.embedding_store import TileStatus
from napari_conch.samples import CMU_SMALL_REGION, HGSC_HELDOUT

pytestmark = pytest.mark.gui

WAIT_MS = 60_000


def _view_args(**changes) -> argparse.Namespace:
    """The arguments of ``napari-conch view --device cpu``, as the command's parser makes them."""
    from napari_conch.cli import build_parser

    args = build_parser().parse_args(["view", "--device", "cpu"])
    for name, value in changes.items():
        assert hasattr(args, name), name  # only arguments the command has
        setattr(args, name, value)
    return args


def _run_view(make_napari_viewer, monkeypatch, args):
    """Run the ``view`` command with a test viewer; napari.run returns at once."""
    made, notes = [], []

    def make_viewer(**kwargs):
        made.append(make_napari_viewer(**kwargs))
        return made[-1]

    monkeypatch.setattr(napari, "Viewer", make_viewer)
    monkeypatch.setattr(napari, "run", lambda: None)
    monkeypatch.setattr(napari.utils.notifications, "show_info", notes.append)
    for name in ("show_info", "show_error"):  # the docks' notices too
        monkeypatch.setattr(f"napari_conch._napari.docks.base.{name}", notes.append)
    assert view.run(args) == 0
    (viewer,) = made
    return viewer, viewer.window.dock_widgets[f"{WIDGET} (napari-conch)"], notes


def test_slide_path_defaults_to_a_sample():
    assert slide_path(None, demo=True) == HGSC_HELDOUT and HGSC_HELDOUT.is_file()
    assert slide_path(None) == CMU_SMALL_REGION


@pytest.mark.slow
def test_view_without_a_model_shows_the_demo_labels_map_on_the_heldout_sample(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, capsys
):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path))
    viewer, widget, notes = _run_view(make_napari_viewer, monkeypatch, _view_args())
    assert "demo model, not CONCH" in viewer.title
    assert [layer.name for layer in viewer.layers] == [HGSC_HELDOUT.stem]
    (note,) = notes
    assert note.splitlines()[0] == "Demo model: not CONCH, not for diagnosis"
    assert "never seen in training" in " ".join(note.split())
    # the demo writes no tile size: the session takes the model's own (RunOptions.tile_size_for)
    options = widget.session.options
    assert options.tile_size is None and options.stride is None

    qtbot.waitUntil(lambda: widget.model is not None, timeout=WAIT_MS)
    assert widget.model_panel.source.value == "demo"  # the panel shows the session's model
    assert widget.prompt_panel.text.tooltip == DEMO_PROMPT_HINT
    assert all(concept in DEMO_PROMPT_HINT for concept in DEMO_CONCEPTS)
    assert widget.model.is_demo and "not CONCH" in widget.model_panel.info.value
    qtbot.waitUntil(
        lambda: widget.session.store is not None and not widget.embedding, timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: map_layers.LABELS in viewer.layers, timeout=WAIT_MS)
    store = widget.session.store
    assert not (store.status() == TileStatus.PENDING).any()
    assert store.grid.tile_size == DEMO_TILE_SIZE

    names, queries = text_queries(widget.model, list(DEMO_VIEW_PROMPTS), "conch")
    expected = run_query(
        QueryIndex.from_store(store), names, queries, store.grid,
        logit_scale=widget.model.logit_scale,
    )  # fmt: skip
    qtbot.waitUntil(
        lambda: np.array_equal(viewer.layers[map_layers.LABELS].data, expected.cell_labels),
        timeout=WAIT_MS,
    )
    labels = viewer.layers[map_layers.LABELS].data
    # Structure, not one flat class: every concept wins somewhere, none everywhere.
    counts = np.bincount(labels.ravel(), minlength=len(names) + 1)[1:]
    assert (counts >= 4).all(), dict(zip(names, counts.tolist(), strict=True))
    assert counts.max() < 0.7 * counts.sum()
    # The stroma stripe (rows 4-5 of the 128 px grid) is mostly stroma; the tumour-nest stripe
    # (rows 1-2) holds all three classes.
    stroma = names.index("stroma") + 1
    assert (labels[4:6] == stroma).sum() >= 0.8 * (labels[4:6] > 0).sum()
    assert set(np.unique(labels[1:3])) >= {1, 2, 3}

    # The CLI's defaults find the store the view made (same tile size, stride, tissue threshold).
    assert main(["embed", str(HGSC_HELDOUT), "--model", "demo", "--device", "cpu", "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(store.path)
    # every notice of the flow (the demo note, the run's end with its store path) fits a toast
    assert len(notes) >= 2 and all(fits_toast(n) for n in notes), notes


def test_start_demo_stops_when_the_model_cannot_load(make_napari_viewer, qtbot, monkeypatch):
    import napari_conch.demo
    from napari_conch.errors import CheckpointError

    def missing():
        raise CheckpointError("the demo model's file 'demo_coca.pt' is missing")

    monkeypatch.setattr(napari_conch.demo, "demo_model_paths", missing)
    viewer = make_napari_viewer()
    viewer.open(str(HGSC_HELDOUT), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    widget.model_panel.device.value = "cpu"
    assert start_demo(widget) is not None
    qtbot.waitUntil(lambda: len(widget.errors) == 1, timeout=WAIT_MS)
    assert "demo_coca.pt" in widget.errors[0] and widget.model is None
    qtbot.wait(300)  # nothing is started after a failed load
    assert widget.session.store is None and not widget.embedding and len(widget.errors) == 1


@pytest.mark.slow
def test_view_with_model_demo_is_the_demo_view(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path))
    viewer, widget, _ = _run_view(
        make_napari_viewer, monkeypatch, _view_args(model="demo", prompt=["stroma"])
    )
    assert "demo model, not CONCH" in viewer.title
    qtbot.waitUntil(
        lambda: widget.session.store is not None and not widget.embedding, timeout=WAIT_MS
    )
    assert widget.session.store.grid.tile_size == DEMO_TILE_SIZE
    qtbot.waitUntil(lambda: map_layers.HEATMAP in viewer.layers, timeout=WAIT_MS)


@pytest.mark.slow
def test_start_demo_on_a_given_slide(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    widget.slide_panel.store_root.value = tmp_path
    widget.model_panel.device.value = "cpu"
    assert start_demo(widget, ["stroma"]) is not None
    qtbot.waitUntil(lambda: widget.model is not None, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: widget.session.store is not None and not widget.embedding, timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: map_layers.HEATMAP in viewer.layers, timeout=WAIT_MS)
    store = widget.session.store
    assert (store.status() == TileStatus.DONE).sum() > 50
    names, queries = text_queries(widget.model, ["stroma"], "conch")
    expected = run_query(QueryIndex.from_store(store), names, queries, store.grid)
    slide_shape = map_layers.image_shape(viewer.layers[0])
    shown = map_layers.clip_to_image(expected.cell_cosine[0], expected.geometry, slide_shape)[0]
    qtbot.waitUntil(
        lambda: (
            np.isfinite(viewer.layers[map_layers.HEATMAP].data).sum() == np.isfinite(shown).sum()
        ),
        timeout=WAIT_MS,
    )
    np.testing.assert_allclose(
        viewer.layers[map_layers.HEATMAP].data, shown, atol=1e-5, equal_nan=True
    )


def _prompts_typed_while_embedding(make_napari_viewer, qtbot) -> list[bool]:
    """The demo on the small slide: whether the run went on each time the prompts were set."""
    viewer = make_napari_viewer()
    viewer.open(str(CMU_SMALL_REGION), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    widget.model_panel.device.value = "cpu"
    seen: list[bool] = []
    widget.session.events.prompts_changed.connect(lambda _: seen.append(widget.session.running))
    assert start_demo(widget, ["stroma"]) is not None
    qtbot.waitUntil(lambda: map_layers.HEATMAP in viewer.layers, timeout=WAIT_MS)
    return seen


@pytest.mark.slow
def test_the_demo_types_its_prompts_once_the_tiles_are_embedded(
    make_napari_viewer, qtbot, monkeypatch
):
    # no run is long: on a busy machine the small slide took more than LIVE_MAP_AFTER_S (CI)
    monkeypatch.setattr(demo_module, "LIVE_MAP_AFTER_S", 1e9)
    seen = _prompts_typed_while_embedding(make_napari_viewer, qtbot)
    assert seen == [False]  # the maps are made with the cores free (see demo.py)


@pytest.mark.slow
def test_on_a_long_run_the_demo_types_its_prompts_while_it_embeds(
    make_napari_viewer, qtbot, monkeypatch
):
    monkeypatch.setattr(demo_module, "LIVE_MAP_AFTER_S", 0.0)  # any run is long
    seen = _prompts_typed_while_embedding(make_napari_viewer, qtbot)
    assert seen == [True]  # the map fills in as the tiles come


def test_the_demo_stops_when_the_embedding_cannot_start(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()  # no slide
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    widget.model_panel.device.value = "cpu"
    assert start_demo(widget, ["stroma"]) is not None
    qtbot.waitUntil(lambda: len(widget.errors) == 1, timeout=WAIT_MS)
    qtbot.wait(300)  # several polls later: said once, and no prompts typed
    assert len(widget.errors) == 1 and "slide" in widget.errors[0]
    assert widget.prompt_panel.text.value == "" and not widget.embedding


def test_demo_model_button_loads_the_demo_model(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.delenv("NAPARI_CONCH_MODEL", raising=False)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    assert widget.model_panel.source.value == ""
    widget.model_panel.device.value = "cpu"
    widget.model_panel.demo.changed.emit(True)  # the button's click signal
    qtbot.waitUntil(lambda: widget.model is not None, timeout=WAIT_MS)
    assert widget.model.config.name == DEMO_MODEL_NAME and widget.model.is_demo
    assert widget.session.tile_size == DEMO_TILE_SIZE  # the model's own, no panel value
    assert "Demo model, not CONCH" in widget.model_panel.note.value


def test_heldout_sample_opens_from_napari_sample_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample("napari-conch", "hgsc-heldout")
    assert layer.name == HGSC_HELDOUT.stem and layer.rgb
    level0 = layer.data[0] if layer.multiscale else layer.data
    assert level0.shape[:2] == (896, 1664)


@pytest.mark.parametrize("damage", ["empty", "cut"])
def test_view_of_a_damaged_slide_says_so_in_one_line(
    damage, make_napari_viewer, monkeypatch, tmp_path, capsys
):
    from tests.slide.damage import truncated_pyramid

    made = []

    def make_viewer(**kwargs):
        made.append(make_napari_viewer(**kwargs))
        return made[-1]

    monkeypatch.setattr(napari, "Viewer", make_viewer)
    monkeypatch.setattr(napari, "run", lambda: None)
    if damage == "empty":
        slide = tmp_path / "empty.tif"
        slide.write_bytes(b"")
    else:  # its first tiles decode, the rest of the file is gone
        image = np.random.default_rng(0).integers(0, 255, (512, 384, 3), dtype=np.uint8)
        slide = truncated_pyramid(image, tmp_path / "cut.tif", 0.3)

    assert main(["view", str(slide), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"napari-conch view: error: {slide}"), err
    assert all(not hasattr(viewer.window, "_qt_window") for viewer in made)  # closed again


@pytest.mark.parametrize("prompts", [[""], ["   "], ["stroma", "stroma"]])
def test_view_refuses_prompts_that_make_no_map_before_any_window(prompts, monkeypatch, capsys):
    monkeypatch.setattr(napari, "Viewer", lambda **kw: pytest.fail("no window for bad prompts"))
    args = [arg for prompt in prompts for arg in ("--prompt", prompt)]
    assert main(["view", *args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("napari-conch view: error: --prompt: "), err


def test_view_of_an_empty_slide_name_says_so_before_any_window(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # Path("") is "."
    monkeypatch.setattr(napari, "Viewer", lambda **kw: pytest.fail("no window for no slide"))
    assert main(["view", "", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "napari-conch view: error: no slide path given (an empty name): " + (
        "give a slide file or zarr folder"
    )
