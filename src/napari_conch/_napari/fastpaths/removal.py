"""Every layer removal in napari with the canvas's OpenGL context current (our own process).

napari-conch removes its own layers through :mod:`napari_conch._napari.layers.gl_context`. A layer
the user deletes (the layer list's bin) goes through napari alone, whose removal runs the OpenGL
deletions without the canvas's context current, and crashes the next paint on Mesa llvmpipe
(a layer whose canvas colour bar was shown, every time here). In ``napari-conch view``, a
process of our own, :func:`guard_layer_removal` wraps napari's private
``VispyCanvas._clean_and_update_scenegraph`` (where napari runs them) so that the canvas's
context is current there too. It is installed by :func:`~.process.tune_process`, never on
import, and not with the fast paths off.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

logger = logging.getLogger("napari_conch")

#: Marks napari's method once wrapped.
_GUARDED = "_napari_conch_guarded"


def guard_layer_removal() -> bool:
    """Wrap napari's removal clean-up (see the module); whether it is wrapped now."""
    try:
        from napari._vispy.canvas import VispyCanvas
    except ImportError:
        return False
    original = getattr(VispyCanvas, "_clean_and_update_scenegraph", None)
    if original is None:
        logger.debug("napari-conch: napari has no _clean_and_update_scenegraph; not guarded")
        return False
    if getattr(original, _GUARDED, False):
        return True

    @functools.wraps(original)
    def clean_and_update(canvas: Any, *args: Any, **kwargs: Any) -> Any:
        native = getattr(getattr(canvas, "_scene_canvas", None), "native", None)
        if native is None or not native.isValid():
            return original(canvas, *args, **kwargs)
        native.makeCurrent()
        try:
            return original(canvas, *args, **kwargs)
        finally:
            native.doneCurrent()

    setattr(clean_and_update, _GUARDED, True)
    VispyCanvas._clean_and_update_scenegraph = clean_and_update
    return True
