"""The ``napari-conch`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to the function that runs it. User mistakes raise
:class:`~napari_conch.errors.NapariConchError` and are printed as one line (with ``--debug``, the
traceback too); the exit status is then 2. As a last line of defence, an ``OSError`` that no
command turned into such an error (a read-only folder, a full disk, a path of the wrong kind) is
printed the same way, with the file it concerns.

Exit statuses: 0 complete, 1 finished with failed tiles (``embed``; the last line says how many
and why), 2 a user or environment error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence

from napari_conch import __version__
from napari_conch.errors import NapariConchError, describe_os_error

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "view",
    "demo",
    "info",
    "models",
    "embed",
    "verify",
    "query",
    "learn",
    "top-tiles",
    "region",
    "classify-slides",
    "search",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command.

    ``napari-conch embed: error: argument --wait: -1: must be at least 0`` with exit status 2
    (the usage is left to ``--help``). Subcommand parsers are of this class too.
    """

    def error(self, message: str):
        line = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = OneLineParser(
        prog="napari-conch",
        description="Text-prompted tissue maps over whole-slide images with CONCH.",
    )
    parser.add_argument("--version", action="version", version=f"napari-conch {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when something fails"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = name.replace("-", "_")
        importlib.import_module(f"napari_conch.cli.{module}").register(subparsers)
    return parser


@contextlib.contextmanager
def _one_line_warnings(prog: str) -> Iterator[None]:
    """Print a damaged store's warning and a number format's failed gate as one line
    ``<prog>: warning: ...`` (others unchanged)."""
    from napari_conch.engine.store.integrity import StoreDamageWarning
    from napari_conch.model.formats import PrecisionWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StoreDamageWarning | PrecisionWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", StoreDamageWarning)
        warnings.simplefilter("always", PrecisionWarning)
        warnings.showwarning = show
        yield


#: Libraries whose log lines about a damaged file would stand before our one-line error
#: (tifffile: "<TiffPages @...> invalid offset to first page"); ``--debug`` shows them.
QUIET_LOGGERS = ("tifffile",)


@contextlib.contextmanager
def _quiet_library_logs() -> Iterator[None]:
    """Only critical errors of :data:`QUIET_LOGGERS` are logged while a command runs.

    tifffile logs a damaged file's parsing errors ("shaped series raised TiffFileError(...)"),
    which our own one-line message then says in the user's terms (the file, what is missing).
    """
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with _one_line_warnings(f"napari-conch {args.command}"):
            if args.debug:
                return int(args.func(args) or 0)
            with _quiet_library_logs():
                return int(args.func(args) or 0)
    except NapariConchError as exc:
        if args.debug:
            raise
        line = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"napari-conch {args.command}: error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        print(f"napari-conch {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-conch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
