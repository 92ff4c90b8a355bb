"""Chunk integrity: damaged chunks are detected, reported in one line, never used as numbers,
and repaired (their tiles PENDING again). Stores without checksums still open and work."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from napari_conch.engine.query import QueryIndex
from napari_conch.engine.store import embedding_store as store_mod
from napari_conch.engine.store.embedding_store import (
    EmbeddingStore,
    StoreDamageWarning,
    TileStatus,
    make_signature,
    signature_hash,
    signature_matches,
    store_path_for,
)
from tests.engine.store.test_embedding_store import DIM, SHAPE, make, unit_vectors

ALL = SHAPE[0] * SHAPE[1]
CHUNK00 = 16 * 16  # tiles of embeddings chunk (0, 0)


def chunk_file(path, array, *coords):
    return path / array / "c" / "/".join(str(c) for c in coords)


def flip(file):
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def truncate(file):
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])


def delete(file):
    file.unlink()


@pytest.fixture
def full(tmp_path):
    """A store whose every tile is DONE, closed, with the vectors written."""
    path = tmp_path / "s.zarr"
    rows, cols = np.divmod(np.arange(ALL), SHAPE[1])
    vectors = unit_vectors(ALL, seed=3)
    with make(path) as store:
        store.write_embeddings(rows, cols, vectors)
    return path, vectors.reshape(*SHAPE, DIM)


def in_chunk00():
    mask = np.zeros(SHAPE, bool)
    mask[:16, :16] = True
    return mask


@pytest.mark.parametrize("damage", [flip, truncate], ids=["flipped", "truncated"])
def test_damaged_embeddings_chunk_is_never_read_as_numbers(full, damage):
    path, vectors = full
    damage(chunk_file(path, "embeddings", 0, 0, 0))
    store = EmbeddingStore.open(path)
    with pytest.warns(StoreDamageWarning) as caught:
        emb = store.embeddings()
    assert len(caught) == 1
    line = str(caught[0].message)
    assert "\n" not in line and str(path) in line
    assert f"{CHUNK00} tile(s) (row 0 col 0, row 0 col 1, row 0 col 2, ...)" in line
    assert "checksum mismatch" in line and "verify --repair" in line
    bad = in_chunk00()
    assert np.isnan(emb[bad]).all()
    np.testing.assert_allclose(emb[~bad], vectors[~bad], atol=2e-3)
    # a point lookup across the damaged and a sound chunk
    with pytest.warns(StoreDamageWarning):
        at = EmbeddingStore.open(path).embeddings_at(np.array([0, 17]), np.array([0, 17]))
    assert np.isnan(at[0]).all()
    np.testing.assert_allclose(at[1], vectors[17, 17], atol=2e-3)
    # the query path builds its index without the damaged tiles (no zstd error, no numbers)
    with pytest.warns(StoreDamageWarning):
        index = QueryIndex.from_store(EmbeddingStore.open(path))
    assert index.size == ALL - CHUNK00 and not index.valid[bad].any()


def test_deleted_embeddings_chunk_of_done_tiles_is_reported(full):
    path, _ = full
    delete(chunk_file(path, "embeddings", 1, 1, 0))
    store = EmbeddingStore.open(path)
    report = store.verify()
    assert not report.healthy and report.lost_count == 4 * 2  # rows 16..19, cols 16..17
    assert report.nonfinite == 8 and "8 done tile(s) without a finite embedding" in report.line()
    assert report.counts["done"] == ALL - 8 and report.counts["pending"] == 8
    with pytest.warns(StoreDamageWarning, match="8 tile"):
        emb = store.embeddings()
    assert np.isnan(emb[16:, 16:]).all()


def test_done_tile_with_a_non_finite_embedding_is_not_embedded(tmp_path):
    with make(tmp_path / "s.zarr") as store:
        vectors = unit_vectors(2)
        vectors[1, 3] = np.inf
        store.write_embeddings([0, 5], [0, 5], vectors)
        report = store.verify()
        assert report.lost_count == 1 and report.lost[5, 5]
        with pytest.warns(StoreDamageWarning, match="row 5 col 5"):
            assert np.isnan(store.embeddings_at(np.array([5]), np.array([5]))).all()
        store.repair(warn=False)
        assert store.status()[5, 5] == TileStatus.PENDING
        assert store.status()[0, 0] == TileStatus.DONE


@pytest.mark.parametrize(
    "damage", [flip, truncate, delete], ids=["flipped", "truncated", "deleted"]
)
def test_repair_makes_damaged_tiles_pending_and_clean(full, damage):
    path, vectors = full
    damage(chunk_file(path, "embeddings", 0, 0, 0))
    with EmbeddingStore.open(path, writable=True) as store:
        with pytest.warns(StoreDamageWarning, match=r"repaired: 256 tile\(s\)"):
            report = store.repair()
        assert report.repaired and report.lost_count == CHUNK00
    store = EmbeddingStore.open(path)
    status = store.status()
    assert (status[in_chunk00()] == TileStatus.PENDING).all()
    assert (status[~in_chunk00()] == TileStatus.DONE).all()
    np.testing.assert_allclose(store.embeddings()[~in_chunk00()], vectors[~in_chunk00()], atol=2e-3)
    after = store.verify()
    assert after.healthy, after.line()
    assert not chunk_file(path, "embeddings", 0, 0, 0).exists()


def test_damaged_status_chunk_makes_its_tiles_pending(full):
    path, _ = full
    flip(chunk_file(path, "status", 0, 0))
    store = EmbeddingStore.open(path)
    with pytest.warns(StoreDamageWarning, match=r"status: 1 chunk\(s\) \(checksum mismatch\)"):
        status = store.status()
    assert (status == TileStatus.PENDING).all()
    with pytest.warns(StoreDamageWarning):
        assert np.isnan(EmbeddingStore.open(path).embeddings()).all()
    report = store.verify()
    assert report.lost_count == ALL and report.counts["pending"] == ALL
    with EmbeddingStore.open(path, writable=True) as writer:
        writer.repair(warn=False)
        assert writer.verify().healthy
        writer.write_embeddings([0], [0], unit_vectors(1))
        assert writer.counts() == {"pending": ALL - 1, "done": 1, "failed": 0, "background": 0}


def test_impossible_status_value_is_not_trusted(tmp_path):
    # what a garbled chunk of a store without checksums may decode to
    with make(tmp_path / "s.zarr") as store:
        store.write_embeddings([1], [1], unit_vectors(1))
        store._group["status"][2, 2] = 9
        with pytest.warns(StoreDamageWarning, match="1 tile.*row 2 col 2.*invalid status"):
            assert store.status()[2, 2] == TileStatus.PENDING
        store.repair(warn=False)
        assert store._group["status"][2, 2] == TileStatus.PENDING
        assert store.verify().healthy


def test_damaged_tissue_chunk_is_reported_and_repaired(full):
    path, _ = full
    with EmbeddingStore.open(path, writable=True) as store:
        store.set_tissue(np.ones(SHAPE, bool), np.ones(SHAPE))
    truncate(chunk_file(path, "tissue_fraction", 0, 0))
    store = EmbeddingStore.open(path)
    with pytest.warns(StoreDamageWarning, match="tissue_fraction: 1 chunk"):
        assert (store.tissue_fraction() == 0).all()
    report = store.verify()
    assert not report.healthy and report.lost_count == 0  # no embedding is lost
    assert "no tiles" in report.line()
    with EmbeddingStore.open(path, writable=True) as writer:
        writer.repair(warn=False)
        assert writer.verify().healthy and writer.counts()["done"] == ALL


def test_repair_leaves_other_files_of_the_store_alone(full):
    path, _ = full
    notes = path / "annotations"
    notes.mkdir()
    (notes / "project.json").write_text("{}")
    (notes / "project.json.1234.partial").write_text("{}")
    (path / "README.txt").write_text("mine")
    flip(chunk_file(path, "embeddings", 0, 0, 0))
    with EmbeddingStore.open(path, writable=True) as store:
        store.repair(warn=False)
    with make(path):  # reopening removes zarr's own leftovers only
        pass
    assert (notes / "project.json").exists() and (notes / "project.json.1234.partial").exists()
    assert (path / "README.txt").read_text() == "mine" and (path / "writer.lock").exists()


def test_repair_needs_the_store_open_for_writing(full):
    path, _ = full
    with pytest.raises(store_mod.StoreError, match="not open for writing"):
        EmbeddingStore.open(path).repair()


def test_healthy_store_verifies_in_one_line(full):
    path, _ = full
    report = EmbeddingStore.open(path).verify()
    assert report.healthy and report.checksums
    assert report.line() == (
        f"{path}: healthy: 0 pending, {ALL} done, 0 failed, 0 background; checksummed"
    )


def test_band_reader_finds_the_damaged_chunk_among_many(tmp_path):
    # a wide grid: one band of chunks holds several; only the damaged one is lost
    shape = (20, 70)
    path = tmp_path / "w.zarr"
    sig = {"format": 1, "grid": {"rows": 20, "cols": 70}, "embed_dim": DIM}
    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    with EmbeddingStore.open_or_create(path, sig, shape=shape) as store:
        store.write_embeddings(rows, cols, unit_vectors(len(rows)))
    flip(chunk_file(path, "embeddings", 1, 2, 0))
    report = EmbeddingStore.open(path).verify()
    assert report.lost_count == 4 * 16 and report.lost[16:, 32:48].all()
    assert [c.coords for c in report.bad_chunks] == [(1, 2, 0)]


# ---------------------------------------------------------------- stores made before checksums
@pytest.fixture
def old_store(tmp_path, monkeypatch):
    """A store as main made them: zstd, no crc32c."""
    from zarr.codecs import ZstdCodec

    with monkeypatch.context() as patch:
        patch.setattr(store_mod, "_compressors", lambda: (ZstdCodec(level=0),))
        path = tmp_path / "old.zarr"
        make(path).close()
    return path


def test_store_without_checksums_opens_and_is_used(old_store):
    with make(old_store) as store:
        assert not store.checksums
        store.write_embeddings([0, 19], [0, 17], unit_vectors(2))
        np.testing.assert_allclose(store.embeddings_at([0, 19], [0, 17]), unit_vectors(2), 2e-3)
    report = EmbeddingStore.open(old_store).verify()
    assert report.healthy and report.line().endswith("no chunk checksums (older store)")


def test_truncated_chunk_of_a_store_without_checksums_is_detected(old_store):
    rows, cols = np.divmod(np.arange(ALL), SHAPE[1])
    with make(old_store) as store:
        store.write_embeddings(rows, cols, unit_vectors(ALL))
    truncate(chunk_file(old_store, "embeddings", 0, 0, 0))
    store = EmbeddingStore.open(old_store)
    with pytest.warns(StoreDamageWarning, match="cannot be decompressed"):
        emb = store.embeddings()
    assert np.isnan(emb[in_chunk00()]).all() and np.isfinite(emb[~in_chunk00()]).all()
    with EmbeddingStore.open(old_store, writable=True) as writer:
        writer.repair(warn=False)
        assert writer.verify().healthy


# ---------------------------------------------------------------- precision in the signature
def fake(precision=None):
    grid = SimpleNamespace(to_dict=lambda: {"level": 0, "tile_size": 64, "stride": 64})
    slide = SimpleNamespace(fingerprint="f1", name="s", path="x.svs")
    model = SimpleNamespace(fingerprint="m1", preprocess_info={"size": 64}, embed_dim=32)
    if precision is not None:
        model.precision = precision
    return slide, model, grid


def test_fp32_signature_and_folder_name_are_those_of_existing_stores():
    # ee893249171f: the hash main gives this (slide, model, grid), which has no precision
    assert signature_hash(make_signature(*fake())) == "ee893249171f"
    assert make_signature(*fake("fp32")) == make_signature(*fake())
    assert "precision" not in make_signature(*fake("fp32"))


def test_half_precision_is_part_of_the_signature_and_continuing_is_refused(tmp_path):
    bf16 = make_signature(*fake("bf16"))
    fp32 = make_signature(*fake("fp32"))
    assert bf16["precision"] == "bf16" and bf16 != fp32
    # one folder whatever the precision: a float32 session finds a store made in bf16 ...
    assert store_path_for(*fake("bf16"), root=tmp_path) == store_path_for(*fake(), root=tmp_path)
    assert signature_matches(bf16, fp32, writing=False)  # ... and may read it
    assert not signature_matches(bf16, fp32, writing=True)
    # ... but never continues it in another precision
    path = store_path_for(*fake("bf16"), root=tmp_path)
    bf16["grid"].update(rows=2, cols=2)
    fp32["grid"].update(rows=2, cols=2)
    with EmbeddingStore.open_or_create(path, bf16, shape=(2, 2)) as store:
        assert store.precision == "bf16"
        store.write_embeddings([0], [0], np.eye(1, 32))
    with pytest.raises(store_mod.StoreError, match=r"precision \('bf16' != 'fp32'\)") as info:
        EmbeddingStore.open_or_create(path, fp32, shape=(2, 2))
    assert "\n" not in str(info.value)
    reader = EmbeddingStore.open(path)  # untouched
    assert reader.precision == "bf16" and reader.counts()["done"] == 1
    with EmbeddingStore.open_or_create(path, bf16, shape=(2, 2)) as store:  # same precision: ok
        assert store.counts()["done"] == 1


def test_default_cache_root_uses_platformdirs(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("NAPARI_CONCH_CACHE", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name, appauthor: f"/c/{name}")
    assert store_mod.default_cache_root().as_posix() == "/c/napari-conch"
    monkeypatch.setenv("NAPARI_CONCH_CACHE", str(tmp_path))
    assert store_mod.default_cache_root() == tmp_path


def test_missing_array_metadata_is_a_damaged_store(full):
    path, _ = full
    shutil.rmtree(path / "tissue")
    with pytest.raises(store_mod.StoreError, match=r"damaged embedding store \(missing"):
        EmbeddingStore.open(path)
    (path / "status" / "zarr.json").write_text("{garbage")
    with pytest.raises(store_mod.StoreError, match=r"status/zarr\.json cannot be read"):
        EmbeddingStore.open(path)


def test_point_reads_survive_a_damaged_status_chunk(full):
    path, _ = full
    truncate(chunk_file(path, "status", 0, 0))
    with pytest.warns(StoreDamageWarning, match=r"status: 1 chunk"):
        at = EmbeddingStore.open(path).embeddings_at(np.array([0, 19]), np.array([0, 17]))
    assert np.isnan(at).all()  # status unknown: not DONE, never numbers


def test_embedding_blocks_stream_band_by_band_without_damaged_tiles(full):
    path, vectors = full
    flip(chunk_file(path, "embeddings", 1, 1, 0))
    store = EmbeddingStore.open(path)
    with pytest.warns(StoreDamageWarning, match=r"8 tile\(s\) \(row 16 col 16"):
        blocks = list(store.iter_embedding_blocks())
    assert [(b[0].start, b[0].stop) for b in blocks] == [(0, 16), (16, 20)]
    _, emb, done = blocks[1]
    assert emb.shape == (4, SHAPE[1], DIM) and done.shape == (4, SHAPE[1])
    assert not done[:, 16:].any() and done[:, :16].all() and np.isnan(emb[:, 16:]).all()
    np.testing.assert_allclose(emb[:, :16], vectors[16:, :16], atol=2e-3)
    assert blocks[0][2].all()


# ---------------------------------------------------------------- integrity binds place
def swap(path, a, b):
    """Swap two chunk files (each keeps a valid checksum)."""
    fa, fb = chunk_file(path, "embeddings", *a), chunk_file(path, "embeddings", *b)
    data = fa.read_bytes()
    fa.write_bytes(fb.read_bytes())
    fb.write_bytes(data)


def in_chunks(*coords):
    mask = np.zeros(SHAPE, bool)
    for r, c in coords:
        mask[16 * r : 16 * r + 16, 16 * c : 16 * c + 16] = True
    return mask


def test_swapped_embeddings_chunks_are_damage_never_wrong_numbers(full):
    """Two chunk files swapped, each with a valid checksum: 6 tiles got WRONG scores while 168
    were set aside (the checksum did not bind a chunk to its place)."""
    path, vectors = full
    swap(path, (0, 0, 0), (1, 1, 0))
    moved = in_chunks((0, 0), (1, 1))
    store = EmbeddingStore.open(path)
    with pytest.warns(StoreDamageWarning) as caught:
        emb = store.embeddings()
    line = str(caught[0].message)
    assert f"{moved.sum()} tile(s)" in line and "not the one written there" in line
    assert np.isnan(emb[moved]).all()
    np.testing.assert_allclose(emb[~moved], vectors[~moved], atol=2e-3)
    with pytest.warns(StoreDamageWarning):  # a point lookup and the band reader agree
        at = EmbeddingStore.open(path).embeddings_at(np.array([0, 17, 5]), np.array([0, 17, 17]))
    assert np.isnan(at[:2]).all() and np.isfinite(at[2]).all()
    with pytest.warns(StoreDamageWarning):
        blocks = list(EmbeddingStore.open(path).iter_embedding_blocks())
    done = np.concatenate([d for _, _, d in blocks])
    assert (done == ~moved).all()
    with pytest.warns(StoreDamageWarning):
        index = QueryIndex.from_store(EmbeddingStore.open(path))
    assert index.size == ALL - moved.sum() and not index.valid[moved].any()
    report = EmbeddingStore.open(path).verify()
    # the edge chunk (1, 1) holds 4 x 2 tiles: 8 vectors each way would have been wrong
    # numbers; the rest of chunk (0, 0) reads NaN (caught before)
    assert report.lost_count == moved.sum() and report.misplaced == 16 and not report.bad_chunks
    assert report.line().startswith(f"{path}: damaged: {moved.sum()} tile(s)")
    with EmbeddingStore.open(path, writable=True) as writer:
        writer.repair(warn=False)
        assert (writer.status()[moved] == TileStatus.PENDING).all()
        assert writer.verify().healthy
        rows, cols = np.nonzero(moved)  # the next run writes them again, in their place
        writer.write_embeddings(rows, cols, vectors[moved])
    np.testing.assert_allclose(EmbeddingStore.open(path).embeddings(), vectors, atol=2e-3)


def test_a_chunk_moved_onto_another_place_is_damage(tmp_path):
    path = tmp_path / "s.zarr"
    moved = in_chunks((0, 1))
    with make(path) as store:
        rows, cols = np.nonzero(in_chunks((0, 0)) | moved)
        store.write_embeddings(rows, cols, unit_vectors(len(rows)))
    chunk_file(path, "embeddings", 0, 0, 0).replace(chunk_file(path, "embeddings", 0, 1, 0))
    report = EmbeddingStore.open(path).verify()
    # (0, 0) is gone (NaN: caught before); (0, 1) holds (0, 0)'s vectors: caught now
    assert report.lost[in_chunks((0, 0))].all() and report.lost[moved].all()
    assert report.misplaced == moved.sum()


@pytest.mark.parametrize("with_checks", [False, True], ids=["chunk", "chunk-and-its-checks"])
def test_a_chunk_restored_from_another_store_is_damage(tmp_path, with_checks):
    """A chunk (with, or without, the checks of its tiles) copied from another store of the
    same grid; the other store was made from another model (another signature)."""
    here, there = tmp_path / "here.zarr", tmp_path / "there.zarr"
    rows, cols = np.divmod(np.arange(ALL), SHAPE[1])
    with make(here) as a, make(there, model_fingerprint="model-456") as b:
        a.write_embeddings(rows, cols, unit_vectors(ALL, seed=1))
        b.write_embeddings(rows, cols, unit_vectors(ALL, seed=2))
    names = [("embeddings", (0, 0, 0))] + ([("tile_check", (0, 0))] if with_checks else [])
    for name, coords in names:
        shutil.copyfile(chunk_file(there, name, *coords), chunk_file(here, name, *coords))
    report = EmbeddingStore.open(here).verify()
    # the checks' chunk covers the whole grid: copied too, no tile of this store is trusted
    lost = ALL if with_checks else CHUNK00
    assert report.lost_count == report.misplaced == lost and report.lost[in_chunk00()].all()


def test_deleted_status_chunk_is_damage_not_pending(full):
    """``verify`` called this store "healthy: 400 pending, 0 done": a status chunk that holds
    only PENDING is never written by zarr, so a deleted one could not be told apart."""
    path, vectors = full
    delete(chunk_file(path, "status", 0, 0))
    store = EmbeddingStore.open(path)
    report = store.verify()
    assert not report.healthy and report.lost_count == ALL
    assert report.line().startswith(f"{path}: damaged: {ALL} tile(s)")
    assert "status: 1 chunk(s) (missing)" in report.line()
    with pytest.warns(StoreDamageWarning, match=r"status: 1 chunk\(s\) \(missing\)"):
        assert (store.status() == TileStatus.PENDING).all()
    with EmbeddingStore.open(path, writable=True) as writer:
        writer.repair(warn=False)
        assert writer.verify().healthy and (writer.status() == TileStatus.PENDING).all()
        assert chunk_file(path, "status", 0, 0).exists()  # written again, all PENDING
        writer.write_embeddings([3], [4], vectors[3, 4][None])
        assert writer.counts()["done"] == 1 and writer.verify().healthy


def test_a_new_store_has_every_status_chunk_even_when_all_pending(tmp_path):
    make(tmp_path / "s.zarr").close()
    assert chunk_file(tmp_path / "s.zarr", "status", 0, 0).is_file()
    report = EmbeddingStore.open(tmp_path / "s.zarr").verify()
    assert report.healthy and report.counts["pending"] == ALL and report.placed


def test_deleted_check_chunk_loses_its_done_tiles_and_is_repaired(full):
    path, _ = full
    delete(chunk_file(path, "tile_check", 0, 0))
    report = EmbeddingStore.open(path).verify()
    assert report.lost_count == ALL  # no check: no embedding is trusted
    with EmbeddingStore.open(path, writable=True) as writer:
        writer.repair(warn=False)
        assert writer.verify().healthy and writer.counts()["pending"] == ALL


def test_a_store_without_its_check_array_is_refused(full):
    path, _ = full
    shutil.rmtree(path / "tile_check")
    with pytest.raises(store_mod.StoreError, match=r"damaged embedding store.*tile_check"):
        EmbeddingStore.open(path)


@pytest.fixture
def store_before_place_checks(tmp_path):
    """A store as the version before place checks made them: crc32c, status fill 0 (chunks
    that hold only PENDING not written), no ``tile_check`` array."""
    import json

    path = tmp_path / "before.zarr"
    make(path).close()
    shutil.rmtree(path / "tile_check")
    meta = path / "status" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["fill_value"] = 0
    meta.write_text(json.dumps(doc))
    chunk_file(path, "status", 0, 0).unlink()
    return path


def test_store_made_before_place_checks_is_read_and_written(store_before_place_checks):
    path = store_before_place_checks
    rows, cols = np.divmod(np.arange(ALL), SHAPE[1])
    vectors = unit_vectors(ALL, seed=5)
    with EmbeddingStore.open(path, writable=True) as store:
        assert not store.placed and store.checksums
        assert (store.status() == TileStatus.PENDING).all()
        store.write_embeddings(rows, cols, vectors)
    assert not (path / "tile_check").exists()  # the layout is left as it is
    store = EmbeddingStore.open(path)
    np.testing.assert_allclose(store.embeddings(), vectors.reshape(*SHAPE, DIM), atol=2e-3)
    report = store.verify()
    assert report.healthy and not report.placed
    assert report.line().endswith("; checksummed, no place checks (older store)")
