"""Streaming embedding of the real SVS with the tiny model into a store."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_conch.engine.embed import (
    NON_FINITE,
    embed,
    embed_slide,
    embed_slide_iter,
    open_job,
    open_store,
)
from napari_conch.engine.options import RunOptions
from napari_conch.engine.progress import EMBED, TISSUE
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus, make_signature
from napari_conch.engine.tiles import region_mask, tile_order
from napari_conch.errors import InputError, SlideError, StoreError

SRC = Path(__file__).resolve().parents[2] / "src"
TILE = 256  # level-0 pixels of the SVS, shrunk to the tiny model's 64 px input


@pytest.fixture(scope="module")
def slide(svs_path):
    from napari_conch.slide import open_slide

    return open_slide(svs_path)


@pytest.fixture(scope="module")
def grid(slide):
    from napari_conch.slide import make_grid

    return make_grid(slide, level=0, tile_size=TILE)


class CountingModel:
    """The tiny model, counting the tiles it is asked to embed."""

    def __init__(self, model):
        self._model = model
        self.tiles = 0
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def embed_images(self, tiles):
        self.calls += 1
        self.tiles += len(tiles)
        return self._model.embed_images(tiles)


class BrokenSlide:
    """The real slide, except that reading one tile's region raises like a corrupt file."""

    def __init__(self, slide, box):
        self._slide, self._box = slide, box

    def __getattr__(self, name):
        return getattr(self._slide, name)

    def read_region(self, level, x0, y0, w, h):
        if (x0, y0) == self._box:
            raise OSError("JPEG decode error: truncated tile")
        return self._slide.read_region(level, x0, y0, w, h)


def reference_embeddings(model, slide, grid, rows, cols):
    """The model's embeddings of tiles read straight from the slide, box by box."""
    tiles = []
    for r, c in zip(rows, cols, strict=True):
        x0, y0, x1, y1 = (round(v) for v in grid.tile_box(r, c))
        tiles.append(slide.read_region(0, x0, y0, x1 - x0, y1 - y0))
    return model.embed_images(np.stack(tiles)).numpy()


@pytest.mark.slow
def test_store_holds_the_model_embeddings_of_each_tissue_tile(tmp_path, slide, grid, tiny_model):
    from napari_conch.slide import tissue_mask

    store = open_store(slide, tiny_model, grid, tmp_path)
    events = []
    summary = embed_slide(
        slide, tiny_model, grid, store, batch_size=8, min_tissue=0.25, on_progress=events.append
    )
    mask, _ = tissue_mask(slide, grid, min_tissue=0.25)
    status = store.status()
    assert summary.total == summary.done == summary.computed == mask.sum() > 0
    assert summary.failed == 0 and not summary.cancelled
    np.testing.assert_array_equal(status == TileStatus.DONE, mask)
    np.testing.assert_array_equal(status == TileStatus.BACKGROUND, ~mask)
    np.testing.assert_array_equal(store.tissue(), mask)
    rows, cols = np.nonzero(mask)
    expected = reference_embeddings(tiny_model, slide, grid, rows, cols)
    np.testing.assert_allclose(store.embeddings()[rows, cols], expected, atol=2e-3)
    assert np.isnan(store.embeddings()[~mask]).all()
    # progress: the tissue search's steps, a first event before any batch, then one per batch
    events = [e for e in events if e.phase == EMBED]
    assert events[0].done == 0 and len(events[0].rows) == 0
    assert events[-1].done == events[-1].total and events[-1].fraction == 1.0
    assert events[-1].eta_s == 0.0 and events[-1].tiles_per_s > 0
    assert sum(len(e.rows) for e in events) == mask.sum()
    assert store.attrs["counts"]["done"] == mask.sum()
    assert store.attrs["logit_scale"] == pytest.approx(tiny_model.logit_scale)


