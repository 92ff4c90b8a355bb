"""Embedding slides on a ``dask.distributed`` cluster.

The client plans each slide (tissue mask, tile order, store) and writes every result into the
store itself, so the store is written by one process exactly as in a local run; workers embed
blocks of tiles (one store chunk, 16 x 16 tiles, at most). Each worker process loads the model
once (:func:`worker_model`) and keeps its slides open. Slide files and the model source must be
reachable under the same paths on the workers (relative paths are made absolute on the client
before they are sent). ``distributed`` is an optional dependency
(``pip install napari-conch[distributed]``).

Faults: a block is written only when its whole result reached the client, so a worker that dies
mid-block leaves its tiles PENDING; the scheduler gives the block to another worker (up to
``distributed.scheduler.allowed-failures`` times, then :class:`ClusterError`). A lost scheduler,
or a cluster without a worker for ``cluster_timeout`` seconds, ends the run with
:class:`ClusterError`; every block written before stays in the store and the next run resumes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.embed import (
    BatchResult,
    Cancel,
    _is_cancelled,
    model_batches,
    open_grid,
    open_slide_checked,
    open_store,
    plan_run_iter,
    run_batches,
    run_options,
)
from napari_conch.engine.options import RunOptions
from napari_conch.engine.progress import EmbedProgress, EmbedSummary
from napari_conch.engine.store.embedding_store import BLOCK
from napari_conch.engine.tiles import Box
from napari_conch.errors import ClusterError, InputError, describe_os_error
from napari_conch.generators import drain

#: Seconds a run waits while the cluster has no worker before it gives up.
DEFAULT_CLUSTER_TIMEOUT = 180.0
#: Seconds a client waits for the scheduler to answer (never more than the cluster timeout).
CONNECT_TIMEOUT = 20.0
#: Seconds between checks of the cluster while waiting for results.
POLL_S = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """How workers load the model: the arguments of ``load_model``."""

    source: str
    config: Any = None
    device: str | None = None
    precision: str | None = None


@dataclass(frozen=True)
class ModelFacts:
    """What the client needs of a model for a store's signature, measured on a worker."""

    source: str
    fingerprint: str
    image_size: int
    default_tile_size: int
    embed_dim: int
    logit_scale: float
    preprocess_info: dict
    config: Any
    tokenizer_file: str | None
    precision: str = "fp32"


def absolute_source(value: Any) -> Any:
    """``value`` made absolute when it names an existing file or folder here; else unchanged.

    Workers run in other folders (or on other machines), so a relative ``--model`` or
    ``--config`` must be resolved on the client. Sources that are not paths (``demo``,
    ``hf_hub:...``, a config preset name) are kept as they are.
    """
    if value is None or not isinstance(value, str | os.PathLike):
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else str(value)


def model_spec(model_source: Any, options: RunOptions, config: Any = None) -> ModelSpec:
    """The :class:`ModelSpec` workers load, with paths resolved on this machine."""
    return ModelSpec(
        absolute_source(model_source),
        absolute_source(config),
        options.device,
        options.precision,
    )


