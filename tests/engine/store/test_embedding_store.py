"""The zarr embedding store: layout, reuse, mismatch refusal, atomic creation."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from napari_conch.engine.store import embedding_store as store_mod
from napari_conch.engine.store.embedding_store import (
    EmbeddingStore,
    TileStatus,
    describe_mismatch,
    signature_hash,
    store_path_for,
)
from napari_conch.errors import StoreError

SHAPE = (20, 18)  # more than one 16-tile embeddings block each way
DIM = 8


def signature(**changes) -> dict:
    sig = {
        "format": store_mod.STORE_FORMAT,
        "slide_fingerprint": "slide-abc",
        "model_fingerprint": "model-123",
        "grid": {"level": 0, "tile_size": 64, "stride": 64, "rows": SHAPE[0], "cols": SHAPE[1]},
        "preprocessing": {"image_size": 64, "mean": [0.5, 0.5, 0.5]},
        "embed_dim": DIM,
    }
    sig.update(changes)
    return sig


def make(path, **changes) -> EmbeddingStore:
    info = {"model_source": "ckpt.bin", "logit_scale": 4.6, "slide_path": "/x.svs"}
    return EmbeddingStore.open_or_create(path, signature(**changes), shape=SHAPE, info=info)


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_new_store_layout_and_attributes(tmp_path):
    store = make(tmp_path / "s.zarr")
    assert store.shape == SHAPE and store.embed_dim == DIM
    assert (store.status() == TileStatus.PENDING).all()
    assert np.isnan(store.embeddings()).all()
    attrs = store.attrs
    assert attrs["signature"] == signature()
    assert attrs["logit_scale"] == pytest.approx(4.6)
    assert attrs["model_source"] == "ckpt.bin" and "created" in attrs
    emb = store._group["embeddings"]
    assert emb.dtype == np.float16 and emb.chunks == (16, 16, DIM)


def test_written_embeddings_read_back_and_others_are_nan(tmp_path):
    store = make(tmp_path / "s.zarr")
    rows = np.array([0, 3, 17, 19])
    cols = np.array([0, 16, 2, 17])
    vectors = unit_vectors(4)
    store.write_embeddings(rows, cols, vectors)
    reopened = EmbeddingStore.open(tmp_path / "s.zarr")
    status = reopened.status()
    assert (status[rows, cols] == TileStatus.DONE).all()
    assert status.sum() == 4
    emb = reopened.embeddings()
    np.testing.assert_allclose(emb[rows, cols], vectors, atol=1e-3)
    others = np.ones(SHAPE, bool)
    others[rows, cols] = False
    assert np.isnan(emb[others]).all()
    np.testing.assert_allclose(reopened.embeddings_at(rows, cols), vectors, atol=1e-3)
    assert reopened.counts() == {"pending": 356, "done": 4, "failed": 0, "background": 0}


def test_reopen_with_same_signature_keeps_data(tmp_path):
    make(tmp_path / "s.zarr").write_embeddings([1], [1], unit_vectors(1))
    again = make(tmp_path / "s.zarr")
    assert again.status()[1, 1] == TileStatus.DONE


def test_mismatch_is_refused_and_names_what_differs(tmp_path):
    path = tmp_path / "s.zarr"
    make(path).write_embeddings([2], [2], unit_vectors(1))
    with pytest.raises(StoreError, match="model_fingerprint") as info:
        make(path, model_fingerprint="other-model")
    assert "model-123" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(StoreError, match=r"grid .*stride"):
        make(path, grid={**signature()["grid"], "stride": 16})
    assert EmbeddingStore.open(path).status()[2, 2] == TileStatus.DONE  # untouched


def test_describe_mismatch_lists_only_differences():
    text = describe_mismatch(signature(), signature(embed_dim=9, slide_fingerprint="zz"))
    assert "embed_dim" in text and "slide_fingerprint" in text and "grid" not in text


def test_open_missing_or_damaged_store_raises(tmp_path):
    with pytest.raises(StoreError, match="not an embedding store"):
        EmbeddingStore.open(tmp_path / "nothing.zarr")
    path = tmp_path / "s.zarr"
    make(path)
    import shutil

    shutil.rmtree(path / "status")
    with pytest.raises(StoreError, match="damaged"):
        EmbeddingStore.open(path)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match=r"damaged store: zarr\.json cannot be read"):
        EmbeddingStore.open(path)


def test_set_tissue_reconciles_statuses(tmp_path):
    store = make(tmp_path / "s.zarr")
    store.write_embeddings([0], [0], unit_vectors(1))
    store.set_status(np.array([0]), np.array([1]), TileStatus.FAILED)
    mask = np.zeros(SHAPE, bool)
    mask[0, 2] = True
    status = store.set_tissue(mask, mask.astype(np.float32))
    assert status[0, 0] == TileStatus.DONE  # a done tile stays done outside the mask
    assert status[0, 1] == TileStatus.BACKGROUND and status[0, 2] == TileStatus.PENDING
    mask[0, 3] = True
    status = store.set_tissue(mask, mask.astype(np.float32))
    assert status[0, 3] == TileStatus.PENDING  # background becomes tissue with a lower threshold
    np.testing.assert_array_equal(store.tissue(), mask)
    with pytest.raises(StoreError, match="does not fit"):
        store.set_tissue(np.zeros((2, 2), bool), np.zeros((2, 2)))


def test_failed_creation_leaves_nothing(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store_mod.os, "rename", refuse)
    with pytest.raises(StoreError, match="cannot create"):
        make(tmp_path / "s.zarr")
    assert list(tmp_path.iterdir()) == []


def test_creation_killed_midway_is_cleaned_and_redone(tmp_path):
    # A process that dies after building part of a store in its temporary folder.
    path = tmp_path / "s.zarr"
    code = (
        "import os, zarr; from zarr.storage import LocalStore;"
        f"g = zarr.open_group(LocalStore({str(tmp_path)!r} + '/.creating-s.zarr.' + "
        "str(os.getpid()) + '.1'), mode='w'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert [p.name.split(".")[0] for p in tmp_path.iterdir()] == [""]
    assert not path.exists()
    make(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_partial_chunk_files_are_removed_on_open(tmp_path):
    path = tmp_path / "s.zarr"
    make(path).write_embeddings([0], [0], unit_vectors(1))
    chunk = next(
        p for p in (path / "embeddings").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    leftover = chunk.with_name(chunk.name + ".0123abcd.partial")
    leftover.write_bytes(b"\x00" * 7)
    store = make(path)
    assert not leftover.exists()
    np.testing.assert_allclose(store.embeddings()[0, 0], unit_vectors(1)[0], atol=1e-3)


def test_old_zarr_is_refused(monkeypatch):
    import zarr

    store_mod.check_zarr()  # the installed one writes atomically
    monkeypatch.setattr(zarr, "__version__", "3.1.2")
    with pytest.raises(StoreError, match=r"zarr>=3\.1\.3"):
        store_mod.check_zarr()


def test_store_path_is_deterministic_and_follows_the_signature(tmp_path, monkeypatch):
    grid = SimpleNamespace(to_dict=lambda: {"level": 0, "tile_size": 64, "stride": 64})
    slide = SimpleNamespace(fingerprint="f1", name="CMU 1/small.svs", path=tmp_path / "x.svs")
    model = SimpleNamespace(fingerprint="m1", preprocess_info={"size": 64}, embed_dim=32)
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path / "cache"))
    first = store_path_for(slide, model, grid)
    assert first == store_path_for(slide, model, grid)
    assert first.parent == tmp_path / "cache"
    assert first.name.startswith("CMU_1_small.svs-") and first.suffix == ".zarr"
    other = store_path_for(SimpleNamespace(**{**vars(slide), "fingerprint": "f2"}), model, grid)
    assert other != first
    assert store_path_for(slide, model, grid, root=tmp_path / "r").parent == tmp_path / "r"
    monkeypatch.delenv("NAPARI_CONCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert store_path_for(slide, model, grid).parent == tmp_path / "xdg" / "napari-conch"


def test_signature_hash_ignores_key_order():
    a = signature()
    b = dict(reversed(list(a.items())))
    assert signature_hash(a) == signature_hash(b)
    assert signature_hash(a) != signature_hash(signature(embed_dim=4))


def test_pid_check_of_stale_temporaries():
    assert store_mod._pid_alive(os.getpid())
