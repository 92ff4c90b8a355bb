"""The map values under the cursor, in the widget and in napari's status bar.

napari writes the active layer's value to the status bar on every cursor move (from a thread in
the Qt viewer). :class:`CursorStatus` computes the values of every map of the current result at
the cursor (cosine per class, probabilities, the winning label's name) and puts them after
whatever napari wrote, replacing those of the previous position, so they show once whichever
layer is active.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_conch._napari.layers.map_layers import world_to_level0

#: What starts the maps' values in napari's status bar.
MARKER = "CONCH: "
#: Between napari's own status and ours.
SEPARATOR = "  "


def values_at(result: Any, slide_layer: Any, world_position: Any) -> str:
    """One line with the maps' values at a world position ("" outside the maps)."""
    if result is None or slide_layer is None:
        return ""
    y, x = world_to_level0(slide_layer, world_position)
    geometry = result.geometry
    i = math.floor((y + 0.5 - geometry.origin[0]) / geometry.cell_size)
    j = math.floor((x + 0.5 - geometry.origin[1]) / geometry.cell_size)
    height, width = geometry.shape
    if not (0 <= i < height and 0 <= j < width):
        return ""
    cosine = result.cell_cosine[:, i, j]
    if not np.any(np.isfinite(cosine)):
        return MARKER + "not embedded here"
    parts = [f"{n} {c:.3f}" for n, c in zip(result.names, cosine, strict=True)]
    if result.cell_probs is not None:
        probs = result.cell_probs[:, i, j]
        rows = zip(result.names, cosine, probs, strict=True)
        parts = [f"{n} {c:.3f} (p {q:.2f})" for n, c, q in rows]
    if result.cell_labels is not None:
        label = int(result.cell_labels[i, j])
        names = result.label_names if result.cell_probs is not None else result.names
        parts.append(f"label: {names[label - 1] if label else 'none'}")
    return MARKER + ", ".join(parts)


def _without_ours(text: str) -> str:
    """``text`` without the values a previous cursor position appended."""
    cut = text.find(SEPARATOR + MARKER)
    if cut < 0 and text.startswith(MARKER):
        cut = 0
    return text if cut < 0 else text[:cut]


class CursorStatus:
    """Keeps the dock's cursor label and napari's status bar showing the maps' values.

    The values appear once: those of the previous position are replaced, never piled up.
    """

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.text = ""
        self._writing = False
        viewer = widget.viewer
        viewer.cursor.events.position.connect(self.on_position)
        viewer.events.status.connect(self.on_status)

    def on_position(self, event: Any = None) -> None:
        """Recompute the values at the cursor."""
        viewer = self.widget.viewer
        self.text = values_at(self.widget.result, self.widget.slide_layer, viewer.cursor.position)
        self.widget.prompt_panel.cursor.value = self.text
        self.on_status()

    def on_status(self, event: Any = None) -> None:
        """Put the values after napari's own status (once; the previous ones replaced)."""
        if self._writing:
            return
        viewer = self.widget.viewer
        status = viewer.status
        if isinstance(status, dict):
            own = _without_ours(str(status.get("coordinates", "")))
            wanted = f"{own}{SEPARATOR}{self.text}" if self.text else own
            if wanted == status.get("coordinates", ""):
                return
            new: Any = {**status, "coordinates": wanted}
        else:
            own = _without_ours(str(status))
            new = f"{own}{SEPARATOR}{self.text}" if self.text else own
            if new == status:
                return
        self._writing = True
        try:
            viewer.status = new
        finally:
            self._writing = False
