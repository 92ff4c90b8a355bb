"""Process settings that keep napari's event loop running beside napari-conch's threads.

They change the whole process, so they are napari-conch's to make only in a process of its own:
``napari-conch view`` calls :func:`tune_process`. A napari that merely uses the plugin (its
reader, a sample, a dock) keeps its garbage collector, switch interval, threads' priority and
vispy as they are: until :func:`tune_process` has run, :func:`freeze_long_lived_objects` and
:func:`lower_thread_priority` do nothing. :func:`tune_process` itself does nothing when the
fast paths are off (:func:`napari_conch._napari.fastpaths.enabled`).

Two behaviours of the Python interpreter freeze napari while a background thread of ours works
(warm-up imports, model loading, embedding), measured with ``bench/stalls.py``:

- **Full garbage collections.** napari, Qt and torch make a process of millions of long-lived
  objects. A full (generation 2) collection scans them all holding the interpreter lock, from
  whichever thread set it off: 100-300 ms during which the event loop cannot run (the first
  dock's import paused napari 253 ms, 137 of them collecting). ``gc.freeze`` moves the objects
  alive now into a generation the collector never scans; they are still freed by reference
  counting, and only cycles among them that become garbage later are kept. It costs
  microseconds, so :func:`freeze_long_lived_objects` is called wherever many long-lived objects
  have just been made: when the process is tuned, when a slide is read and when a
  dock is made (a viewer made after the first import is not covered by it: one full collection
  in the first dock's opening took 123 ms so), after the warm-up's imports, when a model is
  loaded and when an embedding run starts.
- **The lock's switch interval.** A thread running Python keeps the lock until another asks
  for it and then for up to ``sys.getswitchinterval()`` more (5 ms by default). Qt calls into
  Python many times per event (each signal, paint and timer callback), and each entry waits
  that long again while a background thread runs Python: the first dock's opening, 15 ms of
  work on the GUI thread, took 150-240 ms while the warm-up imported torch. At 0.5 ms
  (:data:`SWITCH_INTERVAL_S`) those pauses were gone (longest pause left: 107-111 ms, the dock's
  own building); a thread that runs alone is not slowed, since it is only asked to switch when
  another thread waits.

And one of the operating system: **the CPU's share.** On a machine with few cores the model's
threads, the tile readers and the tissue search take every core, and the GUI thread, runnable,
waits its turn: during a run on the synthetic slide the longest pauses were 107-145 ms with
7-10 ms of the GUI thread's own work in them. Our background threads lower their own priority
(:func:`lower_thread_priority`, Linux only), and the threads they start inherit it: the tile
readers, the tissue search's readers and the model's intra-op threads when torch makes them
there. With them at nice 10 those waits were gone (the longest pauses left, 86-108 ms, held 50-81
ms of the GUI thread's own work). A background thread that runs alone is not slowed.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
import threading
import warnings
from typing import Any

logger = logging.getLogger("napari_conch")

#: Seconds a thread may keep the interpreter lock after another asked for it (see above).
SWITCH_INTERVAL_S = 0.0005
#: The nice value of napari-conch's background threads (0 is the GUI thread's, 19 the lowest).
BACKGROUND_NICE = 10
#: Whether :func:`tune_process` ran (the settings above are this process's).
_TUNED = False


def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the reach of full garbage collections.

    Only in a tuned process (:func:`tune_process`); elsewhere nothing is done.
    """
    if _TUNED:
        gc.freeze()


def tune_process() -> bool:
    """Make the settings above for this whole process (``napari-conch view``); whether made.

    Freezes what exists, shortens the lock's switch interval (never lengthens it), hides
    napari's note on clipped label colours, lets
    napari-conch's background threads lower their priority, has vispy parse shaders in
    linear time (:mod:`.shader_parsing`) and makes napari's own layer removals safe
    (:mod:`.removal`). Nothing is done when the fast paths are off.
    """
    from napari_conch._napari import fastpaths
    from napari_conch._napari.fastpaths.removal import guard_layer_removal
    from napari_conch._napari.fastpaths.shader_parsing import speed_up_shader_parsing

    global _TUNED
    if not fastpaths.enabled():
        return False
    _TUNED = True
    freeze_long_lived_objects()
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    speed_up_shader_parsing()
    guard_layer_removal()  # not speed: napari's own removals with the canvas's context current
    # napari's random label colours print a note about clipped colour conversions (a
    # UserWarning from its own code) the first time: nothing a user can act on
    warnings.filterwarnings("ignore", message="Conversion from CIE-LAB", category=UserWarning)
    return True


def tuned() -> bool:
    """Whether :func:`tune_process` made its settings in this process."""
    return _TUNED


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Give the calling thread a nice value of at least ``nice``; whether it has one now.

    Linux keeps a nice value per thread, and a thread inherits its creator's; elsewhere nothing
    is changed (False). A thread cannot raise its priority again without privileges, so this is
    for threads that stay background threads: napari-conch's own, and napari's worker threads
    once they ran ours (any later worker on them is background work as well). The main
    thread, napari's GUI thread, is never lowered; nor is any thread outside a tuned process
    (:func:`tune_process`): napari's shared worker threads belong to every plugin.
    """
    if (
        not _TUNED
        or not sys.platform.startswith("linux")
        or threading.current_thread() is threading.main_thread()
    ):
        return False  # never the GUI thread's (a worker's function called on it directly)
    thread = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, thread) < nice:
            os.setpriority(os.PRIO_PROCESS, thread, nice)
    except OSError as exc:  # a sandbox without the call: the thread keeps its priority
        logger.debug("napari-conch: thread priority unchanged (%s)", exc)
        return False
    return True


def in_background(func: Any) -> Any:
    """``func`` run at :func:`lower_thread_priority` first (a thread's target)."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        lower_thread_priority()
        return func(*args, **kwargs)

    return run
