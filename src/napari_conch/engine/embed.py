"""Streaming a slide's tissue tiles through the image encoder into an embedding store.

:func:`embed_slide_iter` is the one implementation: a generator of
:class:`~napari_conch.engine.progress.EmbedProgress` events whose return value is an
:class:`~napari_conch.engine.progress.EmbedSummary`. :func:`embed_slide` drains it (scripts, tests),
the napari widget runs it in a thread worker, and :func:`embed` opens slide, model, grid and store
from paths first (the CLI). The distributed form (:mod:`napari_conch.engine.distributed`) feeds the
same loop with results computed on a cluster.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.progress import EmbedProgress, EmbedSummary, RateMeter
from napari_conch.engine.store import (
    EmbeddingStore,
    TileStatus,
    make_info,
    make_signature,
    store_path_for,
)
from napari_conch.engine.tiles import Box, TileReader, tile_order
from napari_conch.errors import InputError, SlideError, StoreError

#: A cancel flag: a ``threading.Event`` or a callable returning True to stop.
Cancel = threading.Event | Callable[[], bool] | None


@dataclass
class BatchResult:
    """Embeddings of one batch (good tiles) and the tiles that failed to read."""

    rows: np.ndarray
    cols: np.ndarray
    embeddings: np.ndarray  # [N, D]
    failed: list[tuple[int, int, str]]


@dataclass
class EmbedPlan:
    """The tiles a run has to embed, after the tissue mask was recorded in the store.

    ``failed`` lists ``(row, col, reason)`` of the tiles over damaged slide data, already marked
    FAILED in the store (they are not in ``rows``/``cols``).
    """

    rows: np.ndarray
    cols: np.ndarray
    done: int
    background: int
    failed: list[tuple[int, int, str]] = field(default_factory=list)


def _is_cancelled(cancel: Cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise InputError(f"cancel={cancel!r}: expected a threading.Event or a callable")


def _check_options(batch_size: int, min_tissue: float, num_readers: int) -> None:
    if int(batch_size) < 1:
        raise InputError(f"batch_size={batch_size}: must be at least 1")
    if not 0.0 <= float(min_tissue) <= 1.0:
        raise InputError(f"min_tissue={min_tissue}: must be between 0 and 1")
    if int(num_readers) < 1:
        raise InputError(f"num_readers={num_readers}: must be at least 1")


def plan_run(
    slide: Any, grid: Any, store: EmbeddingStore, *, min_tissue: float, region: Box | None
) -> EmbedPlan:
    """Compute the tissue mask, record it in the store and return the tiles left to embed.

    Tiles over slide data that cannot be decoded (see :func:`napari_conch.slide.scan_tissue`)
    are recorded as tissue, marked FAILED with their reason and left out of the plan; a later run
    tries them again.
    """
    from napari_conch.slide import scan_tissue

    if tuple(store.shape) != tuple(grid.shape):
        raise StoreError(
            f"{store.path}: grid {grid.shape} does not match the store's {store.shape}"
        )
    store.repair()  # damaged chunks: their tiles become PENDING and are embedded again
    scan = scan_tissue(slide, grid, min_tissue=min_tissue)
    status = store.set_tissue(scan.mask | scan.damaged, scan.fraction)
    store.update_info(min_tissue=float(min_tissue), tissue_method=scan.method)
    damaged = scan.damaged & (status != TileStatus.DONE)
    bad_rows, bad_cols = np.nonzero(damaged)
    store.set_status(bad_rows, bad_cols, TileStatus.FAILED)
    failed = [
        (int(r), int(c), f"{slide.path}: {scan.reasons[(int(r), int(c))]}")
        for r, c in zip(bad_rows, bad_cols, strict=True)
    ]
    todo = scan.mask & (status != TileStatus.DONE)
    rows, cols = tile_order(todo, grid, region)
    done = int(np.count_nonzero(status == TileStatus.DONE))
    background = int(np.count_nonzero(status == TileStatus.BACKGROUND))
    return EmbedPlan(rows, cols, done, background, failed)


def model_batches(
    model: Any,
    slide: Any,
    grid: Any,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    batch_size: int,
    num_readers: int,
) -> Iterator[BatchResult]:
    """Read tiles in threads and embed them batch by batch with ``model.embed_images``."""
    with TileReader(slide, grid, num_readers=num_readers, prefetch=2 * batch_size) as reader:
        for batch in reader.batches(rows, cols, batch_size):
            if len(batch.rows):
                out = model.embed_images(batch.tiles)
                emb = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out)
            else:
                emb = np.zeros((0, int(model.embed_dim)), dtype=np.float32)
            yield BatchResult(batch.rows, batch.cols, emb, batch.failed)


def run_batches(
    store: EmbeddingStore,
    plan: EmbedPlan,
    results: Iterable[BatchResult],
    *,
    cancel: Cancel = None,
) -> Generator[EmbedProgress, None, EmbedSummary]:
    """Write each batch's results to the store and yield progress; return the summary.

    ``cancel`` is checked before each batch is asked for, so a cancelled run stops after at most
    the batch in progress; everything written so far stays valid.
    """
    cancelled = _is_cancelled(cancel)
    meter = RateMeter()
    total = plan.done + len(plan.rows) + len(plan.failed)
    done, computed, failed = plan.done, 0, list(plan.failed)
    empty = np.zeros(0, dtype=np.int64)
    stopped = False
    iterator = iter(results)
    try:
        yield meter.event(
            done=done, total=total, failed=len(failed), computed=0, rows=empty, cols=empty
        )
        while True:
            if cancelled():
                stopped = True
                break
            result = next(iterator, None)
            if result is None:
                break
            store.write_embeddings(result.rows, result.cols, result.embeddings)
            if result.failed:
                fr = np.asarray([f[0] for f in result.failed], dtype=np.int64)
                fc = np.asarray([f[1] for f in result.failed], dtype=np.int64)
                store.set_status(fr, fc, TileStatus.FAILED)
                failed.extend(result.failed)
            done += len(result.rows)
            computed += len(result.rows)
            rows = np.concatenate([result.rows, [f[0] for f in result.failed]]).astype(np.int64)
            cols = np.concatenate([result.cols, [f[1] for f in result.failed]]).astype(np.int64)
            yield meter.event(
                done=done, total=total, failed=len(failed), computed=computed, rows=rows, cols=cols
            )
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        _record_run(store, meter.elapsed(), computed, stopped)
    return EmbedSummary(
        store_path=store.path,
        total=total,
        done=done,
        computed=computed,
        failed_tiles=failed,
        background=plan.background,
        cancelled=stopped,
        elapsed_s=meter.elapsed(),
    )


def _record_run(store: EmbeddingStore, elapsed: float, computed: int, cancelled: bool) -> None:
    store.update_info(
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        counts=store.counts(),
        last_run={"computed": computed, "seconds": round(elapsed, 3), "cancelled": cancelled},
    )


def embed_slide_iter(
    slide: Any,
    model: Any,
    grid: Any,
    store: EmbeddingStore,
    *,
    batch_size: int = 32,
    min_tissue: float = 0.25,
    region: Box | None = None,
    cancel: Cancel = None,
    num_readers: int = 2,
) -> Generator[EmbedProgress, None, EmbedSummary]:
    """Embed the tissue tiles of ``slide`` on ``grid`` into ``store``, yielding progress.

    Parameters
    ----------
    slide, model, grid
        An opened slide, a loaded model (``embed_images``) and the tile grid.
    store
        The store for exactly this (slide, model, grid), e.g. from :func:`open_store`. Tiles
        already DONE are skipped; FAILED tissue tiles are tried again.
    batch_size
        Tiles per model call.
    min_tissue
        Minimum tissue fraction of a tile; other tiles are marked BACKGROUND and never embedded.
    region
        A level-0 box ``(x0, y0, x1, y1)`` (e.g. the viewport) whose tiles go first.
    cancel
        A ``threading.Event`` or a callable; checked between batches.
    num_readers
        Threads reading and decoding tiles while the model runs.

    Yields
    ------
    EmbedProgress
        One event before the first batch, then one per batch.

    Returns
    -------
    EmbedSummary
        As the ``StopIteration`` value (``embed_slide`` returns it directly).
    """
    _check_options(batch_size, min_tissue, num_readers)
    is_cancelled = _is_cancelled(cancel)
    plan = plan_run(slide, grid, store, min_tissue=min_tissue, region=region)
    results = model_batches(
        model, slide, grid, plan.rows, plan.cols, batch_size=batch_size, num_readers=num_readers
    )
    return (yield from run_batches(store, plan, results, cancel=is_cancelled))


def drain(
    events: Generator[EmbedProgress, None, EmbedSummary],
    on_progress: Callable[[EmbedProgress], None] | None = None,
) -> EmbedSummary:
    """Run a progress generator to its end, passing each event to ``on_progress``."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


