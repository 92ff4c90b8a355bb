"""One writer per store: the writer lock across processes, waiting, a killed holder, readers."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_conch.engine.store import lock as store_lock
from napari_conch.engine.store.embedding_store import EmbeddingStore, StoreBusyError, TileStatus
from napari_conch.errors import StoreError
from tests.engine.store.test_embedding_store import SHAPE, make, signature, unit_vectors

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

REPO = Path(__file__).resolve().parents[3]

#: A process that opens a store for writing, says so, and holds it until stdin closes.
HOLDER = """
import sys
from napari_conch.engine.store.embedding_store import EmbeddingStore
store = EmbeddingStore.open(sys.argv[1], writable=True)
print("locked", flush=True)
sys.stdin.read()
store.close()
print("released", flush=True)
"""


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture
def holder(tmp_path):
    """A store and another process holding its writer lock."""
    path = tmp_path / "s.zarr"
    make(path).close()
    proc = python(HOLDER, str(path))
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    yield path, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    proc.stdin.close()


def test_second_writer_is_refused_in_one_line_naming_the_holder(holder):
    path, proc = holder
    with pytest.raises(StoreBusyError) as info:
        make(path)
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text and f"pid {proc.pid}" in text
    assert f"on {socket.gethostname()}" in text and ", since 20" in text
    with pytest.raises(StoreError, match=f"pid {proc.pid}"):
        EmbeddingStore.open(path, writable=True)


def test_readers_keep_working_while_a_writer_holds_the_lock(holder):
    path, _ = holder
    store = EmbeddingStore.open(path)
    assert not store.writable
    assert store.status().shape == SHAPE and store.counts()["pending"] == SHAPE[0] * SHAPE[1]
    assert np.isnan(store.embeddings()).all()
    with pytest.raises(StoreError, match="not open for writing"):
        store.write_embeddings([0], [0], unit_vectors(1))


def test_a_second_writer_waits_for_the_first(holder):
    path, proc = holder
    proc.stdin.close()  # the holder closes the store and exits
    store = EmbeddingStore.open(path, writable=True, wait=60)
    assert store.writable and store_lock.is_held(path)
    assert proc.wait(timeout=30) == 0
    store.write_embeddings([1], [1], unit_vectors(1))
    store.close()
    assert not store_lock.is_held(path)


def test_waiting_gives_up_after_the_time_given(holder):
    path, proc = holder
    with pytest.raises(StoreError, match=r"after waiting 0\.3 s") as info:
        EmbeddingStore.open(path, writable=True, wait=0.3)
    assert f"pid {proc.pid}" in str(info.value)


def test_a_killed_holder_frees_the_lock(holder):
    path, proc = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = make(path)  # no wait: the OS released the lock with the process
    store.write_embeddings([2], [3], unit_vectors(1))
    assert store.status()[2, 3] == TileStatus.DONE


#: A writer that creates (or opens) the store when told to, then writes its own tiles slowly.
WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from napari_conch.engine.store.embedding_store import EmbeddingStore
from tests.engine.store.test_embedding_store import signature, unit_vectors
path, go, first = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
store = EmbeddingStore.open_or_create(path, signature(), shape=(20, 18), wait=120)
rows = np.arange(first, first + 10)
for r in rows:  # row by row, as a run writes batches
    store.write_embeddings(np.full(18, r), np.arange(18), unit_vectors(18, seed=int(r)))
    time.sleep(0.05)
store.close()
print("done", flush=True)
"""


@pytest.mark.slow
def test_two_processes_creating_and_filling_one_store_lose_nothing(tmp_path):
    # What two writers used to do: tiles DONE with NaN, or DONE marks lost. With the lock the
    # second waits for the first; creation is race-free (one store, no leftovers).
    path, go = tmp_path / "s.zarr", tmp_path / "go"
    procs = [python(WRITER, str(path), str(go), str(first)) for first in (0, 10)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    go.touch()  # both start at once
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "done", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "s.zarr"]
    store = EmbeddingStore.open(path)
    assert (store.status() == TileStatus.DONE).all()
    emb = store.embeddings()
    for r in range(20):
        np.testing.assert_allclose(emb[r], unit_vectors(18, seed=r), atol=2e-3)
    assert store.verify().healthy


def test_one_process_shares_its_lock_and_releases_it_with_the_last_store(tmp_path):
    path = tmp_path / "s.zarr"
    first, second = make(path), make(path)
    assert first.writable and second.writable
    first.close()
    assert store_lock.is_held(path) and not first.writable
    with pytest.raises(StoreError, match="not open for writing"):
        first.set_status(np.array([0]), np.array([0]), TileStatus.FAILED)
    second.write_embeddings([0], [0], unit_vectors(1))
    del second
    gc.collect()
    assert not store_lock.is_held(path)  # a dropped store gives the lock back


def test_context_manager_releases_and_other_process_can_write(tmp_path):
    path = tmp_path / "s.zarr"
    with make(path) as store:
        assert store_lock.is_held(path)
    assert not store_lock.is_held(path) and not store.writable
    proc = python(HOLDER, str(path))
    try:
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_lock_file_records_the_holder_and_is_left_alone(tmp_path):
    path = tmp_path / "s.zarr"
    store = make(path)
    holder = store_lock.read_holder(path)
    assert holder.pid == os.getpid() and holder.host == socket.gethostname()
    assert holder.since and holder.since.startswith(time.strftime("%Y"))
    store.close()
    assert (path / store_lock.LOCK_NAME).exists()
    assert store_lock.read_holder(path).describe() == "another process (no details recorded)"
    assert EmbeddingStore.open(path).signature == signature()  # zarr ignores the lock file


def _try_to_write(path: str, queue) -> None:
    try:
        EmbeddingStore.open(path, writable=True)
        queue.put("opened")
    except StoreError as exc:
        queue.put(str(exc))
    # the child exits normally (atexit runs): it must not release its parent's lock


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_neither_inherits_nor_releases_the_lock(tmp_path):
    import multiprocessing

    path = tmp_path / "s.zarr"
    store = make(path)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_try_to_write, args=(str(path), queue))
    child.start()
    answer = queue.get(timeout=60)
    child.join(timeout=60)
    assert answer.startswith(f"{path}: the store is being written by pid {os.getpid()}")
    assert "--wait" not in answer  # napari's docks have no such option; the CLI adds it
    proc = python(HOLDER, str(path))  # the parent still holds it after the child ended
    try:
        assert proc.stdout.readline() == ""
        assert "being written by pid" in proc.stderr.read()
    finally:
        proc.wait(timeout=30)
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    store.close()
