"""The session: one evented, Qt-free object holding what a viewer (or a script) works on.

A :class:`Session` holds the model, the slide, the run options (:class:`RunOptions`), the tile
grid they give, the embedding store of (slide, model, grid), a :class:`LiveIndex` of the embedded
tiles, the prompts and the map on show. It announces every change through psygnal signals
(:class:`SessionEvents`), in the manner of napari-animation's ``KeyFrameList``: the state lives
here, the napari docks only subscribe to it and call its methods, and the CLI or a script can
drive the same object without Qt.

Threads: the methods that change the state (``set_*``, ``open_store``, ``add_progress``,
``finish_run``, ``update_maps``...) are called from one thread (napari's GUI thread); the
signals are emitted on it. The slow parts come as calls that do not touch the state and may run
in a worker: :meth:`Session.prepare_model`, :meth:`Session.encode_texts` and the generator that
:meth:`Session.embed_run` returns. Blocking forms for scripts: :meth:`Session.load_model`,
:meth:`Session.embed`, :meth:`Session.query`.

A session can also work on a store alone, without its slide (:meth:`Session.open_store_at`: the
CLI's ``query`` and ``top-tiles``, which are given a store folder): the grid is then the store's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.options import DEFAULTS, RunOptions
from napari_conch.engine.session.events import SessionEvents
from napari_conch.engine.session.examples import SessionExamples
from napari_conch.engine.session.live_index import LiveIndex
from napari_conch.engine.session.maps import SessionMaps
from napari_conch.engine.session.open_store import (
    ProgressItem,
    SessionStore,
    read_store_at,
    read_store_for,
    with_vectors,
    without_vectors,
)
from napari_conch.errors import InputError
from napari_conch.generators import drain

#: A run's region: a level-0 box ``(x0, y0, x1, y1)`` whose tiles go first.
Box = tuple[float, float, float, float]


class Session(SessionMaps, SessionExamples):
    """What one viewer works on: model, slide, options, store, prompts, maps.

    Parameters
    ----------
    options : RunOptions, optional
        The run options (default :data:`~napari_conch.engine.options.DEFAULTS`).

    Attributes
    ----------
    events : SessionEvents
        The signals.
    model : LoadedModel or None
    slide : Slide or None
    slide_source : object
        What the slide was opened from, as the caller knows it (napari: the image layer); opaque.
    options : RunOptions
    store : EmbeddingStore or None
        The store of (slide, model, grid) once opened (:meth:`open_store`).
    index : LiveIndex or None
        The store's embedded tiles, growing while a run is under way.
    request : PromptRequest or None
        The prompts on show (:meth:`set_prompts`, :meth:`set_prompt_text`).
    prompt_text : str
        Those prompts as typed (what every prompt box shows).
    result : QueryResult or None
        The map on show (prompts, or the similarity to one tile: see :attr:`showing_example`).
    running : bool
        Whether an embedding run is under way (model, slide and options are then fixed).

    Notes
    -----
    The store on show is kept by a :class:`~napari_conch.engine.session.open_store.SessionStore`
    (``store`` and ``index`` read it); the prompts, maps and export methods come from
    :class:`~napari_conch.engine.session.maps.SessionMaps`, a base class of this one; the
    classes, examples and saved annotation project from
    :class:`~napari_conch.engine.session.examples.SessionExamples`, the other.
    """

    def __init__(self, options: RunOptions | None = None) -> None:
        SessionMaps.__init__(self)  # the prompts and the map on show: none
        SessionExamples.__init__(self)  # no class, no example
        self.events = SessionEvents()
        self._follow_prompts_and_store()
        self.model: Any = None
        self.slide: Any = None
        self.slide_source: Any = None
        self.options: RunOptions = options if options is not None else DEFAULTS
        self._stores = SessionStore(self.events.store_changed)
        self._writer: Any = None  # the store's handle holding its writer lock during a run
        self.running = False
        self._grid: tuple[tuple, Any] | None = None
        self._opened_mpp: tuple[float | None, str] | None = None  # the slide's before options

    # ------------------------------------------------------------------ model
    @staticmethod
    def prepare_model(
        source: str | os.PathLike,
        *,
        config: Any = None,
        tokenizer: Any = None,
        device: str | None = None,
        precision: str | None = None,
        token: str | None = None,
    ) -> Any:
        """Load a model (cached per source and device) and find its tokenizer; no state change.

        Safe to run in a worker thread; pass the result to :meth:`set_model`.
        """
        from napari_conch.model import load_model

        model = load_model(
            source,
            config=config,
            tokenizer=tokenizer,
            device=device,
            precision=precision,
            token=token,
        )
        model.tokenizer  # noqa: B018 - find the tokenizer now: a missing one is a load error
        return model

    def load_model(self, source: str | os.PathLike, **kwargs: Any) -> Any:
        """Blocking: :meth:`prepare_model` then :meth:`set_model`; returns the model."""
        model = self.prepare_model(source, **kwargs)
        self.set_model(model)
        return model

    def set_model(self, model: Any) -> None:
        """Use ``model`` (a ``LoadedModel``); the open store is closed when it changes."""
        if model is self.model:
            return
        self._check_idle("change the model")
        self.model = model
        if not self._stores.fits(model):
            self.close_store()
        self.events.model_changed.emit(model)

    # ------------------------------------------------------------------ slide and options
    def set_slide(self, slide: Any, source: Any = None) -> None:
        """Work on ``slide`` (None: no slide); ``source`` is what it was opened from.

        A stated MPP (``options.slide_mpp``) is the slide's from now on, however it was opened
        (a file, a napari layer): ``slide.mpp`` becomes it and ``slide.mpp_source`` ``"caller"``,
        so the store's signature records it as ``--slide-mpp`` does. Without one, the slide keeps
        the MPP it was opened with.
        """
        if slide is self.slide and source is self.slide_source:
            return
        self._check_idle("change the slide")
        self.slide, self.slide_source = slide, source
        self._opened_mpp = None if slide is None else (slide.mpp, slide.mpp_source)
        self._apply_slide_mpp()
        self.close_store()
        self.events.slide_changed.emit(slide)

    def _apply_slide_mpp(self) -> None:
        """Give the slide the stated MPP (``options.slide_mpp``), or back the one it was opened
        with when none is stated."""
        if self.slide is None or self._opened_mpp is None:
            return
        stated = self.options.slide_mpp
        if stated is not None:
            self.slide.mpp, self.slide.mpp_source = float(stated), "caller"
        else:
            self.slide.mpp, self.slide.mpp_source = self._opened_mpp

    def open_slide(self, path: str | os.PathLike, *, slide_mpp: float | None = None) -> Any:
        """Open a slide file and work on it; returns the slide.

        ``slide_mpp`` states its MPP for this opening (default: ``options.slide_mpp``, which
        then stays the slide's as the options change: :meth:`set_slide`).
        """
        from napari_conch.engine.embed import open_slide_checked

        mpp = slide_mpp if slide_mpp is not None else self.options.slide_mpp
        slide = open_slide_checked(path, mpp)
        self.set_slide(slide, source=Path(path))
        if slide_mpp is not None:  # this opening's, over the options'
            slide.mpp, slide.mpp_source = float(slide_mpp), "caller"
        return slide

    def set_options(self, options: RunOptions | None = None, **changes: Any) -> RunOptions:
        """Replace the run options (or change some of them); returns the options in use.

        Raises
        ------
        InputError
            For an invalid value (checked by :class:`RunOptions`), or while a run is under way.
        """
        new = (options if options is not None else self.options).replace(**changes)
        if new == self.options:
            return self.options
        self._check_idle("change the run options")
        self.options = new
        self._apply_slide_mpp()
        key = self._stores.key
        if key is not None and not self._stores.by_path and key != self._key():
            self.close_store()
        self.events.options_changed.emit(new)
        return new

    @property
    def tile_size(self) -> int:
        """The tile size in use: the option, else the model's own (needs a model)."""
        return self.options.tile_size_for(self.require_model())

    @property
    def grid(self) -> Any:
        """The tile grid of the slide for the options and the model (made on first use).

        For a store opened by its path (:meth:`open_store_at`), and during a run: the store's.

        Raises
        ------
        InputError
            Without a model or a slide.
        SlideError
            For options the slide cannot take (an MPP on a slide without one, a missing level).
        """
        if self.store is not None and (self.running or self._stores.by_path):
            return self.store.grid
        key = self._grid_key()
        if self._grid is None or self._grid[0] != key:
            from napari_conch.slide import make_grid

            o = self.options
            grid = make_grid(
                self.require_slide(),
                level=None if o.mpp is not None else (o.level or 0),
                mpp=o.mpp,
                tile_size=self.tile_size,
                stride=o.stride,
            )
            self._grid = (key, grid)
        return self._grid[1]

    def require_model(self) -> Any:
        """The model, or :class:`InputError` saying to load one."""
        if self.model is None:
            raise InputError("load a model first (Model section)")
        return self.model

    def require_slide(self) -> Any:
        """The slide, or :class:`InputError` saying to open one."""
        if self.slide is None:
            raise InputError("open a slide first: no RGB image layer to work on")
        return self.slide

    def _grid_key(self) -> tuple:
        o = self.options
        model = self.require_model()
        slide = self.require_slide()
        return (
            id(slide), slide.mpp, model.fingerprint, o.level, o.mpp, self.tile_size, o.stride,
        )  # fmt: skip

    def _key(self) -> tuple:
        return (*self._grid_key(), self.options.store_root)

    def _check_idle(self, what: str) -> None:
        if self.running:
            raise InputError(f"cannot {what} while an embedding run is under way: cancel it first")

    # ------------------------------------------------------------------ stores
    @property
    def store(self) -> Any:
        """The open store (an ``EmbeddingStore``), or None.

        The store of (slide, model, grid) once :meth:`open_store` ran, or the one
        :meth:`open_store_at` opened.
        """
        return self._stores.store

    @property
    def index(self) -> LiveIndex | None:
        """The open store's embedded tiles, growing while a run is under way; None without."""
        return self._stores.index

    def store_path(self) -> Path:
        """Where the store of (slide, model, grid) is, or would be made."""
        from napari_conch.engine.store.embedding_store import store_path_for

        return store_path_for(self.slide, self.model, self.grid, self.options.store_root)

    def store_counts(self) -> dict[str, int] | None:
        """Tiles per status (``EmbeddingStore.counts``) in the store of (slide, model, grid).

        None when there is no store yet, or no slide or model to name one. Reads the store's
        status only, not its embeddings (no index is read, nothing is opened for the session):
        what a dock shows of how far the slide is embedded. During a run, and for a store opened
        by its path, the open store's.

        Raises
        ------
        StoreError
            When the store found was made from another slide, model or grid.
        """
        if self.running or self._stores.by_path:
            return None if self.store is None else self.store.counts()
        if self.slide is None or self.model is None:
            return None
        if self.store is not None and self._stores.key == self._key():
            return self.store.counts()
        store = read_store_for(
            self.slide, self.model, self.grid, self.options.store_root, create=False
        )
        return None if store is None else store.counts()

    def open_store(self, *, create: bool = True) -> Any:
        """The store of (slide, model, grid), opened (and made when ``create``) once.

        With ``create=False``, returns None when there is no store yet. The store is opened for
        reading: showing maps takes no writer lock, so a ``napari-conch embed`` of the same
        slide can run while the viewer is open; :meth:`embed_run` takes the lock for the run
        only. A store of another slide, model or grid raises
        :class:`~napari_conch.errors.StoreError`; one made in another compute precision is read
        as it is (see :func:`~napari_conch.engine.session.open_store.read_store_for`). A store
        opened by its path (:meth:`open_store_at`) is the one returned.
        """
        if self.running or self._stores.by_path:
            return self.store
        key = self._key()
        if self.store is None or self._stores.key != key:
            store = read_store_for(
                self.slide, self.model, self.grid, self.options.store_root, create=create
            )
            if store is None:
                return None
            self._stores.hold(store, key)
        return self._stores.indexed()

    def open_store_at(self, path: str | os.PathLike) -> Any:
        """Work on the existing store at ``path``, read only, without its slide; returns it.

        For a store given by its folder (the CLI's ``query`` and ``top-tiles``): nothing is
        created and no writer lock is taken. The slide is set to None (a slide set later closes
        this store); the grid is the store's; the store stays open when the model set is the
        one that made it (see :meth:`set_model`), so the model may be set before or after.

        Raises
        ------
        StoreError
            When ``path`` is not an embedding store (or a damaged one), or the model set did
            not make it.
        InputError
            While a run is under way.
        """
        self._check_idle("open another store")
        store = read_store_at(path, self.model)
        self.set_slide(None)
        self.close_store()
        self._stores.hold_at(store)
        return store

    def close_store(self) -> None:
        """Forget the open store, its index and the map made from it."""
        if self._stores.close():
            self.set_result(None)

    def find_store(self, root: str | os.PathLike | None = None) -> Any:
        """The store of this slide and model with the most embedded tiles, whatever its grid.

        ``root``: the folder to look in (default: the options' ``store_root``, else the cache).
        """
        from napari_conch.engine.store.lookup import find_store

        folder = root if root is not None else self.options.store_root
        return find_store(self.require_slide(), self.require_model(), folder)

    def live_embeddings(self) -> tuple[Any, Any, Path] | None:
        """``(index, grid, store path)`` of the open store, or None when none is open."""
        return self._stores.live_embeddings()

    # ------------------------------------------------------------------ embedding
    def embed_run(
        self,
        *,
        region: Box | None = None,
        cancel: threading.Event | None = None,
        wait: float | None = None,
        live: bool = True,
    ) -> Generator[ProgressItem, None, Any]:
        """Start a run on (slide, model, grid): returns the engine's generator.

        The store is opened (made) here, its writer lock taken, and the session is marked
        running. The generator may run in a worker thread: it yields ``(event, vectors)`` for
        each step of the tissue search (no tiles, no vectors) and then per batch, and returns
        the :class:`~napari_conch.engine.progress.EmbedSummary`. The caller
        hands each item to :meth:`add_progress` and the end to :meth:`finish_run`, on this
        session's thread.

        Parameters
        ----------
        region
            A level-0 box whose tiles go first (the viewport).
        cancel
            A ``threading.Event``; checked between batches.
        wait
            Seconds to wait while another process writes the store (``None``: refuse at once,
            naming it; ``float("inf")``: as long as it takes).
        live
            Keep the live index growing: the store is read into :attr:`index` before the run
            and the embeddings written are read back (``vectors``), in groups every
            :data:`~napari_conch.engine.embed.LIVE_WRITE_EVERY_S` seconds, one batch at a time
            (:data:`~napari_conch.engine.embed.LIVE_WORKERS`: a core's share is left to the
            viewer). False for a run whose maps nobody shows meanwhile (the CLI): no index is
            read (``vectors`` is None); one is built from the store when asked for later
            (:meth:`open_store`), the batches are written in groups every
            :data:`~napari_conch.engine.embed.WRITE_EVERY_S` seconds, and a fast model runs
            several at once (:mod:`~napari_conch.engine.model_workers`).

        Raises
        ------
        InputError
            Without a model or a slide, or while a run is under way.
        StoreError
            When the store cannot be opened or made, or another process writes it (after
            ``wait``).
        """
        from napari_conch.engine.embed import (
            LIVE_WORKERS,
            LIVE_WRITE_EVERY_S,
            WRITE_EVERY_S,
            embed_slide_iter,
            open_store,
        )

        self._check_idle("start another run")
        slide, model = self.require_slide(), self.require_model()
        grid, options = self.grid, self.options
        if live:
            self.open_store(create=True)  # shown (and its index read) even when another writes it
        # the run writes through its own handle, which holds the store's writer lock until
        # finish_run: another process (a CLI run) is told who writes the store meanwhile
        store = open_store(slide, model, grid, options.store_root, wait=wait)
        try:
            events = embed_slide_iter(
                slide, model, grid, store, options, region=region, cancel=cancel,
                write_every_s=LIVE_WRITE_EVERY_S if live else WRITE_EVERY_S,
                workers=LIVE_WORKERS if live else None,
            )  # fmt: skip
            if live:  # same store: its index read again with what another writer wrote meanwhile
                self._stores.swap_handle(store, reindex=wait is not None)
        except BaseException:
            store.close()
            raise
        if not live:
            self.close_store()
            self._stores.hold(store, self._key(), index=False)
        self._writer = store
        self.running = True
        self.events.running_changed.emit(True)
        return with_vectors(events, store) if live else without_vectors(events)

    def add_progress(self, event: Any, vectors: np.ndarray | None) -> None:
        """Take one step of the run: add the batch to the live index, announce it.

        A step of the tissue search (or any event without tiles) is only announced on
        ``progress``: nothing is added to the index and ``tiles_added`` is not emitted.
        """
        if self.index is not None and vectors is not None and len(event.rows):
            self.index.add(event.rows, event.cols, vectors)
        self.events.progress.emit(event)
        if len(event.rows):
            self.events.tiles_added.emit(event.rows, event.cols)

    def finish_run(self, summary: Any = None) -> None:
        """End the run (``summary`` None when it failed); the store's writer lock is given back."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.running = False
        self.events.running_changed.emit(False)
        self.events.run_finished.emit(summary)

    def embed(
        self,
        *,
        region: Box | None = None,
        cancel: threading.Event | None = None,
        on_progress: Callable[[Any], None] | None = None,
        wait: float | None = None,
        live: bool = True,
    ) -> Any:
        """Blocking run (scripts, CLI): returns the :class:`EmbedSummary`.

        ``on_progress`` is called with each progress event (after the ``progress`` signal);
        the other arguments are :meth:`embed_run`'s. The run is ended (:meth:`finish_run`)
        whatever happens, a failure or an interruption included.
        """

        def step(item: tuple[Any, np.ndarray | None]) -> None:
            event, vectors = item
            self.add_progress(event, vectors)
            if on_progress is not None:
                on_progress(event)

        events = self.embed_run(region=region, cancel=cancel, wait=wait, live=live)
        summary = None
        try:  # drain closes the run when stopped early: it is recorded, then ended
            summary = drain(events, step)
            return summary
        finally:
            self.finish_run(summary)
