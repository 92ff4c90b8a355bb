"""Starting the prompt highlighter on the demo model: load, embed, prompt, with no clicks.

This is what ``napari-conch view`` does when no CONCH checkpoint is configured: the widget's Model
panel is filled with the demo model shipped in the package (labelled "demo model" wherever it
appears), the slide is embedded at the demo model's tile size, and the prompt is typed in, so the
heatmap fills in while the tiles are embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from napari_conch.demo import DEMO_MODEL_NAME, DEMO_TILE_SIZE, demo_model_paths
from napari_conch.demo.run import DEFAULT_PROMPTS


def fill_demo_paths(panel: Any) -> None:
    """Put the demo model's weights, config and tokenizer in a Model panel."""
    weights, config, tokenizer = demo_model_paths()
    panel.source.value = str(weights)
    panel.config.value = str(config)
    panel.tokenizer.value = str(tokenizer)


def fill_demo_model(widget: Any) -> None:
    """Put the demo model's files in the Model panel and its tile size in the Slide panel."""
    fill_demo_paths(widget.model_panel)
    widget.slide_panel.tile_size.value = DEMO_TILE_SIZE
    widget.slide_panel.stride.value = DEMO_TILE_SIZE


def start_demo(widget: Any, prompts: Sequence[str] = DEFAULT_PROMPTS) -> Any:
    """Load the demo model, then embed the chosen slide and show ``prompts``; returns the worker.

    Everything runs in the widget's background workers; napari stays responsive.
    """
    fill_demo_model(widget)
    worker = widget.load_model()

    def embed_and_prompt(model: Any) -> None:
        if widget.model is None or getattr(widget.model, "config", None) is None:
            return  # loading failed: the widget has already said why
        if widget.model.config.name != DEMO_MODEL_NAME:
            return
        widget.start_embedding()
        widget.prompt_panel.text.value = "\n".join(prompts)

    if worker is not None:
        worker.returned.connect(embed_and_prompt)
    return worker
