"""Keeping Python's full garbage collections short in a napari process.

napari, Qt and torch make a process of millions of long-lived objects. A full (generation 2)
collection scans them all and holds the interpreter lock meanwhile, from whichever thread set it
off: measured here, 100-300 ms during which napari's event loop cannot run (the first dock's
import paused napari 253 ms, 137 of them collecting). ``gc.freeze`` moves the objects alive now
into a generation the collector never scans; they are still freed by reference counting, and
only cycles among them that become garbage later are kept. It costs microseconds, so it is
called at each point where many long-lived objects have just been made: when napari first uses
this package (the viewer is up), after the warm-up's imports, when a model is loaded and when an
embedding run starts.
"""

from __future__ import annotations

import gc


def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the reach of full garbage collections."""
    gc.freeze()
