"""``napari-conch embed``: embed slides into stores, locally or on a dask.distributed cluster."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from napari_conch.cli.common import add_model_argument, model_source
from napari_conch.errors import InputError

HELP = "embed the tissue tiles of slides into embedding stores"


def register(subparsers: Any) -> None:
    """Add the ``embed`` subcommand to the CLI."""
    p = subparsers.add_parser(
        "embed",
        help=HELP,
        description=(
            "Embed the tissue tiles of each SLIDE with a CONCH model into an on-disk store "
            "(reused and resumed when it exists) and print where each store is."
        ),
    )
    p.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files or zarr folders")
    add_model_argument(p)
    p.add_argument("--config", metavar="JSON", help="model config (CONCH JSON form or preset)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer JSON (recorded, not needed)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--level", type=int, metavar="N", help="pyramid level of the grid")
    where.add_argument("--mpp", type=float, metavar="X", help="grid resolution in microns/px")
    p.add_argument(
        "--slide-mpp", type=float, metavar="X", help="level-0 microns/px of slides without one"
    )
    p.add_argument("--tile-size", type=int, metavar="N", help="tile size (default: model input)")
    p.add_argument("--stride", type=int, metavar="N", help="stride (default: tile size)")
    p.add_argument("--min-tissue", type=float, default=0.25, metavar="F", help="default 0.25")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="default 32")
    p.add_argument("--device", metavar="D", help="torch device, e.g. cuda, cuda:1, cpu")
    p.add_argument("--store", metavar="DIR", help="folder of the stores (default: user cache)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
    p.add_argument(
        "--wait",
        nargs="?",
        type=float,
        const=float("inf"),
        metavar="SECONDS",
        help="when another process is writing the store, wait for it (at most SECONDS; "
        "without a number, as long as it takes) instead of stopping",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Embed every slide; return 1 when some tiles failed, else 0."""
    missing = [s for s in args.slides if not Path(s).expanduser().exists()]
    if missing:
        raise InputError(f"{missing[0]}: no such file or folder")
    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    options = dict(
        level=args.level,
        mpp=args.mpp,
        tile_size=args.tile_size,
        stride=args.stride,
        min_tissue=args.min_tissue,
        batch_size=args.batch_size,
        store_root=args.store,
        slide_mpp=args.slide_mpp,
    )
    if args.scheduler:
        summaries = _run_cluster(args, options, bar)
    else:
        summaries = [_run_local(args, slide, options, bar) for slide in args.slides]
    status = 0
    for summary in summaries:
        print(summary.store_path)
        if summary.failed:
            status = 1
            row, col, why = summary.failed_tiles[0]
            print(
                f"napari-conch embed: {summary.failed} tile(s) could not be read in "
                f"{summary.store_path.name}, e.g. row {row} col {col}: {why}",
                file=sys.stderr,
            )
    return status


def _run_local(args: argparse.Namespace, slide: str, options: dict, bar: ProgressBar) -> Any:
    from napari_conch.engine.embed import drain, embed_slide_iter, open_job

    job = open_job(
        slide,
        model_source(args),
        config=args.config,
        tokenizer=args.tokenizer,
        device=args.device,
        wait=args.wait,
        **{
            k: options[k]
            for k in ("level", "mpp", "tile_size", "stride", "store_root", "slide_mpp")
        },
    )
    bar.start(Path(slide).name)
    events = embed_slide_iter(
        job.slide,
        job.model,
        job.grid,
        job.store,
        batch_size=options["batch_size"],
        min_tissue=options["min_tissue"],
    )
    summary = drain(events, bar.update)
    bar.finish()
    return summary


def _run_cluster(args: argparse.Namespace, options: dict, bar: ProgressBar) -> list:
    from napari_conch.engine.distributed import embed_on_cluster, get_client

    client = get_client(args.scheduler)
    current: list[Path] = []

    def report(path: Path, event: Any) -> None:
        if not current or current[-1] != path:
            if current:
                bar.finish()
            current.append(path)
            bar.start(path.name)
        bar.update(event)

    try:
        return embed_on_cluster(
            client,
            args.slides,
            model_source(args),
            config=args.config,
            device=args.device,
            on_progress=report,
            **options,
        )
    finally:
        bar.finish()


class ProgressBar:
    """A one-line progress bar redrawn with carriage returns (only on a terminal)."""

    def __init__(self, stream: TextIO, *, enabled: bool = True, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.enabled = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.name, self._last, self._open = "", 0.0, False

    def start(self, name: str) -> None:
        """Begin a bar for one slide."""
        self.name, self._last = name, 0.0

    def update(self, event: Any) -> None:
        """Redraw for a progress event (at most 10 times a second, always the last one)."""
        if not self.enabled:
            return
        now = time.monotonic()
        final = event.done + event.failed >= event.total
        if now - self._last < 0.1 and not final:
            return
        self._last = now
        filled = round(self.width * event.fraction)
        eta = "?" if event.eta_s is None else f"{event.eta_s:.0f}s"
        line = (
            f"\r{self.name[:30]} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{event.done}/{event.total} failed {event.failed} "
            f"{event.tiles_per_s:.1f} tiles/s ETA {eta}"
        )
        self.stream.write(line + "\x1b[K")
        self.stream.flush()
        self._open = True

    def finish(self) -> None:
        """End the current bar's line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
