"""``napari-conch view``: open napari with the prompt highlighter on a slide.

Without a model (no ``--model``, no ``$NAPARI_CONCH_MODEL``) it starts the demo model (not
CONCH) and, without a slide, opens the held-out H&E sample: parts of the demo model's own
training images that it never saw in training, where it is known to work, with the prompts it
knows, so the first view is a labels map with visible structure. With a model and no slide it
opens the real sample slide CMU-1-Small-Region.

napari (and Qt) are imported only when the command runs, so ``napari-conch --help`` and the other
subcommands stay light.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

from napari_conch.cli.option_arguments import add_options
from napari_conch.demo import DEMO_CONCEPTS, DEMO_VIEW_PROMPTS
from napari_conch.engine.options import RunOptions
from napari_conch.errors import InputError, NapariConchError, SlideError

#: Longest wait (ms) for the window's first drawing before the demo starts anyway.
FIRST_DRAWING_WAIT_MS = 2000
#: The widget's display name in ``napari.yaml``.
WIDGET = "Prompt highlighter"
#: What the first view says about itself (the demo model on its held-out sample).
#: Its first line is the whole of napari's collapsed toast (40 characters, see
#: ``_napari/docks/notices.py``); the rest shows when the toast is expanded.
DEMO_SAMPLE_NOTE = (
    "Demo model: not CONCH, not for diagnosis\n"
    "On held-out parts of its own training images (ovarian carcinoma H&E, never seen in "
    "training): prompts {prompts}. It knows only: {known}."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``view`` subcommand."""
    parser = subparsers.add_parser(
        "view",
        help="open napari with the prompt highlighter on a slide (default: a sample)",
        description=(
            "Open napari with the CONCH prompt highlighter docked, showing SLIDE (any format "
            "napari-conch reads). --model/--config/--tokenizer fill in the Model panel and load "
            "it; without SLIDE it shows the real sample slide CMU-1-Small-Region. "
            "Without a model (no --model, no $NAPARI_CONCH_MODEL) it starts the demo model (a "
            "small CoCa trained on openly licensed images; not CONCH): the slide (default: "
            "held-out parts of the demo model's H&E training images, which it never saw in "
            "training) is embedded and the map of the --prompt(s) shown without a click."
        ),
    )
    parser.add_argument("slide", nargs="?", metavar="SLIDE", help="a slide file or zarr folder")
    parser.add_argument(
        "--model", metavar="SRC",
        help="checkpoint, hf_hub:MahmoodLab/conch or demo ($NAPARI_CONCH_MODEL, else demo)",
    )  # fmt: skip
    parser.add_argument("--config", metavar="JSON", help="model config (non-CONCH models only)")
    parser.add_argument("--tokenizer", metavar="PATH", help="CONCH's tokenizer JSON")
    add_options(parser, RunOptions, ("device", "precision"))
    parser.add_argument(
        "--prompt", action="append", metavar="TEXT",
        help="demo model only: the prompt(s) to show (repeatable; default: "
        + ", ".join(DEMO_VIEW_PROMPTS) + "). It knows: " + ", ".join(DEMO_CONCEPTS),
    )  # fmt: skip
    parser.set_defaults(func=run)


def slide_path(value: str | None, *, demo: bool = False) -> Path:
    """The slide to open: the given one (which must exist) or a shipped sample.

    The sample is the held-out H&E for the demo model (``demo=True``), else CMU-1-Small-Region.
    """
    if value is None:
        from napari_conch.samples import CMU_SMALL_REGION, HGSC_HELDOUT

        return HGSC_HELDOUT if demo else CMU_SMALL_REGION
    from napari_conch.slide.open import existing_slide_path

    return existing_slide_path(value)


