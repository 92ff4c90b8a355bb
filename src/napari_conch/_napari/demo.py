"""Starting the prompt highlighter on the demo model: load, embed, prompt, with no clicks.

This is what ``napari-conch view`` does when no CONCH checkpoint is configured: the widget's Model
panel names the model source ``demo`` (the demo model shipped in the package, registered by
:mod:`napari_conch.demo`; labelled "demo model (not CONCH)" wherever it appears), the slide is
embedded at the model's own tile size (the registry gives 128 px for it; chosen by
``RunOptions.tile_size_for`` as ``napari-conch embed --model demo`` does, so both find the same
store), and the prompts are typed in once the tiles are embedded, or after
:data:`LIVE_MAP_AFTER_S` on a slide that takes longer (the map then fills in as the tiles come).
Several prompts give a labels map.

Why not at once: the map layers made while the run's threads take the cores cost napari twice
its GUI thread's time (the held-out sample's 44 tiles take a fraction of a second; its map
layers made during that run paused napari 103-162 ms, against 70-100 ms made after it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from napari_conch.demo import DEMO_CONCEPTS, DEMO_SOURCE, DEMO_VIEW_PROMPTS

#: How often :func:`start_demo` looks whether the demo model is loaded (milliseconds).
POLL_MS = 50
#: Seconds of embedding after which the prompts are typed in even though the run goes on.
LIVE_MAP_AFTER_S = 2.0
#: What the prompt box says while the demo model is in use.
DEMO_PROMPT_HINT = "One prompt per line. The demo model knows: " + ", ".join(DEMO_CONCEPTS)


def fill_demo_paths(panel: Any) -> None:
    """Name the demo model in a Model panel; its config and tokenizer come with it."""
    panel.source.value = DEMO_SOURCE
    panel.config.value = None
    panel.tokenizer.value = None


def fill_demo_model(widget: Any) -> None:
    """Name the demo model in the Model panel.

    Its tile size is not written into the Slide panel: the panel's tile size and stride are
    left as they are ("model's own" unless the user set one), and the session takes the model's
    own (``RunOptions.tile_size_for``: 128 px for the demo model).
    """
    fill_demo_paths(widget.model_panel)
    text = widget.prompt_panel.text
    text.tooltip = DEMO_PROMPT_HINT
    text.native.setPlaceholderText(DEMO_PROMPT_HINT)


def start_demo(widget: Any, prompts: Sequence[str] = DEMO_VIEW_PROMPTS) -> Any:
    """Load the demo model, then embed the chosen slide and show ``prompts``; returns the worker.

    Everything runs in the widget's background workers; napari stays responsive. Each next step
    waits for the widget's state (checked every :data:`POLL_MS` on the event loop) rather than
    on the worker's ``returned`` signal: a cached model can come back before a connection made
    after the worker started would see it. The prompts come when the embedding has ended, or
    after :data:`LIVE_MAP_AFTER_S` of it. It gives up when loading fails or the embedding does
    not start (the widget has already said why).
    """
    from qtpy.QtCore import QTimer

    fill_demo_model(widget)
    errors = len(widget.errors)
    worker = widget.load_model()
    if worker is None:
        return None
    timer = QTimer(widget.native)
    timer.setInterval(POLL_MS)

    started = [0.0]  # when the embedding started (monotonic seconds), once it has

    def embed_then_prompt() -> None:
        if started[0]:
            ended = not widget.embedding
            if ended or time.monotonic() - started[0] >= LIVE_MAP_AFTER_S:
                timer.stop()
                widget.prompt_panel.text.value = "\n".join(prompts)
        elif len(widget.errors) > errors:
            timer.stop()  # loading failed
        elif widget.model is not None and getattr(widget.model, "is_demo", False):
            timer.stop()  # not again, whatever happens in the start
            if widget.start_embedding() is not None:  # else the widget said why
                started[0] = time.monotonic()
                timer.start()  # now for the prompts

    timer.timeout.connect(embed_then_prompt)
    timer.start()
    return worker
