"""The session without Qt: state, signals, and the flow load -> open -> embed -> prompt -> export.

The tiny reference model on the real CC0 slide (512 px tiles: 30 tiles, a second of work).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from napari_conch.engine.options import DEFAULTS, RunOptions
from napari_conch.engine.progress import TISSUE
from napari_conch.engine.prompts import text_queries
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.engine.session.maps import tile_at
from napari_conch.engine.session.prompt_request import PromptRequest
from napari_conch.engine.session.session import Session
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.errors import InputError, SlideError


def _recorder(session: Session) -> dict[str, list]:
    """Every signal's emissions, by signal name."""
    seen: dict[str, list] = defaultdict(list)
    for name in (
        "model_changed",
        "slide_changed",
        "options_changed",
        "store_changed",
        "running_changed",
        "progress",
        "tiles_added",
        "run_finished",
        "prompts_changed",
        "result_changed",
    ):
        getattr(session.events, name).connect(
            lambda *args, _name=name: seen[_name].append(args[0] if len(args) == 1 else args)
        )
    return seen


@pytest.fixture
def session(svs_path, tiny_model, tmp_path):
    """A session on the real slide with the tiny model, 512 px tiles, stores under tmp."""
    s = Session(RunOptions(tile_size=512, min_tissue=0.1, store_root=str(tmp_path)))
    s.set_model(tiny_model)
    s.open_slide(svs_path)
    return s


def test_a_new_session_is_empty_and_says_what_is_missing():
    s = Session()
    assert s.options == DEFAULTS and s.model is None and s.slide is None
    assert s.store is None and s.result is None and not s.running
    with pytest.raises(InputError, match="load a model first"):
        s.grid  # noqa: B018
    with pytest.raises(InputError, match="choose a file to export to"):
        s.export("")
    with pytest.raises(InputError, match="nothing to export yet"):
        s.export("map.csv")


def test_state_changes_are_announced(svs_path, tiny_model, tmp_path):
    s = Session()
    seen = _recorder(s)
    s.set_model(tiny_model)
    s.set_model(tiny_model)  # the same model: nothing to announce
    assert seen["model_changed"] == [tiny_model]
    slide = s.open_slide(svs_path)
    assert seen["slide_changed"] == [slide] and s.slide_source == svs_path
    # the tile size is the model's own unless an option sets it
    assert s.tile_size == tiny_model.image_size == DEFAULTS.tile_size_for(tiny_model)
    assert s.grid.tile_size == tiny_model.image_size
    options = s.set_options(tile_size=512, store_root=str(tmp_path))
    assert seen["options_changed"] == [options] and s.grid.tile_size == 512
    assert s.set_options(tile_size=512) is options and len(seen["options_changed"]) == 1
    # a bad value is refused and changes nothing
    with pytest.raises(InputError, match="min_tissue"):
        s.set_options(min_tissue=2.0)
    assert s.options is options
    # options the slide cannot take are said when the grid is made
    s.set_options(level=3)
    with pytest.raises(SlideError):
        s.grid  # noqa: B018
    s.set_options(level=None)
    # opening a store announces it; a new grid closes it
    assert s.open_store(create=False) is None
    store = s.open_store()
    assert seen["store_changed"] == [store] and s.index is not None and s.index.size == 0
    assert s.open_store() is store
    s.set_options(stride=256)
    assert s.store is None and seen["store_changed"][-1] is None
    s.set_slide(None)
    assert s.slide is None and seen["slide_changed"][-1] is None


