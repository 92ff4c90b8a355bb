"""``napari-conch embed``: embed slides into stores, locally or on a dask.distributed cluster.

Every slide is tried, one after the other; a slide that cannot be done is one line on stderr and
the next slide goes on. Each finished store's path is printed on stdout. The exit status is the
worst of the slides': 0 every tissue tile of every slide is DONE with a finite embedding, 1 some
tiles failed (the last line says how many and why), 2 a slide could not be done at all (or a
user/environment error before any slide).
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from napari_conch.cli.collector import collect_after_start_up
from napari_conch.cli.common import add_model_argument, add_wait_argument, model_source
from napari_conch.cli.compute_threads import passive_thread_waits
from napari_conch.cli.option_arguments import add_options, options_from_args
from napari_conch.engine.distributed import DEFAULT_CLUSTER_TIMEOUT
from napari_conch.engine.options import RunOptions
from napari_conch.engine.progress import TISSUE
from napari_conch.errors import ClusterError, InputError, NapariConchError, describe_os_error

HELP = "embed the tissue tiles of slides into embedding stores"
#: Seconds the tissue search runs before its bar is drawn: a quick one shows nothing.
TISSUE_BAR_DELAY_S = 1.0

#: The run options ``embed`` takes, in the order of its help (level and mpp exclude each other).
EMBED_OPTIONS = (
    "level", "mpp", "slide_mpp", "tile_size", "stride", "min_tissue", "batch_size",
    "num_readers", "device", "precision", "store_root",
)  # fmt: skip

#: Exit statuses (also in README.md and docs/reliability.md).
COMPLETE, FAILED_TILES, ERROR = 0, 1, 2


def register(subparsers: Any) -> None:
    """Add the ``embed`` subcommand to the CLI."""
    p = subparsers.add_parser(
        "embed",
        help=HELP,
        description=(
            "Embed the tissue tiles of each SLIDE with a CONCH model into an on-disk store "
            "(reused and resumed when it exists) and print where each store is. Exit status: "
            "0 every tissue tile embedded, 1 some tiles failed (the last line says how many and "
            "why), 2 a slide could not be done or a user/environment error."
        ),
    )
    p.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files or zarr folders")
    add_model_argument(p)
    p.add_argument("--config", metavar="JSON", help="model config (CONCH JSON form or preset)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer JSON (recorded, not needed)")
    add_options(p.add_mutually_exclusive_group(), RunOptions, ("level", "mpp"))
    add_options(p, RunOptions, EMBED_OPTIONS[2:])
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
    add_wait_argument(
        p,
        "when another process is writing the store, wait for it (at most SECONDS; "
        "without a number, as long as it takes) instead of stopping",
    )
    p.add_argument(
        "--cluster-timeout",
        type=float,
        default=DEFAULT_CLUSTER_TIMEOUT,
        metavar="SECONDS",
        help="with --scheduler: give up after this long without a worker "
        f"(default {DEFAULT_CLUSTER_TIMEOUT:g})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The run options the arguments give (checked: a bad value is an error before any work)."""
    return options_from_args(RunOptions, args, EMBED_OPTIONS)


@dataclass
class SlideOutcome:
    """What became of one slide: its summary, or the one-line error why there is none."""

    slide: str
    summary: Any = None
    error: str | None = None

    @property
    def status(self) -> int:
        """Exit status of this slide alone."""
        if self.error is not None:
            return ERROR
        if self.summary.failed or self.summary.pending:
            return FAILED_TILES
        return COMPLETE


def run(args: argparse.Namespace) -> int:
    """Embed every slide; return the worst status (0 complete, 1 failed tiles, 2 errors)."""
    passive_thread_waits()  # before torch is imported: its threads share the cores with readers
    options = run_options(args)
    if not args.cluster_timeout > 0:
        raise InputError(f"--cluster-timeout {args.cluster_timeout}: must be greater than 0")
    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    runner = ClusterRunner(args, options) if args.scheduler else LocalRunner(args, options)
    outcomes = []
    try:
        for slide in args.slides:
            outcome = _embed_one(runner, slide, bar, args)
            outcomes.append(outcome)
            if outcome.error is not None and runner.fatal:
                break
    finally:
        runner.close()
    if len(args.slides) > 1 and any(o.status for o in outcomes):
        print(f"napari-conch embed: {overall(outcomes, len(args.slides))}", file=sys.stderr)
    return max(o.status for o in outcomes)