def test_glass_tiles_are_background_and_white(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    embed_slide(slide, CountingModel(tiny_model), grid, store, batch_size=16)
    rows, cols = np.nonzero(store.status() == TileStatus.BACKGROUND)
    assert len(rows) > 0.3 * grid.rows * grid.cols  # most of this slide is glass
    means = [grid.read_tile(slide, r, c).mean() for r, c in zip(rows, cols, strict=True)]
    assert np.median(means) > 200


@pytest.mark.slow
def test_second_run_computes_nothing(tmp_path, slide, grid, tiny_model):
    embed_slide(slide, tiny_model, grid, open_store(slide, tiny_model, grid, tmp_path))
    counting = CountingModel(tiny_model)
    summary = embed_slide(slide, counting, grid, open_store(slide, tiny_model, grid, tmp_path))
    assert counting.tiles == 0 and summary.computed == 0 and summary.done == summary.total > 0


def test_mismatched_store_is_refused(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    other = SimpleNamespace(
        fingerprint="another-model",
        preprocess_info=tiny_model.preprocess_info,
        embed_dim=tiny_model.embed_dim,
    )
    with pytest.raises(StoreError, match="model_fingerprint"):
        EmbeddingStore.open_or_create(store.path, make_signature(slide, other, grid))


def test_cancel_stops_after_the_batch_in_progress(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    stop = threading.Event()
    counting = CountingModel(tiny_model)

    def on_progress(event):
        if event.computed:
            stop.set()

    summary = embed_slide(
        slide, counting, grid, store, batch_size=4, cancel=stop, on_progress=on_progress
    )
    assert summary.cancelled and summary.computed == 4 and counting.calls == 1
    assert (store.status() == TileStatus.DONE).sum() == 4
    assert store.attrs["last_run"]["cancelled"] is True
    rest = embed_slide(slide, counting, grid, store, batch_size=16, cancel=lambda: False)
    assert rest.done == rest.total and rest.computed == rest.total - 4


@pytest.mark.slow
def test_the_tissue_search_comes_first_as_steps_of_its_own(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    events = []
    summary = embed_slide(slide, tiny_model, grid, store, batch_size=8, on_progress=events.append)
    phases = [e.phase for e in events]
    tissue = events[: phases.index(EMBED)]
    assert len(tissue) >= 3 and set(phases[len(tissue) :]) == {EMBED}  # then only tiles
    assert all(e.phase == TISSUE and len(e.rows) == len(e.cols) == 0 for e in tissue)
    assert all(e.computed == e.failed == 0 and e.eta_s is None for e in tissue)
    fractions = [e.fraction for e in tissue]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert sum(len(e.rows) for e in events) == summary.computed


@pytest.mark.slow
def test_cancel_during_the_tissue_search_stops_it_and_computes_nothing(
    tmp_path, slide, grid, tiny_model
):
    store = open_store(slide, tiny_model, grid, tmp_path)
    cancel = threading.Event()
    events = []

    def cancel_at_the_first_step(event):
        events.append(event)
        cancel.set()

    summary = embed_slide(
        slide, tiny_model, grid, store, batch_size=8, cancel=cancel,
        on_progress=cancel_at_the_first_step,
    )  # fmt: skip
    assert [e.phase for e in events] == [TISSUE]  # no further step of the search, no tile
    assert summary.cancelled and summary.computed == 0 and summary.done == 0
    assert (store.status() == TileStatus.DONE).sum() == 0
    assert store.attrs["last_run"]["cancelled"] is True and store.attrs["last_run"]["computed"] == 0
    rest = embed_slide(slide, tiny_model, grid, store, batch_size=8)  # the next run does it all
    assert rest.done == rest.total > 0 and not rest.cancelled


def _next_tiles(events):
    """The next event of the tiles, past those of the tissue search."""
    event = next(events)
    while event.phase == TISSUE:
        event = next(events)
    return event


def test_closing_the_generator_stops_cleanly(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    events = embed_slide_iter(slide, tiny_model, grid, store, batch_size=4)
    _next_tiles(events)
    _next_tiles(events)
    events.close()  # what a GUI worker's quit() does
    assert (store.status() == TileStatus.DONE).sum() == 4
    assert store.attrs["last_run"]["computed"] == 4


@pytest.mark.slow
def test_unreadable_tile_is_failed_counted_and_retried(tmp_path, slide, grid, tiny_model):
    from napari_conch.slide import tissue_mask

    mask, _ = tissue_mask(slide, grid, min_tissue=0.25)
    bad = tuple(int(v) for v in np.argwhere(mask)[len(np.argwhere(mask)) // 2])
    x, y = grid.level_origin(*bad)
    store = open_store(slide, tiny_model, grid, tmp_path)
    summary = embed_slide(BrokenSlide(slide, (x, y)), tiny_model, grid, store, batch_size=8)
    assert summary.failed == 1 and summary.failed_tiles[0][:2] == bad
    assert "truncated tile" in summary.failed_tiles[0][2]
    status = store.status()
    assert status[bad] == TileStatus.FAILED
    assert (status == TileStatus.DONE).sum() == mask.sum() - 1
    assert np.isnan(store.embeddings()[bad]).all()
    again = embed_slide(slide, tiny_model, grid, store)
    assert again.computed == 1 and store.status()[bad] == TileStatus.DONE


@pytest.mark.slow
def test_tiles_inside_the_region_come_first(tmp_path, slide, grid, tiny_model):
    from napari_conch.slide import tissue_mask

    mask, _ = tissue_mask(slide, grid, min_tissue=0.25)
    x0, y0, _, _ = grid.tile_box(grid.rows // 2, grid.cols // 2)
    region = (x0, y0, slide.shape[1], slide.shape[0])  # the bottom-right part
    inside = region_mask(grid, region) & mask
    assert 0 < inside.sum() < mask.sum()
    store = open_store(slide, tiny_model, grid, tmp_path)
    order = []
    embed_slide(
        slide,
        tiny_model,
        grid,
        store,
        batch_size=3,
        region=region,
        on_progress=lambda e: order.extend(zip(e.rows.tolist(), e.cols.tolist(), strict=True)),
    )
    first = {tuple(t) for t in order[: inside.sum()]}
    assert first == {tuple(t) for t in np.argwhere(inside).tolist()}
    assert len(order) == mask.sum()


def test_tile_order_goes_block_by_block():
    grid = SimpleNamespace(shape=(40, 40))
    todo = np.ones((40, 40), bool)
    rows, cols = tile_order(todo, grid, None, block=16)
    assert (rows[:256] < 16).all() and (cols[:256] < 16).all()
    assert list(zip(rows[:3], cols[:3], strict=True)) == [(0, 0), (0, 1), (0, 2)]
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == 1600


def test_bad_options_are_user_errors(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    for bad in ({"batch_size": 0}, {"min_tissue": 1.5}, {"num_readers": 0}, {"region": (1, 2)}):
        with pytest.raises(InputError):
            embed_slide(slide, tiny_model, grid, store, **bad)
    with pytest.raises(InputError, match="unknown run option"):
        embed_slide(slide, tiny_model, grid, store, batchsize=3)
    with pytest.raises(InputError, match="expected a RunOptions"):
        embed_slide(slide, tiny_model, grid, store, {"batch_size": 3})
    with pytest.raises(SlideError, match="no such file"):
        embed(tmp_path / "missing.svs", "unused")


def test_bad_options_create_nothing_on_disk(tmp_path, svs_path, tiny_checkpoint):
    ckpt, config = tiny_checkpoint
    root = tmp_path / "stores"
    for bad in ({"batch_size": 0}, {"min_tissue": 2}, {"tile_size": -1}, {"level": 0, "mpp": 1}):
        with pytest.raises(InputError):
            embed(svs_path, ckpt, config=config, store_root=root, **bad)
    assert not root.exists()


def test_options_object_and_overrides(tmp_path, svs_path, tiny_checkpoint, tiny_model):
    ckpt, config = tiny_checkpoint
    options = RunOptions(level=0, tile_size=TILE, batch_size=16, device="cpu")
    job = open_job(svs_path, ckpt, options, config=config, store_root=tmp_path)
    assert job.options == options.replace(store_root=str(tmp_path))
    assert job.grid.tile_size == TILE and job.store.path.parent == tmp_path
    default = open_job(svs_path, ckpt, options.replace(tile_size=None), config=config)
    assert default.grid.tile_size == RunOptions().tile_size_for(tiny_model)


class NonFiniteModel(CountingModel):
    """The tiny model, giving NaN (or inf) embeddings for some tiles."""

    def __init__(self, model, every: int = 2):
        super().__init__(model)
        self.every = every

    def embed_images(self, tiles):
        out = super().embed_images(tiles).clone()
        start = self.tiles - len(tiles)
        for i in range(len(tiles)):
            if (start + i) % self.every == 0:
                out[i, i % out.shape[1]] = np.nan if i % 2 else np.inf
        return out


@pytest.mark.slow
def test_non_finite_embeddings_are_failed_never_done(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    summary = embed_slide(slide, NonFiniteModel(tiny_model, every=3), grid, store, batch_size=8)
    status, emb = store.status(), store.embeddings()
    tissue = store.tissue()
    bad = status == TileStatus.FAILED
    assert bad.sum() == summary.failed == -(-tissue.sum() // 3) > 0
    assert {why for _, _, why in summary.failed_tiles} == {NON_FINITE}
    assert summary.describe_failures() == f"{summary.failed} tiles failed: {NON_FINITE} " + (
        f"({summary.failed})"
    )
    assert not summary.complete and summary.done + summary.failed == summary.total
    assert np.isfinite(emb[status == TileStatus.DONE]).all()
    assert (status[tissue] != TileStatus.PENDING).all()
    assert store.attrs["last_run"]["failed_reasons"] == {NON_FINITE: summary.failed}
    # the failed tiles are tried again; a healthy model finishes them
    again = embed_slide(slide, tiny_model, grid, store)
    assert again.computed == summary.failed and again.complete


def test_a_model_giving_only_nan_embeds_nothing(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    summary = embed_slide(slide, NonFiniteModel(tiny_model, every=1), grid, store, batch_size=16)
    assert summary.done == 0 and summary.failed == summary.total > 0
    assert not (store.status() == TileStatus.DONE).any()


def test_no_tissue_is_an_error_with_the_reason(tmp_path, tiny_model):
    import tifffile

    from napari_conch.slide import make_grid, open_slide

    path = tmp_path / "glass.tif"
    tifffile.imwrite(path, np.full((300, 400, 3), 245, np.uint8))
    glass = open_slide(path)
    grid = make_grid(glass, level=0, tile_size=64)
    store = open_store(glass, tiny_model, grid, tmp_path)
    with pytest.raises(InputError, match=r"glass: no tissue found at min_tissue 0.25 .*lower it"):
        embed_slide(glass, tiny_model, grid, store)
    counts = store.counts()
    assert counts["background"] == grid.rows * grid.cols and store.attrs["min_tissue"] == 0.25


class FailingWrites:
    """Makes ``store.write_embeddings`` raise ``OSError(errno)`` from its ``after``-th call on."""

    def __init__(self, store, error, after):
        self.store, self.error, self.after, self.calls = store, error, after, 0
        self.real = store.write_embeddings

    def __call__(self, rows, cols, values):
        self.calls += 1
        if self.calls > self.after:
            raise OSError(self.error, os.strerror(self.error), str(self.store.path / "embeddings"))
        self.real(rows, cols, values)


@pytest.mark.slow
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS])
def test_a_failing_store_write_is_one_store_error_and_keeps_what_was_written(
    tmp_path, slide, grid, tiny_model, monkeypatch, error
):
    store = open_store(slide, tiny_model, grid, tmp_path)
    monkeypatch.setattr(store, "write_embeddings", FailingWrites(store, error, after=2))
    events = []
    with pytest.raises(StoreError, match=os.strerror(error)) as info:
        embed_slide(slide, tiny_model, grid, store, batch_size=4, on_progress=events.append)
    assert str(store.path) in str(info.value) and "\n" not in str(info.value)
    assert events[-1].done == 8
    monkeypatch.undo()
    status = store.status()
    done = np.argwhere(status == TileStatus.DONE)
    assert len(done) == 8 and np.isfinite(store.embeddings()[status == TileStatus.DONE]).all()
    assert os.strerror(error) in store.attrs["last_run"]["error"]
    rest = embed_slide(slide, tiny_model, grid, store)
    assert rest.computed == rest.total - 8 and rest.complete


def test_a_store_under_a_file_is_one_store_error(tmp_path, slide, grid, tiny_model):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="not-a-folder"):
        open_store(slide, tiny_model, grid, blocker / "stores")


@pytest.mark.slow
def test_embed_from_paths_returns_the_store(tmp_path, svs_path, tiny_checkpoint, tiny_model):
    ckpt, config = tiny_checkpoint
    path = embed(
        svs_path,
        ckpt,
        config=config,
        level=0,
        tile_size=TILE,
        device="cpu",
        store_root=tmp_path,
        batch_size=16,
    )
    store = EmbeddingStore.open(path)
    assert path.parent == tmp_path and path.name.startswith("cmu_small_region-")
    assert store.grid.tile_size == TILE and store.embed_dim == tiny_model.embed_dim
    assert store.counts()["done"] == store.tissue().sum() > 0


KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from napari_conch.engine.embed import embed_slide, open_store
    from napari_conch.model import load_model
    from napari_conch.slide import open_slide, make_grid

    svs, ckpt, config, root = sys.argv[1:5]
    model = load_model(ckpt, config=config, device="cpu")
    slide = open_slide(svs)
    grid = make_grid(slide, level=0, tile_size=128)
    store = open_store(slide, model, grid, root)

    def report(event):
        if event.phase == "embed":
            print(event.done, flush=True)
            time.sleep(0.01)

    embed_slide(slide, model, grid, store, batch_size=3, on_progress=report)
    print("finished", flush=True)
    """
)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, svs_path, tiny_checkpoint, tiny_model):
    from napari_conch.slide import make_grid, open_slide

    ckpt, config = tiny_checkpoint
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(svs_path), str(ckpt), str(config), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        seen = 0
        for line in child.stdout:
            assert line.strip() != "finished", "the run ended before it was killed"
            seen += 1
            if seen >= 8:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    time.sleep(0.1)

    slide = open_slide(svs_path)
    grid = make_grid(slide, level=0, tile_size=128)
    store = open_store(slide, tiny_model, grid, tmp_path)
    status = store.status()
    done = np.argwhere(status == TileStatus.DONE)
    assert len(done) >= 7 * 3  # what the child reported as written is there
    expected = reference_embeddings(tiny_model, slide, grid, done[:, 0], done[:, 1])
    np.testing.assert_allclose(store.embeddings()[done[:, 0], done[:, 1]], expected, atol=2e-3)

    counting = CountingModel(tiny_model)
    summary = embed_slide(slide, counting, grid, store, batch_size=16)
    assert counting.tiles == summary.computed == summary.total - len(done)
    final = store.status()
    assert (final[status == TileStatus.DONE] == TileStatus.DONE).all()
    assert ((final == TileStatus.DONE) == store.tissue()).all()
    assert not list(store.path.rglob("*.partial"))
