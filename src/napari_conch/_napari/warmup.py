"""Warming up, off the GUI thread, what the first model, maps and regions would import.

The first map layers of a session cost napari, on the GUI thread, the import of several modules
(pandas for layer features, napari's labels and shapes code, vispy's line and text
visuals) and the first labels colormap; the first model costs the import of torch. A dock starts
:func:`warm_up` when it opens: the work runs in a background thread while the user reads the
dock, instead of freezing the viewer when they press a button. It changes nothing the user sees.

A background thread still freezes napari whenever it holds the interpreter lock for long in one
piece. Two things did that here, each 100-250 ms: loading torch's C++ core library, which
``import torch`` does inside one C call (:func:`import_torch` loads it first with the lock
released), and full garbage collections, which the allocations of the imports set off (the
collector is paused while the warm-up imports, and what they made is frozen after).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import logging
import sys
import threading
from pathlib import Path

from napari_conch._napari.fastpaths.imports import private_modules
from napari_conch._napari.fastpaths.process import (
    freeze_long_lived_objects,
    in_background,
    tuned,
)

logger = logging.getLogger("napari_conch")

#: Modules napari imports the first time a map layer or the legend is shown, and the store's
#: (the first Embed imported zarr on the GUI thread: about 100 ms).
MODULES = (
    "torch",
    "zarr",
    "napari_conch.engine.store.embedding_store",
    "pandas",
    "napari.layers.shapes.shapes",
    "napari.layers.labels.labels",
    "napari.layers.image.image",
    "napari.utils.colormaps.colormap_utils",
    "vispy.visuals.line",
    "vispy.visuals.text",
    "vispy.scene.visuals",
)

#: The docks' modules (they only define classes: no Qt object is made on import), and what the
#: first dock imports as it is built (the known-model list's CLIP sources, magicgui's Qt
#: backend): 10-15 ms of the first dock's opening pause otherwise.
DOCK_MODULES = (
    "napari_conch._napari.docks.prompt_dock",
    "napari_conch._napari.docks.caption_dock",
    "napari_conch._napari.docks.annotate_dock",
    "napari_conch._napari.docks.cohort_dock",
    "napari_conch.model.clip_sources",
    "magicgui.backends._qtpy.widgets",
)

#: Milliseconds between a dock's opening and the warm-up's start: the import of torch holds the
#: interpreter about 200 ms in one C call; started with the dock, it lengthened the dock's own
#: pause (building and first drawing it) to 500-650 ms in one piece.
WARM_UP_DELAY_MS = 600


_LOCK = threading.Lock()
_THREAD: threading.Thread | None = None
_PREFETCH: threading.Thread | None = None


#: torch's C++ core, the library whose loading (static initialisers registering every operator)
#: is most of ``import torch``'s time in one C call: about 180 ms on the 2-core test machine.
TORCH_CORE_LIBRARY = "libtorch_cpu"


def torch_core_library() -> Path | None:
    """The path of torch's C++ core library, found without importing torch; None if not there."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    suffix = ".dylib" if sys.platform == "darwin" else ".so"
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / (TORCH_CORE_LIBRARY + suffix)
    return path if path.is_file() else None


def preload_torch_core() -> bool:
    """Load torch's C++ core library with the interpreter lock released; whether it was loaded.

    The interpreter loads an extension module's libraries holding its lock, so while
    ``import torch`` loads this one no other thread runs Python, napari's event loop included.
    Called through ctypes, libc's ``dlopen`` runs with the lock released; with the flags the
    interpreter itself uses, the import then finds the library loaded (the same handle) and
    only its own Python set-up is left, which lets other threads in. Where this is not possible
    (Windows, no such file, ``dlopen`` refuses) nothing is changed: the import loads the library
    itself, as it always did, and only the pause is longer.
    """
    path = torch_core_library()
    if path is None or sys.platform == "win32":
        return False
    libc = ctypes.CDLL(None)
    libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.dlopen.restype = ctypes.c_void_p
    if not libc.dlopen(str(path).encode(), sys.getdlopenflags()):
        logger.debug("warm-up: dlopen refused %s", path)
        return False
    return True


def import_torch() -> None:
    """Import torch, its core library first loaded without the interpreter lock (see above)."""
    if "torch" not in sys.modules:
        preload_torch_core()
    import torch  # noqa: F401


def warm_up_imports() -> None:
    """Import :data:`MODULES` and make napari's default labels colormap (no viewer, no Qt).

    In a process tuned by ``napari-conch view`` the garbage collector is paused meanwhile (the
    imports allocate millions of objects; each full collection they set off held the
    interpreter 90-170 ms here) and what they made is frozen after, out of later full
    collections (see :mod:`.fastpaths.process`); elsewhere the collector is left alone.

    No layer model is made here: a layer's transform reads pint's unit registry, which pint
    builds on first use without a lock, so a first use in this thread racing napari's on the GUI
    thread leaves one of them with a half-built registry ("'pixel' is not defined").
    """
    collecting = tuned() and gc.isenabled()  # the collector is the process's: see process.py
    if collecting:
        gc.disable()
    try:
        import_torch()
        for name in (*MODULES, *private_modules(), *DOCK_MODULES):
            try:
                importlib.import_module(name)
            except ImportError:  # another napari version: nothing to warm up there
                logger.debug("warm-up: no module %s", name)
        from napari.utils.colormaps import label_colormap

        label_colormap(49)
        _compute_dash_patterns()
    finally:
        if collecting:
            gc.enable()
    freeze_long_lived_objects()


def _compute_dash_patterns() -> None:
    """Have vispy compute its line dash patterns once (it keeps them for the process).

    Every vispy line drawn with its "agg" method, such as a Labels layer's polygon tool, makes
    a dash atlas of 13 patterns computed in Python: 50-80 ms on the GUI thread the first time,
    which was the longest step of showing the first labels map (vispy caches the patterns).
    """
    try:
        from vispy.visuals.line.dash_atlas import DashAtlas
    except ImportError:  # another vispy: nothing to compute ahead
        logger.debug("warm-up: no vispy dash atlas")
        return
    DashAtlas()


def prefetch_docks() -> None:
    """Import :data:`DOCK_MODULES` in a daemon thread, once per process.

    Called when napari reads a slide through napari-conch, which comes before a dock as a rule:
    the first dock then opens without its module's import on the GUI thread (35-55 ms here, a
    third of that dock's opening pause). Only our own modules: torch waits for :func:`warm_up`.
    """
    global _PREFETCH
    with _LOCK:
        if _PREFETCH is None:
            _PREFETCH = threading.Thread(
                target=in_background(_import_all),
                args=(DOCK_MODULES,),
                name="napari-conch-prefetch",
                daemon=True,
            )
            _PREFETCH.start()


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the dock says it when opened; no traceback from a thread
            logger.warning("napari-conch: could not import %s ahead (%s)", name, exc)


def warm_up() -> threading.Thread:
    """Start :func:`warm_up_imports` in a daemon thread, once per process; returns the thread."""
    global _THREAD
    with _LOCK:
        if _THREAD is None:
            _THREAD = threading.Thread(
                target=in_background(warm_up_imports), name="napari-conch-warm-up", daemon=True
            )
            _THREAD.start()
        return _THREAD


def warmed_up() -> bool:
    """Whether the warm-up has run to its end."""
    return _THREAD is not None and not _THREAD.is_alive()
