"""Embedding on a dask.distributed cluster: the store a local run gives, and the cluster's faults.

The clusters are LocalClusters: worker processes where a worker is killed (the scheduler then
runs in this process, which lets the test close it or look at what a worker was doing).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_conch.engine.distributed import (
    _blocks,
    absolute_source,
    embed_on_cluster,
    model_spec,
)
from napari_conch.engine.embed import embed
from napari_conch.engine.options import RunOptions
from napari_conch.engine.progress import EMBED, TISSUE
from napari_conch.engine.store.embedding_store import BLOCK, EmbeddingStore, TileStatus
from napari_conch.errors import ClusterError, InputError

SRC = Path(__file__).resolve().parents[2] / "src"
#: 35 x 47 tiles of 64 px (the tiny model's input) on the real SVS: 9 store blocks.
OPTIONS = RunOptions(level=0, tile_size=64, min_tissue=0.25, batch_size=64, device="cpu")


@pytest.fixture
def distributed(monkeypatch):
    module = pytest.importorskip(
        "distributed", reason="dask.distributed is an optional extra (napari-conch[distributed])"
    )
    # worker processes must import the package from this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return module


@pytest.fixture(scope="module")
def local_store(svs_path, tiny_checkpoint, tmp_path_factory):
    """The store a local run makes with :data:`OPTIONS`."""
    ckpt, config = tiny_checkpoint
    root = tmp_path_factory.mktemp("local")
    return EmbeddingStore.open(embed(svs_path, ckpt, OPTIONS, config=config, store_root=root))


def assert_same_store(remote: EmbeddingStore, local: EmbeddingStore) -> None:
    assert remote.path.name == local.path.name and remote.signature == local.signature
    np.testing.assert_array_equal(remote.status(), local.status())
    np.testing.assert_allclose(remote.embeddings(), local.embeddings(), atol=2e-3, equal_nan=True)
    assert ((remote.status() == TileStatus.DONE) == remote.tissue()).all()


def test_blocks_split_at_store_chunks():
    rows = np.array([0, 0, 15, 16, 16, 0])
    cols = np.array([0, 15, 3, 0, 1, 16])
    blocks = [(r.tolist(), c.tolist()) for r, c in _blocks(rows, cols)]
    assert blocks == [([0, 0, 15], [0, 15, 3]), ([16, 16], [0, 1]), ([0], [16])]
    assert BLOCK == 16
    assert list(_blocks(np.zeros(0, int), np.zeros(0, int))) == []


def test_relative_paths_are_resolved_before_they_are_sent(tmp_path, monkeypatch):
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    spec = model_spec("model.bin", RunOptions(device="cpu", precision="fp32"), "config.json")
    assert spec.source == str(tmp_path / "model.bin") and Path(spec.source).is_absolute()
    assert spec.config == str(tmp_path / "config.json")
    assert (spec.device, spec.precision) == ("cpu", "fp32")
    # sources that are not paths go as they are
    assert absolute_source("demo") == "demo" and absolute_source("hf_hub:MahmoodLab/conch")
    assert absolute_source("conch_ViT-B-16") == "conch_ViT-B-16" and absolute_source(None) is None


@pytest.mark.slow
def test_more_blocks_than_twice_the_workers_are_all_embedded(
    tmp_path, svs_path, tiny_checkpoint, local_store, distributed
):
    """One worker: two blocks in flight, four blocks; the old zip() lost the third one."""
    ckpt, config = tiny_checkpoint
    with (
        distributed.LocalCluster(
            n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        events = []
        (summary,) = embed_on_cluster(
            client, [svs_path], ckpt, OPTIONS, config=config, store_root=tmp_path,
            on_progress=lambda p, e: events.append(e),
        )  # fmt: skip
    remote = EmbeddingStore.open(summary.store_path)
    rows, cols = np.nonzero(remote.tissue())
    assert len(set(zip(rows // BLOCK, cols // BLOCK, strict=True))) > 2  # more than in flight
    assert summary.complete and summary.computed == summary.total == remote.tissue().sum() > 0
    assert_same_store(remote, local_store)
    assert events[-1].done == events[-1].total
    phases = [e.phase for e in events]  # the tissue search's steps (here), then the tiles
    assert phases[0] == TISSUE and phases == sorted(phases, key=[TISSUE, EMBED].index)


@pytest.mark.slow
def test_a_worker_killed_mid_block_is_retried_elsewhere(
    tmp_path, svs_path, tiny_checkpoint, local_store, distributed
):
    ckpt, config = tiny_checkpoint
    killed = {}
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2)

        def kill_a_busy_worker(path, event):
            if killed or not event.computed:
                return
            for address, state in cluster.scheduler.workers.items():
                if state.processing:  # a block runs there now
                    pids = client.run(os.getpid, workers=[address])
                    killed["blocks"] = len(state.processing)
                    killed["pid"] = pids[address]
                    os.kill(pids[address], signal.SIGKILL)
                    return

        (summary,) = embed_on_cluster(
            client, [svs_path], ckpt, OPTIONS, config=config, store_root=tmp_path,
            on_progress=kill_a_busy_worker,
        )  # fmt: skip
    assert killed.get("blocks", 0) >= 1, "no worker was busy when the first block came back"
    remote = EmbeddingStore.open(summary.store_path)
    assert summary.complete and summary.failed == 0
    assert_same_store(remote, local_store)


@pytest.mark.slow
def test_a_lost_scheduler_ends_the_run_and_keeps_what_was_computed(
    tmp_path, svs_path, tiny_checkpoint, tiny_model, distributed
):
    import dask

    from napari_conch.engine.embed import embed_slide, open_store

    ckpt, config = tiny_checkpoint
    seen = []
    fast = {"distributed.comm.timeouts.connect": "3s"}  # give up reconnecting after 3 s
    with (
        dask.config.set(fast),
        distributed.LocalCluster(
            n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
    ):
        client = distributed.Client(cluster, timeout="3s")

        def close_the_scheduler(path, event):
            if event.phase != EMBED:
                return  # the tissue search's steps: no tiles yet
            seen.append(event)
            if event.computed and len(seen) == 2:
                cluster.sync(cluster.scheduler.close)

        with pytest.raises(ClusterError, match=r"scheduler .*: connection lost; .*kept in"):
            embed_on_cluster(
                client, [svs_path], ckpt, OPTIONS, config=config, store_root=tmp_path,
                cluster_timeout=5, on_progress=close_the_scheduler,
            )  # fmt: skip
        client.close()
    (path,) = tmp_path.glob("*.zarr")
    store = EmbeddingStore.open(path)
    done = store.status() == TileStatus.DONE
    assert 0 < done.sum() < store.tissue().sum()
    assert done.sum() >= seen[-1].done
    assert np.isfinite(store.embeddings()[done]).all()
    assert store.attrs["last_run"]["error"].startswith("scheduler")
    # the next run (here a local one) computes only what is missing
    from napari_conch.slide import make_grid, open_slide

    slide = open_slide(svs_path)
    grid = make_grid(slide, level=0, tile_size=OPTIONS.tile_size)
    rest = embed_slide(slide, tiny_model, grid, open_store(slide, tiny_model, grid, tmp_path))
    assert rest.computed == rest.total - done.sum() and rest.complete


def test_no_worker_for_the_timeout_is_one_error(tmp_path, svs_path, tiny_checkpoint, distributed):
    ckpt, config = tiny_checkpoint
    with (
        distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
        pytest.raises(ClusterError, match=r"no worker for 1 s \(--cluster-timeout\)"),
    ):
        embed_on_cluster(
            client, [svs_path], ckpt, OPTIONS, config=config, store_root=tmp_path,
            cluster_timeout=1,
        )  # fmt: skip


class FakeFuture:
    def __init__(self, status, error=None):
        self.status, self.error = status, error

    def result(self):
        raise self.error


class FakeClient:
    status = "running"
    scheduler = type("Scheduler", (), {"address": "tcp://10.0.0.1:8786"})()

    def scheduler_info(self):
        return {"workers": {"tcp://10.0.0.2:1234": {}}}


def test_a_block_that_kills_every_worker_is_one_error(distributed):
    from distributed.scheduler import KilledWorker

    from napari_conch.engine.distributed import ClusterWatch

    watch = ClusterWatch(FakeClient(), timeout=5)
    worker = SimpleNamespace(address="tcp://10.0.0.2:1234")
    future = FakeFuture("error", KilledWorker("embed_block-1", worker, 3))
    with pytest.raises(ClusterError, match=r"tcp://10.0.0.1:8786: a block of tiles killed every"):
        watch.result(future)
    with pytest.raises(ClusterError, match="work was cancelled by the scheduler"):
        watch.result(FakeFuture("cancelled"))
    with pytest.raises(InputError, match="must be greater than 0"):
        ClusterWatch(FakeClient(), timeout=0)


def test_a_client_that_cannot_connect_is_freed_at_once():
    # left to the garbage collector, it would be closed in whichever thread collects it: in a
    # thread dask.distributed starts for the next client, the two wait for each other for ever
    import gc

    from napari_conch.engine.distributed import get_client

    dask_distributed = pytest.importorskip("distributed")
    gc.collect()  # the clients of earlier tests, if any are still waiting to be collected
    with pytest.raises(ClusterError, match="cannot connect"):
        get_client("tcp://127.0.0.1:9", timeout=1)
    assert [o for o in gc.get_objects() if isinstance(o, dask_distributed.Client)] == []