def test_embed_prompt_example_export(session, tiny_model, tmp_path):
    seen = _recorder(session)
    summary = session.embed()
    store = EmbeddingStore.open(session.store.path)
    counts = store.counts()
    assert counts["done"] == summary.done > 0 and counts["pending"] == 0
    assert seen["running_changed"] == [True, False] and seen["run_finished"] == [summary]
    assert len(seen["progress"]) >= 2 and seen["progress"][-1].done == summary.done
    added = sum(len(rows) for rows, _ in seen["tiles_added"])
    assert added == summary.computed == session.index.size

    request = PromptRequest(("tumor", "stroma", "fat"))
    assert session.missing_texts(request) == ["tumor", "stroma", "fat"]
    result = session.query(request)
    assert seen["prompts_changed"] == [request] and seen["result_changed"] == [result]
    assert session.missing_texts() == []
    names, queries = text_queries(tiny_model, list(request.prompts), "conch")
    expected = run_query(
        QueryIndex.from_store(store), names, queries, store.grid,
        logit_scale=float(tiny_model.logit_scale),
    )  # fmt: skip
    np.testing.assert_allclose(result.cell_cosine, expected.cell_cosine, atol=1e-5)
    np.testing.assert_array_equal(result.cell_labels, expected.cell_labels)

    # more like this: the tile itself is the most similar
    row, col = np.argwhere(store.status() == TileStatus.DONE)[0]
    x0, y0, x1, y1 = store.grid.tile_box(row, col)
    assert session.tile_at((y0 + y1) / 2, (x0 + x1) / 2) == (row, col)
    example = session.show_example(row, col)
    assert session.showing_example and session.result is example
    assert example.cell_cosine[0, row, col] == pytest.approx(1.0, abs=1e-4)
    assert session.update_maps() is not None and not session.showing_example

    out = session.export(tmp_path / "map.csv")
    assert out.read_text().startswith("row,col,x0,y0,x1,y1,tumor")

    # the prompts cleared: their maps go (and come back with the prompts)
    session.set_prompts(None)
    assert session.result is None and seen["result_changed"][-1] is None
    assert session.query(request) is not None and session.result is not None
    with pytest.raises(InputError, match="choose a file to export to"):
        session.export(" ")
    with pytest.raises(InputError, match=r"choose a file to export to .*: .* is a folder"):
        session.export(tmp_path)

    # found again, whatever grid is asked now; a second run computes nothing
    other = Session(RunOptions(store_root=str(tmp_path)))
    other.set_model(tiny_model)
    other.open_slide(session.slide.path)
    assert other.find_store().path == store.path
    again = session.embed()
    assert again.computed == 0 and again.done == summary.done


@pytest.mark.slow
def test_store_counts_read_the_store_of_the_slide_without_opening_it(session, svs_path):
    assert Session().store_counts() is None  # no slide, no model
    assert session.store_counts() is None  # not embedded yet: nothing made by asking
    assert not any(Path(session.options.store_root).iterdir())
    summary = session.embed()
    assert session.store_counts() == session.store.counts()
    assert session.store_counts()["done"] == summary.done
    other = Session(session.options)  # another viewer: no store open there
    other.set_model(session.model)
    other.open_slide(svs_path)
    assert other.store_counts() == session.store.counts() and other.store is None


def test_prompt_sets_with_synonyms(session, tiny_model):
    from napari_conch.engine.prompts import PromptSet

    session.embed()
    store = session.store
    prompt_set = PromptSet(
        {"tumour": ("tumor", "carcinoma"), "fat": ("adipose tissue",)},
        ("an H&E image of CLASSNAME.", "CLASSNAME"),
    )
    request = PromptRequest.from_prompt_set(prompt_set, background="glass")
    assert request.classes == ["tumour", "fat", "glass"]
    assert request.sentences("tumour") == (
        "an H&E image of tumor.", "tumor", "an H&E image of carcinoma.", "carcinoma",
    )  # fmt: skip
    result = session.query(request)
    names, queries = text_queries(tiny_model, prompt_set)
    bg_names, bg = text_queries(tiny_model, ["glass"], "conch")
    expected = run_query(
        QueryIndex.from_store(store), [*names, *bg_names], np.vstack([queries, bg]),
        store.grid, logit_scale=float(tiny_model.logit_scale), background="glass",
    )  # fmt: skip
    np.testing.assert_allclose(result.cell_cosine, expected.cell_cosine, atol=1e-5)
    np.testing.assert_array_equal(result.cell_labels, expected.cell_labels)
    # a plain prompt named like a class of the set is another query: not taken from the cache
    assert session.missing_texts(PromptRequest(("tumour",))) == ["tumour"]


def test_a_run_fixes_the_state_until_it_ends(session):
    cancel = threading.Event()
    events = session.embed_run(cancel=cancel)
    assert session.running
    for change in (
        lambda: session.set_options(stride=256),
        lambda: session.set_slide(None),
        lambda: session.set_model(None),
        lambda: session.embed_run(),
    ):
        with pytest.raises(InputError, match="embedding run is under way"):
            change()
    seen = _recorder(session)
    first, vectors = next(events)  # drained by hand, as a worker thread does
    while first.phase == TISSUE:  # the tissue search: no tiles, nothing for the index
        assert len(first.rows) == 0 and vectors.shape == (0, session.model.embed_dim)
        session.add_progress(first, vectors)
        first, vectors = next(events)
    assert len(seen["progress"]) >= 3 and seen["progress"][-1].fraction == 1.0
    assert session.index.size == 0 and not seen["tiles_added"]
    session.add_progress(first, vectors)
    event, vectors = next(events)
    assert vectors.shape == (len(event.rows), session.model.embed_dim)
    assert np.isfinite(vectors).all()
    session.add_progress(event, vectors)
    assert session.index.size == len(event.rows)
    cancel.set()
    after = []  # the tiles computed but not yet written (grouped writes) come in one last event
    with pytest.raises(StopIteration) as stop:
        while True:
            event, vectors = next(events)
            session.add_progress(event, vectors)
            after.append(event)
    assert len(after) <= 1
    summary = stop.value.value
    session.finish_run(summary)
    assert session.index.size == summary.done  # every tile written is in the live index
    assert summary.cancelled and not session.running
    assert session.store.attrs["last_run"]["cancelled"] is True
    session.set_options(stride=256)  # allowed again


