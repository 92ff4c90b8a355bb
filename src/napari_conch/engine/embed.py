"""Streaming a slide's tissue tiles through the image encoder into an embedding store.

:func:`embed_slide_iter` is the one implementation: a generator of
:class:`~napari_conch.engine.progress.EmbedProgress` events (those of the tissue search first,
then those of the tiles) whose return value is an
:class:`~napari_conch.engine.progress.EmbedSummary`. :func:`embed_slide` drains it (scripts, tests),
the napari widget runs it in a thread worker, and :func:`embed` opens slide, model, grid and store
from paths first (the CLI). The distributed form (:mod:`napari_conch.engine.distributed`) feeds the
same loop with results computed on a cluster.

Every function takes its options as one :class:`~napari_conch.engine.options.RunOptions`
(``None``: the defaults); keyword arguments named like its fields override single options
(``embed_slide(..., batch_size=8)``). Every tissue tile ends DONE with a finite embedding, or
FAILED with its reason (unreadable, or a non-finite embedding); an ``OSError`` while writing the
store becomes a :class:`~napari_conch.errors.StoreError` naming the store, and what was written
before it stays valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.model_workers import compute_workers, embedded_in_order
from napari_conch.engine.options import DEFAULTS, RunOptions
from napari_conch.engine.progress import EmbedProgress, EmbedSummary, RateMeter, tissue_event
from napari_conch.engine.store.embedding_store import (
    EmbeddingStore,
    TileStatus,
    make_info,
    make_signature,
    store_path_for,
)
from napari_conch.engine.tiles import Box, TileBatch, TileReader, tile_order
from napari_conch.errors import (
    InputError,
    NapariConchError,
    StoreError,
    describe_os_error,
)
from napari_conch.generators import drain, mapped

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


#: Seconds between the store writes of a run whose batches are written in groups (the CLI's):
#: each chunk is then written once per group rather than once per batch (a batch of a fast
#: model takes tens of milliseconds, a chunk write a few), and a killed run loses at most this
#: much work.
WRITE_EVERY_S = 1.0
#: The same for a run whose maps are shown as it goes (the dock's): the maps fill in this often.
#: Written (and read back into the live index) batch by batch, the dock embedded the 20k x 20k
#: benchmark slide at 483 tiles/s against the CLI's 1,328; in groups, 899 (``bench/dock_rate.py``).
LIVE_WRITE_EVERY_S = 0.5
#: Batches at once in such a run (see :mod:`~napari_conch.engine.model_workers`): one, so that
#: napari's event loop keeps a core's share. With two the dock went to 1,222 tiles/s, but the
#: live maps' longest pause from about 110 to 121-170 ms (``bench/stalls.py``).
LIVE_WORKERS = 1

#: Why a tile whose embedding has NaN or infinite values is FAILED instead of DONE.
NON_FINITE = "non-finite embedding"


def run_options(options: RunOptions | None = None, **overrides: Any) -> RunOptions:
    """``options`` (``None``: :data:`~napari_conch.engine.options.DEFAULTS`) with ``overrides``.

    Raises
    ------
    InputError
        When ``options`` is not a :class:`RunOptions`, an override is not one of its fields, or
        a value is out of range (checked before anything is opened or created).
    """
    base = DEFAULTS if options is None else options
    if not isinstance(base, RunOptions):
        raise InputError(f"options={options!r}: expected a RunOptions")
    if not overrides:
        return base
    names = {f.name for f in dataclasses.fields(RunOptions)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InputError(f"unknown run option(s): {', '.join(unknown)}")
    return base.replace(**overrides)


@contextlib.contextmanager
def writing(store: EmbeddingStore) -> Iterator[None]:
    """Turn an ``OSError`` of a store write (full disk, read-only) into a :class:`StoreError`."""
    try:
        yield
    except OSError as exc:
        reason = describe_os_error(exc)
        raise StoreError(f"{store.path}: cannot write the store ({reason})") from exc


def plan_run(
    slide: Any, grid: Any, store: EmbeddingStore, *, min_tissue: float, region: Box | None
) -> EmbedPlan:
    """Compute the tissue mask, record it in the store and return the tiles left to embed.

    Tiles over slide data that cannot be decoded (see :func:`napari_conch.slide.scan_tissue`)
    are recorded as tissue, marked FAILED with their reason and left out of the plan; a later run
    tries them again. Damaged store chunks are repaired first (their tiles become PENDING).
    :func:`plan_run_iter` is the same with the tissue search's progress.

    Raises
    ------
    InputError
        When no tile has tissue at ``min_tissue`` (and none was embedded or failed before): a
        run that would embed nothing is an error with its reason, not an empty success.
    """
    return drain(plan_run_iter(slide, grid, store, min_tissue=min_tissue, region=region))


def plan_run_iter(
    slide: Any, grid: Any, store: EmbeddingStore, *, min_tissue: float, region: Box | None
) -> Generator[EmbedProgress, None, EmbedPlan]:
    """:func:`plan_run` as a generator of tissue-phase events; returns the plan.

    The tissue search is a generator of steps
    (:func:`~napari_conch.slide.tissue.scan_tissue_steps`), run here in the caller's thread:
    each step becomes a :func:`~napari_conch.engine.progress.tissue_event` as soon as it is
    done, so no thread or queue is needed, and closing this generator stops the search after
    the blocks being read.
    """
    from napari_conch.slide import scan_tissue_steps

    if tuple(store.shape) != tuple(grid.shape):
        raise StoreError(
            f"{store.path}: grid {grid.shape} does not match the store's {store.shape}"
        )
    store.repair()  # damaged chunks: their tiles become PENDING and are embedded again
    steps = scan_tissue_steps(slide, grid, min_tissue=min_tissue)
    scan = yield from mapped(steps, lambda step: tissue_event(*step))
    with writing(store):
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
    if done + len(rows) + len(failed) == 0:
        raise InputError(no_tissue_message(slide, min_tissue, scan.fraction))
    return EmbedPlan(rows, cols, done, background, failed)


def _unless_cancelled(
    planning: Generator[EmbedProgress, None, EmbedPlan], cancelled: Callable[[], bool]
) -> Generator[EmbedProgress, None, EmbedPlan | None]:
    """The planning's events; None (the planning stopped) once ``cancelled()`` after one."""
    try:
        while True:
            try:
                event = next(planning)
            except StopIteration as stop:
                return stop.value
            yield event
            if cancelled():
                return None
    finally:
        planning.close()


