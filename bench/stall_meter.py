"""The event-loop stall meter the benchmarks share.

:class:`Probe` is a 10 ms ``QTimer`` whose gaps between ticks are the pauses of the Qt event
loop; :func:`wait_until` runs the event loop until a step is done. ``bench/stalls.py`` measures
the docks' flow with it, ``bench/annotate_gui.py`` the Annotate dock at 100,000 tiles. Import it
from a script in ``bench/`` (the folder is on ``sys.path`` there).
"""

from __future__ import annotations

import gc
import time

#: A pause counts from this long (seconds).
PAUSE_S = 0.100


class Probe:
    """Gaps between the ticks of a 10 ms timer on the Qt event loop.

    Each gap is kept with the CPU time the GUI thread itself spent in it: a pause whose CPU
    time is much shorter was spent waiting (for the interpreter lock held by another thread,
    or for the CPU taken by other processes of a busy machine); and with the time Python's
    garbage collector ran in it (any thread: a collection holds the interpreter lock).
    """

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.collections: list[tuple[float, float]] = []
        self._collecting_since = 0.0
        gc.callbacks.append(self._collector)
        self.reset()
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def _collector(self, phase: str, _info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._collecting_since = now
        else:
            self.collections.append((self._collecting_since, now))

    def tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.spans.append((self.last, now))
        self.cpu.append(cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    @property
    def gaps(self) -> list[float]:
        return [end - start for start, end in self.spans]

    def collecting(self, start: float, end: float) -> float:
        """Seconds the garbage collector ran between ``start`` and ``end``."""
        return sum(max(0.0, min(end, b) - max(start, a)) for a, b in self.collections)

    def pairs(self) -> list[tuple[float, float, float]]:
        """``(gap, its CPU time, collector time in it)`` per tick since the last reset (s)."""
        return [
            (end - start, cpu, self.collecting(start, end))
            for (start, end), cpu in zip(self.spans, self.cpu, strict=True)
        ]

    def reset(self) -> None:
        self.spans, self.cpu, self.collections = [], [], []
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()

    def stop(self) -> None:
        self.timer.stop()
        gc.callbacks.remove(self._collector)


def wait_until(app, condition, timeout: float, settle: float) -> float:
    """Run the event loop until ``condition()``, then ``settle`` seconds more; returns seconds."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the step did not finish in time")
        app.processEvents()
        time.sleep(0.001)
    done = time.perf_counter() - start
    end = time.perf_counter() + settle
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)
    return done
