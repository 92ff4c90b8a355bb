"""``napari-conch query``: text prompts against an embedding store, exported as files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_conch.cli.common import add_prompt_arguments, named_prompt_sets, no_embeddings_reason
from napari_conch.errors import InputError, StoreError

HELP = "turn text prompts into maps over an embedded slide (CSV, TIFF, GeoJSON, NPY)"


def register(subparsers: Any) -> None:
    """Add the ``query`` subcommand to the CLI."""
    p = subparsers.add_parser(
        "query",
        help=HELP,
        description=(
            "Score every embedded tile of STORE against text prompts. One prompt gives its "
            "cosine similarity; several give probabilities softmax(logit_scale * cosine) with "
            "the model's temperature, and labels (argmax). The format follows the extension of "
            "--out: .csv (one "
            "row per tile), .tif/.tiff (float32 map, one pixel per stride cell), .geojson "
            "(labelled regions for QuPath), .npy (the map)."
        ),
    )
    p.add_argument("store", metavar="STORE", help="embedding store folder (.zarr)")
    add_prompt_arguments(
        p, "templates for --prompt/--background and prompt files without any (default conch)"
    )
    p.add_argument("--background", metavar="TEXT", help="a class whose wins become label 0")
    p.add_argument(
        "--threshold",
        type=float,
        metavar="F",
        help="label 0 below this winning probability (one prompt: below this cosine)",
    )
    p.add_argument("--model", metavar="SRC", help="model source (default: the store's)")
    p.add_argument("--config", metavar="JSON", help="model config (default: the store's)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer JSON (default: the store's)")
    p.add_argument("--device", metavar="D", help="torch device for the text encoder")
    p.add_argument(
        "--out", action="append", required=True, metavar="FILE", help="output file (repeatable)"
    )
    p.set_defaults(func=run)


def prompt_sets(args: argparse.Namespace) -> tuple[list, str | None]:
    """The prompt sets the arguments name, and the background class name."""
    from napari_conch.engine.prompts import PromptSet

    sets = named_prompt_sets(args)
    if not sets:
        raise InputError("give at least one --prompt or a --prompts file")
    if args.background:
        sets.append(PromptSet.from_prompts([args.background], args.templates))
    return sets, args.background


def load_store_model(store: Any, args: argparse.Namespace) -> Any:
    """Load the model that made ``store`` (or the one the arguments name) and check it."""
    from napari_conch.engine.stores import model_for_store

    return model_for_store(
        store,
        source=args.model,
        config=args.config,
        tokenizer=args.tokenizer,
        device=args.device,
    )


def check_out_file(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a new file: its folder is missing, or it is a folder."""
    if not out.parent.is_dir():
        what = "is not a folder" if out.parent.exists() else "does not exist"
        raise InputError(f"--out {out}: folder {out.parent} {what}")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder (give a file name)")


def run(args: argparse.Namespace) -> int:
    """Query the store and write every ``--out`` file."""
    from napari_conch.engine.export import FORMATS, export_result
    from napari_conch.engine.prompts import embed_prompt_sets
    from napari_conch.engine.query import QueryIndex, run_query
    from napari_conch.engine.store import EmbeddingStore

    sets, background = prompt_sets(args)
    n_classes = sum(len(s.names) for s in sets)
    for out in map(Path, args.out):
        if out.suffix.lower() not in FORMATS:
            raise InputError(f"--out {out}: unknown extension (use {', '.join(FORMATS)})")
        check_out_file(out)
        if out.suffix.lower() == ".geojson" and n_classes == 1 and args.threshold is None:
            raise InputError(f"--out {out}: GeoJSON of one prompt needs --threshold")
    store = EmbeddingStore.open(args.store)
    index = QueryIndex.from_store(store)
    if index.size == 0:
        raise StoreError(no_embeddings_reason(store))
    model = load_store_model(store, args)
    names, queries = embed_prompt_sets(model, *sets)
    result = run_query(
        index,
        names,
        queries,
        store.grid,
        logit_scale=float(model.logit_scale),
        background=background,
        threshold=args.threshold,
    )
    metadata = {
        "store": str(store.path),
        "model_source": str(model.source),
        "templates": args.templates,
        "prompt_file": args.prompts,
        "logit_scale": float(model.logit_scale),
    }
    mpp = store.attrs.get("slide_mpp")
    for out in args.out:
        print(export_result(out, result, store.grid, mpp=mpp, metadata=metadata))
    return 0