def _cancelled_before_embedding(store: EmbeddingStore, elapsed_s: float) -> EmbedSummary:
    """The summary of a run cancelled during its tissue search: nothing computed or changed.

    The counts are the store's as they stand (a store searched before knows its tissue tiles).
    """
    counts = store.counts()
    done = counts["done"]
    summary = EmbedSummary(
        store_path=store.path,
        total=done + counts["pending"] + counts["failed"],
        done=done,
        computed=0,
        failed_tiles=[],
        background=counts["background"],
        cancelled=True,
        elapsed_s=elapsed_s,
    )
    with writing(store):
        _record_run(store, summary, None)
    return summary


def no_tissue_message(slide: Any, min_tissue: float, fraction: np.ndarray) -> str:
    """Why a run has nothing to embed: no tile reaches ``min_tissue``."""
    fraction = np.asarray(fraction, dtype=np.float32)
    best = float(np.nanmax(fraction)) if fraction.size else 0.0
    name = getattr(slide, "name", None) or getattr(slide, "path", "slide")
    return (
        f"{name}: no tissue found at min_tissue {float(min_tissue):g} (the tile with the most "
        f"tissue has {best:.2f}): lower it (--min-tissue) or check the slide"
    )


def model_batches(
    model: Any,
    slide: Any,
    grid: Any,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    batch_size: int,
    num_readers: int,
    workers: int | None = None,
) -> Iterator[BatchResult]:
    """Read tiles in threads and embed them with ``model.embed_images``, batches in order.

    On the CPU a fast model embeds several batches at once, each on one thread
    (:mod:`~napari_conch.engine.model_workers`): ``workers`` of them (``None``: as many as
    torch has threads; 1: one batch at a time on all of them).
    """

    def embedded(batch: TileBatch) -> BatchResult:
        if len(batch.rows):
            out = model.embed_images(batch.tiles)
            emb = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out)
        else:
            emb = np.zeros((0, int(model.embed_dim)), dtype=np.float32)
        return BatchResult(batch.rows, batch.cols, emb, batch.failed)

    workers = compute_workers(model) if workers is None else min(workers, compute_workers(model))
    prefetch = (workers + 1) * batch_size
    with TileReader(slide, grid, num_readers=num_readers, prefetch=prefetch) as reader:
        yield from embedded_in_order(embedded, reader.batches(rows, cols, batch_size), workers)


