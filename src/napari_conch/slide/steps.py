"""Long slide work as generators of ``(done, total)`` steps, and the plain calls that drain them.

A reading or a scan that takes seconds is written as a generator: it yields ``(done, total)``
after each piece of work (a block read, a band computed) and returns its result. The plain
function (``scan_tissue``) drains it with :func:`run_steps`, passing the steps to an optional
``progress(done, total)`` callback; a caller that has to report progress while the work goes on
(the embedding run's own generator) iterates the steps itself, in its own thread.

``total`` may grow while the work goes on (a damaged level makes the tissue scan read a finer
one) but ``done`` only increases and never passes ``total``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

from napari_conch.generators import drain

T = TypeVar("T")

#: A generator of ``(done, total)`` steps returning a ``T``.
Steps = Generator[tuple[int, int], None, T]
#: ``progress(done, total)``.
Progress = Callable[[int, int], object]


def run_steps(steps: Steps[T], progress: Progress | None = None) -> T:
    """Run ``steps`` to the end, passing each step to ``progress``; return their result.

    When ``progress`` raises, the steps are closed (their threads and files released) and the
    exception goes on.
    """
    return drain(steps, None if progress is None else lambda step: progress(*step))


@dataclass
class StepCount:
    """Steps done and expected of a task made of parts (see :func:`counted`)."""

    done: int = 0
    total: int = 0

    def advance(self, n: int = 1) -> tuple[int, int]:
        """Count ``n`` more steps done; return ``(done, total)``."""
        self.done += n
        self.total = max(self.total, self.done)
        return self.done, self.total


def counted(part: Steps[T], count: StepCount) -> Steps[T]:
    """Run a part's own ``(i, n)`` steps as steps of ``count``; return the part's result.

    The part's ``n`` steps are added to ``count.total`` when it first says them (its first
    step), so a part announcing ``(0, n)`` before its work sets the total right away. Closing
    this generator closes the part.
    """
    seen = expected = 0
    try:
        while True:
            try:
                i, n = next(part)
            except StopIteration as stop:
                return stop.value
            count.total += n - expected
            expected = n
            count.advance(i - seen)
            seen = i
            yield count.done, count.total
    finally:
        part.close()
