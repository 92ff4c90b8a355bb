"""The session as the CLI drives it: runs without the live index, waiting for another writer,
and a store worked on alone, without its slide.

The tiny reference model on the real CC0 slide (512 px tiles: 30 tiles, a second of work).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_conch.engine.export.writers import read_tiff_metadata
from napari_conch.engine.options import RunOptions
from napari_conch.engine.session.prompt_request import PromptRequest
from napari_conch.engine.session.session import Session
from napari_conch.engine.store.embedding_store import EmbeddingStore
from napari_conch.engine.store.lock import StoreBusyError
from napari_conch.errors import InputError, StoreError
from tests.engine.session.test_session import _recorder


@pytest.fixture
def session(svs_path, tiny_model, tmp_path):
    """A session on the real slide with the tiny model, 512 px tiles, stores under tmp."""
    s = Session(RunOptions(tile_size=512, min_tissue=0.1, store_root=str(tmp_path)))
    s.set_model(tiny_model)
    s.open_slide(svs_path)
    return s


@pytest.fixture
def embedded(session):
    """The path of the session's store, every tissue tile embedded."""
    session.embed(live=False)
    return session.store.path


@pytest.mark.slow
def test_a_run_without_the_live_index_reads_nothing_back(session, monkeypatch):
    seen = _recorder(session)
    read_back = []
    real = EmbeddingStore.embeddings_at
    monkeypatch.setattr(EmbeddingStore, "embeddings_at", lambda *a: read_back.append(1) or real(*a))
    events = []
    summary = session.embed(live=False, on_progress=events.append)
    assert summary.computed == summary.done > 0 and not read_back
    assert session.index is None and not session.running
    assert seen["store_changed"] == [session.store] and seen["run_finished"] == [summary]
    assert seen["progress"] == events and events[-1].done == summary.done
    assert sum(len(rows) for rows, _ in seen["tiles_added"]) == summary.computed
    # the index is read from the store when it is asked for
    assert session.open_store(create=False) is session.store
    assert session.index.size == summary.done
    result = session.query(PromptRequest(("tumor", "stroma")))
    assert np.isfinite(result.cell_cosine).sum() == 2 * summary.done


@pytest.mark.slow
def test_a_live_run_after_one_without_index_keeps_the_index_whole(session, embedded):
    again = session.embed()  # live: the index is read from the store first
    assert again.computed == 0 and session.index.size == again.done > 0


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
def test_a_run_waits_for_another_writer_or_names_it(session, embedded):
    from tests.engine.store.test_lock import HOLDER, python

    proc = python(HOLDER, str(embedded))
    try:
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
        with pytest.raises(StoreBusyError, match=f"pid {proc.pid}"):
            session.embed(live=False)
        assert not session.running and session._writer is None
        with pytest.raises(StoreError, match=r"after waiting 0\.2 s"):
            session.embed(wait=0.2)
        proc.stdin.close()  # the other writer finishes
        summary = session.embed(wait=60)  # live: the index is read again after the wait
        assert summary.computed == 0 and not session.running
        assert session.index.size == summary.done
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_a_store_alone_gives_the_maps_of_its_slide(session, embedded, tiny_model, tmp_path):
    request = PromptRequest(("tumor", "stroma"), background="glass")
    expected = session.query(request)
    alone = Session()
    seen = _recorder(alone)
    store = alone.open_store_at(embedded)
    assert seen["store_changed"] == [store] and alone.slide is None
    assert alone.index.size == session.index.size and alone.grid.shape == session.grid.shape
    alone.set_model(tiny_model)  # the model that made it: the store stays open
    assert alone.store is store and seen["store_changed"] == [store]
    result = alone.query(request)
    np.testing.assert_allclose(result.cell_cosine, expected.cell_cosine, atol=1e-6)
    np.testing.assert_array_equal(result.cell_labels, expected.cell_labels)
    alone.set_options(tile_size=256)  # the grid is the store's whatever the options say
    assert alone.store is store and alone.grid.shape == session.grid.shape
    out = alone.export(tmp_path / "map.tif", metadata={"templates": "conch"})
    meta = read_tiff_metadata(out)
    assert meta["store"] == str(embedded) and meta["templates"] == "conch"
    assert meta["slide"] == store.attrs["slide_path"] and meta["model_source"]
    assert meta["mpp_level0"] == pytest.approx(session.slide.mpp)
    with pytest.raises(InputError, match="open a slide first"):
        alone.embed()
    alone.set_slide(session.slide)  # a slide: its own store, found again when asked
    assert alone.store is None and seen["store_changed"][-1] is None


@pytest.mark.slow
def test_a_store_alone_is_closed_for_another_model(embedded, tiny_model):
    other = type("Other", (), {"fingerprint": "x" * 16, "source": "other.bin"})()
    alone = Session()
    alone.open_store_at(embedded)
    alone.set_model(other)
    assert alone.store is None and alone.index is None
    with pytest.raises(StoreError, match=r"made by another model than other\.bin"):
        alone.open_store_at(embedded)
    alone.set_model(tiny_model)
    assert alone.open_store_at(embedded).path == embedded and alone.model is tiny_model


def test_a_folder_that_is_no_store_is_refused(tmp_path):
    alone = Session()
    with pytest.raises(StoreError, match="not an embedding store"):
        alone.open_store_at(tmp_path / "nope.zarr")
    assert alone.store is None
