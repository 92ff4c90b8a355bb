"""Maps from queries: cosine, softmax with temperature, labels, overlap averaging, examples."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.overlap import (
    cell_geometry,
    overlap_average,
    overlap_factor,
    tile_geometry,
)
from napari_conch.engine.query import (
    QueryIndex,
    classify,
    example_query,
    labels_from_probs,
    run_query,
    similarity_map,
    softmax_probs,
)
from napari_conch.errors import InputError
from napari_conch.slide import TileGrid


def make_grid(rows: int, cols: int, tile: int = 4, stride: int = 4, down: float = 2.0):
    shape = ((rows - 1) * stride + tile, (cols - 1) * stride + tile)
    return TileGrid(0, down, 1.0, tile, stride, rows, cols, shape)


def random_embeddings(rows=5, cols=6, dim=8, seed=0, missing=((0, 0), (2, 3), (4, 5))):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(rows, cols, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    for r, c in missing:
        emb[r, c] = np.nan
    return emb


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_cosine_map_matches_brute_force_and_nan_where_missing() -> None:
    emb = random_embeddings()
    index = QueryIndex(emb, valid=np.isfinite(emb[..., 0]))
    q = unit(np.random.default_rng(1).normal(size=(3, 8)))
    maps = index.cosine_maps(q)
    assert maps.shape == (3, 5, 6) and maps.dtype == np.float32
    expected = np.einsum("rcd,kd->krc", emb, q)
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert np.isnan(maps[:, 2, 3]).all() and index.size == 27
    np.testing.assert_allclose(similarity_map(index, q[1]), expected[1], atol=1e-6)
    assert index.vectors.flags.c_contiguous and index.vectors.dtype == np.float32


def test_float16_embeddings_are_renormalised() -> None:
    emb = random_embeddings(missing=()).astype(np.float16) * np.float16(0.9)
    index = QueryIndex(emb)
    np.testing.assert_allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-6)
    q = index.vectors[7]
    assert similarity_map(index, q).flat[7] == pytest.approx(1.0, abs=1e-6)


def test_valid_mask_and_zero_vectors() -> None:
    emb = random_embeddings(missing=())
    emb[1, 1] = 0.0
    valid = np.ones((5, 6), bool)
    valid[3, 3] = False
    index = QueryIndex(emb, valid)
    assert not index.valid[1, 1] and not index.valid[3, 3] and index.size == 28
    m = similarity_map(index, index.vectors[0])
    assert np.isnan(m[1, 1]) and np.isnan(m[3, 3])


def test_from_arrays_equals_dense() -> None:
    emb = random_embeddings()
    valid = np.isfinite(emb[..., 0])
    rows, cols = np.nonzero(valid)
    a = QueryIndex(emb, valid)
    b = QueryIndex.from_arrays(emb[rows, cols], rows, cols, (5, 6))
    np.testing.assert_array_equal(a.flat_index, b.flat_index)
    np.testing.assert_allclose(a.vectors, b.vectors)


def test_softmax_uses_the_temperature() -> None:
    cos = np.array([[0.30, np.nan], [0.20, np.nan]], np.float32)
    probs = softmax_probs(cos, 100.0)
    expected = np.exp(100 * 0.30) / (np.exp(100 * 0.30) + np.exp(100 * 0.20))
    assert probs[0, 0] == pytest.approx(expected, rel=1e-5)
    assert probs[:, 0].sum() == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(probs[:, 1]).all()
    flat = softmax_probs(cos, 1.0)
    assert flat[0, 0] == pytest.approx(1 / (1 + np.exp(-0.1)), rel=1e-5)
    with pytest.raises(InputError, match="positive"):
        softmax_probs(cos, 0.0)


def test_labels_threshold_background_and_nan() -> None:
    probs = np.array(
        [
            [0.7, 0.1, 0.2, 0.40, np.nan],
            [0.2, 0.8, 0.2, 0.35, np.nan],
            [0.1, 0.1, 0.6, 0.25, np.nan],
        ],
        np.float32,
    )
    np.testing.assert_array_equal(labels_from_probs(probs), [1, 2, 3, 1, 0])
    np.testing.assert_array_equal(labels_from_probs(probs, threshold=0.5), [1, 2, 3, 0, 0])
    # class 1 is the background: its wins are 0 and class 2 becomes label 1
    np.testing.assert_array_equal(labels_from_probs(probs, background=1), [1, 0, 2, 1, 0])
    with pytest.raises(InputError, match="background"):
        labels_from_probs(probs, background=3)


def test_classify_needs_two_classes() -> None:
    with pytest.raises(InputError, match="two or more"):
        classify(np.zeros((1, 2, 2)), 100.0)
    probs, labels = classify(np.array([[[0.3]], [[0.1]]]), 50.0)
    assert labels[0, 0] == 1 and probs.shape == (2, 1, 1)


def brute_force_cell_average(maps: np.ndarray, k: int) -> np.ndarray:
    rows, cols = maps.shape
    out = np.full((rows + k - 1, cols + k - 1), np.nan)
    for i in range(rows + k - 1):
        for j in range(cols + k - 1):
            covering = [
                maps[r, c]
                for r in range(max(0, i - k + 1), min(rows, i + 1))
                for c in range(max(0, j - k + 1), min(cols, j + 1))
                if np.isfinite(maps[r, c])
            ]
            if covering:
                out[i, j] = np.mean(covering)
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_overlap_average_matches_brute_force(k) -> None:
    rng = np.random.default_rng(k)
    maps = rng.normal(size=(6, 7)).astype(np.float32)
    maps[rng.random((6, 7)) < 0.3] = np.nan
    maps[:, 0] = np.nan  # a whole column missing: cells covered by nothing stay NaN
    got = overlap_average(maps, k)
    assert got.shape == (6 + k - 1, 7 + k - 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, brute_force_cell_average(maps, k), atol=1e-6)


def test_overlap_average_over_leading_axes() -> None:
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(2, 4, 5))
    got = overlap_average(maps, 3)
    for i in range(2):
        np.testing.assert_allclose(got[i], brute_force_cell_average(maps[i], 3), atol=1e-6)


def test_overlap_factor() -> None:
    assert overlap_factor(448, 448) == 1
    assert overlap_factor(448, 112) == 4
    assert overlap_factor(5, 2) == 3
    with pytest.raises(ValueError):
        overlap_factor(4, 0)


def test_geometry_places_cells_on_level0() -> None:
    grid = make_grid(3, 4, tile=8, stride=2, down=2.0)  # 75 % overlap, level-0 cell 4 px
    cells = cell_geometry(grid)
    assert cells.shape == (6, 7) and cells.cell_size == 4.0 and cells.origin == (0.0, 0.0)
    assert cells.cell_box(1, 2) == (8.0, 4.0, 12.0, 8.0)
    x0, y0, x1, y1 = grid.tile_box(2, 3)
    # tile (2, 3) covers exactly cells 2..5 x 3..6
    assert cells.cell_box(2, 3)[:2] == (x0, y0) and cells.cell_box(5, 6)[2:] == (x1, y1)
    tiles = tile_geometry(grid)
    assert tiles.shape == (3, 4) and tiles.origin == tuple(grid.origin_level0)
    assert cells.napari_translate == (1.5, 1.5)


def test_run_query_single_prompt_with_overlap() -> None:
    emb = random_embeddings(rows=3, cols=4, missing=((1, 1),))
    grid = make_grid(3, 4, tile=4, stride=2)
    index = QueryIndex(emb)
    q = unit(np.random.default_rng(5).normal(size=(1, 8)))
    res = run_query(index, ["tumor"], q, grid)
    assert res.probs is None and res.labels is None and res.cell_labels is None
    np.testing.assert_allclose(res.cell_cosine[0], brute_force_cell_average(res.cosine[0], 2))
    data, channels = res.cell_map()
    assert data.shape == (4, 5) and channels == ["tumor"]
    thr = run_query(index, ["tumor"], q, grid, threshold=0.0)
    expected = np.nan_to_num(thr.cosine[0], nan=-1) >= 0
    np.testing.assert_array_equal(thr.labels, expected)
    assert thr.labels[1, 1] == 0


def test_run_query_several_prompts_with_background() -> None:
    emb = random_embeddings(rows=4, cols=4, missing=((0, 0),))
    grid = make_grid(4, 4, tile=4, stride=2)
    index = QueryIndex(emb)
    q = unit(np.random.default_rng(6).normal(size=(3, 8)))
    names = ["tumor", "stroma", "glass"]
    res = run_query(index, names, q, grid, logit_scale=20.0, background="glass", threshold=0.4)
    probs, labels = classify(res.cosine, 20.0, threshold=0.4, background=2)
    np.testing.assert_allclose(res.probs, probs)
    np.testing.assert_array_equal(res.labels, labels)
    assert res.labels[0, 0] == 0 and res.label_names == ["tumor", "stroma"]
    cell_probs = np.stack([brute_force_cell_average(p, 2) for p in res.probs])
    np.testing.assert_allclose(res.cell_probs, cell_probs, atol=1e-6)
    np.testing.assert_array_equal(res.cell_labels, labels_from_probs(cell_probs, 0.4, 2))
    data, channels = res.cell_map()
    assert data.shape == (4, 5, 5)
    assert channels == ["prob_tumor", "prob_stroma", "prob_glass", "label"]


def test_run_query_errors() -> None:
    index = QueryIndex(random_embeddings())
    q = unit(np.ones((2, 8)))
    grid = make_grid(5, 6)
    with pytest.raises(InputError, match="logit scale"):
        run_query(index, ["a", "b"], q, grid)
    with pytest.raises(InputError, match="background"):
        run_query(index, ["a", "b"], q, grid, logit_scale=10.0, background="c")
    with pytest.raises(InputError, match="does not fit"):
        run_query(index, ["a", "b"], q, make_grid(2, 2), logit_scale=10.0)
    with pytest.raises(InputError, match=r"\[K, 8\]"):
        index.cosine(np.ones((2, 5)))


def test_example_query() -> None:
    emb = random_embeddings()
    index = QueryIndex(emb)
    q = example_query(index, [(1, 2)])
    np.testing.assert_allclose(q, emb[1, 2], atol=1e-6)
    assert similarity_map(index, q)[1, 2] == pytest.approx(1.0, abs=1e-6)
    mean = example_query(index, [(1, 2), (3, 4)])
    np.testing.assert_allclose(mean, unit(emb[1, 2] + emb[3, 4]), atol=1e-6)
    with pytest.raises(InputError, match="not computed"):
        example_query(index, [(2, 3)])
    with pytest.raises(InputError, match="outside"):
        example_query(index, [(9, 0)])
    with pytest.raises(InputError, match="at least one"):
        example_query(index, [])


def test_index_from_store(tmp_path) -> None:
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    grid = make_grid(3, 4)
    signature = {"format": 1, "grid": grid.to_dict(), "embed_dim": 8}
    store = EmbeddingStore.open_or_create(tmp_path / "s.zarr", signature, shape=(3, 4))
    emb = random_embeddings(rows=3, cols=4, missing=())
    rows, cols = np.array([0, 1, 2]), np.array([1, 3, 0])
    store.write_embeddings(rows, cols, emb[rows, cols])
    index = QueryIndex.from_store(EmbeddingStore.open(tmp_path / "s.zarr"))
    assert index.size == 3 and index.shape == (3, 4)
    m = similarity_map(index, emb[1, 3])
    assert m[1, 3] == pytest.approx(1.0, abs=1e-6)
    assert np.isfinite(m).sum() == 3
    # float16 storage: within float16 precision of the exact cosine
    np.testing.assert_allclose(m[rows, cols], emb[rows, cols] @ emb[1, 3], atol=2e-3)
