"""``napari-conch top-tiles``: the tiles of an embedded slide that best match a prompt."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from napari_conch.cli.common import (
    add_store_model_arguments,
    add_templates_argument,
)
from napari_conch.cli.option_arguments import add_option
from napari_conch.cli.query import check_out_file, store_session
from napari_conch.engine.options import SearchOptions

COLUMNS = ("rank", "row", "col", "x0", "y0", "x1", "y1", "cosine")


def register(subparsers: Any) -> None:
    """Add the ``top-tiles`` subcommand."""
    p = subparsers.add_parser(
        "top-tiles",
        help="list the tiles of an embedded slide that best match a prompt",
        description=(
            "Rank the embedded tiles of STORE by cosine similarity to a prompt (CONCH templates "
            "ensembled unless --templates none) and print the best K with their level-0 boxes."
        ),
    )
    p.add_argument("store", metavar="STORE", help="embedding store folder (.zarr)")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="what to look for")
    add_option(p, SearchOptions, "top_tiles", dest="k")
    add_templates_argument(p, "templates for the prompt")
    p.add_argument("--out", metavar="FILE.csv", help="also write the list as CSV")
    add_store_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print (and optionally write) the top tiles of the store, through a session on it."""
    from napari_conch.engine.prompts import chosen_templates
    from napari_conch.engine.retrieval import top_tiles_for_prompt

    if args.out:
        check_out_file(Path(args.out))
    session = store_session(args)
    index, grid, _ = session.live_embeddings()
    templates = chosen_templates(args.templates, session.model)
    hits = top_tiles_for_prompt(index, grid, session.model, args.prompt, args.k, templates)
    rows = [(h.rank, h.row, h.col, *(round(v, 1) for v in h.box), round(h.score, 5)) for h in hits]
    writer = csv.writer(sys.stdout)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    if args.out:
        _write_csv(Path(args.out), rows)
    return 0


def _write_csv(path: Path, rows: list[tuple]) -> None:
    """Write the list (via a temporary file, so no half-written file is ever left)."""
    from napari_conch.engine.export.writers import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
