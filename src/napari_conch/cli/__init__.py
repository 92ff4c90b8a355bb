"""The ``napari-conch`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to the function that runs it. User mistakes raise
:class:`~napari_conch.errors.NapariConchError` and are printed as one line (with ``--debug``, the
traceback too); the exit status is then 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_conch import __version__
from napari_conch.errors import NapariConchError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "view",
    "demo",
    "info",
    "embed",
    "query",
    "top-tiles",
    "region",
    "classify-slides",
    "search",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except NapariConchError as exc:
        if args.debug:
            raise
        print(f"napari-conch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-conch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
