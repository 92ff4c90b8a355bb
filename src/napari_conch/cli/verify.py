"""``napari-conch verify``: check embedding stores chunk by chunk, and repair them on demand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_conch.cli.common import add_wait_argument
from napari_conch.errors import NapariConchError

HELP = "check embedding stores for damaged chunks and lost tiles (and repair them)"


def register(subparsers: Any) -> None:
    """Add the ``verify`` subcommand to the CLI."""
    p = subparsers.add_parser(
        "verify",
        help=HELP,
        description=(
            "Read every chunk of each STORE (checksums, where the store has them), check that "
            "every tile marked done has an embedding, and print one line per store. With "
            "--repair, damaged tiles become pending again, so that the next `napari-conch "
            "embed` computes them. Exit status: 0 healthy (or repaired), 1 damage found and "
            "not repaired, 2 a store that cannot be checked (not a store, in use, read-only)."
        ),
    )
    p.add_argument("stores", nargs="+", metavar="STORE", help="embedding store folders")
    p.add_argument(
        "--repair",
        action="store_true",
        help="make damaged tiles pending and remove damaged chunks (needs write access)",
    )
    add_wait_argument(p, "with --repair: wait for a process writing the store (at most SECONDS)")
    p.set_defaults(func=run)


def check_store(path: Path, *, repair: bool, wait: float | None = None) -> tuple[int, str]:
    """Verify (and optionally repair) one store; return its exit status and one-line verdict."""
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    if repair:
        with EmbeddingStore.open(path, writable=True, wait=wait) as store:
            report = store.repair(warn=False)
    else:
        report = EmbeddingStore.open(path).verify()
    if report.healthy or report.repaired:
        return 0, report.line()
    return 1, report.line() + f"; repair with: napari-conch verify --repair {path}"


def run(args: argparse.Namespace) -> int:
    """Check every store; the exit status is the worst of theirs (2 > 1 > 0)."""
    worst = 0
    for name in args.stores:
        path = Path(name).expanduser()
        try:
            if not path.exists():
                raise NapariConchError(f"{path}: no such file or folder")
            status, line = check_store(path, repair=args.repair, wait=args.wait)
        except NapariConchError as exc:
            if len(args.stores) == 1:
                raise
            status, line = 2, f"napari-conch verify: error: {exc}"
            print(line, file=sys.stderr)
        else:
            print(line)
        worst = max(worst, status)
    return worst
