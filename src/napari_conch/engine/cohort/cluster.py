"""Embedding a cohort of slides, on this machine or on a ``dask.distributed`` cluster.

Two ways to spread the work over a cluster, chosen by :func:`choose_mode`:

- ``"slides"`` (many slides): each slide is one task. The worker loads the model once per
  process (:func:`~napari_conch.engine.distributed.worker_model`), opens the slide, embeds it
  with the local engine and writes its store into the shared store folder itself. Stores are
  independent, so each has exactly one writer; nothing but a summary travels back.
- ``"tiles"`` (fewer slides than workers, e.g. one large slide): the slides go one after the
  other and each slide's tiles are spread over the workers
  (:func:`~napari_conch.engine.distributed.embed_on_cluster`).

Without a cluster the slides are embedded here, one after the other. Every way resumes: tiles
already DONE in a store are never computed again. Slide files, the model and the store folder
must be reachable under the same paths on the workers (a shared file system).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_conch.engine.options import RunOptions
from napari_conch.engine.progress import EmbedProgress, EmbedSummary
from napari_conch.errors import InputError

#: Modes of :func:`embed_cohort` on a cluster.
MODES = ("auto", "slides", "tiles")

#: ``on_progress(slide_path, event)``: tile progress (local and "tiles" runs) or ``None`` once
#: a whole-slide task has finished ("slides" runs).
Progress = Callable[[Path, EmbedProgress | None], None]


@dataclass(frozen=True)
class CohortSummary:
    """What :func:`embed_cohort` did."""

    mode: str
    summaries: list[EmbedSummary]
    elapsed_s: float
    workers: int

    @property
    def tiles(self) -> int:
        """Tiles embedded in this run (not counting tiles found DONE)."""
        return sum(s.computed for s in self.summaries)

    @property
    def slides_per_minute(self) -> float:
        """Slides per minute of wall time."""
        return 60.0 * len(self.summaries) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def tiles_per_s(self) -> float:
        """Tiles embedded per second of wall time."""
        return self.tiles / self.elapsed_s if self.elapsed_s > 0 else 0.0


def choose_mode(n_slides: int, n_workers: int, mode: str = "auto") -> str:
    """``"slides"`` when there are at least as many slides as workers, else ``"tiles"``."""
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    return "slides" if n_slides >= max(1, n_workers) else "tiles"


def _embed_local(
    slide_path: str,
    model_source: str,
    options: RunOptions,
    config: Any,
    tokenizer: Any,
    on_progress: Callable[[EmbedProgress], None] | None,
) -> EmbedSummary:
    """Embed one slide in this process (the one place calling the local engine).

    The slide's lazy pixels are computed in this process's threads, even where a
    ``distributed.Client`` is the default dask scheduler (on a worker, or in a session that made
    one): they hold open file handles that cannot travel to a cluster.
    """
    import dask

    from napari_conch.engine.embed import embed_slide_iter, open_job
    from napari_conch.generators import drain

    with dask.config.set(scheduler="threads"):
        job = open_job(slide_path, model_source, options, config=config, tokenizer=tokenizer)
        try:
            events = embed_slide_iter(job.slide, job.model, job.grid, job.store, job.options)
            return drain(events, on_progress)
        finally:
            job.store.close()  # give the writer lock back


def embed_slide_task(
    slide_path: str, model_source: str, config: Any, options: dict[str, Any]
) -> EmbedSummary:
    """A whole-slide task: runs on a worker, which keeps its model loaded between tasks.

    ``load_model`` caches the model per process and (source, config, device), so a worker loads
    it once for all its slides; the store is written by this worker alone.
    """
    run = RunOptions.from_dict(options)
    return _embed_local(slide_path, model_source, run, config, None, None)


def _worker_count(client: Any) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def _embed_slides_as_tasks(
    client: Any,
    slides: Sequence[str],
    model_source: str,
    config: Any,
    options: RunOptions,
    on_progress: Progress | None,
    watch: Any,
) -> list[EmbedSummary]:
    """Submit each slide as one task; wait for them through ``watch`` (a ``ClusterWatch``).

    The client is not the process's default (see ``distributed.get_client``), so the waiting
    goes through the watch, which names the client (``distributed.as_completed`` looked for a
    default client and found none: the first cluster run of a cohort failed at once) and bounds
    the wait: a lost scheduler, or no worker for the cluster timeout, is a ``ClusterError``.
    """
    import uuid

    run_id = uuid.uuid4().hex[:8]  # two cohorts at once never share task keys
    # every path absolute: workers may run in another folder
    opts = options.to_dict()
    if opts["store_root"] is not None:
        opts["store_root"] = str(Path(opts["store_root"]).expanduser().resolve())
    futures = {
        client.submit(
            embed_slide_task,
            str(Path(s).expanduser().resolve()),
            model_source,
            config,
            opts,
            pure=False,
            key=f"embed-slide-{run_id}-{i}-{Path(s).name}",
        ): i
        for i, s in enumerate(slides)
    }
    summaries: list[EmbedSummary | None] = [None] * len(slides)
    pending = list(futures)
    try:
        while pending:
            for future in watch.wait_any(pending):
                pending.remove(future)
                i = futures[future]
                summaries[i] = watch.result(future)
                future.release()
                if on_progress is not None:
                    on_progress(Path(slides[i]), None)
    finally:
        for future in pending:
            future.cancel()
    return summaries  # type: ignore[return-value]


def embed_cohort(
    slides: Sequence[str | os.PathLike],
    model_source: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    config: Any = None,
    tokenizer: Any = None,
    scheduler: Any = None,
    mode: str = "auto",
    on_progress: Progress | None = None,
    cluster_timeout: float | None = None,
) -> CohortSummary:
    """Embed every slide into its store (resuming what is there); return what was done.

    Parameters
    ----------
    slides
        Slide files or zarr folders.
    model_source
        What :func:`~napari_conch.model.load_model` accepts (a checkpoint, ``hf_hub:...``,
        ``"demo"``).
    options
        The run options (:class:`~napari_conch.engine.options.RunOptions`); default: the
        defaults.
    config, tokenizer
        Model config and tokenizer, as for ``load_model``.
    scheduler
        A ``distributed.Client`` or a scheduler address (``tcp://host:8786``); ``None``: embed
        here.
    mode
        ``"auto"``, ``"slides"`` (whole slides as tasks) or ``"tiles"`` (tiles spread).
    on_progress
        Called as ``on_progress(slide_path, event)``.
    cluster_timeout
        With ``scheduler``: seconds without any worker after which the run ends with a
        ``ClusterError`` (default 180); the scheduler must also answer within it (and 20 s).
    """
    import time

    options = options if options is not None else RunOptions()
    slides = [str(s) for s in slides]
    if not slides:
        raise InputError("no slides to embed")
    missing = [s for s in slides if not Path(s).expanduser().exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder")
    seen: set[Path] = set()
    for s in slides:
        key = Path(s).expanduser().resolve()
        if key in seen:  # one store, two writers
            raise InputError(f"{s}: slide given more than once")
        seen.add(key)
    choose_mode(len(slides), 1, mode)  # checks the name
    source = str(model_source)
    start = time.perf_counter()
    if scheduler is None:
        summaries = []
        for s in slides:

            def report(event: EmbedProgress, path: Path = Path(s)) -> None:
                if on_progress is not None:
                    on_progress(path, event)

            summaries.append(_embed_local(s, source, options, config, tokenizer, report))
        return CohortSummary("local", summaries, time.perf_counter() - start, 1)

    from napari_conch.engine.distributed import (
        CONNECT_TIMEOUT,
        DEFAULT_CLUSTER_TIMEOUT,
        ClusterWatch,
        client_for,
        embed_on_cluster,
    )

    timeout = DEFAULT_CLUSTER_TIMEOUT if cluster_timeout is None else cluster_timeout
    if not timeout > 0:
        raise InputError(f"cluster timeout {timeout}: must be greater than 0 seconds")
    config_arg = None if config is None else str(config)
    with client_for(scheduler, timeout=min(CONNECT_TIMEOUT, timeout)) as client:
        watch = ClusterWatch(client, timeout)
        workers = _worker_count(client)
        chosen = choose_mode(len(slides), workers, mode)
        if chosen == "slides":
            summaries = _embed_slides_as_tasks(
                client, slides, source, config_arg, options, on_progress, watch
            )
        else:
            summaries = embed_on_cluster(
                client, slides, source, options, config=config_arg, on_progress=on_progress,
                cluster_timeout=timeout,
            )  # fmt: skip
    return CohortSummary(chosen, summaries, time.perf_counter() - start, workers)