def get_client(scheduler: Any, *, timeout: float = CONNECT_TIMEOUT) -> Any:
    """Return a ``distributed.Client`` for an address (or the client itself).

    Raises
    ------
    ClusterError
        When the address is malformed or no scheduler answers there within ``timeout``.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise InputError(
            "--scheduler needs dask.distributed: pip install 'napari-conch[distributed]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler
    check_speaks_dask(str(scheduler), timeout)
    # Not the default client: it would make dask.distributed the scheduler of every dask
    # computation in this process (and a client that failed to connect would stay so), while
    # the engine sends work to the cluster explicitly and reads slides locally.
    try:
        return Client(str(scheduler), timeout=f"{timeout}s", set_as_default=False)
    except (OSError, ValueError, TypeError, TimeoutError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
    # Out of the except block, the client that failed to connect is no longer held by the
    # exception's frames: collected here, on this thread, it stops its event loop now, rather
    # than in a thread dask.distributed starts later for another client (see client_for).
    gc.collect()
    raise ClusterError(f"scheduler {scheduler}: cannot connect ({reason})")


def check_speaks_dask(address: str, timeout: float) -> None:
    """Raise :class:`ClusterError` unless a dask scheduler answers at ``address`` in time.

    ``distributed.Client`` bounds the TCP connection by its timeout but not the handshake that
    follows: pointed at a service that accepts the connection and never answers the way dask
    does (the dashboard's HTTP port, an SSH server), it waited for ever, or failed with whatever
    the foreign bytes made of its frame reader (``struct.error``, an impossible allocation) and
    then spent 40 s closing. The handshake is tried here first, in a thread of its own with its
    own event loop, within ``timeout`` seconds in all. Addresses other than ``tcp://`` (TLS needs
    the client's security settings) are left to the client.
    """
    import asyncio
    import threading

    try:
        from distributed.comm import parse_address
        from distributed.comm.registry import get_backend

        scheme, location = parse_address(address)
    except (ValueError, TypeError, ImportError):
        return  # the client says what is wrong with the address itself
    if scheme != "tcp":
        return
    outcome: dict[str, Any] = {"stage": "connect"}

    async def handshake() -> None:
        comm = await asyncio.wait_for(
            get_backend(scheme).get_connector().connect(location, deserialize=False), timeout
        )
        outcome["stage"] = "handshake"
        try:
            await asyncio.wait_for(comm.write(comm.handshake_info()), timeout)
            outcome["reply"] = await asyncio.wait_for(comm.read(), timeout)
        finally:
            comm.abort()

    def attempt() -> None:
        try:
            asyncio.run(handshake())
        except BaseException as exc:  # whatever the foreign bytes made of the frame reader
            outcome["error"] = exc

    thread = threading.Thread(target=attempt, name="napari-conch-scheduler-check", daemon=True)
    thread.start()
    thread.join(2 * timeout + 1)  # each step is bounded: this bounds a hang of asyncio itself
    error = outcome.get("error")
    if isinstance(outcome.get("reply"), dict) and error is None:
        return
    if isinstance(error, AttributeError | ImportError):  # another distributed's internals:
        return  # the check cannot be made here; the client's own connection decides
    timed_out = thread.is_alive() or isinstance(error, TimeoutError | asyncio.TimeoutError)
    if outcome["stage"] == "connect":
        reason = "timed out" if timed_out else " ".join(str(error).split())
        reason = reason or type(error).__name__
        raise ClusterError(f"scheduler {address}: cannot connect ({reason})")
    if timed_out:
        what = f"the service there took the connection but gave no dask answer in {timeout:g} s"
    elif error is not None:
        what = f"the service there does not speak dask's protocol ({type(error).__name__})"
    else:
        what = "the service there does not speak dask's protocol"
    raise ClusterError(
        f"scheduler {address}: {what}; check the address (a scheduler listens on port 8786 "
        "by default; 8787 is its dashboard, a web page)"
    )


@contextlib.contextmanager
def client_for(scheduler: Any, *, timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """A client for ``scheduler`` (see :func:`get_client`), closed at the end when made here.

    A client left to the garbage collector is closed from whichever thread collects it; when
    that is a thread dask.distributed is starting for another client, the two wait for each
    other for ever (seen in the test suite). A given client is left open: its owner closes it.
    """
    client = get_client(scheduler, timeout=timeout)
    try:
        yield client
    finally:
        if client is not scheduler:
            client.close()
            client = None
            gc.collect()  # what is left of it goes now, on this thread


@functools.lru_cache(maxsize=2)
def worker_model(spec: ModelSpec) -> Any:
    """The model of ``spec`` in this worker process, loaded on first use."""
    from napari_conch.model import load_model

    return load_model(spec.source, config=spec.config, device=spec.device, precision=spec.precision)


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
        default_tile_size=int(model.default_tile_size),
        embed_dim=int(model.embed_dim),
        logit_scale=float(model.logit_scale),
        preprocess_info=dict(model.preprocess_info),
        config=model.config,
        tokenizer_file=model.tokenizer_file,
        precision=str(model.precision),
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


def _each_step_here(events: Generator) -> Generator[EmbedProgress, None, Any]:
    """Run each step of ``events`` with the slide computed here (:func:`_local_dask`).

    The setting is dask's global configuration: it holds while a step runs, not while the
    caller handles the event the step yielded.
    """
    try:
        while True:
            with _local_dask():
                try:
                    event = next(events)
                except StopIteration as stop:
                    return stop.value
            yield event
    finally:
        events.close()


def _blocks(rows: np.ndarray, cols: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split tiles (already in store-block order) into runs that share one store chunk."""
    if len(rows) == 0:
        return
    key = (rows // BLOCK) * (1 << 32) + cols // BLOCK
    cuts = np.flatnonzero(np.diff(key)) + 1
    yield from zip(np.split(rows, cuts), np.split(cols, cuts), strict=True)


class ClusterWatch:
    """Decides when waiting on a cluster is hopeless: scheduler lost, or no worker for too long.

    Parameters
    ----------
    client
        The ``distributed.Client``.
    timeout
        Seconds without any worker after which :meth:`check` raises.
    """

    def __init__(self, client: Any, timeout: float = DEFAULT_CLUSTER_TIMEOUT) -> None:
        if not timeout > 0:
            raise InputError(f"cluster timeout {timeout}: must be greater than 0 seconds")
        self.client, self.timeout = client, float(timeout)
        self._no_worker_since: float | None = None

    def address(self) -> str:
        """The scheduler's address, for messages."""
        return str(getattr(self.client, "scheduler", None) and self.client.scheduler.address)

    def lost(self, why: str = "connection lost") -> ClusterError:
        """The error of a run whose scheduler went away."""
        return ClusterError(
            f"scheduler {self.address()}: {why}; the tiles embedded so far are kept in the "
            "store, run again to resume"
        )

    def check(self) -> None:
        """Raise :class:`ClusterError` when the scheduler is gone or no worker came in time."""
        if self.client.status not in ("running", "connecting", "newly-created"):
            raise self.lost(f"client {self.client.status}")
        workers = self.client.scheduler_info().get("workers", {})
        now = time.monotonic()
        if workers:
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        elif now - self._no_worker_since >= self.timeout:
            raise ClusterError(
                f"scheduler {self.address()}: no worker for {self.timeout:g} s "
                "(--cluster-timeout); the tiles embedded so far are kept in the store"
            )

    def wait_any(self, futures: Sequence[Any]) -> list[Any]:
        """Block until at least one of ``futures`` is no longer pending; return those that are."""
        from distributed import wait

        while True:
            try:
                with self.client.as_current():  # this client is not the process's default
                    wait(list(futures), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                self.check()
                continue
            except (CancelledError, OSError):  # cancelled or lost: judged one by one below
                pass
            finished = [f for f in futures if f.status != "pending"]
            if finished:
                return finished
            self.check()

    def result(self, future: Any) -> Any:
        """The value of a finished ``future``, or the one-line error of why there is none."""
        from distributed.scheduler import KilledWorker

        if future.status == "cancelled":
            if self.client.status != "running":
                raise self.lost("connection lost")
            self.check()  # names a missing worker when that is why
            raise self.lost("work was cancelled by the scheduler")
        try:
            return future.result()
        except KilledWorker as exc:
            raise ClusterError(
                f"scheduler {self.address()}: a block of tiles killed every worker it was given "
                f"to ({exc}); the tiles embedded so far are kept in the store"
            ) from exc
        except OSError as exc:  # the scheduler's connection broke while fetching the result
            raise self.lost(f"connection lost ({describe_os_error(exc)})") from exc


def cluster_model_facts(client: Any, spec: ModelSpec, watch: ClusterWatch | None = None) -> Any:
    """Load the model on a worker and return its :class:`ModelFacts`.

    Raises
    ------
    NapariConchError
        The worker's error when the model cannot be loaded there (e.g. ``CheckpointError``),
        or :class:`ClusterError` when the cluster is lost or has no worker in time.
    """
    watch = watch or ClusterWatch(client)
    future = client.submit(model_facts, spec, pure=False)
    return watch.result(watch.wait_any([future])[0])


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
    watch: ClusterWatch | None = None,
) -> Iterator[BatchResult]:
    """Submit tile blocks to the cluster, a bounded number at a time; yield results as they come.

    Every block is submitted exactly once (the scheduler retries it on another worker when its
    worker dies). ``in_flight`` blocks are submitted at a time (default: 2 per worker).
    Closing the iterator cancels the blocks not yet done.

    Raises
    ------
    ClusterError
        When the scheduler is lost, no worker is there for the watch's timeout, or a block
        killed the workers it was given to.
    """
    watch = watch or ClusterWatch(client)
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = max(1, in_flight or 2 * workers)
    blocks = _blocks(rows, cols)
    grid_dict = grid.to_dict()

    def submit(block: tuple[np.ndarray, np.ndarray]) -> Any:
        r, c = block
        return client.submit(
            embed_block, spec, slide_path, slide_mpp, grid_dict, r, c, batch_size, pure=False
        )

    pending = [submit(b) for b in itertools.islice(blocks, limit)]
    try:
        while pending:
            for future in watch.wait_any(pending):
                pending.remove(future)
                results = watch.result(future)
                future.release()
                nxt = next(blocks, None)
                if nxt is not None:
                    pending.append(submit(nxt))
                yield from results
    finally:
        for future in pending:
            future.cancel()


def embed_slide_cluster_iter(
    client: Any,
    slide_path: str | os.PathLike,
    spec: ModelSpec,
    options: RunOptions | None = None,
    *,
    region: Box | None = None,
    cancel: Cancel = None,
    cluster_timeout: float = DEFAULT_CLUSTER_TIMEOUT,
    facts: ModelFacts | None = None,
    wait: float | None = None,
    **overrides: Any,
) -> Generator[EmbedProgress, None, EmbedSummary]:
    """Like :func:`~napari_conch.engine.embed.embed_slide_iter`, with the model on the cluster.

    ``options`` (or single fields as ``overrides``) as for a local run; ``device`` and
    ``precision`` are those of ``spec`` (the workers'). ``cluster_timeout`` bounds the wait for
    a worker (see :class:`ClusterWatch`). ``facts`` are the model's, from
    :func:`cluster_model_facts` (asked of a worker when not given). ``wait``: seconds to wait
    for another process writing the same store (the client holds the store's writer lock).
    """
    opts = run_options(options, **overrides)
    watch = ClusterWatch(client, cluster_timeout)
    with _local_dask():
        slide = open_slide_checked(slide_path, opts.slide_mpp)
        if facts is None:
            facts = cluster_model_facts(client, spec, watch)
        grid = open_grid(slide, facts, opts)
        store = open_store(slide, facts, grid, opts.store_root, wait=wait)
    planning = plan_run_iter(slide, grid, store, min_tissue=opts.min_tissue, region=region)
    plan = yield from _each_step_here(planning)
    results = cluster_batches(
        client,
        spec,
        str(Path(slide.path).resolve()),
        opts.slide_mpp,
        grid,
        plan.rows,
        plan.cols,
        batch_size=opts.batch_size,
        watch=watch,
    )
    return (yield from run_batches(store, plan, results, cancel=_is_cancelled(cancel)))


def embed_on_cluster(
    client: Any,
    slide_paths: Sequence[str | os.PathLike],
    model_source: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    config: Any = None,
    cluster_timeout: float = DEFAULT_CLUSTER_TIMEOUT,
    on_progress: Callable[[Path, EmbedProgress], None] | None = None,
    **overrides: Any,
) -> list[EmbedSummary]:
    """Embed several slides on a cluster, one after the other; return their summaries.

    ``client`` is a ``distributed.Client`` or a scheduler address; ``options`` (or single
    fields as ``overrides``) as for :func:`~napari_conch.engine.embed.embed`. Relative model
    and config paths are resolved here before they are sent to the workers. The first error
    ends the call (the CLI goes on with the next slide instead).
    """
    opts = run_options(options, **overrides)
    spec = model_spec(model_source, opts, config)
    summaries = []
    with client_for(client) as cluster:
        facts = cluster_model_facts(cluster, spec, ClusterWatch(cluster, cluster_timeout))
        for slide_path in slide_paths:
            events = embed_slide_cluster_iter(
                cluster, slide_path, spec, opts, cluster_timeout=cluster_timeout, facts=facts
            )

            def report(event: EmbedProgress, path: Path = Path(slide_path)) -> None:
                if on_progress is not None:
                    on_progress(path, event)

            summaries.append(drain(events, report))
    return summaries
