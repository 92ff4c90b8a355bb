"""What the screen says follows the map on show: the canvas legend, caption and the docks' key.

Every map layer the plugin draws carries in its ``metadata[CAPTION]`` what it shows: its classes
and their colours (a labels map), or its title, colormap and value range (a similarity or
probability map); :func:`describe_classes` and :func:`describe_range` write it. The map *on
show* is the topmost visible layer that has one (:func:`map_on_show`).

One :class:`ShownMap` per viewer (:func:`follow`) watches the layer list (layers added,
removed, moved, shown or hidden) and makes the canvas say what the map on show is:

- a labels map: its classes, each in its colour, as the canvas legend (:mod:`.layers`);
- a similarity or probability map: one text overlay naming it with its value range and the
  colours of its ends, and under it a colour bar of :data:`COLORBAR_ROWS` rows, each a line of
  block characters in the map's colour at its level, the high end on top (text overlays:
  napari's canvas colour bar, ``layer.colorbar``, is not used: its first drawing paused napari
  1.5 s here, each later new one 200-300 ms, over the 100 ms budget; and a layer whose colour bar
  was drawn crashed napari when the user deleted it, see reliability.md);
- nothing visible: neither.

Its ``changed`` signal tells the docks (the Prompt highlighter's key in the dock follows it).
The canvas is changed one overlay per event-loop turn (a new overlay's first drawing builds its
shaders), and only where it differs from what it should show.
"""

from __future__ import annotations

import html
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QTimer

from napari_conch._napari.layers import map_layers

if TYPE_CHECKING:
    import napari

#: Key of a map layer's description in its ``metadata``.
CAPTION = "napari_conch_caption"
#: Key of the canvas text overlay naming a similarity or probability map and its range.
CAPTION_KEY = "napari_conch_map_caption"
#: Key of the canvas colour bar's rows (0: the top row, the high end of the range).
COLORBAR_KEY = "napari_conch_colorbar_{}"
#: Rows of the canvas colour bar: each is one text overlay (a new one's first drawing builds
#: its shaders, one row per event-loop turn; each shown one adds 2-3 ms to a canvas redraw).
#: Three, not five: with five, the merged round's first-maps and labels steps paused napari
#: 109-125 ms (bench/stalls.py, idle 2-core machine), with three 74-90 ms.
COLORBAR_ROWS = 3
#: The text of a colour bar row (full blocks; the row's colour is the text's colour).
COLORBAR_TEXT = "\u2588" * 8
#: The colour of the box around each colour bar row (mid grey: black and white ends show).
COLORBAR_FRAME = (0.5, 0.5, 0.5, 1.0)
#: What the ends of each offered colormap look like (words for the canvas caption).
COLORMAP_ENDS = {
    "inferno": ("black", "yellow"),
    "magma": ("black", "white"),
    "viridis": ("purple", "yellow"),
    "turbo": ("blue", "red"),
    "plasma": ("blue", "yellow"),
    "gray": ("black", "white"),
}
#: Milliseconds to wait for another change before the screen follows (coalesces bursts).
FOLLOW_MS = 0
#: Milliseconds between looks while a dock draws its maps in turns (it is waited for).
HELD_MS = 100


def describe_classes(layer: Any, names: list[str], colors: list[Any] | None = None) -> None:
    """Say that ``layer`` shows the classes ``names`` (RGB colours 0-255; default the labels')."""
    rgb = [tuple(int(v) for v in c) for c in colors] if colors else None
    layer.metadata[CAPTION] = {"names": list(names), "colors": rgb}


def describe_range(layer: Any, title: str, colormap: str, low: float, high: float) -> None:
    """Say that ``layer`` shows ``title`` in ``colormap`` from ``low`` to ``high``."""
    layer.metadata[CAPTION] = {
        "title": title, "colormap": colormap, "low": float(low), "high": float(high),
    }  # fmt: skip


def caption(layer: Any) -> dict[str, Any] | None:
    """What a map layer shows (see the module), or None for another layer."""
    metadata = getattr(layer, "metadata", None)
    return metadata.get(CAPTION) if isinstance(metadata, dict) else None


def map_on_show(viewer: napari.Viewer, names: tuple[str, ...] | None = None) -> Any | None:
    """The topmost visible map layer (one of ``names`` when given), or None."""
    for layer in reversed(list(viewer.layers)):
        if names is not None and layer.name not in names:
            continue
        if layer.visible and caption(layer) is not None:
            return layer
    return None


