"""Search across stores: streaming top-k equals a brute-force ranking; mixed models refused."""

from __future__ import annotations

import csv
import tracemalloc

import numpy as np
import pytest

from napari_conch.engine.cohort.search import (
    HIT_COLUMNS,
    TopK,
    iter_store_tiles,
    parse_like,
    read_hits_csv,
    search_stores,
    tile_vector,
    write_hits_csv,
)
from napari_conch.engine.store import embedding_store as store_mod
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.errors import InputError, StoreError

DIM = 8


def make_store(
    path,
    vectors: np.ndarray,
    done: np.ndarray | None = None,
    *,
    model: str = "model-123",
    slide: str = "slide",
    tile: int = 64,
) -> EmbeddingStore:
    """A store over a ``[rows, cols]`` grid holding ``vectors [rows, cols, D]`` where ``done``."""
    rows, cols, dim = vectors.shape
    grid = {
        "level": 0,
        "level_downsample": 1.0,
        "resample": 1.0,
        "tile_size": tile,
        "stride": tile,
        "rows": rows,
        "cols": cols,
        "level_shape": [rows * tile, cols * tile],
        "mpp": 0.5,
    }
    signature = {
        "format": store_mod.STORE_FORMAT,
        "slide_fingerprint": f"fp-{slide}",
        "model_fingerprint": model,
        "grid": grid,
        "preprocessing": {"image_size": tile},
        "embed_dim": dim,
    }
    info = {
        "model_source": f"{model}.bin",
        "logit_scale": 50.0,
        "slide_name": slide,
        "slide_path": f"/data/{slide}",
    }
    done = np.ones((rows, cols), bool) if done is None else done
    with EmbeddingStore.open_or_create(path, signature, shape=(rows, cols), info=info) as store:
        r, c = np.nonzero(done)
        store.write_embeddings(r, c, vectors[r, c])
        store.set_status(*np.nonzero(~done), TileStatus.BACKGROUND)
    return EmbeddingStore.open(path)  # read-only: the writer lock is given back