def embed_slide(
    slide: Any,
    model: Any,
    grid: Any,
    store: EmbeddingStore,
    *,
    on_progress: Callable[[EmbedProgress], None] | None = None,
    **options: Any,
) -> EmbedSummary:
    """Blocking form of :func:`embed_slide_iter` (same options); returns the summary."""
    return drain(embed_slide_iter(slide, model, grid, store, **options), on_progress)


def open_store(
    slide: Any,
    model: Any,
    grid: Any,
    root: str | os.PathLike | None = None,
    *,
    wait: float | None = None,
) -> EmbeddingStore:
    """Open (or create) the store of (slide, model, grid) under ``root`` or the default cache.

    The store is opened for writing (its writer lock taken); ``wait`` is how many seconds to
    wait while another process writes it (``None``: fail at once, naming that process).
    """
    path = store_path_for(slide, model, grid, root)
    return EmbeddingStore.open_or_create(
        path,
        make_signature(slide, model, grid),
        shape=tuple(grid.shape),
        info=make_info(slide, model),
        wait=wait,
    )


@dataclass
class EmbedJob:
    """Everything one slide's embedding needs, opened from paths."""

    slide: Any
    model: Any
    grid: Any
    store: EmbeddingStore


def open_slide_checked(slide_path: str | os.PathLike, slide_mpp: float | None = None) -> Any:
    """Open a slide, with a clear error when the path does not exist."""
    from napari_conch.slide import open_slide

    path = Path(slide_path).expanduser()
    if not path.exists():
        raise SlideError(f"{path}: no such file or folder")
    return open_slide(path, mpp=slide_mpp)


