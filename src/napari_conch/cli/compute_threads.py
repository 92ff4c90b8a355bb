"""How torch's worker threads wait in a process of our own that embeds on the CPU.

PyTorch's CPU builds run their intra-op threads under OpenMP, whose threads by default spin
while they wait for each other between operations. In an embedding run they share the cores with
the tile readers (and, on a shared machine, with other processes): a spinning thread burns the
core that the thread it waits for needs. Measured on a shared 2-core machine (load about 10,
``docs/benchmarks.md``): the demo model's image encoder with 2 threads took 14 ms of CPU per tile
spinning and 1.8 ms with passive waits (1.6 ms with 1 thread).

:func:`passive_thread_waits` asks OpenMP to wait passively (``OMP_WAIT_POLICY=PASSIVE``). OpenMP
reads it once, when torch is first imported, so it is called by ``napari-conch embed`` and
``napari-conch view`` before anything imports torch; a value the user set is kept, and nothing
changes once torch is loaded. In ``view`` the spinning threads also took the core napari's event
loop needed: the longest pause from the window to the demo's map was 66-107 ms with spinning
waits, 62-70 ms with passive ones (``bench/stalls.py --view``). A napari started by the user
(the plugin in napari's process) is left as it is: its settings are not ours to change.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

#: The environment variable and the value set.
WAIT_POLICY, PASSIVE = "OMP_WAIT_POLICY", "PASSIVE"


def passive_thread_waits(
    environ: MutableMapping[str, str] | None = None, modules: Mapping[str, object] | None = None
) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process; return whether it was set here.

    Nothing is done when the user set the variable, or when torch is imported already (OpenMP
    has read its settings then).
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if WAIT_POLICY in environ or "torch" in modules:
        return False
    environ[WAIT_POLICY] = PASSIVE
    return True
