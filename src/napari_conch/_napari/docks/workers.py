"""Running slow calls off napari's GUI thread, with user errors returned instead of raised.

Each function returns an unstarted napari thread worker: the dock connects its signals (through
:meth:`~napari_conch._napari.docks.base.DockBase.run`), then starts it. User errors
(:data:`USER_ERRORS`) do not raise in the worker: it returns a :class:`Failure` with the one-line
reason, which the dock shows as a notification, without a traceback dialog.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker

from napari_conch._napari.fastpaths.process import lower_thread_priority
from napari_conch.errors import NapariConchError

#: Errors shown to the user as one line (anything else is a bug and keeps its traceback).
USER_ERRORS = (NapariConchError, OSError)


@dataclass(frozen=True)
class Failure:
    """What a worker returns instead of raising a user error: the one-line reason."""

    message: str


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, NapariConchError) else f"{type(exc).__name__}: {text}"


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``func`` returning a :class:`Failure` for user errors instead of raising.

    It runs below the GUI thread's CPU priority (see
    :func:`~napari_conch._napari.fastpaths.process.lower_thread_priority`).
    """

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        lower_thread_priority()
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            return Failure(one_line(exc))

    return run


def background(func: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWorker:
    """An unstarted worker calling ``func(*args, **kwargs)``; user errors return a Failure."""
    return create_worker(guarded(func), *args, _start_thread=False, **kwargs)


def _guarded_generator(events: Generator) -> Generator[Any, None, Any]:
    lower_thread_priority()
    try:
        return (yield from events)
    except USER_ERRORS as exc:
        return Failure(one_line(exc))


def background_generator(events: Generator) -> GeneratorWorker:
    """An unstarted worker running a generator: ``yielded`` per item, ``returned`` at its end.

    A user error raised by the generator ends it with a :class:`Failure` as the return value.
    It runs below the GUI thread's CPU priority, like :func:`guarded`.
    """
    return create_worker(_guarded_generator, events, _start_thread=False)
