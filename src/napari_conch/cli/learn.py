"""``napari-conch learn``: teach classes by example on an embedding store, exported as files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from napari_conch.cli.common import (
    add_prompt_arguments,
    add_store_model_arguments,
    named_prompt_sets,
    no_embeddings_reason,
    number,
)
from napari_conch.cli.query import add_map_scale_argument, check_map_render
from napari_conch.engine.learn.classifier import STRENGTH_BOUNDS
from napari_conch.errors import InputError, StoreError

HELP = "learn classes from annotated example tiles, with text prompts as the prior"


def register(subparsers: Any) -> None:
    """Add the ``learn`` subcommand to the CLI."""
    p = subparsers.add_parser(
        "learn",
        help=HELP,
        description=(
            "Train a linear classifier on the embedded tiles of STORE. Its prior is the "
            "zero-shot classifier of the prompts (with no example it gives the query's map "
            "exactly); tiles whose centre lies in an annotation of a class (QuPath GeoJSON, "
            "level-0 pixels, properties.classification.name) are its examples. Classes named "
            "only in the annotations are learned from examples alone. Prints the "
            "cross-validated precision and recall per class. The format follows the extension "
            "of --out: .csv (row,col,x0,y0,x1,y1,class,prob_<class>...), .tif/.tiff (a "
            "pyramidal OME-TIFF laid over the slide, see --map-scale) and .npy "
            "(probabilities and label per stride cell), .geojson (labelled regions for QuPath). "
            "Without --annotations, the project saved in the store (--save) is used."
        ),
    )
    p.add_argument("store", metavar="STORE", help="embedding store folder (.zarr)")
    p.add_argument("--annotations", metavar="GEOJSON", help="QuPath GeoJSON of example shapes")
    add_prompt_arguments(p, "templates for --prompt and prompt files without any")
    p.add_argument(
        "--strength",
        type=number(STRENGTH_BOUNDS),
        metavar="F",
        help="pull of the classifier towards the prompts (default: the engine's)",
    )
    add_store_model_arguments(p)
    p.add_argument(
        "--out", action="append", default=[], metavar="FILE", help="output file (repeatable)"
    )
    add_map_scale_argument(p)
    p.add_argument(
        "--examples-out", metavar="GEOJSON", help="write the example tiles as QuPath annotations"
    )
    p.add_argument(
        "--save", action="store_true", help="save the project in STORE/annotations/project.json"
    )
    p.set_defaults(func=run)


def _check_outputs(args: argparse.Namespace) -> None:
    from napari_conch.cli.query import check_out_file
    from napari_conch.engine.export.map_tiff import parse_map_scale
    from napari_conch.engine.export.writers import FORMATS

    args.map_scale = parse_map_scale(args.map_scale)
    check_map_render(args.map_render, args.map_scale)
    if not args.out and not args.examples_out and not args.save:
        raise InputError("nothing to do: give --out FILE, --examples-out FILE or --save")
    for out in map(Path, args.out):
        if out.suffix.lower() not in FORMATS:
            raise InputError(f"--out {out}: unknown extension (use {', '.join(FORMATS)})")
    for out in map(Path, args.out):
        check_out_file(out)
    if args.examples_out:
        check_out_file(Path(args.examples_out), "--examples-out")
    if args.examples_out and Path(args.examples_out).suffix.lower() != ".geojson":
        raise InputError(f"--examples-out {args.examples_out}: use a .geojson file")


def _prompt_sets(args: argparse.Namespace, project: Any, store: Any) -> list:
    from napari_conch.engine.prompts import PromptSet, chosen_templates

    templates = args.templates
    if templates is None and (args.prompt or args.prompts):
        from napari_conch.cli.query import load_store_model

        templates = chosen_templates(None, load_store_model(store, args))  # the model's own
    sets = named_prompt_sets(args, templates or "none")
    if not sets and project is not None and project.prompts:
        sets.append(PromptSet(project.prompts, project.templates))
    return sets


def _text(store: Any, args: argparse.Namespace, sets: list) -> tuple[dict, float]:
    """Text embeddings of the prompted classes, and the model's logit scale."""
    if not sets:
        scale = store.logit_scale
        if scale is None:
            raise StoreError(f"{store.path}: the store does not record the model's logit scale")
        return {}, float(scale)
    from napari_conch.cli.query import load_store_model
    from napari_conch.engine.prompts import embed_prompt_sets

    model = load_store_model(store, args)
    names, queries = embed_prompt_sets(model, *sets)
    return dict(zip(names, queries, strict=True)), float(model.logit_scale)


