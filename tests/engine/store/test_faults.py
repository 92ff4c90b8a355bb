"""Faults of the file system under a store: read-only folders and full disks are one-line
StoreErrors and never leave a half-written store.

Real faults where the sandbox lets a test make them (root: a read-only bind mount, a 1 MiB
tmpfs); otherwise those tests skip with the reason and the injected-OSError tests cover the same
paths.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from napari_conch.engine.store import lock as store_lock
from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.errors import StoreError
from tests.engine.store.test_embedding_store import SHAPE, make, signature, unit_vectors


@contextlib.contextmanager
def mounted(target, *args):
    """``mount *args target`` for the duration; skip the test when the sandbox does not allow it."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root on Linux to mount a read-only or full file system")
    target.mkdir(exist_ok=True)
    done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()}); the injected tests cover it")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def partial_files(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".partial")]


# ---------------------------------------------------------------- read-only
@pytest.mark.parametrize("lock_file", [True, False], ids=["lock-file-exists", "no-lock-file"])
def test_read_only_store_folder_is_one_line_and_still_readable(tmp_path, lock_file):
    source = tmp_path / "src"
    with make(source / "s.zarr") as store:
        store.write_embeddings([0], [0], unit_vectors(1))
    if not lock_file:
        (source / "s.zarr" / store_lock.LOCK_NAME).unlink()
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", str(source)) as ro:
        path = ro / "s.zarr"
        with pytest.raises(StoreError) as info:
            make(path)
        text = str(info.value)
        assert "\n" not in text and text.startswith(f"{path}: cannot open the store for writing")
        assert "Read-only file system" in text
        reader = EmbeddingStore.open(path)  # reading needs no lock
        assert reader.status()[0, 0] == TileStatus.DONE and reader.verify().healthy
        assert not store_lock.is_held(path)


def test_read_only_parent_folder_cannot_get_a_new_store(tmp_path):
    (tmp_path / "src").mkdir()
    with mounted(tmp_path / "ro", "--bind", "-o", "ro", str(tmp_path / "src")) as ro:
        with pytest.raises(StoreError, match=r"cannot create the store \(.*Read-only") as info:
            make(ro / "new.zarr")
        assert "\n" not in str(info.value)
    assert list((tmp_path / "src").iterdir()) == []


def test_injected_read_only_lock_file_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    make(path).close()

    real_open = os.open

    def refuse(file, *args, **kwargs):
        if str(file).endswith(store_lock.LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(StoreError, match=r"cannot open the store for writing \(Read-only"):
        make(path)
    assert EmbeddingStore.open(path).signature == signature()


# ---------------------------------------------------------------- full disk
def test_full_disk_while_writing_is_one_line_and_keeps_the_store_sound(tmp_path):
    shape, dim = (64, 64), 512  # 16 embeddings chunks of ~256 KiB: more than the 1 MiB disk
    sig = {"format": 1, "grid": {"rows": 64, "cols": 64}, "embed_dim": dim}
    rng = np.random.default_rng(0)
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=1m", "tmpfs") as disk:
        path = disk / "s.zarr"
        store = EmbeddingStore.open_or_create(path, sig, shape=shape)
        written, error = [], None
        for r0 in range(0, 64, 16):
            for c0 in range(0, 64, 16):
                rows, cols = (a.ravel() for a in np.mgrid[r0 : r0 + 16, c0 : c0 + 16])
                vectors = rng.normal(size=(256, dim))
                try:
                    store.write_embeddings(rows, cols, vectors)
                except StoreError as exc:
                    error = exc
                    break
                written.append((rows, cols))
            if error:
                break
        store.close()
        assert error is not None, "the 1 MiB disk never filled up"
        text = str(error)
        assert "\n" not in text and str(path) in text and "No space left on device" in text
        assert not partial_files(path)
        reader = EmbeddingStore.open(path)
        done = reader.status() == TileStatus.DONE
        assert done.sum() == 256 * len(written)  # exactly the batches that were written
        report = reader.verify()
        assert report.healthy, report.line()
        assert np.isfinite(reader.embeddings()[done]).all()


@pytest.fixture
def full_disk(monkeypatch):
    """Make zarr's file writes fail with ENOSPC after ``allow[0]`` more successful writes."""
    import zarr.storage._local as local

    allow = [10**9]
    real = local._put

    def put(path, value, exclusive=False):
        if allow[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        allow[0] -= 1
        return real(path, value, exclusive)

    monkeypatch.setattr(local, "_put", put)
    return allow


def test_injected_full_disk_on_embeddings_leaves_tiles_pending(tmp_path, full_disk):
    with make(tmp_path / "s.zarr") as store:
        store.write_embeddings([0], [0], unit_vectors(1))
        full_disk[0] = 0
        with pytest.raises(StoreError, match=r"cannot write embeddings \(No space left"):
            store.write_embeddings([1, 18 // 2], [1, 17], unit_vectors(2))
        with pytest.raises(StoreError, match=r"cannot update the store's attributes \(No space"):
            store.update_info(counts=store.counts())
        with pytest.raises(StoreError, match=r"cannot write the tissue mask \(No space"):
            store.set_tissue(np.ones(SHAPE, bool), np.ones(SHAPE))
    full_disk[0] = 10**9
    reader = EmbeddingStore.open(tmp_path / "s.zarr")
    assert reader.counts()["done"] == 1 and reader.verify().healthy
    assert not partial_files(tmp_path)


def test_injected_full_disk_between_embeddings_and_status(tmp_path, full_disk):
    # embeddings and place-check chunks written, status write fails: the tiles stay PENDING
    # (computed again); the same when the place check is what fails
    with make(tmp_path / "s.zarr") as store:
        for allow, step in ((2, "tile status"), (1, "embeddings")):
            full_disk[0] = allow
            with pytest.raises(StoreError, match=rf"cannot write {step} \(No space"):
                store.write_embeddings([3], [4], unit_vectors(1))
            full_disk[0] = 10**9
            assert store.status()[3, 4] == TileStatus.PENDING
            assert np.isnan(store.embeddings_at([3], [4])).all()
        assert store.verify().healthy


def test_injected_full_disk_while_creating_leaves_nothing(tmp_path, full_disk):
    full_disk[0] = 2
    with pytest.raises(StoreError, match=r"cannot create the store \(.*No space left"):
        make(tmp_path / "s.zarr")
    assert list(tmp_path.iterdir()) == []


def test_injected_full_disk_during_repair_is_one_line(tmp_path, full_disk):
    path = tmp_path / "s.zarr"
    with make(path) as store:
        vectors = unit_vectors(2)
        vectors[0, 0] = np.nan
        store.write_embeddings([2, 3], [2, 3], vectors)
        full_disk[0] = 0
        with pytest.raises(StoreError, match=r"cannot write tile status \(No space"):
            store.repair(warn=False)
    full_disk[0] = 10**9
    with EmbeddingStore.open(path, writable=True) as store:  # the next repair succeeds
        assert store.repair(warn=False).repaired and store.verify().healthy