def range_text(described: dict[str, Any]) -> str:
    """One line naming a range map: its title, its range and the colours of the range's ends."""
    low_end, high_end = COLORMAP_ENDS.get(described["colormap"], ("low", "high"))
    return (
        f"{described['title']}: {described['low']:.3f} ({low_end}) "
        f"to {described['high']:.3f} ({high_end})"
    )


def colorbar_colors(colormap: str, rows: int = COLORBAR_ROWS) -> list[tuple[int, int, int]]:
    """RGB (0-255) of the canvas colour bar's rows for ``colormap``, the high end first."""
    from napari.utils.colormaps import ensure_colormap

    rgba = ensure_colormap(colormap).map(np.linspace(1.0, 0.0, rows))
    return [(int(r), int(g), int(b)) for r, g, b in np.round(np.asarray(rgba)[:, :3] * 255)]


def colorbar_shown(viewer: napari.Viewer) -> list[tuple[int, int, int]]:
    """The colours (RGB 0-255) of the canvas colour bar's visible rows, top first."""
    overlays, shown, row = viewer.canvas.overlays, [], 0
    while COLORBAR_KEY.format(row) in overlays:
        overlay = overlays[COLORBAR_KEY.format(row)]
        if overlay.visible:
            r, g, b = (int(v) for v in np.round(np.asarray(overlay.color)[:3] * 255))
            shown.append((r, g, b))
        row += 1
    return shown


def colorbar_steps(viewer: napari.Viewer, colors: list[tuple[int, int, int]]) -> list[Any]:
    """The steps that make the canvas colour bar show ``colors`` (top first; [] hides it).

    One row per step (a new text overlay's first drawing builds its shaders), and its grey
    frame (a box, so that a black or white end shows on any background) in the step after, as
    for the legend; the rows of a longer bar than wanted are hidden in the last step.
    """

    def show(row: int, rgb: tuple[int, int, int]) -> None:
        from napari.components.overlays import TextOverlay

        overlays = viewer.canvas.overlays
        key = COLORBAR_KEY.format(row)
        color = np.array([*rgb, 255], float) / 255
        if key not in overlays:
            overlays[key] = TextOverlay(
                text=COLORBAR_TEXT, color=color, position="top_left", box=False, font_size=10
            )
        overlay = overlays[key]
        if not np.allclose(overlay.color, color):
            overlay.color = color
        overlay.visible = True

    def frame(row: int) -> None:
        overlay = viewer.canvas.overlays[COLORBAR_KEY.format(row)]
        if not overlay.box:
            overlay.box_color = COLORBAR_FRAME
            overlay.box = True

    def hide_the_rest() -> None:
        overlays, row = viewer.canvas.overlays, len(colors)
        while COLORBAR_KEY.format(row) in overlays:
            overlays[COLORBAR_KEY.format(row)].visible = False
            row += 1

    steps: list[Any] = []
    for row, rgb in enumerate(colors):
        steps += [lambda r=row, c=rgb: show(r, c), lambda r=row: frame(r)]
    return [*steps, hide_the_rest]


def dock_html(layer: Any | None) -> str:
    """The key of ``layer`` for a dock's label: classes with colours, or title and colour bar."""
    described = caption(layer) if layer is not None else None
    if described is None:
        return ""
    if "names" in described:
        return map_layers.legend_html(described["names"], described["colors"])
    title = html.escape(described["title"], quote=False)
    low, high = described["low"], described["high"]
    return (
        f"{title}: {low:.3f} to {high:.3f}<br>"
        + map_layers.colorbar_html(described["colormap"], low, high)
    )  # fmt: skip


def canvas_steps(viewer: napari.Viewer) -> list[Any]:
    """The steps that make the canvas describe the map on show (none when it does already)."""
    described = caption(map_on_show(viewer)) or {}
    names = described.get("names", [])
    colors = described.get("colors")
    steps: list[Any] = []
    text = range_text(described) if "title" in described else None
    if _caption_on_canvas(viewer) != text:
        steps.append(lambda: show_caption(viewer, text))
    if _legend_on_canvas(viewer) != _legend_wanted(names, colors):
        steps += map_layers.legend_steps(viewer, names, visible=bool(names), colors=colors)
    bar = colorbar_colors(described["colormap"]) if "title" in described else []
    if colorbar_shown(viewer) != bar:
        steps += colorbar_steps(viewer, bar)
    return steps