def check_prompts(prompts: list[str]) -> None:
    """Refuse, before any window, prompts that cannot make a map (empty, blank, repeated)."""
    from napari_conch.engine.prompts import PromptSet

    try:
        PromptSet.from_prompts(prompts)
    except InputError as exc:
        raise InputError(f"--prompt: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Start napari with the slide and the widget; return when the window closes."""
    import napari

    open_view(args, tune=True)
    napari.run()
    return 0


def open_view(args: argparse.Namespace, *, tune: bool = False) -> tuple:
    """The viewer with the slide and the Prompt highlighter, its model loading; ``(viewer, dock)``.

    What the first model and maps import (torch, pandas, napari's layer code: the docks' warm-up,
    ``warmup.warm_up_imports``) is imported before the window is made, instead of in a thread
    while the first maps are made: the window comes as soon (3.4 s from the start here, 3.6 s with
    torch alone imported first), and the longest pause from the window to the labels map went from
    177-228 ms to 117-125 ms.

    ``tune=True`` (the command, a process of its own) makes the process-wide settings of
    :func:`~napari_conch._napari.fastpaths.process.tune_process` once the arguments are checked.
    """
    from napari_conch.model.sources import source_info

    model = args.model or os.environ.get("NAPARI_CONCH_MODEL")
    demo = not model or source_info(model).is_demo
    path = slide_path(args.slide, demo=demo)
    if args.prompt:
        check_prompts(args.prompt)
    from napari_conch.slide import open_slide

    with open_slide(path):  # a file we cannot read is said in one line, before any window
        pass
    if tune:  # our own process: its settings are ours to make
        tune_view_process()
    import napari

    from napari_conch._napari.warmup import warm_up_imports

    warm_up_imports()  # see above

    title = f"napari-conch: {path.name}" + (" (demo model, not CONCH)" if demo else "")
    viewer = napari.Viewer(title=title)
    try:
        viewer.open(str(path), plugin="napari-conch")
    except Exception as exc:  # its pixels, first read to show it (a damaged tile or file)
        viewer.close()
        if isinstance(exc, NapariConchError):
            raise
        message = " ".join(str(exc).split()) or "no message"
        raise SlideError(f"{path}: cannot show it ({type(exc).__name__}: {message})") from None
    _, widget = viewer.window.add_plugin_dock_widget("napari-conch", WIDGET)
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()  # the dock takes its room first,
    viewer.reset_view()  # then the slide is fitted to the canvas left
    if demo:
        from napari_conch._napari.fastpaths.glyphs import render_glyphs

        prompts = list(args.prompt or DEMO_VIEW_PROMPTS)
        render_glyphs(viewer, "\u25a0 " + "".join(prompts))  # the legend, before the window
        start_demo_view(
            viewer, widget, prompts, sample=args.slide is None, device=args.device,
            precision=args.precision,
        )  # fmt: skip
        return viewer, widget
    # in the background; the Model panel shows the model once the session has it
    widget.load_model(
        source=str(model), config=args.config, tokenizer=args.tokenizer, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    return viewer, widget


def tune_view_process() -> None:
    """The process-wide settings of ``napari-conch view``, a process of its own.

    OpenMP's passive waits for torch's threads (:mod:`napari_conch.cli.compute_threads`; before
    torch is imported) and napari's process settings
    (:func:`~napari_conch._napari.fastpaths.process.tune_process`).
    """
    from napari_conch._napari.fastpaths.process import tune_process
    from napari_conch.cli.compute_threads import passive_thread_waits

    passive_thread_waits()
    tune_process()


def after_first_drawing(viewer, widget, then) -> None:
    """Call ``then`` once the window has drawn its canvas the first time (at most after 2 s)
    and the dock ``widget`` is built (its sections are made over several turns; asked for
    before, they would all be made in one: ``DockBase.when_built``).

    Not when the dock ``widget`` is gone meanwhile (its window closed and deleted).

    The demo's model loading and embedding run in background threads; started with the window,
    they took the interpreter in turns with the window's first drawing (40-60 ms of GUI-thread
    work) and made of it the longest pause of the view (85-97 ms here, 135-176 through a timer
    of 0 ms); started after it, and with OpenMP's passive waits (:func:`tune_view_process`),
    59-87 ms, and the map came as soon (``docs/benchmarks.md``).
    """
    from qtpy.QtCore import QTimer

    from napari_conch._napari.fastpaths.canvas import after_canvas_drawn

    def start() -> None:
        try:
            widget.native.objectName()
        except RuntimeError:  # its C++ widget is gone with the window
            return
        widget.when_built(then)

    after_canvas_drawn(viewer, lambda: QTimer.singleShot(0, start), wait_ms=FIRST_DRAWING_WAIT_MS)


def start_demo_view(
    viewer,
    widget,
    prompts: list[str] | None,
    *,
    sample: bool,
    device: str | None = None,
    precision: str | None = None,
) -> None:
    """Say what the demo model is, and start it with ``prompts`` (default: the H&E concepts it
    knows) once the window has drawn (:func:`after_first_drawing`)."""
    from napari.utils.notifications import show_info

    from napari_conch._napari.demo import start_demo
    from napari_conch._napari.docks.notices import toast_text

    prompts = list(prompts or DEMO_VIEW_PROMPTS)
    start = partial(start_demo, widget, prompts, device=device, precision=precision)
    after_first_drawing(viewer, widget, start)
    if sample:
        note = DEMO_SAMPLE_NOTE.format(prompts=", ".join(prompts), known=", ".join(DEMO_CONCEPTS))
        show_info(toast_text(note))
