"""Warming up, off the GUI thread, what the first model, maps and regions would import.

The first map layers of a session cost napari, on the GUI thread, the import of several modules
(pandas for layer features, napari's labels and shapes code, vispy's line and text
visuals) and the first labels colormap; the first model costs the import of torch. A dock starts
:func:`warm_up` when it opens: the work runs in a background thread while the user reads the
dock, instead of freezing the viewer when they press a button. It changes nothing the user sees.
"""

from __future__ import annotations

import importlib
import logging
import threading
import warnings

logger = logging.getLogger("napari_conch")

#: Modules napari imports the first time a map layer or the legend is shown,
#: and the modules of the docks (they only define classes: no Qt object is made on import).
MODULES = (
    "torch",
    "pandas",
    "napari.layers.shapes.shapes",
    "napari.layers.labels.labels",
    "napari.layers.image.image",
    "napari.utils.colormaps.colormap_utils",
    "napari._vispy.utils.visual",
    "napari._vispy.layers.image",
    "napari._vispy.layers.labels",
    "napari._vispy.overlays.labels_polygon",
    "napari._vispy.overlays.text",
    "vispy.visuals.line",
    "vispy.visuals.text",
    "vispy.scene.visuals",
    # the docks themselves: the second dock opened finds its module imported
    "napari_conch._napari.widget",
    "napari_conch._napari.caption_widget",
    "napari_conch._napari.annotate_widget",
    "napari_conch._napari.cohort_dock",
)

#: Milliseconds between a dock's opening and the warm-up's start: the import of torch holds the
#: interpreter about 200 ms in one C call; started with the dock, it lengthened the dock's own
#: pause (building and first drawing it) to 500-650 ms in one piece.
WARM_UP_DELAY_MS = 600

# napari's random label colours print a note about clipped colour conversions (a
# UserWarning from its own code) the first time: nothing a user can act on, so not shown.
warnings.filterwarnings("ignore", message="Conversion from CIE-LAB", category=UserWarning)

_LOCK = threading.Lock()
_THREAD: threading.Thread | None = None


def warm_up_imports() -> None:
    """Import :data:`MODULES` and make napari's default labels colormap (no viewer, no Qt).

    No layer model is made here: a layer's transform reads pint's unit registry, which pint
    builds on first use without a lock, so a first use in this thread racing napari's on the GUI
    thread leaves one of them with a half-built registry ("'pixel' is not defined").
    """
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # another napari version: nothing to warm up there
            logger.debug("warm-up: no module %s", name)
    from napari.utils.colormaps import label_colormap

    label_colormap(49)
    import gc

    gc.freeze()  # what was imported stays out of full collections (see widget.py)


def warm_up() -> threading.Thread:
    """Start :func:`warm_up_imports` in a daemon thread, once per process; returns the thread."""
    global _THREAD
    with _LOCK:
        if _THREAD is None:
            _THREAD = threading.Thread(
                target=warm_up_imports, name="napari-conch-warm-up", daemon=True
            )
            _THREAD.start()
        return _THREAD


def warmed_up() -> bool:
    """Whether the warm-up has run to its end."""
    return _THREAD is not None and not _THREAD.is_alive()
