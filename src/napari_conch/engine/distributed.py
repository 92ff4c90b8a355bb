"""Embedding slides on a ``dask.distributed`` cluster.

The client plans each slide (tissue mask, tile order, store) and writes every result into the
store itself, so the store is written by one process exactly as in a local run; workers embed
blocks of tiles (one store chunk, 16 x 16 tiles, at most). Each worker process loads the model
once (:func:`worker_model`) and keeps its slides open. Slide files and the model source must be
reachable under the same paths on the workers. ``distributed`` is an optional dependency
(``pip install napari-conch[distributed]``).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.embed import (
    BatchResult,
    Cancel,
    _check_options,
    _is_cancelled,
    drain,
    model_batches,
    open_slide_checked,
    plan_run,
    run_batches,
)
from napari_conch.engine.progress import EmbedProgress, EmbedSummary
from napari_conch.engine.store import BLOCK, EmbeddingStore, make_info, make_signature
from napari_conch.engine.store import store_path_for as _store_path_for
from napari_conch.engine.tiles import Box
from napari_conch.errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """How workers load the model: the arguments of ``load_model``."""

    source: str
    config: Any = None
    device: str | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What the client needs of a model for a store's signature, measured on a worker."""

    source: str
    fingerprint: str
    image_size: int
    embed_dim: int
    logit_scale: float
    preprocess_info: dict
    config: Any
    tokenizer_file: str | None
    default_tile_size: int | None = None


def get_client(scheduler: Any) -> Any:
    """Return a ``distributed.Client`` for an address (or the client itself)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise InputError(
            "--scheduler needs dask.distributed: pip install 'napari-conch[distributed]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler
    try:
        return Client(str(scheduler), timeout="20s")
    except OSError as exc:
        raise InputError(f"scheduler {scheduler}: cannot connect ({exc})") from exc


@functools.lru_cache(maxsize=2)
def worker_model(spec: ModelSpec) -> Any:
    """The model of ``spec`` in this worker process, loaded on first use."""
    from napari_conch.model import load_model

    return load_model(spec.source, config=spec.config, device=spec.device)


@functools.lru_cache(maxsize=8)
def _worker_slide(path: str, slide_mpp: float | None) -> Any:
    return open_slide_checked(path, slide_mpp)


def model_facts(spec: ModelSpec) -> ModelFacts:
    """Load the model (once per worker) and return what signatures need (runs on a worker)."""
    model = worker_model(spec)
    return ModelFacts(
        source=str(model.source),
        fingerprint=model.fingerprint,
        image_size=int(model.image_size),
        embed_dim=int(model.embed_dim),
        logit_scale=float(model.logit_scale),
        preprocess_info=dict(model.preprocess_info),
        config=model.config,
        tokenizer_file=model.tokenizer_file,
        default_tile_size=int(model.default_tile_size),
    )


def embed_block(
    spec: ModelSpec,
    slide_path: str,
    slide_mpp: float | None,
    grid_dict: dict,
    rows: np.ndarray,
    cols: np.ndarray,
    batch_size: int,
) -> list[BatchResult]:
    """Embed tiles ``(rows, cols)`` of a slide on a worker; return the batches' results."""
    from napari_conch.slide import TileGrid

    model = worker_model(spec)
    slide = _worker_slide(slide_path, slide_mpp)
    grid = TileGrid.from_dict(grid_dict)
    with _local_dask():
        results = model_batches(
            model, slide, grid, rows, cols, batch_size=batch_size, num_readers=1
        )
        return [
            BatchResult(r.rows, r.cols, r.embeddings.astype(np.float16), r.failed) for r in results
        ]


def _local_dask() -> Any:
    """Compute slide pixels (lazy dask arrays of open files) here, never on the cluster."""
    import dask

    return dask.config.set(scheduler="threads")


