"""The next embed run repairs a damaged store and computes the lost tiles again (demo model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_conch.engine.embed import embed_slide, open_store
from napari_conch.engine.store.embedding_store import EmbeddingStore, StoreDamageWarning, TileStatus
from napari_conch.errors import StoreError


def write_small_slide(path: Path) -> Path:
    """A 512 x 640 RGB tiled TIFF at 0.5 um/px: pink noisy tissue on white glass."""
    import tifffile

    rng = np.random.default_rng(0)
    image = np.full((512, 640, 3), 240, np.uint8)
    tissue = rng.normal(0, 20, (384, 512, 3)) + np.array([200, 120, 170])
    image[64:448, 64:576] = tissue.clip(0, 255).astype(np.uint8)
    tifffile.imwrite(
        path, image, photometric="rgb", tile=(128, 128),
        resolution=(2e4, 2e4), resolutionunit="CENTIMETER",
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def demo_job(tmp_path_factory):
    from napari_conch.model import load_model
    from napari_conch.slide import make_grid, open_slide

    slide = open_slide(write_small_slide(tmp_path_factory.mktemp("slide") / "small.tif"))
    model = load_model("demo", device="cpu")  # as the CLI loads it (the model cache is shared)
    return slide, model, make_grid(slide, level=0, tile_size=int(model.image_size))


@pytest.mark.slow
def test_next_run_recomputes_the_tiles_of_a_damaged_chunk(tmp_path, demo_job):
    slide, model, grid = demo_job
    with open_store(slide, model, grid, tmp_path) as store:
        first = embed_slide(slide, model, grid, store)
        before = store.embeddings()
    done = store.status() == TileStatus.DONE
    assert first.done == done.sum() > 0
    chunk = store.path / "embeddings" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0x55
    chunk.write_bytes(bytes(data))
    with open_store(slide, model, grid, tmp_path) as store:
        with pytest.warns(StoreDamageWarning, match=f"repaired: {first.done} tile"):
            second = embed_slide(slide, model, grid, store)
        assert second.computed == first.done  # the whole grid sits in that one chunk
        assert store.verify().healthy
        np.testing.assert_allclose(store.embeddings()[done], before[done], atol=2e-3)


def test_open_store_waits_or_names_the_writer(tmp_path, demo_job):
    slide, model, grid = demo_job
    with open_store(slide, model, grid, tmp_path) as store:
        # the same process shares its lock; another process is refused (test_store_lock.py)
        with open_store(slide, model, grid, tmp_path, wait=0.1) as again:
            assert again.writable and again.path == store.path
    assert not EmbeddingStore.open(store.path).writable
    with pytest.raises(StoreError, match="not open for writing"):
        embed_slide(slide, model, grid, EmbeddingStore.open(store.path))