def test_a_failed_run_ends_cleanly(session, monkeypatch):
    """The engine scans the tissue through napari_conch.slide when the run starts."""

    def broken(*_args, **_kwargs):
        raise SlideError("cmu_small_region.svs: unreadable tile (simulated)")

    monkeypatch.setattr("napari_conch.slide.scan_tissue_steps", broken)
    seen = _recorder(session)
    with pytest.raises(SlideError, match="simulated"):
        session.embed()
    assert not session.running and seen["running_changed"] == [True, False]
    assert seen["run_finished"] == [None]


def test_prompt_requests():
    request = PromptRequest.from_text(" tumor \n\nstroma\n", templates=False, background="glass")
    assert request.classes == ["tumor", "stroma", "glass"] and request.templates == "none"
    assert request.threshold is None
    with pytest.raises(InputError, match="more than once"):
        PromptRequest.from_text("tumor\ntumor", templates=True).check()
    with pytest.raises(InputError, match="at least one prompt"):
        PromptRequest.from_text("  \n", templates=True).check()
    s = Session()
    with pytest.raises(InputError, match="more than once"):
        s.set_prompts(PromptRequest(("a", "a")))
    s.set_prompts(PromptRequest(()))
    assert s.request is None


def test_tile_under_a_point(svs_path):
    from napari_conch.slide import make_grid, open_slide

    slide = open_slide(svs_path)
    grid = make_grid(slide, tile_size=512, stride=256)
    assert tile_at(grid, 10, 10) == (0, 0)
    assert tile_at(grid, 600, 300) == (1, 0)  # centre (512, 256) of tile (1, 0) is nearest
    assert tile_at(grid, -5, 10) is None
    assert tile_at(grid, float("nan"), 10) is None


def _layer_like_slide(svs_path):
    """An in-memory slide over arrays, without an MPP: what a napari layer from another reader
    (or an array) becomes (``_napari/layers/slide_source.py``)."""
    import dask.array as da

    from napari_conch.slide import Slide, open_slide
    from napari_conch.slide.layout import make_layout
    from napari_conch.slide.readers import ArrayReader

    with open_slide(svs_path) as svs:
        pixels = svs.read_region(0, 0, 0, 1024, 1024)
    layout = make_layout("YXC", pixels.shape, pixels.dtype, "layer")
    return Slide("layer", [da.from_array(pixels)], [ArrayReader(pixels, layout)], mpp=None,
                 mpp_source="unknown", fingerprint="layer-without-mpp")  # fmt: skip


def test_a_stated_slide_mpp_applies_to_a_slide_from_a_layer(svs_path, tiny_model, tmp_path):
    s = Session(RunOptions(tile_size=512, store_root=str(tmp_path), mpp=1.0))
    s.set_model(tiny_model)
    slide = _layer_like_slide(svs_path)
    s.set_slide(slide, source="a layer")
    with pytest.raises(SlideError):  # an --mpp grid on a slide without an MPP
        s.grid  # noqa: B018
    s.set_options(slide_mpp=0.5)  # stated after the slide: applied to it
    assert slide.mpp == 0.5 and slide.mpp_source == "caller"
    assert s.grid.mpp == 1.0 and s.grid.resample == 2.0  # 1 um/px tiles from 0.5 um/px
    store = s.open_store()
    assert store.signature["slide_mpp"] == 0.5 and store.attrs["slide_mpp"] == 0.5
    s.set_options(slide_mpp=0.25)  # another stated MPP: another grid and store
    assert slide.mpp == 0.25 and s.store is None
    assert s.open_store().signature["slide_mpp"] == 0.25 and s.store.path != store.path
    s.set_options(slide_mpp=None)  # none stated: the slide's own (none) again
    assert slide.mpp is None and slide.mpp_source == "unknown" and s.store is None

    # stated before the slide is given: applied when it is
    other = Session(s.options.replace(slide_mpp=0.5))
    other.set_model(tiny_model)
    other.set_slide(_layer_like_slide(svs_path), source="a layer")
    assert other.slide.mpp == 0.5 and other.open_store().path == store.path


def test_a_stated_slide_mpp_overrides_the_files_and_clearing_it_restores_it(session):
    own = session.slide.mpp
    assert own == pytest.approx(0.499) and session.slide.mpp_source == "aperio"
    session.set_options(slide_mpp=0.3)
    assert session.slide.mpp == 0.3 and session.slide.mpp_source == "caller"
    session.set_options(slide_mpp=None)
    assert session.slide.mpp == own and session.slide.mpp_source == "aperio"
