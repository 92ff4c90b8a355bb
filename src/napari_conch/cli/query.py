"""``napari-conch query``: text prompts against an embedding store, exported as files.

The work goes through a :class:`~napari_conch.engine.session.session.Session` on the store alone
(:func:`store_session`): the prompts become one ``PromptRequest`` (:func:`prompt_request`),
``Session.query`` makes the maps and ``Session.export`` writes them, as the Prompt highlighter
dock does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_conch.cli.common import (
    add_prompt_arguments,
    add_store_model_arguments,
    no_embeddings_reason,
)
from napari_conch.cli.option_arguments import add_option
from napari_conch.engine.options import PromptOptions
from napari_conch.engine.session.prompt_request import PromptRequest
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
            "row per tile), .tif/.tiff (float32 pyramidal OME-TIFF laid over the slide, see "
            "--map-scale), .geojson "
            "(labelled regions for QuPath), .npy (the map)."
        ),
    )
    p.add_argument("store", metavar="STORE", help="embedding store folder (.zarr)")
    add_prompt_arguments(
        p,
        "templates for --prompt/--background and prompt files without any",
    )
    p.add_argument("--background", metavar="TEXT", help="a class whose wins become label 0")
    add_option(p, PromptOptions, "threshold")
    add_store_model_arguments(p)
    p.add_argument(
        "--out", action="append", required=True, metavar="FILE", help="output file (repeatable)"
    )
    add_map_scale_argument(p)
    p.set_defaults(func=run)


def add_map_scale_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--map-scale`` and ``--map-render`` (how a .tif map is placed and drawn)."""
    parser.add_argument(
        "--map-scale",
        default="auto",
        metavar="S",
        help=(
            ".tif maps: slide pixels per map pixel of the pyramidal OME-TIFF laid over the "
            "slide: auto (the slide level of 8-16, else 8), full (slide size), a number, or "
            "tile (one pixel per stride cell, the old TIFF) (default auto)"
        ),
    )
    parser.add_argument(
        "--map-render",
        default="float",
        choices=("float", "rgb"),
        help=(
            ".tif maps: float (the values, an OME-TIFF; default) or rgb (colours with "
            "transparency, a pyramidal TIFF QuPath and OpenSlide open over the slide)"
        ),
    )


def check_map_render(render: str, scale: str | float) -> None:
    """Refuse ``--map-render rgb`` with ``--map-scale tile`` (the coloured map is laid over
    the slide; the one-pixel-per-cell TIFF holds values)."""
    if render == "rgb" and scale == "tile":
        raise InputError("--map-render rgb needs a --map-scale other than tile (the coloured map "
                         "is laid over the slide)")  # fmt: skip


def prompt_request(args: argparse.Namespace, templates: str) -> Any:
    """The classes the arguments name, as a checked :class:`PromptRequest`, with ``templates``
    for ``--prompt``, ``--background`` and a prompt file without any.

    The ``--prompt`` classes come first, then those of the ``--prompts`` file (each with its
    synonyms and the file's templates), then the ``--background`` class.

    Raises
    ------
    InputError
        When no class is named, a class is named twice, or the prompt file cannot be read.
    """
    from napari_conch.engine.prompts import load_prompt_set

    prompt_set = load_prompt_set(args.prompts, templates) if args.prompts else None
    names = (*args.prompt, *(prompt_set.names if prompt_set is not None else ()))
    if not names:
        raise InputError("give at least one --prompt or a --prompts file")
    request = PromptRequest(names, templates, args.background, args.threshold, prompt_set)
    request.check()
    return request


def load_store_model(store: Any, args: argparse.Namespace) -> Any:
    """Load the model that made ``store`` (or the one the arguments name) and check it."""
    from napari_conch.engine.store.lookup import model_for_store

    return model_for_store(
        store,
        source=args.model,
        config=args.config,
        tokenizer=args.tokenizer,
        device=args.device,
        precision=args.precision,
    )


def store_session(args: argparse.Namespace) -> Any:
    """A session on the store ``args.store`` alone, with the model that made it.

    Raises
    ------
    StoreError
        When the folder is not a store, or the store has no embedded tile (saying why, before
        any model is loaded), or the model given is not the one that made it.
    """
    from napari_conch.engine.session.session import Session

    session = Session()
    store = session.open_store_at(args.store)
    if session.index.size == 0:
        raise StoreError(no_embeddings_reason(store))
    session.set_model(load_store_model(store, args))
    return session


def check_out_file(out: Path, option: str = "--out") -> None:
    """Refuse an output file (given as ``option``) that cannot be a new file: its folder is
    missing, or it is a folder."""
    if not out.parent.is_dir():
        what = "is not a folder" if out.parent.exists() else "does not exist"
        raise InputError(f"{option} {out}: folder {out.parent} {what}")
    if out.is_dir():
        raise InputError(f"{option} {out}: is a folder (give a file name)")


def run(args: argparse.Namespace) -> int:
    """Query the store and write every ``--out`` file."""
    from napari_conch.engine.export.map_tiff import parse_map_scale
    from napari_conch.engine.prompts import chosen_templates

    request = prompt_request(args, args.templates or "none")  # checked before the model loads
    map_scale = parse_map_scale(args.map_scale)
    check_map_render(args.map_render, map_scale)
    check_outputs(args.out, len(request.classes), args.threshold)
    session = store_session(args)
    templates = chosen_templates(args.templates, session.model)
    session.query(prompt_request(args, templates))
    metadata = {
        "templates": templates,
        "prompt_file": args.prompts,
        "logit_scale": float(session.model.logit_scale),
    }
    for out in args.out:
        print(session.export(out, metadata=metadata, map_scale=map_scale,
                             map_render=args.map_render))  # fmt: skip
    return 0


def check_outputs(outs: list[str], n_classes: int, threshold: float | None) -> None:
    """Refuse the ``--out`` files that cannot be written.

    An unknown format, a path that cannot be a new file, or a GeoJSON of one class without
    ``--threshold`` (it would hold no region) is an :class:`InputError`.
    """
    from napari_conch.engine.export.writers import FORMATS

    for out in map(Path, outs):
        if out.suffix.lower() not in FORMATS:
            raise InputError(f"--out {out}: unknown extension (use {', '.join(FORMATS)})")
        check_out_file(out)
        if out.suffix.lower() == ".geojson" and n_classes == 1 and threshold is None:
            raise InputError(f"--out {out}: GeoJSON of one prompt needs --threshold")
