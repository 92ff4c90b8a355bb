"""Embedding on a dask.distributed LocalCluster gives the store a local run gives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_conch.engine.distributed import _blocks, embed_on_cluster
from napari_conch.engine.embed import embed
from napari_conch.engine.store import BLOCK, EmbeddingStore

SRC = Path(__file__).resolve().parents[2] / "src"


def test_blocks_split_at_store_chunks():
    rows = np.array([0, 0, 15, 16, 16, 0])
    cols = np.array([0, 15, 3, 0, 1, 16])
    blocks = [(r.tolist(), c.tolist()) for r, c in _blocks(rows, cols)]
    assert blocks == [([0, 0, 15], [0, 15, 3]), ([16, 16], [0, 1]), ([0], [16])]
    assert BLOCK == 16
    assert list(_blocks(np.zeros(0, int), np.zeros(0, int))) == []


@pytest.mark.slow
def test_cluster_store_equals_local_store(tmp_path, svs_path, tiny_checkpoint, monkeypatch):
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is an optional extra (napari-conch[distributed])"
    )
    ckpt, config = tiny_checkpoint
    options = dict(level=0, tile_size=128, min_tissue=0.25, batch_size=8)
    local = EmbeddingStore.open(
        embed(svs_path, ckpt, config=config, device="cpu", store_root=tmp_path / "local", **options)
    )
    # worker processes must import the package from this checkout
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        events = []
        (summary,) = embed_on_cluster(
            client, [svs_path], ckpt, config=config, device="cpu",
            store_root=tmp_path / "cluster", on_progress=lambda p, e: events.append(e), **options,
        )  # fmt: skip
        loads = client.run(
            lambda: (
                __import__("napari_conch.engine.distributed")
                .engine.distributed.worker_model.cache_info()
                .misses
            )
        )
    remote = EmbeddingStore.open(summary.store_path)
    assert summary.computed == summary.total > 0 and summary.failed == 0
    assert all(n <= 1 for n in loads.values())  # each worker loaded the model at most once
    assert remote.path.name == local.path.name
    assert remote.signature == local.signature
    np.testing.assert_array_equal(remote.status(), local.status())
    np.testing.assert_array_equal(remote.tissue(), local.tissue())
    np.testing.assert_allclose(remote.embeddings(), local.embeddings(), atol=2e-3, equal_nan=True)
    assert events[-1].done == events[-1].total