def open_job(
    slide_path: str | os.PathLike,
    model_source: Any,
    *,
    config: Any = None,
    tokenizer: Any = None,
    level: int | None = None,
    mpp: float | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    device: Any = None,
    store_root: str | os.PathLike | None = None,
    slide_mpp: float | None = None,
    wait: float | None = None,
) -> EmbedJob:
    """Open slide, model (cached), grid and store for :func:`embed_slide_iter`.

    ``wait``: seconds to wait for another process writing the same store (see :func:`open_store`).
    """
    from napari_conch.model import load_model
    from napari_conch.slide import make_grid

    slide = open_slide_checked(slide_path, slide_mpp)
    model = load_model(model_source, config=config, tokenizer=tokenizer, device=device)
    size = int(tile_size) if tile_size is not None else model.default_tile_size
    grid = make_grid(slide, level=level, mpp=mpp, tile_size=size, stride=stride)
    return EmbedJob(slide, model, grid, open_store(slide, model, grid, store_root, wait=wait))


def embed(
    slide_path: str | os.PathLike,
    model_source: Any,
    *,
    config: Any = None,
    tokenizer: Any = None,
    level: int | None = None,
    mpp: float | None = None,
    tile_size: int | None = None,
    stride: int | None = None,
    min_tissue: float = 0.25,
    batch_size: int = 32,
    device: Any = None,
    store_root: str | os.PathLike | None = None,
    slide_mpp: float | None = None,
    region: Box | None = None,
    cancel: Cancel = None,
    on_progress: Callable[[EmbedProgress], None] | None = None,
) -> Path:
    """Embed one slide file with a model source; return the store's path.

    ``tile_size`` defaults to the model's own tile size (``LoadedModel.default_tile_size``:
    448 for CONCH, 128 for the demo model); ``level``/``mpp`` pick the grid's resolution
    (neither: level 0); ``slide_mpp`` gives the slide's microns per pixel when the file has none.
    See :func:`embed_slide_iter` for the other options.
    """
    job = open_job(
        slide_path,
        model_source,
        config=config,
        tokenizer=tokenizer,
        level=level,
        mpp=mpp,
        tile_size=tile_size,
        stride=stride,
        device=device,
        store_root=store_root,
        slide_mpp=slide_mpp,
    )
    embed_slide(
        job.slide,
        job.model,
        job.grid,
        job.store,
        batch_size=batch_size,
        min_tissue=min_tissue,
        region=region,
        cancel=cancel,
        on_progress=on_progress,
    )
    return job.store.path