def split_finite(result: BatchResult) -> BatchResult:
    """Move tiles whose embedding is not finite from the embedded ones to the failed ones."""
    emb = np.asarray(result.embeddings)
    if emb.ndim != 2 or len(emb) != len(result.rows):
        raise ValueError(f"{len(result.rows)} tiles gave embeddings of shape {emb.shape}")
    finite = np.isfinite(emb).all(axis=1)
    if finite.all():
        return result
    pairs = zip(result.rows[~finite], result.cols[~finite], strict=True)
    bad = [(int(r), int(c), NON_FINITE) for r, c in pairs]
    return BatchResult(
        result.rows[finite], result.cols[finite], emb[finite], [*result.failed, *bad]
    )


def run_batches(
    store: EmbeddingStore,
    plan: EmbedPlan,
    results: Iterable[BatchResult],
    *,
    cancel: Cancel = None,
    write_every_s: float = 0.0,
) -> Generator[EmbedProgress, None, EmbedSummary]:
    """Write the batches' results to the store and yield progress; return the summary.

    ``cancel`` is checked before each batch is asked for, so a cancelled run stops after at most
    the batch in progress; everything written so far stays valid. Tiles whose embedding is not
    finite are marked FAILED (:data:`NON_FINITE`), never DONE. An ``OSError`` of a store write
    is raised as :class:`StoreError`; the run is recorded in the store's attributes whenever
    the disk still allows it.

    ``write_every_s`` groups the writes: with 0 (the default) each batch is written before its
    event is yielded; above 0, batches are kept in memory and written together once that many
    seconds have passed since the last write (and at the end, on cancel, on an error and when
    the generator is closed), so that the store's chunks are written once per group instead of
    once per batch. An event is still yielded per batch (``computed`` counts the batch); its
    ``done``, ``failed``, ``rows`` and ``cols`` are those written so far, as with 0. A killed
    process loses at most the last ``write_every_s`` seconds of work (computed again on resume).
    """
    cancelled = _is_cancelled(cancel)
    meter = RateMeter()
    total = plan.done + len(plan.rows) + len(plan.failed)
    done, computed, failed = plan.done, 0, list(plan.failed)
    empty = np.zeros(0, dtype=np.int64)
    stopped = False
    iterator = iter(results)
    error: BaseException | None = None
    held: list[BatchResult] = []
    last_write = time.monotonic()

    def write_held() -> tuple[np.ndarray, np.ndarray]:
        """Write the batches held; return the rows and columns of their tiles."""
        nonlocal done, last_write
        last_write = time.monotonic()
        if not held:
            return empty, empty
        group = merge_results(held)
        held.clear()
        with writing(store):
            store.write_embeddings(group.rows, group.cols, group.embeddings)
            if group.failed:
                fr = np.asarray([f[0] for f in group.failed], dtype=np.int64)
                fc = np.asarray([f[1] for f in group.failed], dtype=np.int64)
                store.set_status(fr, fc, TileStatus.FAILED)
        failed.extend(group.failed)
        done += len(group.rows)
        rows = np.concatenate([group.rows, [f[0] for f in group.failed]]).astype(np.int64)
        cols = np.concatenate([group.cols, [f[1] for f in group.failed]]).astype(np.int64)
        return rows, cols

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
            result = split_finite(result)
            held.append(result)
            computed += len(result.rows)
            rows, cols = empty, empty
            if write_every_s <= 0 or time.monotonic() - last_write >= write_every_s:
                rows, cols = write_held()
            yield meter.event(
                done=done, total=total, failed=len(failed), computed=computed, rows=rows, cols=cols
            )
        if held:  # the last group: written, then said
            rows, cols = write_held()
            yield meter.event(
                done=done, total=total, failed=len(failed), computed=computed, rows=rows, cols=cols
            )
    except BaseException as exc:  # also GeneratorExit: record the run, then let it go on
        error = exc
        raise
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        try:  # what was computed and not yet written (cancelled, closed, an error) is kept
            write_held()
        except NapariConchError:
            if error is None:
                raise
        summary = EmbedSummary(
            store_path=store.path,
            total=total,
            done=done,
            computed=computed,
            failed_tiles=failed,
            background=plan.background,
            cancelled=stopped,
            elapsed_s=meter.elapsed(),
        )
        try:
            with writing(store):
                _record_run(store, summary, error)
        except NapariConchError:
            if error is None:
                raise  # the run itself went well: a store that cannot be written is an error
    return summary


