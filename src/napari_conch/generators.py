"""Long work as generators: they yield progress as they go and return their result.

The engine's runs, the tissue search's steps and the session's batches all have this form;
:func:`drain` runs one to its end and :func:`mapped` changes what it yields, both keeping its
returned value and closing it whatever happens (its threads and files are then released).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

Item = TypeVar("Item")
Changed = TypeVar("Changed")
Result = TypeVar("Result")


def drain(work: Generator[Item, Any, Result], each: Callable[[Item], Any] | None = None) -> Result:
    """Run ``work`` to its end, passing each item it yields to ``each``; return its result.

    When ``each`` (or the work) raises, ``work`` is closed and the exception goes on.
    """
    steps = mapped(work, each if each is not None else _unchanged)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def mapped(
    work: Generator[Item, Any, Result], change: Callable[[Item], Changed]
) -> Generator[Changed, None, Result]:
    """Each item of ``work`` as ``change`` makes it; returns what ``work`` returns.

    ``change`` runs in the thread that steps this generator. Closing this generator closes
    ``work``.
    """
    try:
        while True:
            try:
                item = next(work)
            except StopIteration as stop:
                return stop.value
            yield change(item)
    finally:
        work.close()


def _unchanged(item: Item) -> Item:
    return item