def _embed_one(runner: Any, slide: str, bar: ProgressBar, args: argparse.Namespace) -> SlideOutcome:
    """Embed one slide and report it; an error of this slide becomes its one line."""
    from napari_conch.engine.store.lock import StoreBusyError
    from napari_conch.slide.open import existing_slide_path

    try:
        existing_slide_path(slide)  # empty or missing: said before the model is loaded
        summary = runner.embed(slide, bar)
    except (NapariConchError, OSError) as exc:
        bar.finish()
        if args.debug:
            raise
        text = describe_os_error(exc) if isinstance(exc, OSError) else " ".join(str(exc).split())
        if isinstance(exc, StoreBusyError) and args.wait is None:
            text += " (embed --wait waits for it)"
        if not runner.fatal and slide not in text and Path(slide).name not in text:
            text = f"{Path(slide).name}: {text}"  # say which slide (errors of the model or
            # the cluster concern every slide and are said as they are)
        print(f"napari-conch embed: error: {text}", file=sys.stderr)
        return SlideOutcome(slide, error=text)
    print(summary.store_path, flush=True)
    name = summary.store_path.name
    if summary.failed:
        print(f"napari-conch embed: {name}: {summary.describe_failures()}", file=sys.stderr)
    elif summary.pending:
        print(
            f"napari-conch embed: {name}: {summary.pending} tissue tiles not embedded "
            "(run again to resume)",
            file=sys.stderr,
        )
    elif summary.computed == 0 and not args.quiet:
        print(
            f"napari-conch embed: {name}: nothing to compute: {summary.done} tiles already "
            "embedded",
            file=sys.stderr,
        )
    return SlideOutcome(slide, summary=summary)


def overall(outcomes: list[SlideOutcome], asked: int) -> str:
    """The last line of a multi-slide run: slides complete, with failed tiles, not done."""
    complete = sum(o.status == COMPLETE for o in outcomes)
    partial = [o.summary for o in outcomes if o.status == FAILED_TILES]
    errors = asked - complete - len(partial)
    parts = [f"{complete} of {asked} slides complete"]
    if partial:
        failed = sum(s.failed for s in partial)
        pending = sum(s.pending for s in partial)
        reasons: dict[str, int] = {}
        for s in partial:
            for why, n in s.failure_reasons():
                reasons[why] = reasons.get(why, 0) + n
        text = f"{len(partial)} with failed tiles ({failed} tiles failed"
        if reasons:
            top = sorted(reasons.items(), key=lambda kv: -kv[1])[:3]
            text += ": " + "; ".join(f"{why} ({n})" for why, n in top)
        if pending:
            text += f"; {pending} not embedded"
        parts.append(text + ")")
    if errors:
        parts.append(f"{errors} not done (see the error lines above)")
    return ", ".join(parts)


class LocalRunner:
    """Embeds slides in this process through one
    :class:`~napari_conch.engine.session.session.Session`.

    The session holds the run options and the model (loaded once, on the options' device and
    precision); each slide is opened in it and embedded with :meth:`Session.embed
    <napari_conch.engine.session.session.Session.embed>`, without the live index (nothing shows maps
    during a CLI run), the progress bar fed by its ``on_progress``.
    """

    def __init__(self, args: argparse.Namespace, options: RunOptions) -> None:
        from napari_conch.engine.session.session import Session

        self.args, self.options = args, options
        self.source = model_source(args)
        self.session = Session(options)
        self.fatal = False  # set when the model cannot load: no slide can be done then

    def close(self) -> None:
        """Nothing to release (each run gave its store back; the model stays cached)."""

    def embed(self, slide: str, bar: ProgressBar) -> Any:
        """Embed one slide; return its summary."""
        session = self.session
        opened = session.open_slide(slide)  # first: an unreadable slide is said at once
        if session.model is None:
            self.fatal = True
            with collect_after_start_up():  # torch's import and the model: see collector.py
                session.set_model(self._load_model())
            self.fatal = False
            note = getattr(session.model, "precision_note", None)
            if note:  # what the number format was chosen by, and its gate (never silent)
                print(f"napari-conch embed: precision {note}", file=sys.stderr)
        if opened.mpp is None:
            print(no_mpp_note(opened), file=sys.stderr)
        bar.start(Path(slide).name)
        try:
            return session.embed(live=False, wait=self.args.wait, on_progress=bar.update)
        finally:
            bar.finish()

    def _load_model(self) -> Any:
        """The model of the run, on the options' device and precision."""
        from napari_conch.engine.embed import load_run_model

        return load_run_model(
            self.source, self.options, config=self.args.config, tokenizer=self.args.tokenizer
        )


