"""The prompt highlighter in a real napari viewer (Xvfb): the tiny model on the real SVS."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_conch._napari.layers import map_layers
from napari_conch.engine.progress import TISSUE, RateMeter, tissue_event
from napari_conch.engine.prompts import text_queries
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus

pytestmark = pytest.mark.gui

WIDGET = "Prompt highlighter"
WAIT_MS = 20_000


@pytest.fixture
def viewer_widget(make_napari_viewer, svs_path, tiny_checkpoint, tokenizer_path, tmp_path, qtbot):
    """A viewer with the real SVS and the widget, the tiny model loaded, stores under tmp."""
    viewer = make_napari_viewer()
    [slide_layer] = viewer.open(str(svs_path), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    ckpt, config = tiny_checkpoint
    m = widget.model_panel
    m.source.value = str(ckpt)
    m.config.value = config
    m.tokenizer.value = tokenizer_path
    m.device.value = "cpu"
    widget.load_model()
    qtbot.waitUntil(lambda: widget.model is not None, timeout=WAIT_MS)
    s = widget.slide_panel
    s.store_root.value = tmp_path
    s.tile_size.value = 512
    s.stride.value = 512
    s.min_tissue.value = 0.1
    assert widget.slide_layer is slide_layer
    yield viewer, widget, slide_layer
    widget.cancel_embedding()
    qtbot.waitUntil(lambda: not widget.embedding, timeout=WAIT_MS)


def _embed(widget, qtbot, **kwargs):
    worker = widget.start_embedding(**kwargs)
    assert worker is not None, widget.errors
    qtbot.waitUntil(lambda: not widget.embedding, timeout=WAIT_MS)
    return worker


def _type(widget, qtbot, text, layer_name=map_layers.HEATMAP):
    widget.prompt_panel.text.value = text
    wanted = text.split("\n")
    qtbot.waitUntil(
        lambda: (
            widget.result is not None
            and widget.result.names[: len(wanted)] == wanted
            and not widget.drawing  # the layers are updated one per event-loop turn
        ),
        timeout=WAIT_MS,
    )
    assert widget.viewer.layers[layer_name].visible
    return widget.viewer.layers[layer_name]


def _shown(cells, result, slide_layer):
    """A map as the dock shows it: cut at the image's edges."""
    return map_layers.clip_to_image(cells, result.geometry, map_layers.image_shape(slide_layer))[0]


def _engine_result(store, model, prompts):
    names, queries = text_queries(model, prompts, "conch")
    index = QueryIndex.from_store(store)
    return run_query(index, names, queries, store.grid, logit_scale=float(model.logit_scale))


