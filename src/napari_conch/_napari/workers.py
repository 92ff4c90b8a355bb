"""The slow work of the widget, run off the GUI thread with napari's thread workers.

Each function returns an unstarted worker: the widget connects its signals, then starts it.

- :func:`load_model_worker` returns the :class:`~napari_conch.model.LoadedModel` (cached by
  :func:`~napari_conch.model.load_model`, so loading twice is free).
- :func:`embed_worker` runs :func:`~napari_conch.engine.embed.embed_slide_iter` and yields
  ``(event, vectors)`` per batch: the progress event and the batch's embeddings, read back from
  the store in the worker thread so that the GUI thread only updates maps. It returns the run's
  :class:`~napari_conch.engine.progress.EmbedSummary`. Cancel sets the ``threading.Event`` the
  engine checks between batches.
- :func:`text_worker` encodes prompts with the text tower.

User errors (:data:`USER_ERRORS`) do not raise in the worker: it returns a :class:`Failure` with
the one-line reason, which the widget shows as a notification, without a traceback dialog.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker

from napari_conch.engine.embed import embed_slide_iter
from napari_conch.engine.progress import EmbedProgress, EmbedSummary
from napari_conch.errors import NapariConchError

#: Errors shown to the user as one line (anything else is a bug and keeps its traceback).
USER_ERRORS = (NapariConchError, OSError)


@dataclass(frozen=True)
class Failure:
    """What a worker returns instead of raising a user error: the one-line reason."""

    message: str


def _guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``func`` returning a :class:`Failure` for user errors instead of raising."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            return Failure(one_line(exc))

    return run


def one_line(exc: BaseException) -> str:
    """An exception as one line of text."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, NapariConchError) else f"{type(exc).__name__}: {text}"


def load_model_worker(
    source: str,
    *,
    config: str | None,
    tokenizer: str | None,
    device: str | None,
    token: str | None,
) -> FunctionWorker:
    """A worker loading a model; its ``returned`` signal carries the LoadedModel."""
    from napari_conch.model import load_model

    def load():
        model = load_model(source, config=config, tokenizer=tokenizer, device=device, token=token)
        model.tokenizer  # noqa: B018 - find the tokenizer now: a missing one is a load error
        return model

    return create_worker(_guarded(load), _start_thread=False)


def _embed_events(
    slide: Any, model: Any, grid: Any, store: Any, options: dict[str, Any]
) -> Generator[tuple[EmbedProgress, np.ndarray], None, EmbedSummary | Failure]:
    try:
        events = embed_slide_iter(slide, model, grid, store, **options)
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                return stop.value
            if len(event.rows):
                vectors = store.embeddings_at(event.rows, event.cols)
            else:
                vectors = np.zeros((0, store.embed_dim), np.float32)
            yield event, vectors
    except USER_ERRORS as exc:
        return Failure(one_line(exc))


def embed_worker(
    slide: Any,
    model: Any,
    grid: Any,
    store: Any,
    *,
    cancel: threading.Event,
    region: tuple[float, float, float, float] | None = None,
    min_tissue: float = 0.25,
    batch_size: int = 32,
) -> GeneratorWorker:
    """A worker embedding a slide into ``store``; yields ``(event, vectors)`` per batch."""
    options = {
        "region": region,
        "min_tissue": min_tissue,
        "batch_size": batch_size,
        "cancel": cancel,
    }
    return create_worker(_embed_events, slide, model, grid, store, options, _start_thread=False)


def text_worker(session: Any, classes: list[str], templates: str) -> FunctionWorker:
    """A worker encoding prompt classes; ``returned`` carries ``{(class, templates): vector}``."""
    return create_worker(_guarded(session.encode), classes, templates, _start_thread=False)