class ClusterRunner:
    """Embeds slides on a dask.distributed cluster (model and tiles on the workers).

    This path does not go through a :class:`~napari_conch.engine.session.session.Session`: a session
    holds a model loaded in this process, while here the model exists only on the workers (the
    client knows its spec and facts), and ``distributed.embed_slide_cluster_iter`` opens the
    slide, grid and store itself, with the same options, writer lock (``--wait``) and store as
    a local run.
    """

    def __init__(self, args: argparse.Namespace, options: RunOptions) -> None:
        from napari_conch.engine.distributed import CONNECT_TIMEOUT, get_client, model_spec

        self.args, self.options = args, options
        # the model first: a bad model leaves no client unclosed
        self.spec = model_spec(model_source(args), options, args.config)
        # a scheduler answers within --cluster-timeout (and 20 s at most), or it is an error
        timeout = min(CONNECT_TIMEOUT, args.cluster_timeout)
        self.client = get_client(args.scheduler, timeout=timeout)
        self.facts: Any = None  # the model's facts, asked of a worker once
        self.fatal = False  # set when the cluster is lost: no slide can be done then

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster itself goes on).

        After a lost scheduler, closing cancels the client's attempts to reconnect, which
        ``distributed`` logs as a traceback: the one-line error was said already, so that log
        is muted while the client closes.
        """
        import logging

        log = logging.getLogger("distributed.client")
        level = log.level
        if self.fatal:
            log.setLevel(logging.CRITICAL)
        try:
            self.client.close()
            self.client = None
            gc.collect()  # what is left of it goes now, on this thread (see client_for)
        finally:
            log.setLevel(level)

    def embed(self, slide: str, bar: ProgressBar) -> Any:
        """Embed one slide on the cluster; return its summary."""
        from napari_conch.engine.distributed import (
            ClusterWatch,
            cluster_model_facts,
            embed_slide_cluster_iter,
        )
        from napari_conch.generators import drain

        watch = ClusterWatch(self.client, self.args.cluster_timeout)
        try:
            if self.facts is None:
                self.fatal = True  # a model the workers cannot load fails every slide
                self.facts = cluster_model_facts(self.client, self.spec, watch)
                self.fatal = False
            bar.start(Path(slide).name)
            events = embed_slide_cluster_iter(
                self.client,
                slide,
                self.spec,
                self.options,
                cluster_timeout=self.args.cluster_timeout,
                facts=self.facts,
                wait=self.args.wait,
            )
            return drain(events, bar.update)
        except ClusterError:
            self.fatal = True
            raise
        finally:
            bar.finish()


class ProgressBar:
    """A tqdm progress bar of one slide's run on ``stream``, drawn only on a terminal.

    No bar is drawn when ``enabled`` is False (``--quiet``), when the stream is not a terminal,
    or when the run has nothing to compute. The tissue search has a bar of its own (percent and
    seconds), drawn once it has taken :data:`TISSUE_BAR_DELAY_S` and cleared when the tiles'
    bar begins.
    """

    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.name = ""
        self._bar: Any = None
        self._tissue: Any = None

    def start(self, name: str) -> None:
        """Begin a bar for one slide (drawn at its first progress event)."""
        self.finish()
        self.name = name

    def update(self, event: Any) -> None:
        """Show a progress event: the tissue search's share done, or tiles handled of the total,
        failed ones, rate and ETA."""
        if not self.enabled:
            return
        if event.phase == TISSUE:
            self._update_tissue(event)
            return
        self._close_tissue()
        handled = event.done + event.failed
        if self._bar is None:
            if handled >= event.total:  # nothing to compute: no "0.0 tiles/s" bar
                return
            self._bar = _tqdm(
                total=event.total,
                initial=handled,
                desc=self.name[:30],
                unit="tile",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.1,
            )
        self._bar.set_postfix(failed=event.failed, refresh=False)
        self._bar.update(handled - self._bar.n)

    def finish(self) -> None:
        """Close the current bar (its last state stays on screen)."""
        self._close_tissue()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _update_tissue(self, event: Any) -> None:
        if self._tissue is None:
            self._tissue = _tqdm(
                total=event.total,
                desc=f"{self.name[:30]}: finding tissue",
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}",
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.1,
                delay=TISSUE_BAR_DELAY_S,
                leave=False,
            )
        self._tissue.total = event.total  # grows when a damaged level is read again
        self._tissue.update(event.done - self._tissue.n)

    def _close_tissue(self) -> None:
        if self._tissue is not None:
            self._tissue.close()
            self._tissue = None


def _tqdm(**kwargs: Any) -> Any:
    from tqdm import tqdm

    return tqdm(**kwargs)


def no_mpp_note(slide: Any) -> str:
    """The line that says a slide's file gives no microns per pixel, and what follows."""
    return (
        f"napari-conch embed: note: {slide.path}: the file gives no microns per pixel; the grid "
        "is by pyramid level and maps carry no physical size (state it with --slide-mpp X)"
    )
