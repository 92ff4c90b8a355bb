"""Fast paths: the only place where napari-conch reaches into napari, vispy or Qt internals.

Everything else in ``_napari`` uses napari's public API. The modules here shorten the pauses of
napari's event loop that napari-conch's work would otherwise cause (``bench/stalls.py`` measures
them), each through names napari or vispy keep private:

- :mod:`.canvas`: the canvas redrawn in a turn after a layer step; steps counted from the
  canvas's drawing (napari's ``QtViewer.canvas``, vispy's ``SceneCanvas`` draw event).
- :mod:`.controls`: napari's Qt controls of a new layer built in a later turn
  (``QtLayerControlsContainer``).
- :mod:`.layer_parts`: a new layer not made active, its tool overlays and a Shapes layer's
  sub-visuals given back in later turns, empty Shapes text not drawn (``layer._overlays``,
  ``layers._activate_on_insert``, the canvas's ``layer_to_visual``, vispy's ``_subvisuals``).
- :mod:`.glyphs`: the canvas font's glyphs rendered ahead (``canvas._font_info``, vispy's
  ``TextureFont._glyphs``).
- :mod:`.shader_parsing`: vispy's shader parsing in linear time (``vispy.gloo.program.re``).
- :mod:`.settings_save`: napari's settings file written a few turns after a dock is added, not
  in the turn that adds it (napari settings' ``_save_on_change`` and ``_maybe_save``).
- :mod:`.process`: process-wide settings (``gc.freeze``, the interpreter's switch interval,
  background threads' priority) that only ``napari-conch view``, a process of our own, turns
  on (:func:`~.process.tune_process`); importing napari-conch changes none of them.

Each fast path checks :func:`enabled` when it is used and, when it is off, does what napari's
public API alone does (the plain path: a layer added and shown at once, and so on).
:func:`enabled` is false when the environment variable :data:`SWITCH` is ``0`` (also ``off``,
``false``, ``no``), and on a napari outside :data:`CHECKED_NAPARI` (the versions the fast paths
were written against and tested with). The test suite passes both ways.
"""

from __future__ import annotations

import functools
import os
import re

#: Environment variable switching every fast path off (``0``, ``off``, ``false`` or ``no``).
SWITCH = "NAPARI_CONCH_FAST_PATHS"
#: napari versions the fast paths were checked on: from the first (inclusive) to the second
#: (exclusive). Outside it they are off: napari's internals may have changed.
CHECKED_NAPARI = ((0, 9, 0), (0, 10, 0))
_OFF = {"0", "off", "false", "no"}


def enabled() -> bool:
    """Whether the fast paths are used (the switch, and a napari they were checked on)."""
    if os.environ.get(SWITCH, "").strip().lower() in _OFF:
        return False
    low, high = CHECKED_NAPARI
    return low <= napari_version() < high


@functools.cache
def napari_version() -> tuple[int, int, int]:
    """The installed napari's ``(major, minor, patch)``, ``(0, 0, 0)`` if it cannot be read."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = re.findall(r"\d+", version("napari"))[:3]
    except PackageNotFoundError:
        return (0, 0, 0)
    numbers = [int(p) for p in parts] + [0, 0, 0]
    return (numbers[0], numbers[1], numbers[2])
