"""The image encoder on several batches at once on the CPU, each batch on one thread.

torch runs one batch on all its threads (OpenMP): between two operations its threads wait for
each other, and for the small operations of a fast model those waits are much of the time. With
OpenMP's passive waits (what ``napari-conch embed`` sets, so that its threads never burn a core
the tile readers need) the demo model alone gave 1,000-1,125 tiles/s on the idle 2-core test
machine; with spinning waits 1,300-1,500, but on a shared machine spinning fell to 190-590
(``docs/benchmarks.md``). Run as :func:`compute_workers` batches at once, each on one thread,
the threads never wait for each other: the model alone gave 1,610-1,780 tiles/s
(``bench/throughput.py``) with the least CPU per tile in every condition measured (1.1-1.3 ms
against 1.3-1.7 idle, 2.2-5.0 spinning on a loaded machine), and ``embed``'s tile phase went
from 950-1,040 to 1,420-1,460 tiles/s.

Only for a fast model: the first batch runs alone on all threads, and the others go several at
once only when it took less than :data:`QUICK_BATCH_S` (:func:`embedded_in_order`). A slow
model's operations are long enough for the threads' waits not to matter: full-size CONCH at
448 px gave 957-992 ms per tile either way, and batches at once would only double the time
a cancelled run waits for the batches under way (and the memory they hold). Only on the CPU,
and not for a model run by another engine (the int8 ONNX Runtime session has its own threads):
elsewhere one batch at a time, as before. Batches come back in the order they were given (the
store's tile order is unchanged).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

#: A first batch quicker than this (seconds, on all threads) makes the others go several at once.
QUICK_BATCH_S = 1.0
_NOTHING = object()


def compute_workers(model: Any) -> int:
    """How many batches to run at once: torch's thread count on the CPU, else 1.

    A model whose ``device`` is not the CPU (a GPU runs one batch at a time best), that runs
    through an ``image_engine`` (int8: ONNX Runtime's own threads) or that says nothing of its
    device (a test's stand-in) gets 1.
    """
    device = getattr(model, "device", None)
    if getattr(device, "type", None) != "cpu" or getattr(model, "image_engine", None) is not None:
        return 1
    import torch

    return max(1, int(torch.get_num_threads()))


def single_threaded() -> None:
    """Run this thread's torch operations on one thread (a worker's initialiser)."""
    import torch

    torch.set_num_threads(1)


def in_workers(work: Callable[[In], Out], items: Iterable[In], workers: int) -> Iterator[Out]:
    """``work(item)`` for each item, ``workers`` at once on one torch thread each, in order.

    At most ``workers + 1`` items are taken ahead of the one yielded (memory stays bounded). An
    exception of ``work`` is raised where its result would have been yielded; closing the
    generator drops the items not started and waits for those running. torch's thread count is
    the process's again afterwards (new threads take the last count set).
    """
    if workers <= 1:
        for item in items:
            yield work(item)
        return
    import torch

    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(workers, "napari-conch-model", initializer=single_threaded)
    queue: collections.deque[Future] = collections.deque()
    try:
        for item in items:
            queue.append(pool.submit(work, item))
            if len(queue) > workers:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)


def embedded_in_order(
    work: Callable[[In], Out], items: Iterable[In], workers: int, quick_s: float = QUICK_BATCH_S
) -> Iterator[Out]:
    """``work(item)`` for each item in order: the first alone, the rest ``workers`` at once if
    the first took less than ``quick_s`` seconds (see the module's text), else one by one."""
    items = iter(items)
    first = next(items, _NOTHING)
    if first is _NOTHING:
        return
    started = time.perf_counter()
    result = work(first)
    quick = time.perf_counter() - started < quick_s
    yield result
    yield from in_workers(work, items, workers if quick else 1)
