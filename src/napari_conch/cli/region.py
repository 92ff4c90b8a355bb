"""``napari-conch caption`` and ``rank-texts``: image-to-text for a region of a slide."""

from __future__ import annotations

import argparse
import json
from typing import Any

from napari_conch.bounds import Bounds
from napari_conch.cli.common import (
    add_model_argument,
    add_precision_argument,
    model_source,
    number,
)
from napari_conch.cli.option_arguments import add_option, add_options, options_from_args
from napari_conch.engine.options import (
    CAPTION_DEFAULTS,
    RANK_TEXTS_DEFAULTS,
    CaptionOptions,
    PromptOptions,
    RunOptions,
    surfaced_fields,
)

#: Box corners: any finite level-0 coordinate (a box partly outside the slide is clipped).
COORDINATE = Bounds()


def _add_region_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("slide", metavar="SLIDE", help="a slide file or zarr folder")
    p.add_argument(
        "--box",
        nargs=4,
        type=number(COORDINATE),
        required=True,
        metavar=("X0", "Y0", "X1", "Y1"),
        help="the region, in level-0 pixels",
    )
    add_option(p, RunOptions, "level", words="pyramid level to read at")
    add_option(
        p, RunOptions, "slide_mpp", words="level-0 microns/px if the file has none",
        aliases=("--mpp",), dest="mpp",
    )  # fmt: skip
    add_model_argument(p)
    p.add_argument("--config", metavar="JSON", help="model config (CONCH JSON form or preset)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer JSON (found when omitted)")
    p.add_argument("--device", metavar="D", help="torch device, e.g. cuda, cpu (default: auto)")
    add_precision_argument(p)


def register(subparsers: Any) -> None:
    """Add the ``caption`` and ``rank-texts`` subcommands."""
    cap = subparsers.add_parser(
        "caption",
        help="caption a region of a slide (needs a checkpoint with decoder weights)",
        description=(
            "Caption a region with the CoCa decoder. The region is read at --level, padded to a "
            "square with white and resized to the model input. The public CONCH checkpoint has "
            "no decoder weights and cannot caption; rank-texts works with it."
        ),
    )
    _add_region_arguments(cap)
    add_options(cap, CaptionOptions, surfaced_fields(CaptionOptions), CAPTION_DEFAULTS)
    cap.set_defaults(func=run_caption)

    rank = subparsers.add_parser(
        "rank-texts",
        help="rank candidate texts for a region of a slide",
        description=(
            "Rank candidate texts for a region by softmax(logit_scale * cosine), the model's own "
            "temperature. Regions up to twice the model input are padded square and resized; "
            "larger ones are tiled at the model input and their tile embeddings averaged."
        ),
    )
    _add_region_arguments(rank)
    texts = rank.add_mutually_exclusive_group(required=True)
    texts.add_argument("--text", action="append", metavar="T", help="a candidate (repeatable)")
    texts.add_argument(
        "--prompts",
        metavar="JSON",
        help='CONCH prompt set {"classnames": {CLASS: [synonyms]}, "templates": [...]}: '
        "ranks its classes, each an ensemble of synonyms x templates",
    )
    add_option(
        rank, PromptOptions, "templates", RANK_TEXTS_DEFAULTS,
        words="wrap each --text in a template set: conch (CONCH's 22), or a CLIP model's own "
        "(quiltnet, plip)",
    )  # fmt: skip
    rank.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rank.set_defaults(func=run_rank_texts)


def _open(args: argparse.Namespace):
    from napari_conch.engine.region import Region
    from napari_conch.model import load_model
    from napari_conch.slide import open_slide

    level = {} if args.level is None else {"level": args.level}  # left out: Region's own (0)
    region = Region(*args.box, **level)
    slide = open_slide(args.slide, mpp=args.mpp)
    model = load_model(
        model_source(args),
        config=args.config,
        tokenizer=args.tokenizer,
        device=args.device,
        precision=args.precision,
    )
    return slide, region, model


def run_caption(args: argparse.Namespace) -> int:
    """Print the caption of the region."""
    from napari_conch.engine.region import caption_region
    from napari_conch.errors import NoDecoderError

    fields = surfaced_fields(CaptionOptions)
    cfg = options_from_args(CaptionOptions, args, fields, CAPTION_DEFAULTS).generation_config()
    slide, region, model = _open(args)
    if not model.has_decoder:
        clip = model.config.to_dict().get("architecture") == "clip"
        why = (
            "a CLIP model has image and text towers only"
            if clip
            else "the public CONCH release ships none"
        )
        raise NoDecoderError(
            f"{model.source} has no captioning decoder weights ({why}), so it cannot caption; "
            "try 'napari-conch rank-texts' instead"
        )
    print(caption_region(model, slide, region, cfg))
    return 0


def run_rank_texts(args: argparse.Namespace) -> int:
    """Print the candidates, best first, with probability and cosine."""
    from napari_conch.engine.prompts import load_prompt_set
    from napari_conch.engine.region import rank_texts

    candidates = args.text or load_prompt_set(args.prompts)
    slide, region, model = _open(args)
    ranking = rank_texts(model, slide, region, candidates, templates=args.templates)
    if args.json:
        print(json.dumps([{"text": t, "probability": p, "cosine": c} for t, p, c in ranking]))
        return 0
    width = max(len(t) for t, _, _ in ranking)
    print(f"{'text':<{width}}  probability  cosine")
    for text, prob, cos in ranking:
        print(f"{text:<{width}}  {prob:11.4f}  {cos:6.3f}")
    return 0
