"""Runs whose batches are written to the store in groups (``write_every_s``, the CLI's way)."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

from napari_conch.engine.embed import (
    LIVE_WORKERS,
    LIVE_WRITE_EVERY_S,
    WRITE_EVERY_S,
    embed_slide,
    embed_slide_iter,
    open_store,
)
from napari_conch.engine.model_workers import compute_workers
from napari_conch.engine.progress import EMBED
from napari_conch.engine.store.embedding_store import TileStatus
from napari_conch.errors import StoreError
from tests.engine.test_embed import TILE, CountingModel

#: Longer than any test run: one group, written at the end (or when the run stops).
NEVER = 1e9


@pytest.fixture(scope="module")
def slide(svs_path):
    from napari_conch.slide import open_slide

    return open_slide(svs_path)


@pytest.fixture(scope="module")
def grid(slide):
    from napari_conch.slide import make_grid

    return make_grid(slide, level=0, tile_size=TILE)


class CountedWrites:
    """A store's ``write_embeddings``, counting its calls; failing from call ``fail_at`` on."""

    def __init__(self, store, fail_at=None):
        self.store, self.real, self.calls, self.fail_at = store, store.write_embeddings, 0, fail_at

    def __call__(self, rows, cols, values):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.store.path))
        self.real(rows, cols, values)


def test_a_grouped_run_writes_once_and_gives_the_per_batch_run_numbers(
    tmp_path, slide, grid, tiny_model, monkeypatch
):
    per_batch = open_store(slide, tiny_model, grid, tmp_path / "a")
    embed_slide(slide, tiny_model, grid, per_batch, batch_size=8)
    store = open_store(slide, tiny_model, grid, tmp_path / "b")
    writes = CountedWrites(store)
    monkeypatch.setattr(store, "write_embeddings", writes)
    events = []
    summary = embed_slide_iter(slide, tiny_model, grid, store, batch_size=8, write_every_s=NEVER)
    while True:
        try:
            events.append(next(summary))
        except StopIteration as stop:
            summary = stop.value
            break
    assert writes.calls == 1 and summary.complete and summary.computed == summary.total > 8
    tiles = [e for e in events if e.phase == EMBED]
    # an event per batch (computed grows), nothing said written before the one write
    computed = [e.computed for e in tiles]
    assert computed == sorted(computed) and len(set(computed)) == len(computed) - 1
    assert all(e.done == 0 and len(e.rows) == 0 for e in tiles[:-1])
    assert tiles[-1].done == summary.total and len(tiles[-1].rows) == summary.total
    np.testing.assert_array_equal(store.status(), per_batch.status())
    np.testing.assert_array_equal(store.embeddings(), per_batch.embeddings())
    assert store.verify().healthy


def test_a_cancelled_grouped_run_keeps_what_it_computed(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    stop = threading.Event()
    counting = CountingModel(tiny_model)

    def on_progress(event):
        if event.computed >= 8:
            stop.set()

    summary = embed_slide(
        slide, counting, grid, store, batch_size=4, cancel=stop, on_progress=on_progress,
        write_every_s=NEVER,
    )  # fmt: skip
    assert summary.cancelled and summary.computed == summary.done == 8
    # a fast model's batches go several at once after the first: those under way at the cancel
    # were computed, not kept (compute_workers of them at most)
    assert 2 <= counting.calls <= 2 + compute_workers(tiny_model)
    assert (store.status() == TileStatus.DONE).sum() == 8
    assert store.attrs["last_run"]["computed"] == 8
    rest = embed_slide(slide, counting, grid, store, batch_size=16)
    assert rest.complete and rest.computed == rest.total - 8


def test_closing_a_grouped_run_keeps_what_it_computed(tmp_path, slide, grid, tiny_model):
    store = open_store(slide, tiny_model, grid, tmp_path)
    events = embed_slide_iter(slide, tiny_model, grid, store, batch_size=4, write_every_s=NEVER)
    event = next(events)
    while event.computed < 8:
        event = next(events)
    assert (store.status() == TileStatus.DONE).sum() == 0  # held, not written yet
    events.close()  # what a GUI worker's quit() or Ctrl-C does
    assert (store.status() == TileStatus.DONE).sum() == 8
    assert np.isfinite(store.embeddings()[store.status() == TileStatus.DONE]).all()


def test_a_failing_grouped_write_is_one_store_error_and_keeps_the_groups_before(
    tmp_path, slide, grid, tiny_model, monkeypatch
):
    store = open_store(slide, tiny_model, grid, tmp_path)
    writes = CountedWrites(store, fail_at=2)
    monkeypatch.setattr(store, "write_embeddings", writes)
    clock = iter(range(0, 10**6, 10))  # every batch is 10 "seconds" after the one before
    monkeypatch.setattr("napari_conch.engine.embed.time.monotonic", lambda: next(clock))
    with pytest.raises(StoreError, match=os.strerror(errno.ENOSPC)) as info:
        embed_slide(slide, tiny_model, grid, store, batch_size=4, write_every_s=5.0)
    assert str(store.path) in str(info.value) and "\n" not in str(info.value)
    monkeypatch.undo()
    assert (store.status() == TileStatus.DONE).sum() == 4  # the first group (batch) is there
    assert os.strerror(errno.ENOSPC) in store.attrs["last_run"]["error"]


def test_the_cli_runs_write_in_groups_and_the_gui_runs_in_shorter_ones_a_batch_at_a_time(
    slide, grid, tiny_model, monkeypatch, tmp_path
):
    from napari_conch.engine.options import RunOptions
    from napari_conch.engine.session.session import Session

    seen = []
    real = embed_slide_iter

    def spy(*args, **kwargs):
        seen.append((kwargs.get("write_every_s"), kwargs.get("workers")))
        return real(*args, **kwargs)

    monkeypatch.setattr("napari_conch.engine.embed.embed_slide_iter", spy)
    for live in (False, True):
        session = Session(RunOptions(level=0, tile_size=TILE, store_root=str(tmp_path / str(live))))
        session.set_model(tiny_model)
        session.open_slide(slide.path)
        session.embed(live=live)
    # the CLI: batches at once (as many as torch has threads); the dock leaves a core's share
    # to napari's event loop
    assert seen == [(WRITE_EVERY_S, None), (LIVE_WRITE_EVERY_S, LIVE_WORKERS)]
    assert LIVE_WRITE_EVERY_S < WRITE_EVERY_S and LIVE_WORKERS == 1