def run(args: argparse.Namespace) -> int:
    """Read the examples, train, print the validation and write every output."""
    from napari_conch.engine.export.map_tiff import frame_for_store
    from napari_conch.engine.learn.annotations import (
        examples_from_shapes,
        read_geojson,
        write_examples_geojson,
    )
    from napari_conch.engine.learn.export import export_learned
    from napari_conch.engine.learn.learner import Learner
    from napari_conch.engine.learn.project import (
        AnnotationProject,
        load_project,
        save_project,
    )
    from napari_conch.engine.query import QueryIndex
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    _check_outputs(args)
    store = EmbeddingStore.open(args.store)
    project = load_project(store)
    if args.annotations is None and project is None:
        raise InputError(f"give --annotations: {store.path} holds no saved annotation project")
    shapes = read_geojson(args.annotations) if args.annotations else None
    index = QueryIndex.from_store(store)
    if index.size == 0:
        raise StoreError(no_embeddings_reason(store))
    sets = _prompt_sets(args, None if args.annotations else project, store)
    text, scale = _text(store, args, sets)
    strength = args.strength
    if strength is None and project is not None and not args.annotations:
        strength = project.strength
    colors = dict(project.colors) if project is not None and not args.annotations else {}
    if shapes is not None:
        colors.update(shapes.colors())
    kwargs = {} if strength is None else {"strength": strength}
    learner = Learner(index, store.grid, scale, text, colors=colors, **kwargs)
    if shapes is not None:
        learner.set_examples(examples_from_shapes(store.grid, shapes))
        if shapes.unclassified:
            print(f"{shapes.unclassified} annotation(s) without a classification were skipped")
    else:
        for name, synonyms in project.classes.items():
            if not synonyms:
                learner.add_class(name)
        learner.set_examples(project.examples)
    outcome = learner.retrain()
    counts = learner.examples.counts()
    print(
        f"{len(learner.examples)} example tiles: "
        + ", ".join(f"{n} {counts.get(n, 0)}" for n in learner.classes)
        + (f" ({outcome.unembedded} without an embedding, not used)" if outcome.unembedded else "")
    )
    print(outcome.validation.table())
    colors = learner.colors
    metadata = {
        "store": str(store.path),
        "kind_of_map": "learned",
        "examples": outcome.used,
        "strength": learner.strength,
        "logit_scale": scale,
    }
    mpp = store.attrs.get("slide_mpp")
    tiffs = [out for out in args.out if Path(out).suffix.lower() in (".tif", ".tiff")]
    frame = frame_for_store(store) if tiffs and args.map_scale != "tile" else None
    for out in args.out:
        print(
            export_learned(
                out,
                outcome.result,
                store.grid,
                colors=colors,
                mpp=mpp,
                metadata=metadata,
                map_scale=args.map_scale,
                frame=frame,
                map_render=args.map_render,
            )
        )
    if args.examples_out:
        print(write_examples_geojson(args.examples_out, learner.examples, store.grid, colors))
    if args.save:
        classes = {n: [] for n in learner.classes}
        for prompt_set in sets:
            classes.update({n: list(s) for n, s in prompt_set.classnames.items()})
        templates = sets[0].templates if sets else "conch"
        saved = AnnotationProject(
            classes=classes,
            colors=colors,
            templates=list(templates),
            examples=learner.examples,
            strength=learner.strength,
            classifier=outcome.classifier,
        )
        print(save_project(store, saved))
    return 0
