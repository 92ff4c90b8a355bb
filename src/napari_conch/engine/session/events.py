"""The signals of a :class:`~napari_conch.engine.session.session.Session`.

Docks subscribe to them (``session.events.<name>.connect(slot)``); each carries the new value
and is emitted on the session's thread (napari's GUI thread).

A psygnal ``SignalGroup`` rather than an ``@evented`` dataclass: the session's state changes
through actions that check and cascade (a new model or grid closes the store, options are
validated, a run fixes model, slide and options until it ends), and several signals announce
what no single field holds (``progress``, ``tiles_added``, ``run_finished``); an evented
dataclass would emit on every raw field assignment, before the cascade is done.
"""

from __future__ import annotations

from psygnal import Signal, SignalGroup


class SessionEvents(SignalGroup):
    """The signals of a :class:`Session` (each carries the new value).

    Attributes
    ----------
    model_changed : Signal(object)
        The model (a ``LoadedModel``) or None.
    slide_changed : Signal(object)
        The slide (a :class:`~napari_conch.slide.Slide`) or None.
    options_changed : Signal(object)
        The :class:`RunOptions`.
    store_changed : Signal(object)
        The store now open, the one of (slide, model, grid) or one opened by its path
        (:meth:`~napari_conch.engine.session.session.Session.open_store_at`), or None when it was
        closed (the slide, the grid or a model that did not make it changed, another store opened).
    running_changed : Signal(bool)
        An embedding run started (True) or ended (False).
    progress : Signal(object)
        An :class:`~napari_conch.engine.progress.EmbedProgress` of the run under way: first
        the tissue search's steps (``phase == "tissue"``, no tiles), then the tiles'.
    tiles_added : Signal(object, object)
        ``rows, cols`` of tiles just added to the live index.
    run_finished : Signal(object)
        The run's :class:`~napari_conch.engine.progress.EmbedSummary`, or None when it failed.
    prompts_changed : Signal(object)
        The :class:`PromptRequest` or None.
    result_changed : Signal(object)
        The map on show (a :class:`~napari_conch.engine.query.QueryResult`) or None.
    classes_changed : Signal(object)
        The list of classes taught by example (the prompts' first).
    examples_changed : Signal(object)
        The example tiles (an :class:`~napari_conch.engine.learn.annotations.Examples`).
    """

    model_changed = Signal(object)
    slide_changed = Signal(object)
    options_changed = Signal(object)
    store_changed = Signal(object)
    running_changed = Signal(bool)
    progress = Signal(object)
    tiles_added = Signal(object, object)
    run_finished = Signal(object)
    prompts_changed = Signal(object)
    result_changed = Signal(object)
    classes_changed = Signal(object)
    examples_changed = Signal(object)
