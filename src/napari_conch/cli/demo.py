"""``napari-conch demo``: the shipped demo model on a real slide, headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_conch.cli.common import add_precision_argument
from napari_conch.cli.option_arguments import add_option
from napari_conch.demo import DEMO_CONCEPTS, DEMO_VIEW_PROMPTS
from napari_conch.engine.options import DEMO_PROMPT_DEFAULTS, PromptOptions
from napari_conch.errors import InputError


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="run the demo model (not CONCH) on a real slide; write a heatmap and a PNG",
        description=(
            "Embed a slide (default: the held-out H&E sample shipped with the package, parts of "
            "the demo model's training images it never saw in training) with the demo model, a "
            "small CoCa trained on openly licensed tissue images "
            "(not CONCH, not for diagnosis; see docs/demo-model.md), and write the map of the "
            "prompts as OUT/heatmap.tif and OUT/overlay.png. One prompt gives a similarity "
            "heatmap, several a labelled map. Works offline, without CONCH's weights."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--slide", metavar="PATH", help="a slide (default: the shipped held-out H&E sample)"
    )
    p.add_argument(
        "--prompt", action="append", metavar="TEXT",
        help="what to look for (repeatable; default: " + ", ".join(DEMO_VIEW_PROMPTS)
        + "). The demo model knows: " + ", ".join(DEMO_CONCEPTS),
    )  # fmt: skip
    add_option(p, PromptOptions, "templates", DEMO_PROMPT_DEFAULTS, choices=("conch", "none"))
    p.add_argument("--device", metavar="D", help="torch device (default: auto)")
    add_precision_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what it wrote."""
    from napari_conch.cli.embed import ProgressBar
    from napari_conch.demo.run import DEFAULT_PROMPTS, run_demo

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder")
    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    bar.start("demo model")
    try:
        outputs = run_demo(
            args.out,
            slide_path=args.slide,
            prompts=args.prompt or DEFAULT_PROMPTS,
            templates=args.templates,
            device=args.device,
            precision=args.precision,
            on_progress=bar.update,
        )
    finally:
        bar.finish()  # after an error too: main() prints its one line below the bar
    print(f"demo model (not CONCH): {outputs.tiles_embedded} tissue tiles embedded")
    print(f"prompts: {', '.join(outputs.names)}")
    print(f"heatmap: {outputs.heatmap_tiff}")
    print(f"overlay: {outputs.overlay_png}")
    print(f"store:   {outputs.store}")
    return 0
