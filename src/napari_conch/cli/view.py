"""``napari-conch view``: open napari with the prompt highlighter on a slide.

napari (and Qt) are imported only when the command runs, so ``napari-conch --help`` and the other
subcommands stay light.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from napari_conch.errors import SlideError

#: The widget's display name in ``napari.yaml``.
WIDGET = "Prompt highlighter"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``view`` subcommand."""
    parser = subparsers.add_parser(
        "view",
        help="open napari with the prompt highlighter on a slide (default: the sample slide)",
        description=(
            "Open napari with the CONCH prompt highlighter docked, showing SLIDE (any format "
            "napari-conch reads) or, without SLIDE, the real sample slide CMU-1-Small-Region "
            "shipped with the package. --model/--config/--tokenizer fill in the Model panel "
            "and load it. "
            "Without a model (no --model, no $NAPARI_CONCH_MODEL) it starts the demo model (a "
            "small CoCa trained on openly licensed images; not CONCH): the slide is embedded and "
            "the --prompt map shown without a click."
        ),
    )
    parser.add_argument("slide", nargs="?", metavar="SLIDE", help="a slide file or zarr folder")
    parser.add_argument(
        "--model", metavar="SRC", help="checkpoint or hf_hub:MahmoodLab/conch ($NAPARI_CONCH_MODEL)"
    )
    parser.add_argument("--config", metavar="JSON", help="model config (non-CONCH models only)")
    parser.add_argument("--tokenizer", metavar="PATH", help="CONCH's tokenizer JSON")
    parser.add_argument("--device", metavar="D", help="torch device (default: auto)")
    parser.add_argument(
        "--prompt", action="append", metavar="TEXT",
        help='demo model only: the prompt(s) to show (default "stroma")',
    )  # fmt: skip
    parser.set_defaults(func=run)


def slide_path(value: str | None) -> Path:
    """The slide to open: the given one (which must exist) or the shipped sample."""
    if value is None:
        from napari_conch._napari.sample_data import CMU_SMALL_REGION

        return CMU_SMALL_REGION
    path = Path(value).expanduser()
    if not path.exists():
        raise SlideError(f"{path}: no such file or folder")
    return path


def run(args: argparse.Namespace) -> int:
    """Start napari with the slide and the widget; return when the window closes."""
    path = slide_path(args.slide)
    import napari

    viewer = napari.Viewer(title=f"napari-conch: {path.name}")
    viewer.open(str(path), plugin="napari-conch")
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    panel = widget.model_panel
    if args.device:
        panel.device.value = args.device
    model = args.model or os.environ.get("NAPARI_CONCH_MODEL")
    if not model:
        from napari_conch._napari.demo import start_demo
        from napari_conch.demo.run import DEFAULT_PROMPTS

        start_demo(widget, args.prompt or DEFAULT_PROMPTS)
        napari.run()
        return 0
    panel.source.value = str(model)
    if args.config:
        panel.config.value = args.config
    if args.tokenizer:
        panel.tokenizer.value = args.tokenizer
    widget.load_model()  # in the background; the panel says when it is loaded
    napari.run()
    return 0