def _legend_wanted(names: list[str], colors: list[Any] | None) -> list[tuple[str, tuple]]:
    named = (
        names
        if len(names) <= map_layers.CANVAS_LEGEND_MAX
        else names[: map_layers.CANVAS_LEGEND_MAX - 1]
    )
    return [
        (name, tuple(int(v) for v in (colors[i] if colors else map_layers.label_color(i + 1))))
        for i, name in enumerate(named)
    ]


def _legend_on_canvas(viewer: napari.Viewer) -> list[tuple[str, tuple]]:
    """The legend's lines on the canvas: ``(class, RGB 0-255)`` of each visible one."""
    overlays, shown, label = viewer.canvas.overlays, [], 1
    while map_layers.LEGEND_KEY.format(label) in overlays:
        overlay = overlays[map_layers.LEGEND_KEY.format(label)]
        if overlay.visible:
            rgb = tuple(int(v) for v in np.round(np.asarray(overlay.color)[:3] * 255))
            shown.append((overlay.text[2:], rgb))
        label += 1
    return shown


def _caption_on_canvas(viewer: napari.Viewer) -> str | None:
    overlays = viewer.canvas.overlays
    if CAPTION_KEY in overlays and overlays[CAPTION_KEY].visible:
        return overlays[CAPTION_KEY].text
    return None


def caption_shown(viewer: napari.Viewer) -> str | None:
    """The canvas caption of the range map on show, or None when none is shown."""
    return _caption_on_canvas(viewer)


def show_caption(viewer: napari.Viewer, text: str | None) -> None:
    """Show ``text`` as the map's caption on the canvas (None: hide it)."""
    from napari.components.overlays import TextOverlay

    overlays = viewer.canvas.overlays
    if text is None:
        if CAPTION_KEY in overlays:
            overlays[CAPTION_KEY].visible = False
        return
    if CAPTION_KEY not in overlays:
        overlays[CAPTION_KEY] = TextOverlay(
            text=text, color=(1.0, 1.0, 1.0, 1.0), position="top_left", box=True, font_size=10
        )
    overlay = overlays[CAPTION_KEY]
    if overlay.text != text:
        overlay.text = text
    overlay.visible = True


class ShownMap:
    """Keeps the canvas describing the map on show in ``viewer`` (see the module).

    Attributes
    ----------
    changed : Signal
        Emitted with the map on show (a layer or None) after a layer was added, removed,
        moved, shown or hidden, or :meth:`refresh` was called.
    """

    changed = Signal(object)

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self._waiting = False
        self._holds: list[Any] = []
        #: Counts the follows: the steps of an older one stop when a newer one starts (each
        #: follow's steps are what the canvas lacks then; an older hiding step run after a
        #: newer showing one had hidden a legend line).
        self._generation = 0
        layers = viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self.refresh)
        layers.events.reordered.connect(self.refresh)
        for layer in layers:
            layer.events.visible.connect(self.refresh)

    def hold_while_drawing(self, dock: Any) -> None:
        """Wait while ``dock.drawing``: a dock drawing maps in turns has the canvas follow in
        its own turns (see :func:`canvas_steps`); two queues of steps would pause napari twice
        in a turn."""
        self._holds.append(weakref.ref(dock))

    def _on_inserted(self, event: Any) -> None:
        event.value.events.visible.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Make the canvas and docks follow the map on show, in the next event-loop turns."""
        if not self._waiting:
            self._waiting = True
            QTimer.singleShot(FOLLOW_MS, self._follow)

    def _follow(self) -> None:
        self._waiting = False
        viewer = self._viewer()
        if viewer is None:
            return
        docks = [d for d in (ref() for ref in self._holds) if d is not None]
        self._holds = [weakref.ref(d) for d in docks]
        if any(getattr(d, "drawing", False) and not getattr(d, "_closed", False) for d in docks):
            self._waiting = True
            QTimer.singleShot(HELD_MS, self._follow)
            return
        self.changed.emit(map_on_show(viewer))
        self._generation += 1
        steps = canvas_steps(viewer)
        if steps:
            from napari_conch._napari.layers.steps import run_in_turns

            generation = self._generation

            def current(step: Any) -> Any:
                def run() -> None:
                    if generation == self._generation:
                        step()

                return run

            run_in_turns(viewer, [current(step) for step in steps])


_FOLLOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def follow(viewer: napari.Viewer) -> ShownMap:
    """The viewer's :class:`ShownMap` (made on first use)."""
    follower = _FOLLOWERS.get(viewer)
    if follower is None:
        follower = _FOLLOWERS[viewer] = ShownMap(viewer)
    return follower