def merge_results(results: list[BatchResult]) -> BatchResult:
    """One :class:`BatchResult` of several (their tiles in order)."""
    if len(results) == 1:
        return results[0]
    return BatchResult(
        np.concatenate([r.rows for r in results]),
        np.concatenate([r.cols for r in results]),
        np.concatenate([r.embeddings for r in results]),
        [f for r in results for f in r.failed],
    )


def _record_run(store: EmbeddingStore, summary: EmbedSummary, error: BaseException | None) -> None:
    last_run = {
        "computed": summary.computed,
        "seconds": round(summary.elapsed_s, 3),
        "cancelled": summary.cancelled,
        "failed": summary.failed,
        "failed_reasons": dict(summary.failure_reasons()[:5]),
    }
    if error is not None and not isinstance(error, GeneratorExit):
        last_run["error"] = " ".join(str(error).split())[:300] or type(error).__name__
    store.update_info(
        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"), counts=store.counts(), last_run=last_run
    )


def embed_slide_iter(
    slide: Any,
    model: Any,
    grid: Any,
    store: EmbeddingStore,
    options: RunOptions | None = None,
    *,
    region: Box | None = None,
    cancel: Cancel = None,
    write_every_s: float = 0.0,
    workers: int | None = None,
    **overrides: Any,
) -> Generator[EmbedProgress, None, EmbedSummary]:
    """Embed the tissue tiles of ``slide`` on ``grid`` into ``store``, yielding progress.

    Parameters
    ----------
    slide, model, grid
        An opened slide, a loaded model (``embed_images``) and the tile grid.
    store
        The store for exactly this (slide, model, grid), e.g. from :func:`open_store`. Tiles
        already DONE are skipped; FAILED tissue tiles are tried again.
    options
        The run options; this function uses ``batch_size``, ``min_tissue`` and
        ``num_readers`` (``None``: the defaults).
    region
        A level-0 box ``(x0, y0, x1, y1)`` (e.g. the viewport) whose tiles go first.
    cancel
        A ``threading.Event`` or a callable; checked between the tissue search's steps (a run
        cancelled there computes nothing and changes no tile) and between batches.
    write_every_s
        0: each batch is in the store before its event; above 0: batches are written together
        every that many seconds (see :func:`run_batches`; the CLI's runs, whose events nobody
        reads back from the store, use :data:`WRITE_EVERY_S`).
    workers
        Batches embedded at once on the CPU by a fast model (see :func:`model_batches`;
        ``None``: as many as torch has threads).
    **overrides
        Single :class:`RunOptions` fields overriding ``options`` (e.g. ``batch_size=8``).

    Yields
    ------
    EmbedProgress
        First the tissue search's events (``phase`` :data:`~.progress.TISSUE`: ``done`` /
        ``total`` count its steps, no tiles), then the tiles' (``phase``
        :data:`~.progress.EMBED`): one before the first batch, then one per batch.

    Returns
    -------
    EmbedSummary
        As the ``StopIteration`` value (``embed_slide`` returns it directly).

    Raises
    ------
    InputError
        For bad options (before anything is read or written) and when no tile has tissue.
    StoreError
        When the store cannot be written (full disk, read-only); tiles written before stay.
    """
    opts = run_options(options, **overrides)
    is_cancelled = _is_cancelled(cancel)
    started = time.monotonic()
    planning = plan_run_iter(slide, grid, store, min_tissue=opts.min_tissue, region=region)
    plan = yield from _unless_cancelled(planning, is_cancelled)
    if plan is None:  # cancelled while the tissue was searched
        return _cancelled_before_embedding(store, time.monotonic() - started)
    results = model_batches(
        model,
        slide,
        grid,
        plan.rows,
        plan.cols,
        batch_size=opts.batch_size,
        num_readers=opts.num_readers,
        workers=workers,
    )
    return (
        yield from run_batches(
            store, plan, results, cancel=is_cancelled, write_every_s=write_every_s
        )
    )