def _blocks(rows: np.ndarray, cols: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split tiles (already in store-block order) into runs that share one store chunk."""
    if len(rows) == 0:
        return
    key = (rows // BLOCK) * (1 << 32) + cols // BLOCK
    cuts = np.flatnonzero(np.diff(key)) + 1
    yield from zip(np.split(rows, cuts), np.split(cols, cuts), strict=True)


def cluster_batches(
    client: Any,
    spec: ModelSpec,
    slide_path: str,
    slide_mpp: float | None,
    grid: Any,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    batch_size: int,
    in_flight: int | None = None,
) -> Iterator[BatchResult]:
    """Submit tile blocks to the cluster, a bounded number at a time; yield results as they come.

    Closing the iterator cancels the blocks not yet done.
    """
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = in_flight or 2 * workers
    blocks = _blocks(rows, cols)
    grid_dict = grid.to_dict()

    def submit(block: tuple[np.ndarray, np.ndarray]) -> Any:
        r, c = block
        return client.submit(
            embed_block, spec, slide_path, slide_mpp, grid_dict, r, c, batch_size, pure=False
        )

    # islice, not zip(blocks, range(limit)): zip would take one block more and drop it
    futures = [submit(b) for b in itertools.islice(blocks, limit)]
    pending = as_completed(futures)
    try:
        for future in pending:
            results = future.result()
            future.release()
            nxt = next(blocks, None)
            if nxt is not None:
                pending.add(submit(nxt))
            yield from results
    finally:
        for future in list(pending.futures):
            future.cancel()


def embed_slide_cluster_iter(
    client: Any,
    slide_path: str | os.PathLike,
    spec: ModelSpec,
    *,
    level: int | None = None,
    mpp: float | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    min_tissue: float = 0.25,
    batch_size: int = 32,
    store_root: str | os.PathLike | None = None,
    slide_mpp: float | None = None,
    region: Box | None = None,
    cancel: Cancel = None,
) -> Generator[EmbedProgress, None, EmbedSummary]:
    """Like :func:`~napari_conch.engine.embed.embed_slide_iter`, with the model on the cluster."""
    from napari_conch.slide import make_grid

    _check_options(batch_size, min_tissue, 1)
    facts = client.submit(model_facts, spec, pure=False).result()
    with _local_dask():
        slide = open_slide_checked(slide_path, slide_mpp)
        own_size = facts.default_tile_size or facts.image_size
        size = int(tile_size) if tile_size is not None else own_size
        grid = make_grid(slide, level=level, mpp=mpp, tile_size=size, stride=stride)
        store = EmbeddingStore.open_or_create(
            _store_path_for(slide, facts, grid, store_root),
            make_signature(slide, facts, grid),
            shape=tuple(grid.shape),
            info=make_info(slide, facts),
        )
        plan = plan_run(slide, grid, store, min_tissue=min_tissue, region=region)
    path = str(Path(slide.path).resolve())
    results = cluster_batches(
        client, spec, path, slide_mpp, grid, plan.rows, plan.cols, batch_size=batch_size
    )
    return (yield from run_batches(store, plan, results, cancel=_is_cancelled(cancel)))


def embed_on_cluster(
    client: Any,
    slide_paths: Sequence[str | os.PathLike],
    model_source: str | os.PathLike,
    *,
    config: Any = None,
    device: str | None = None,
    on_progress: Callable[[Path, EmbedProgress], None] | None = None,
    **options: Any,
) -> list[EmbedSummary]:
    """Embed several slides on a cluster, one after the other; return their summaries.

    ``client`` is a ``distributed.Client`` or a scheduler address; ``options`` are those of
    :func:`embed_slide_cluster_iter`.
    """
    client = get_client(client)
    spec = ModelSpec(str(model_source), None if config is None else str(config), device)
    summaries = []
    for slide_path in slide_paths:
        events = embed_slide_cluster_iter(client, slide_path, spec, **options)

        def report(event: EmbedProgress, path: Path = Path(slide_path)) -> None:
            if on_progress is not None:
                on_progress(path, event)

        summaries.append(drain(events, report))
    return summaries
