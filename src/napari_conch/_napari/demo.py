"""Starting the prompt highlighter on the demo model: load, embed, prompt, with no clicks.

This is what ``napari-conch view`` does when no CONCH checkpoint is configured: the dock loads
the model source ``demo`` (the demo model shipped in the package, registered by
:mod:`napari_conch.demo`; labelled "demo model (not CONCH)" wherever it appears), the slide is
embedded at the model's own tile size (the registry gives 128 px for it; chosen by
``RunOptions.tile_size_for`` as ``napari-conch embed --model demo`` does, so both find the same
store), and the prompts are set in the session once the tiles are embedded, or after
:data:`LIVE_MAP_AFTER_S` on a slide that takes longer (the map then fills in as the tiles come).
Several prompts give a labels map.

Each step is chained to the end of the one before (the model loaded, the session's ``progress``
and ``run_finished`` signals); everything goes through the session and the dock's actions, and
the dock shows it (the Model panel, the prompts in the box) from the session.

Why not at once: the map layers made while the run's threads take the cores cost napari twice
its GUI thread's time (the held-out sample's 44 tiles take a fraction of a second; its map
layers made during that run paused napari 103-162 ms, against 70-100 ms made after it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from napari_conch.demo import DEMO_CONCEPTS, DEMO_SOURCE, DEMO_VIEW_PROMPTS

#: Seconds of embedding after which the prompts are set even though the run goes on.
LIVE_MAP_AFTER_S = 2.0
#: What the prompt box says while the demo model is in use.
DEMO_PROMPT_HINT = "One prompt per line. The demo model knows: " + ", ".join(DEMO_CONCEPTS)
#: The demo starts under way (psygnal holds bound methods weakly: kept here until they end).
_UNDER_WAY: set[DemoStart] = set()


class DemoStart:
    """The steps of :func:`start_demo`, each started by the end of the one before.

    Parameters
    ----------
    dock : the Prompt highlighter dock
        The dock whose actions run the steps (model loading and the embedding run in its
        workers).
    prompts : sequence of str
        The prompts set once the tiles are embedded (or after :data:`LIVE_MAP_AFTER_S`).
    """

    def __init__(self, dock: Any, prompts: Sequence[str]) -> None:
        self.dock = dock
        self.session = dock.session
        self.prompts = list(prompts)
        self.started = 0.0  # when the embedding started (monotonic seconds), once it has
        self.done = False
        _UNDER_WAY.add(self)

    def model_loaded(self, model: Any) -> None:
        """Loading ended: embed with the demo model (None: loading failed, the dock said why)."""
        if model is None or not getattr(model, "is_demo", False):
            self._stop()
            return
        events = self.session.events
        events.progress.connect(self._on_progress)
        events.run_finished.connect(self._on_run_finished)
        self.started = time.monotonic()
        if self.dock.start_embedding() is None:  # the dock said why
            self._stop()

    def _on_progress(self, _event: Any) -> None:
        if time.monotonic() - self.started >= LIVE_MAP_AFTER_S:
            self._show_prompts()

    def _on_run_finished(self, _summary: Any) -> None:
        self._show_prompts()

    def _show_prompts(self) -> None:
        self._stop()
        self.session.set_prompt_text(self.prompts)

    def _stop(self) -> None:
        events = self.session.events
        events.progress.disconnect(self._on_progress, missing_ok=True)
        events.run_finished.disconnect(self._on_run_finished, missing_ok=True)
        self.done = True
        _UNDER_WAY.discard(self)


def start_demo(
    dock: Any,
    prompts: Sequence[str] = DEMO_VIEW_PROMPTS,
    *,
    device: str | None = None,
    precision: str | None = None,
) -> Any:
    """Load the demo model, then embed the chosen slide and show ``prompts``; returns the worker.

    Everything runs in the dock's background workers; napari stays responsive. The model is
    loaded (``device``: default the Model
    panel's), then the embedding starts, then the prompts are set in the session when the
    embedding has ended or after :data:`LIVE_MAP_AFTER_S` of it. It gives up when loading fails
    or the embedding does not start (the dock has already said why). Returns None when the
    loading could not start.
    """
    steps = DemoStart(dock, prompts)
    worker = dock.load_model(
        source=DEMO_SOURCE, device=device, precision=precision, then=steps.model_loaded
    )
    if worker is None:  # the dock said why
        steps._stop()
    return worker