@pytest.mark.slow
def test_embed_prompt_labels_export(viewer_widget, qtbot, tmp_path):
    viewer, widget, slide_layer = viewer_widget
    assert widget.model_panel.info.tooltip == widget.model.describe()  # the full path
    assert widget.model_panel.info.value.endswith("cpu fp32, captioning decoder")
    assert "pytorch_model.bin" in widget.model_panel.info.value
    assert str(widget.model.source) not in widget.model_panel.info.value
    assert "Captioning decoder loaded" in widget.model_panel.note.value  # the tiny model has one
    assert slide_layer.metadata["napari_conch"]["mpp"] == pytest.approx(0.499, abs=1e-3)

    _embed(widget, qtbot)  # its event-loop pauses: the "embed" step of bench/stalls.py
    assert not widget.errors

    session = widget.session
    store = EmbeddingStore.open(session.store.path)
    counts = store.counts()
    assert counts["done"] > 0 and counts["pending"] == 0
    height, width = session.slide.shape
    assert session.grid.shape == (-(-height // 512), -(-width // 512))

    heat = _type(widget, qtbot, "tumor")
    expected = _engine_result(store, widget.model, ["tumor"])
    np.testing.assert_allclose(
        heat.data, _shown(expected.cell_cosine[0], expected, slide_layer), atol=1e-5,
        equal_nan=True,
    )  # fmt: skip
    # the heatmap's world extent is the slide's (in microns here): edge cells are cut there
    scale, translate = np.asarray(slide_layer.scale), np.asarray(slide_layer.translate)
    extent = heat.extent
    edges = extent.world + np.array([[-0.5], [0.5]]) * extent.step
    image = np.array([[0, 0], list(map_layers.image_shape(slide_layer))])
    step = heat.scale[-1] / scale[-1]  # a sub-cell, in level-0 pixels
    assert np.abs((edges - translate) / scale + 0.5 - image).max() <= step / 2
    assert np.isnan(heat.data).any() and np.isfinite(heat.data).any()
    assert not heat.colorbar.visible  # the colour bar is in the dock (see layers.upsert_image)
    assert "<table" in widget.prompt_panel.legend.value

    heat_hidden_with_labels = []  # whether the labels were on screen when the heatmap went
    heat.events.visible.connect(
        lambda e: heat_hidden_with_labels.append(
            map_layers.LABELS in viewer.layers and viewer.layers[map_layers.LABELS].visible
        )
    )
    labels = _type(widget, qtbot, "tumor\nstroma\nfat", map_layers.LABELS)
    assert heat_hidden_with_labels == [True]  # never a turn without a map
    names_in_viewer = [ly.name for ly in viewer.layers]
    assert (
        names_in_viewer.count(map_layers.HEATMAP) == 1 and map_layers.PROBABILITY in names_in_viewer
    )
    # the labels are the map; the class maps wait under them, hidden, until their eye is ticked
    assert (
        not viewer.layers[map_layers.HEATMAP].visible
        and not viewer.layers[map_layers.PROBABILITY].visible
    )
    assert names_in_viewer.index(map_layers.PROBABILITY) < names_in_viewer.index(
        map_layers.LABELS
    )  # under
    assert "their eye" in widget.prompt_panel.legend.value
    _type(widget, qtbot, "necrosis")  # one prompt again: the similarity is the map, shown again
    assert map_layers.LABELS not in viewer.layers and map_layers.PROBABILITY not in viewer.layers
    _type(widget, qtbot, "tumor\nstroma\nfat", map_layers.LABELS)
    assert not viewer.layers[map_layers.HEATMAP].visible
    viewer.layers[map_layers.HEATMAP].visible = True  # the user's choice stays as prompts change
    _type(widget, qtbot, "tumor\nstroma", map_layers.LABELS)
    assert (
        viewer.layers[map_layers.HEATMAP].visible
        and not viewer.layers[map_layers.PROBABILITY].visible
    )
    labels = _type(widget, qtbot, "tumor\nstroma\nfat", map_layers.LABELS)
    names_in_viewer = [ly.name for ly in viewer.layers]
    assert names_in_viewer.index(map_layers.PROBABILITY) < names_in_viewer.index(map_layers.LABELS)
    assert list(labels.features["class"]) == ["none", "tumor", "stroma", "fat"]
    expected = _engine_result(store, widget.model, ["tumor", "stroma", "fat"])
    np.testing.assert_array_equal(labels.data, _shown(expected.cell_labels, expected, slide_layer))
    np.testing.assert_allclose(
        viewer.layers[map_layers.PROBABILITY].data,
        _shown(expected.cell_probs[0], expected, slide_layer),
        atol=1e-5,
        equal_nan=True,
    )
    # a CONCH prompt file replaces the typed prompts
    prompt_file = tmp_path / "classes.json"
    prompt_file.write_text(json.dumps({"classnames": {"tumour": ["tumor", "carcinoma"]}}))
    widget.prompt_panel.prompt_file.value = prompt_file
    qtbot.waitUntil(
        lambda: widget.result is not None and list(widget.result.names) == ["tumour"],
        timeout=WAIT_MS,
    )
    widget.prompt_panel.prompt_file.value = None
    qtbot.waitUntil(
        lambda: list(widget.result.names) == ["tumor", "stroma", "fat"] and not widget.drawing,
        timeout=WAIT_MS,
    )
    # the legend, in the dock and on the canvas; the colour range shared by the prompts
    assert map_layers.legend_shown(viewer) == ["tumor", "stroma", "fat"]
    legend = widget.prompt_panel.legend.value
    assert all(name in legend for name in ("tumor", "stroma", "fat"))
    finite = expected.cell_cosine[np.isfinite(expected.cell_cosine)]
    limits = viewer.layers[map_layers.HEATMAP].contrast_limits
    np.testing.assert_allclose(limits, (finite.min(), finite.max()), atol=1e-6)
    widget.prompt_panel.range.value = "per prompt"
    qtbot.waitUntil(lambda: not widget.drawing, timeout=WAIT_MS)  # redrawn in the next turns
    own = expected.cell_cosine[0][np.isfinite(expected.cell_cosine[0])]
    limits = viewer.layers[map_layers.HEATMAP].contrast_limits
    np.testing.assert_allclose(limits, (own.min(), own.max()), atol=1e-6)

    widget.prompt_panel.show_class.value = "stroma"
    qtbot.waitUntil(lambda: not widget.drawing, timeout=WAIT_MS)
    np.testing.assert_allclose(
        viewer.layers[map_layers.HEATMAP].data,
        _shown(expected.cell_cosine[1], expected, slide_layer),
        atol=1e-5,
        equal_nan=True,
    )
    assert [ly.name for ly in viewer.layers].count(map_layers.LABELS) == 1

    # the value under the cursor
    r, c = np.argwhere(np.isfinite(expected.cell_cosine[0]))[0]
    center = (np.array([r, c]) + 0.5) * session.grid.cell_size_level0 - 0.5
    viewer.cursor.position = tuple(center * scale + translate)
    assert "tumor" in widget.prompt_panel.cursor.value
    assert widget.cursor_status.text in str(viewer.status)
    # moved: the new values replace the old ones in the status bar, once
    viewer.cursor.position = tuple((center + session.grid.cell_size_level0) * scale + translate)
    viewer.cursor.position = tuple(center * scale + translate)
    assert str(viewer.status).count("CONCH:") == 1

    widget.export_panel.path.line_edit.value = ""  # the user cleared the box
    assert widget.export() is None
    assert widget.errors[-1] == "choose a file to export to (.tif, .geojson, .csv or .npy)"
    widget.export_panel.path.value = ""  # magicgui makes this the current folder
    assert widget.export() is None
    assert widget.errors[-1].startswith("choose a file to export to (.tif, .geojson, .csv or .npy)")
    for suffix in (".tif", ".csv", ".geojson"):
        widget.export_panel.path.value = tmp_path / f"map{suffix}"
        assert widget.export() is not None  # written in a worker
        qtbot.waitUntil(lambda: not widget.busy("export"), timeout=WAIT_MS)
        assert (tmp_path / f"map{suffix}").is_file()
        assert widget.errors[-1].startswith("choose a file")  # no new error
    widget.export_panel.tiff_as.value = "colours"  # the RGBA pyramid QuPath/OpenSlide open
    widget.export_panel.path.value = tmp_path / "colours.tif"
    assert widget.export() is not None
    qtbot.waitUntil(lambda: not widget.busy("export"), timeout=WAIT_MS)
    with (
        tifffile.TiffFile(tmp_path / "colours.tif") as rgb,
        tifffile.TiffFile(tmp_path / "map.tif") as values,
    ):
        assert rgb.pages[0].dtype == np.uint8 and rgb.pages[0].shape[-1] == 4
        assert values.pages[0].dtype == np.float32
    collection = json.loads((tmp_path / "map.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    assert (tmp_path / "map.csv").read_text().startswith("row,col,x0,y0,x1,y1,tumor")

    # more like this: the tile's own cell is the most similar (cosine 1)
    result = widget.more_like_this_at(tuple(center * scale + translate))
    assert result is not None
    assert result.cell_cosine[0, r, c] == pytest.approx(1.0, abs=1e-4)
    qtbot.waitUntil(lambda: not widget.drawing, timeout=WAIT_MS)
    assert np.nanmax(viewer.layers[map_layers.HEATMAP].data) == pytest.approx(1.0, abs=1e-4)
    assert map_layers.LABELS not in viewer.layers and map_layers.legend_shown(viewer) == []
    assert [ly.name for ly in viewer.layers].count(map_layers.HEATMAP) == 1

    # reopening: the store is found and reused, nothing recomputed
    widget.session.close_store()
    worker = _embed(widget, qtbot)
    assert worker is not None
    assert EmbeddingStore.open(store.path).attrs["last_run"]["computed"] == 0
    done = EmbeddingStore.open(store.path).counts()["done"]
    status = widget.slide_panel.status.value
    assert status == f"Nothing to compute: {done} tiles already embedded."
    assert "tiles/s" not in status


@pytest.mark.slow
def test_the_status_says_how_far_the_chosen_slide_is_embedded(viewer_widget, qtbot):
    """Choosing another slide, or opening the dock again, shows that slide's embedding (it
    showed the last run's figures, of whichever slide that was, or nothing)."""
    viewer, widget, slide_layer = viewer_widget
    s = widget.slide_panel
    assert s.status.value == "Not embedded yet with this model and these options."
    _embed(widget, qtbot)
    done, path = widget.session.store.counts()["done"], widget.session.store.path
    other = viewer.add_image(np.full((600, 700, 3), 120, np.uint8), name="other", rgb=True)
    assert widget.session.slide_source is other  # the active layer is the slide
    assert s.status.value == "Not embedded yet with this model and these options."
    assert s.progress.value == 0
    s.layer.value = slide_layer
    assert s.status.value == f"{done}/{done} tissue tiles embedded."
    assert (s.progress.value, s.progress.max) == (done, done)
    again = type(widget)(viewer)  # the dock opened again: a new one on the same session
    again.finish_building()
    assert again.slide_panel.status.value == f"{done}/{done} tissue tiles embedded."
    assert again.slide_panel.progress.value == done
    with EmbeddingStore.open(path, writable=True) as store:
        rows, cols = np.nonzero(store.status() == TileStatus.DONE)
        store.set_status(rows[:1], cols[:1], TileStatus.FAILED)  # as an unreadable tile is
    s.layer.value = other
    s.layer.value = slide_layer
    assert s.status.value == f"{done - 1}/{done} tissue tiles embedded, 1 failed."
    assert (s.progress.value, s.progress.max) == (done, done)


def test_the_end_of_run_toast_says_it_all_in_its_first_line(viewer_widget, qtbot, monkeypatch):
    """napari folds a toast to its first line: that line is the whole news, the store's path
    comes under it (it read "17/17 tissue tiles embedded; store:" before)."""
    from napari_conch._napari.docks import base

    shown = []
    monkeypatch.setattr(base, "show_info", shown.append)
    _, widget, _ = viewer_widget
    _embed(widget, qtbot)
    first, *rest = shown[-1].splitlines()
    done = widget.session.store.counts()["done"]
    assert first == f"{done}/{done} tissue tiles embedded."
    assert rest[0] == "Store:" and "".join(rest[1:]) == str(widget.session.store.path)


@pytest.mark.slow
def test_clearing_the_prompts_takes_their_maps_away(viewer_widget, qtbot):
    viewer, widget, _ = viewer_widget
    _embed(widget, qtbot)
    _type(widget, qtbot, "tumor\nstroma", map_layers.LABELS)
    assert map_layers.legend_shown(viewer) == ["tumor", "stroma"]
    widget.prompt_panel.text.value = "  \n "  # nothing left to map
    qtbot.waitUntil(lambda: widget.result is None and not widget.drawing, timeout=5000)
    assert not {map_layers.HEATMAP, map_layers.PROBABILITY, map_layers.LABELS} & {
        layer.name for layer in viewer.layers
    }
    assert map_layers.legend_shown(viewer) == [] and widget.prompt_panel.legend.value == ""
    _type(widget, qtbot, "tumor")  # and they come back with prompts
    assert not widget.errors


@pytest.mark.slow
def test_maps_of_a_closed_store_are_hidden_and_reused_by_the_next_run(viewer_widget, qtbot):
    """New run options close the store under the same prompts: the maps are hidden (no stale
    map, legend or key on show) and the next run's maps reuse the layers (a removal and a new
    layer each pause napari 50-100 ms); cleared prompts then take them away."""
    viewer, widget, _ = viewer_widget
    _embed(widget, qtbot)
    labels = _type(widget, qtbot, "tumor\nstroma", map_layers.LABELS)
    kept = {name: viewer.layers[name] for name in map_layers.PROMPT_MAP_LAYERS}
    before = labels.data.shape
    s = widget.slide_panel
    s.tile_size.value = s.stride.value = 256  # another grid: the store closes
    qtbot.waitUntil(lambda: widget.result is None and not widget.drawing, timeout=WAIT_MS)
    assert {name: viewer.layers[name] for name in map_layers.PROMPT_MAP_LAYERS} == kept
    assert not any(layer.visible for layer in kept.values())
    assert map_layers.legend_shown(viewer) == [] and widget.prompt_panel.legend.value == ""
    _embed(widget, qtbot)
    qtbot.waitUntil(lambda: widget.result is not None and not widget.drawing, timeout=WAIT_MS)
    assert viewer.layers[map_layers.LABELS] == labels and labels.visible  # the same layer
    assert labels.data.shape != before  # the new grid's map
    assert not kept[map_layers.HEATMAP].visible and not kept[map_layers.PROBABILITY].visible
    assert map_layers.legend_shown(viewer) == ["tumor", "stroma"]
    s.tile_size.value = s.stride.value = 384  # no store at this grid: no map
    qtbot.waitUntil(lambda: widget.result is None and not widget.drawing, timeout=WAIT_MS)
    widget.prompt_panel.text.value = ""  # no map was made since: the kept maps go
    qtbot.waitUntil(
        lambda: not set(map_layers.PROMPT_MAP_LAYERS) & {layer.name for layer in viewer.layers},
        timeout=WAIT_MS,
    )
    assert not widget.errors


@pytest.mark.slow
def test_cancel_keeps_store_consistent(viewer_widget, qtbot):
    _, widget, _ = viewer_widget
    s = widget.slide_panel
    s.tile_size.value = s.stride.value = 128
    s.batch_size.value = 8
    region = widget.visible_region()  # level-0 box of what the canvas shows
    height, width = widget.slide_layer.data.shape[:2]
    assert 0 <= region[0] < region[2] <= width + 1 and 0 <= region[1] < region[3] <= height + 1
    worker = widget.start_embedding(visible_first=True)
    assert worker is not None, widget.errors
    # until the tissue search's first step: a busy bar and the time spent finding tissue
    assert s.status.value.startswith("Finding tissue") and s.progress.max == 0
    searching = []  # the bar and status as each step of the tissue search left them

    def cancel_after_first_batch(item):
        if item[0].phase == TISSUE:
            searching.append((s.progress.value, s.progress.max, s.status.value))
        if item[0].computed > 0:
            widget.cancel_embedding()

    worker.yielded.connect(cancel_after_first_batch)
    qtbot.waitUntil(lambda: not widget.embedding, timeout=WAIT_MS)
    assert len(searching) >= 3 and searching[-1][0] == searching[-1][1] > 1
    assert all(text.startswith("Finding tissue ... ") and " % (" in text for *_, text in searching)
    store = EmbeddingStore.open(widget.session.store.path)
    status = store.status()
    done = status == TileStatus.DONE
    assert 0 < done.sum() < (store.tissue()).sum()
    embeddings = store.embeddings()
    assert np.isfinite(embeddings[done]).all() and np.isnan(embeddings[~done]).all()
    assert store.attrs["last_run"]["cancelled"] is True
    assert "cancelled" in s.status.value.lower()
    assert s.embed.enabled and not s.cancel.enabled

    # still usable: the run resumes and completes
    _embed(widget, qtbot)
    assert EmbeddingStore.open(store.path).counts()["pending"] == 0


def test_the_tissue_search_shows_its_share_done(make_napari_viewer):
    """Driven with made-up events: a busy bar, then the search's steps, then the tiles."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    session, bar, status = widget.session, widget.slide_panel.progress, widget.slide_panel.status
    no_vectors = np.zeros((0, 8), np.float32)
    widget._start_preparing()  # what Embed does once the run's worker is made
    assert bar.max == 0 and status.value.startswith("Finding tissue ... ")
    session.add_progress(tissue_event(0, 120), no_vectors)
    session.add_progress(tissue_event(52, 120), no_vectors)
    assert (bar.value, bar.max) == (52, 120)
    assert status.value.startswith("Finding tissue ... 43 % (") and status.value.endswith(" s)")
    widget._tick_preparing()  # the seconds go on, the share stays
    assert status.value.startswith("Finding tissue ... 43 % (")
    session.add_progress(tissue_event(130, 130), no_vectors)  # a damaged level read again
    assert (bar.value, bar.max) == (130, 130) and "100 %" in status.value
    empty = np.zeros(0, np.int64)
    tiles = RateMeter().event(done=0, total=30, failed=0, computed=0, rows=empty, cols=empty)
    session.add_progress(tiles, no_vectors)
    assert (bar.value, bar.max) == (0, 30) and status.value.startswith("0/30 tiles")
    assert not widget._preparing_timer.isActive()  # no more "Finding tissue" ticks


@pytest.mark.slow
def test_cancel_while_the_tissue_is_searched_stops_the_search(viewer_widget, qtbot, monkeypatch):
    """Cancel pressed during the tissue search: the search stops, no tile is computed."""
    import threading

    import napari_conch.slide as slide_module

    _, widget, _ = viewer_widget
    steps_of = slide_module.scan_tissue_steps
    release = threading.Event()

    taken = []  # the search's steps as they are taken

    def held_after_the_first_step(*args, **kwargs):
        steps = steps_of(*args, **kwargs)
        taken.append(next(steps))
        yield taken[-1]
        release.wait(30)  # the search "takes long" until the test lets it go on
        for step in steps:
            taken.append(step)
            yield step

    monkeypatch.setattr(slide_module, "scan_tissue_steps", held_after_the_first_step)
    s = widget.slide_panel
    worker = widget.start_embedding()
    assert worker is not None, widget.errors
    qtbot.waitUntil(lambda: s.status.value.startswith("Finding tissue ... 0 %"), timeout=WAIT_MS)
    widget.cancel_embedding()
    assert s.status.value.startswith("Cancelling")
    release.set()
    qtbot.waitUntil(lambda: not widget.embedding, timeout=WAIT_MS)
    done, total = taken[-1]
    assert len(taken) == 2 and done < total  # stopped after the step under way, not at the end
    store = EmbeddingStore.open(widget.session.store.path)
    assert store.counts()["done"] == 0
    assert store.attrs["last_run"]["cancelled"] is True and store.attrs["last_run"]["computed"] == 0
    assert "cancelled" in s.status.value.lower() and s.embed.enabled and not s.cancel.enabled


@pytest.mark.slow
def test_user_errors_are_notifications(
    make_napari_viewer, tiny_checkpoint, tokenizer_path, tmp_path, qtbot
):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    assert widget.start_embedding() is None
    assert "load a model first" in widget.errors[-1]

    m = widget.model_panel
    m.source.value = str(tmp_path / "missing.bin")
    assert widget.load_model() is not None
    qtbot.waitUntil(lambda: len(widget.errors) == 2, timeout=WAIT_MS)
    assert "missing.bin" in widget.errors[-1] and "\n" not in widget.errors[-1]
    assert widget.model is None and m.load.enabled

    ckpt, config = tiny_checkpoint
    m.source.value, m.config.value, m.tokenizer.value = str(ckpt), config, tokenizer_path
    widget.load_model()
    qtbot.waitUntil(lambda: widget.model is not None, timeout=WAIT_MS)
    assert widget.start_embedding() is None
    assert "no RGB image layer" in widget.errors[-1]

    viewer.add_image(np.zeros((64, 64), np.float32), name="grey")
    assert widget.slide_layer is None  # only RGB layers are offered
    viewer.add_image(np.full((300, 400, 3), 200, np.uint8), name="photo", rgb=True)
    assert widget.slide_layer.name == "photo"
    widget.slide_panel.mpp.value = 0.5  # the layer has no microns per pixel
    assert widget.start_embedding() is None
    assert "microns-per-pixel" in widget.errors[-1]
    assert widget.slide_panel.embed.enabled and not widget.embedding
    widget.slide_panel.slide_mpp.value = 0.25  # the Slide panel states the layer's MPP
    assert widget.session.options.slide_mpp == 0.25
    assert widget.session.slide.mpp == 0.25 and widget.session.slide.mpp_source == "caller"


@pytest.mark.slow
def test_live_maps_fill_in_during_a_longer_run(viewer_widget, qtbot):
    """A longer run (714 overlapping tiles) while two prompts' maps fill in as batches arrive.

    Its event-loop pauses are measured by the "live maps" step of ``bench/stalls.py``.
    """
    _viewer, widget, _slide_layer = viewer_widget
    widget.slide_panel.tile_size.value = 128
    widget.slide_panel.stride.value = 64
    widget.prompt_panel.text.value = "tumor\nstroma"
    _embed(widget, qtbot)
    qtbot.waitUntil(lambda: map_layers.LABELS in widget.viewer.layers, timeout=WAIT_MS)
    assert not widget.errors
    assert widget.session.store.counts()["pending"] == 0


@pytest.mark.slow
def test_the_key_and_the_canvas_describe_the_map_on_show(viewer_widget, qtbot):
    from napari_conch._napari.layers import on_show

    viewer, widget, _ = viewer_widget
    _embed(widget, qtbot)
    key = widget.prompt_panel.legend
    # one prompt: its similarity map is the map, named with its range on the canvas
    _type(widget, qtbot, "tumor")
    qtbot.waitUntil(lambda: on_show.caption_shown(viewer) is not None, timeout=WAIT_MS)
    low, high = viewer.layers[map_layers.HEATMAP].contrast_limits
    assert on_show.caption_shown(viewer) == (
        f"similarity of 'tumor': {low:.3f} (black) to {high:.3f} (yellow)"
    )
    assert key.value.startswith("similarity of 'tumor'") and "bgcolor" in key.value
    # several: the labels are on show, the key lists their classes and no hidden colour bar
    _type(widget, qtbot, "tumor\nstroma", map_layers.LABELS)
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == ["tumor", "stroma"], timeout=WAIT_MS)
    assert "similarity" not in key.value and "stroma" in key.value
    assert on_show.caption_shown(viewer) is None
    # the user hides the labels and shows the probability map: key and canvas follow
    viewer.layers[map_layers.LABELS].visible = False
    viewer.layers[map_layers.PROBABILITY].visible = True
    qtbot.waitUntil(lambda: key.value.startswith("probability of 'tumor'"), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: map_layers.legend_shown(viewer) == [], timeout=WAIT_MS)
    assert on_show.caption_shown(viewer).startswith("probability of 'tumor': 0.000")
    viewer.layers[map_layers.LABELS].visible = True
    qtbot.waitUntil(lambda: not key.value.startswith("probability"), timeout=WAIT_MS)
    assert "stroma" in key.value and "bgcolor" not in key.value
