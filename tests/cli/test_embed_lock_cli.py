"""Two ``napari-conch embed`` processes on one slide and store (demo model, small slide).

The second is refused in one line naming the first (exit 2), or with ``--wait`` waits for it and
then finds nothing left to compute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from napari_conch.engine.store.embedding_store import EmbeddingStore, TileStatus
from napari_conch.engine.store.lock import LOCK_NAME
from tests.engine.store.test_repair_run import write_small_slide

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes"),
]

REPO = Path(__file__).resolve().parents[2]

#: ``napari-conch embed`` whose model stops at its first batch until the file ``go`` exists.
SLOW_EMBED = """
import sys, time
from pathlib import Path
from napari_conch.model.loaded import LoadedModel

started, go = Path(sys.argv[1]), Path(sys.argv[2])
real = LoadedModel.embed_images
calls = []

def embed_images(self, tiles):
    calls.append(len(tiles))
    if len(calls) == 1:  # load_model's finite-output check on a blank tile
        return real(self, tiles)
    started.touch()
    while not go.exists():
        time.sleep(0.05)
    return real(self, tiles)

LoadedModel.embed_images = embed_images
from napari_conch.cli import main
sys.exit(main(sys.argv[3:]))
"""


def run(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, **kwargs,
    )  # fmt: skip


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: process ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: timed out")
        time.sleep(0.05)


def has_open(pid: int, path: Path) -> bool:
    """True when process ``pid`` has ``path`` open (Linux /proc)."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if Path(os.readlink(fd)) == path:
                return True
        except OSError:
            continue
    return False


def test_second_embed_is_refused_or_waits(tmp_path):
    slide = write_small_slide(tmp_path / "small.tif")
    stores = tmp_path / "stores"
    started, go = tmp_path / "started", tmp_path / "go"
    embed = ["embed", str(slide), "--model", "demo", "--store", str(stores), "--quiet"]
    first = run(["-c", textwrap.dedent(SLOW_EMBED), str(started), str(go), *embed])
    try:
        wait_for(started.exists, "first embed reaching its first batch", first)
        (store_path,) = stores.glob("*.zarr")

        second = run(["-m", "napari_conch", *embed])
        out, err = second.communicate(timeout=300)
        assert second.returncode == 2, (out, err)
        assert out == "" and err.count("\n") == 1
        expected = f"napari-conch embed: error: small.tif: {store_path}: the store is being written"
        assert err.startswith(f"{expected} by pid {first.pid} on ")
        assert err.rstrip().endswith(
            "try again when that run has finished (embed --wait waits for it)"
        )

        third = run(["-m", "napari_conch", *embed, "--wait", "300"])
        lock = (store_path / LOCK_NAME).resolve()
        if sys.platform == "linux":  # the third has the lock file open: it is waiting
            wait_for(lambda: has_open(third.pid, lock), "third embed waiting", third)
        go.touch()
        out1, err1 = first.communicate(timeout=300)
        assert first.returncode == 0, err1
        out3, err3 = third.communicate(timeout=300)
        assert third.returncode == 0, err3
        assert out1.strip() == out3.strip() == str(store_path)
    finally:
        go.touch()
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    store = EmbeddingStore.open(store_path)
    assert store.attrs["last_run"]["computed"] == 0  # the third found everything done
    status = store.status()
    assert ((status == TileStatus.DONE) == store.tissue()).all() and store.tissue().any()
    assert store.verify().healthy
