"""``napari-conch classify-slides``: slide-level zero-shot classification (CONCH's MI-Zero)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from napari_conch.bounds import Bounds
from napari_conch.cli.common import (
    MODEL_ENV,
    add_templates_argument,
    number,
)
from napari_conch.cli.option_arguments import add_options, options_from_args
from napari_conch.engine.distributed import DEFAULT_CLUSTER_TIMEOUT
from napari_conch.engine.options import RunOptions
from napari_conch.errors import InputError

#: ``--evidence-top``: tiles per class in the evidence.
EVIDENCE_TOP = Bounds(kind=int, minimum=1, optional=True)

#: The run options of the slide files it embeds, in the order of its help (level and mpp
#: exclude each other).
EMBED_OPTIONS = (
    "level", "mpp", "slide_mpp", "tile_size", "stride", "min_tissue", "batch_size", "device",
    "precision", "store_root",
)  # fmt: skip

HELP = "zero-shot classify whole slides by top-j pooling of tile scores (CONCH's MI-Zero)"


def register(subparsers: Any) -> None:
    """Add the ``classify-slides`` subcommand."""
    p = subparsers.add_parser(
        "classify-slides",
        help=HELP,
        description=(
            "Classify each slide with CONCH's zero-shot protocol: every tile's cosine to each "
            "class embedding (synonyms x templates, averaged); per class the mean of the top-j "
            "tile scores; prediction = argmax; probabilities = softmax(logit_scale x pooled). "
            "Slide files are embedded first (resumed when their store exists); stores are used "
            "as they are."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="SLIDE_OR_STORE", help="slide files or stores")
    p.add_argument("--prompts", required=True, metavar="JSON", help="CONCH prompt file")
    add_templates_argument(p, "templates for a prompt file without any")
    p.add_argument(
        "--topk",
        default="1,5,10,50,100",
        metavar="J,..",
        help="pooling sizes (default 1,5,10,50,100)",
    )
    p.add_argument("--out", required=True, metavar="FILE.csv", help="one row per slide")
    p.add_argument("--labels", metavar="CSV", help="reference labels 'slide,label': print metrics")
    p.add_argument("--evidence", metavar="DIR", help="write each slide's top tiles per class")
    p.add_argument(
        "--evidence-top",
        type=number(EVIDENCE_TOP),
        metavar="J",
        help="tiles per class in the evidence (max j)",
    )
    embedding = p.add_argument_group("embedding slide files")
    embedding.add_argument(
        "--model",
        metavar="SRC",
        help=f"model to embed slide files with (default ${MODEL_ENV}); stores use their own",
    )
    embedding.add_argument("--config", metavar="JSON", help="model config")
    embedding.add_argument("--tokenizer", metavar="PATH", help="tokenizer JSON")
    add_options(embedding.add_mutually_exclusive_group(), RunOptions, EMBED_OPTIONS[:2])
    add_options(embedding, RunOptions, EMBED_OPTIONS[2:])
    embedding.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler")
    embedding.add_argument(
        "--cluster-timeout",
        type=float,
        metavar="SECONDS",
        help="with --scheduler: give up after this long without a worker, or when the "
        f"scheduler does not answer (default {DEFAULT_CLUSTER_TIMEOUT:g})",
    )
    embedding.add_argument(
        "--mode",
        choices=("auto", "slides", "tiles"),
        default="auto",
        help="on a cluster: whole slides as tasks, or tiles spread (default auto)",
    )
    embedding.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def is_embedding_store(path: Path) -> bool:
    """True when ``path`` is a folder whose zarr group has a store signature."""
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return "signature" in json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False


def run_options(args: argparse.Namespace) -> RunOptions:
    """The :class:`RunOptions` the arguments give (defaults where they give none)."""
    return options_from_args(RunOptions, args, EMBED_OPTIONS)


def embed_inputs(args: argparse.Namespace) -> tuple[list[Path], list[Any]]:
    """Store paths for every input (slide files embedded first), and the runs left incomplete."""
    from napari_conch.cli.common import model_source
    from napari_conch.cli.embed import ProgressBar
    from napari_conch.engine.cohort.cluster import embed_cohort

    paths = [Path(p).expanduser() for p in args.inputs]
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
    slides = [p for p in paths if not is_embedding_store(p)]
    stores: dict[Path, Path] = {p: p for p in paths if is_embedding_store(p)}
    incomplete = []
    if slides:
        bar = ProgressBar(sys.stderr, enabled=not args.quiet)

        def report(path: Path, event: Any) -> None:
            if event is None:
                print(f"embedded {path.name}", file=sys.stderr)
                return
            if bar.name != path.name:
                bar.finish()
                bar.start(path.name)
            bar.update(event)

        cohort = embed_cohort(
            slides,
            model_source(args),
            run_options(args),
            config=args.config,
            tokenizer=args.tokenizer,
            scheduler=args.scheduler,
            mode=args.mode,
            on_progress=report,
            cluster_timeout=args.cluster_timeout,
        )
        bar.finish()
        for slide, summary in zip(slides, cohort.summaries, strict=True):
            stores[slide] = Path(summary.store_path)
            if not summary.complete:
                incomplete.append(summary)
    return [stores[p] for p in paths], incomplete


def run(args: argparse.Namespace) -> int:
    """Embed what needs it, classify every slide, write the CSV (and evidence, metrics)."""
    from napari_conch.cli.query import load_store_model
    from napari_conch.engine.cohort.classify import (
        classify_store,
        evaluate,
        match_labels,
        parse_topk,
        read_labels_csv,
        write_evidence,
        write_slides_csv,
    )
    from napari_conch.engine.cohort.search import check_same_model, open_stores
    from napari_conch.engine.prompts import chosen_templates, embed_prompt_sets, load_prompt_set

    topk = parse_topk(args.topk)
    prompt_set = load_prompt_set(args.prompts, args.templates or "none")  # checked early
    if len(prompt_set.names) < 2:
        raise InputError(f"--prompts {args.prompts}: classifying slides needs two or more classes")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    if args.evidence and not Path(args.evidence).is_dir():
        raise InputError(f"--evidence {args.evidence}: no such folder")
    if args.evidence_top is not None and args.evidence_top < 1:
        raise InputError(f"--evidence-top {args.evidence_top}: must be at least 1")
    labels = read_labels_csv(args.labels) if args.labels else None

    store_paths, incomplete = embed_inputs(args)
    stores = open_stores(store_paths)
    check_same_model(stores)
    model = load_store_model(stores[0], args)
    prompt_set = load_prompt_set(args.prompts, chosen_templates(args.templates, model))
    names, class_embeddings = embed_prompt_sets(model, prompt_set)
    scale = float(model.logit_scale)
    results = []
    for store in stores:
        result = classify_store(store, names, class_embeddings, scale, topk)
        results.append(result)
        best = len(topk) - 1
        pred = int(result.preds[best])
        print(
            f"{result.slide}: {names[pred]} (p={result.probs[best, pred]:.3f}, "
            f"top-{topk[best]}, {result.tiles} tiles)"
        )
        clipped = result.clipped()
        if clipped:
            print(
                f"  note: {result.tiles} tiles only; top-"
                + ", top-".join(map(str, clipped))
                + f" pool all {result.tiles}"
            )
        if args.evidence:
            csv_path, _ = write_evidence(args.evidence, result, store.grid, args.evidence_top)
            print(f"  evidence: {csv_path.with_suffix('')}.{{csv,geojson}}")
    print(write_slides_csv(out, results))
    if labels is not None:
        _, _, missing = match_labels(results, labels)
        if missing:
            print(f"no label for {len(missing)} slide(s), e.g. {missing[0]}: not in the metrics")
        for metrics in evaluate(results, labels):
            print(metrics.line())
    if incomplete:
        parts = [s.describe_failures() for s in incomplete if s.failed]
        pending = sum(s.pending for s in incomplete)
        if pending:
            parts.append(f"{pending} tissue tiles not embedded")
        print(
            f"napari-conch classify-slides: {'; '.join(parts)}; {len(incomplete)} slide(s) "
            "classified from the tiles that were embedded (run again to retry the others)",
            file=sys.stderr,
        )
        return 1
    return 0
