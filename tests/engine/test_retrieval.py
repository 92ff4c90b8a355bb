"""Text -> image retrieval against the engine's own numbers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.query import QueryIndex
from napari_conch.engine.retrieval import top_tiles, top_tiles_for_prompt
from napari_conch.errors import NapariConchError
from napari_conch.slide import make_grid, open_slide


@pytest.fixture(scope="module")
def grid(svs_path):
    return make_grid(open_slide(svs_path), level=0, tile_size=512)


def test_top_tiles_are_the_best_cosines(grid):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(*grid.shape, 8)).astype(np.float32)
    valid = rng.random(grid.shape) > 0.3
    index = QueryIndex(emb, valid)
    query = rng.normal(size=8).astype(np.float32)
    query /= np.linalg.norm(query)
    hits = top_tiles(index, grid, query, k=5)
    maps = index.cosine_maps(query[None])[0]
    expected = np.sort(maps[valid])[::-1][:5]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert np.allclose([h.score for h in hits], expected, atol=1e-6)
    for h in hits:
        assert valid[h.row, h.col]
        assert h.score == pytest.approx(maps[h.row, h.col], abs=1e-6)
        assert h.box == tuple(float(v) for v in grid.boxes()[h.row, h.col])
    assert len(top_tiles(index, grid, query, k=10_000)) == int(valid.sum())


def test_top_tiles_for_prompt_matches_similarity(grid, tiny_model):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(*grid.shape, tiny_model.embed_dim)).astype(np.float32)
    index = QueryIndex(emb)
    hits = top_tiles_for_prompt(index, grid, tiny_model, "tumor", k=3, templates="none")
    text = tiny_model.embed_texts(["tumor"]).numpy()[0]
    best = index.cosine(text[None])[0].max()
    assert hits[0].score == pytest.approx(best, abs=1e-5)


def test_errors(grid):
    empty = QueryIndex(np.zeros((*grid.shape, 4), np.float32), np.zeros(grid.shape, bool))
    with pytest.raises(NapariConchError, match="no embedded tiles"):
        top_tiles(empty, grid, np.ones(4, np.float32) / 2, k=3)
    with pytest.raises(NapariConchError, match="at least 1"):
        top_tiles(empty, grid, np.ones(4, np.float32) / 2, k=0)