def random_vectors(rows: int, cols: int, seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, cols, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def brute_force(stores, query, k):
    """Every DONE tile of every store, scored from the whole array, sorted."""
    scored = []
    for s, store in enumerate(stores):
        emb = store.embeddings()
        for r, c in zip(*np.nonzero(store.status() == TileStatus.DONE), strict=True):
            v = emb[r, c] / np.linalg.norm(emb[r, c])
            scored.append((-float(v @ query), s, int(r), int(c)))
    scored.sort()
    return [(-neg, s, r, c) for neg, s, r, c in scored[:k]]


def test_streaming_search_equals_brute_force(tmp_path):
    shapes = [(20, 18), (5, 7), (33, 3)]  # bands of 16 rows split the first and last
    stores = []
    for i, (rows, cols) in enumerate(shapes):
        done = np.random.default_rng(10 + i).random((rows, cols)) > 0.3
        stores.append(
            make_store(tmp_path / f"s{i}.zarr", random_vectors(rows, cols, i), done, slide=f"s{i}")
        )
    query = random_vectors(1, 1, 99)[0, 0]
    for k in (1, 7, 50, 10_000):
        hits = search_stores(stores, query, k)
        expected = brute_force(stores, query, k)
        n_done = sum(int((s.status() == TileStatus.DONE).sum()) for s in stores)
        assert len(hits) == len(expected) == min(k, n_done)
        for hit, (score, s, r, c) in zip(hits, expected, strict=True):
            assert (hit.store, hit.row, hit.col) == (stores[s].path, r, c)
            assert hit.score == pytest.approx(score, abs=1e-5)
            assert hit.slide == f"s{s}"
            assert hit.box == (c * 64.0, r * 64.0, c * 64.0 + 64, r * 64.0 + 64)


def test_topk_keeps_k_and_breaks_ties_by_position():
    top = TopK(3)
    top.add(np.array([0.5, 0.9, 0.5]), 1, np.array([0, 1, 2]), np.array([0, 0, 0]))
    top.add(np.array([0.5, 0.1]), 0, np.array([4, 5]), np.array([1, 1]))
    assert top.best() == [(pytest.approx(0.9), 1, 1, 0), (0.5, 0, 4, 1), (0.5, 1, 0, 0)]
    assert len(top.scores) == 3
    with pytest.raises(InputError, match="at least 1"):
        TopK(0)


@pytest.mark.slow
def test_search_memory_does_not_grow_with_the_stores(tmp_path):
    """Peak allocation is one band (and k hits), the same for 2 stores as for 8."""
    stores = [
        make_store(tmp_path / f"m{i}.zarr", random_vectors(48, 48, i, dim=64), slide=f"m{i}")
        for i in range(8)
    ]
    query = random_vectors(1, 1, 5, dim=64)[0, 0]

    def peak(some):
        tracemalloc.start()
        search_stores(some, query, 10)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(stores[:1])  # warm up zarr's caches
    small, large = peak(stores[:2]), peak(stores)
    all_tiles = 8 * 48 * 48 * 64 * 4  # every tile as float32
    assert large < 1.5 * small
    assert large < all_tiles / 2


def test_mixed_models_are_refused(tmp_path):
    a = make_store(tmp_path / "a.zarr", random_vectors(3, 3, 0), model="conch")
    b = make_store(tmp_path / "b.zarr", random_vectors(3, 3, 1), model="demo")
    with pytest.raises(InputError, match="another model") as info:
        search_stores([a, b], random_vectors(1, 1, 2)[0, 0], 5)
    assert "\n" not in str(info.value) and "b.zarr" in str(info.value)


def test_empty_stores_and_bad_queries(tmp_path):
    empty = make_store(tmp_path / "e.zarr", random_vectors(2, 2, 0), np.zeros((2, 2), bool))
    assert list(iter_store_tiles(empty)) == []
    with pytest.raises(StoreError, match="has an embedded tile"):
        search_stores([empty], random_vectors(1, 1, 2)[0, 0], 5)
    with pytest.raises(InputError, match="values"):
        search_stores([empty], np.ones(3), 5)


def test_like_and_tile_vector(tmp_path):
    vectors = random_vectors(4, 4, 3)
    done = np.ones((4, 4), bool)
    done[0, 0] = False
    store = make_store(tmp_path / "x.zarr", vectors, done)
    path, row, col = parse_like(f"{store.path}:2,3")
    assert (path, row, col) == (store.path, 2, 3)
    np.testing.assert_allclose(tile_vector(store, 2, 3), vectors[2, 3], atol=2e-3)
    hits = search_stores([store], tile_vector(store, 2, 3), 1)
    assert (hits[0].row, hits[0].col) == (2, 3) and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="not computed"):
        tile_vector(store, 0, 0)
    with pytest.raises(InputError, match="outside"):
        tile_vector(store, 9, 0)
    with pytest.raises(InputError, match="STORE:ROW,COL"):
        parse_like("x.zarr:2")


def test_hits_csv_round_trip(tmp_path):
    store = make_store(tmp_path / "x.zarr", random_vectors(4, 4, 3), slide="case 1.svs")
    hits = search_stores([store], random_vectors(1, 1, 4)[0, 0], 5)
    out = write_hits_csv(tmp_path / "hits.csv", hits)
    with open(out, newline="") as fh:
        lines = list(csv.reader(fh))
    assert tuple(lines[0]) == HIT_COLUMNS and len(lines) == 6
    back = read_hits_csv(out)
    assert [(h.slide, h.store, h.row, h.col, h.box) for h in back] == [
        (h.slide, h.store, h.row, h.col, h.box) for h in hits
    ]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a hits CSV"):
        read_hits_csv(tmp_path / "bad.csv")


def test_tiles_of_a_damaged_chunk_are_never_ranked(tmp_path):
    from napari_conch.engine.store.integrity import StoreDamageWarning

    vectors = random_vectors(20, 18, 3)
    store = make_store(tmp_path / "d.zarr", vectors)
    chunk = store.path / "embeddings" / "c" / "0" / "0" / "0"  # tiles rows 0-15, cols 0-15
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    query = vectors[3, 4]  # a tile of the damaged chunk: it would be the best hit
    with pytest.warns(StoreDamageWarning):
        hits = search_stores([EmbeddingStore.open(store.path)], query, 20 * 18)
    assert len(hits) == 20 * 18 - 16 * 16
    assert all(h.row >= 16 or h.col >= 16 for h in hits)