def embed_slide(
    slide: Any,
    model: Any,
    grid: Any,
    store: EmbeddingStore,
    options: RunOptions | None = None,
    *,
    region: Box | None = None,
    cancel: Cancel = None,
    on_progress: Callable[[EmbedProgress], None] | None = None,
    **overrides: Any,
) -> EmbedSummary:
    """Blocking form of :func:`embed_slide_iter` (same arguments); returns the summary."""
    events = embed_slide_iter(
        slide, model, grid, store, options, region=region, cancel=cancel, **overrides
    )
    return drain(events, on_progress)


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
    wait while another process writes it (``None``: fail at once, naming that process). An
    ``OSError`` (a read-only folder, a full disk, ``root`` naming a file) is raised as a
    :class:`StoreError` naming the store; a store is created whole or not at all.
    """
    path = store_path_for(slide, model, grid, root)
    try:
        return EmbeddingStore.open_or_create(
            path,
            make_signature(slide, model, grid),
            shape=tuple(grid.shape),
            info=make_info(slide, model),
            wait=wait,
        )
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the store ({describe_os_error(exc)})") from exc


@dataclass
class EmbedJob:
    """Everything one slide's embedding needs, opened from paths."""

    slide: Any
    model: Any
    grid: Any
    store: EmbeddingStore
    options: RunOptions = DEFAULTS


def open_slide_checked(slide_path: str | os.PathLike, slide_mpp: float | None = None) -> Any:
    """Open a slide, with a clear error when the path is empty or does not exist."""
    from napari_conch.slide import open_slide

    return open_slide(slide_path, mpp=slide_mpp)


def load_run_model(
    model_source: Any, options: RunOptions, *, config: Any = None, tokenizer: Any = None
) -> Any:
    """The model of a run, on the options' device and precision (cached by ``load_model``)."""
    from napari_conch.model import load_model

    return load_model(
        model_source,
        config=config,
        tokenizer=tokenizer,
        device=options.device,
        precision=options.precision,
    )


def open_grid(slide: Any, model: Any, options: RunOptions) -> Any:
    """The tile grid of ``options`` on ``slide`` (tile size: the option, else the model's)."""
    from napari_conch.slide import make_grid

    return make_grid(
        slide,
        level=options.level,
        mpp=options.mpp,
        tile_size=options.tile_size_for(model),
        stride=options.stride,
    )


def open_job(
    slide_path: str | os.PathLike,
    model_source: Any,
    options: RunOptions | None = None,
    *,
    config: Any = None,
    tokenizer: Any = None,
    model: Any = None,
    wait: float | None = None,
    **overrides: Any,
) -> EmbedJob:
    """Open slide, model (cached), grid and store for :func:`embed_slide_iter`.

    The options are checked first, so a bad value creates nothing on disk. ``model`` is an
    already loaded model to use instead of loading ``model_source``; ``wait``: seconds to wait
    for another process writing the same store (see :func:`open_store`); ``overrides`` are
    single :class:`RunOptions` fields.
    """
    opts = run_options(options, **overrides)
    slide = open_slide_checked(slide_path, opts.slide_mpp)
    if model is None:
        model = load_run_model(model_source, opts, config=config, tokenizer=tokenizer)
    grid = open_grid(slide, model, opts)
    store = open_store(slide, model, grid, opts.store_root, wait=wait)
    return EmbedJob(slide, model, grid, store, opts)


def embed(
    slide_path: str | os.PathLike,
    model_source: Any,
    options: RunOptions | None = None,
    *,
    config: Any = None,
    tokenizer: Any = None,
    region: Box | None = None,
    cancel: Cancel = None,
    on_progress: Callable[[EmbedProgress], None] | None = None,
    **overrides: Any,
) -> Path:
    """Embed one slide file with a model source; return the store's path.

    ``options`` (or single fields as keyword ``overrides``) say how: the tile size defaults to
    the model's own, ``level``/``mpp`` pick the grid's resolution (neither: level 0),
    ``slide_mpp`` gives the slide's microns per pixel when the file has none. Tiles that
    failed are FAILED in the store (see ``counts`` in its attributes, or use
    :func:`embed_slide` for the summary).
    """
    opts = run_options(options, **overrides)
    job = open_job(slide_path, model_source, opts, config=config, tokenizer=tokenizer)
    embed_slide(
        job.slide,
        job.model,
        job.grid,
        job.store,
        opts,
        region=region,
        cancel=cancel,
        on_progress=on_progress,
    )
    return job.store.path
