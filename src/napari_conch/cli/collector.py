"""The garbage collector of ``napari-conch embed``, a process of its own.

Python's full (generation 2) collections go through every object the process holds, with the
interpreter lock: after torch and the model are loaded, about a million, and each full
collection took 20-130 ms on the 2-core test machine. An ``embed`` of the 20k x 20k benchmark
slide set off three during its start-up (imports and model: 121 ms of 184 ms collecting) and
one in the run, in the tissue search, while its reader threads waited (100 ms of a 6.2 s run).
None of them finds garbage worth the time: what the imports and the model made lives until
the process ends.

:func:`collect_after_start_up` pauses the collector while the process imports and loads the
model, then moves every object alive into the generation the collector never scans
(``gc.freeze``: they are still freed by reference counting) and lets it run again for what the
run makes. Only in a process that starts as ``embed`` (torch not imported yet): a Python that
calls :func:`napari_conch.cli.main` with torch loaded (a test, a notebook) keeps its collector.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def collect_after_start_up(modules: Mapping[str, object] | None = None) -> Iterator[bool]:
    """Within: the start-up, collector paused; at the end, what exists frozen, collector on.

    Yields whether it did so (False, and nothing changed, when torch is imported already or the
    collector was off). The collector is on again however the block ends.
    """
    modules = sys.modules if modules is None else modules
    if "torch" in modules or not gc.isenabled():
        yield False
        return
    gc.disable()
    try:
        yield True
    finally:
        gc.freeze()
        gc.enable()
