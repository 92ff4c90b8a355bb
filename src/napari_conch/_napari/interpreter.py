"""Interpreter settings that keep napari's event loop running beside napari-conch's threads.

Two behaviours of the Python interpreter freeze napari while a background thread of ours works
(warm-up imports, model loading, embedding), measured with ``bench/stalls.py``:

- **Full garbage collections.** napari, Qt and torch make a process of millions of long-lived
  objects. A full (generation 2) collection scans them all holding the interpreter lock, from
  whichever thread set it off: 100-300 ms during which the event loop cannot run (the first
  dock's import paused napari 253 ms, 137 of them collecting). ``gc.freeze`` moves the objects
  alive now into a generation the collector never scans; they are still freed by reference
  counting, and only cycles among them that become garbage later are kept. It costs
  microseconds, so :func:`freeze_long_lived_objects` is called wherever many long-lived objects
  have just been made: when napari first imports this package, when a slide is read and when a
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
"""

from __future__ import annotations

import gc
import sys

#: Seconds a thread may keep the interpreter lock after another asked for it (see above).
SWITCH_INTERVAL_S = 0.0005


def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the reach of full garbage collections."""
    gc.freeze()


def keep_event_loop_running() -> None:
    """Freeze what exists and shorten the lock's switch interval (never lengthen it)."""
    freeze_long_lived_objects()
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
