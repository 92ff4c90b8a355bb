"""``napari-conch search``: the best tiles over many embedded slides."""

from __future__ import annotations

import argparse
import csv
import sys
from typing import Any

from napari_conch.cli.common import (
    add_store_model_arguments,
    add_templates_argument,
)
from napari_conch.cli.option_arguments import add_option
from napari_conch.engine.options import SearchOptions
from napari_conch.errors import InputError

HELP = "find the tiles that best match a prompt or a tile, over many embedded slides"


def register(subparsers: Any) -> None:
    """Add the ``search`` subcommand."""
    p = subparsers.add_parser(
        "search",
        help=HELP,
        description=(
            "Rank the embedded tiles of every STORE (one model) by cosine similarity to a text "
            "prompt (CONCH templates ensembled unless --templates none) or to a tile of a "
            "store, reading the stores chunk by chunk and keeping only the best K."
        ),
    )
    p.add_argument("stores", nargs="+", metavar="STORE", help="embedding store folders (.zarr)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", metavar="TEXT", help="what to look for")
    what.add_argument("--like", metavar="STORE:ROW,COL", help="tiles like this tile")
    add_option(p, SearchOptions, "search_hits", dest="k")
    add_templates_argument(p, "templates for --prompt")
    p.add_argument("--out", metavar="FILE.csv", help="write the hits as CSV")
    add_store_model_arguments(p, "the stores'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the hits (and write them when ``--out`` is given)."""
    from pathlib import Path

    from napari_conch.engine.cohort.search import (
        HIT_COLUMNS,
        check_same_model,
        open_stores,
        parse_like,
        search_stores,
        tile_vector,
        write_hits_csv,
    )
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    if args.k < 1:
        raise InputError(f"-k {args.k}: must be at least 1")
    if args.out and not Path(args.out).parent.is_dir():
        raise InputError(f"--out {args.out}: folder {Path(args.out).parent} does not exist")
    stores = open_stores(args.stores)
    check_same_model(stores)
    if args.prompt is not None:
        from napari_conch.cli.query import load_store_model
        from napari_conch.engine.prompts import chosen_templates, text_queries

        model = load_store_model(stores[0], args)
        templates = chosen_templates(args.templates, model)
        _, queries = text_queries(model, [args.prompt], templates)
        query = queries[0]
    else:
        path, row, col = parse_like(args.like)
        example = EmbeddingStore.open(path)
        check_same_model([stores[0], example])
        query = tile_vector(example, row, col)
    hits = search_stores(stores, query, args.k)
    writer = csv.writer(sys.stdout)
    writer.writerow(HIT_COLUMNS)
    writer.writerows(hit.as_row() for hit in hits)
    if args.out:
        write_hits_csv(args.out, hits)
    return 0
