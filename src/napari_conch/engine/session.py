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

import math
import os
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

from napari_conch.engine.live_index import LiveIndex
from napari_conch.engine.options import DEFAULTS, RunOptions
from napari_conch.engine.prompt_request import PromptRequest
from napari_conch.errors import InputError, StoreError
from napari_conch.generators import mapped

#: A run's region: a level-0 box ``(x0, y0, x1, y1)`` whose tiles go first.
Box = tuple[float, float, float, float]
#: What the generator of :meth:`Session.embed_run` yields: the event and the batch's vectors
#: (None for a run without the live index).
ProgressItem = tuple[Any, np.ndarray | None]
#: The first item of the key of a store opened by its path (:meth:`Session.open_store_at`).
_BY_PATH = "store at"


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
        The store of (slide, model, grid) now open, or None when it was closed (slide, model or
        grid changed).
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


class Session:
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
        The prompts on show.
    result : QueryResult or None
        The map on show (prompts, or the similarity to one tile: see :attr:`showing_example`).
    running : bool
        Whether an embedding run is under way (model, slide and options are then fixed).
    """

    def __init__(self, options: RunOptions | None = None) -> None:
        self.events = SessionEvents()
        self.model: Any = None
        self.slide: Any = None
        self.slide_source: Any = None
        self.options: RunOptions = options if options is not None else DEFAULTS
        self.store: Any = None
        self._writer: Any = None  # the store's handle holding its writer lock during a run
        self.index: LiveIndex | None = None
        self.request: PromptRequest | None = None
        self.result: Any = None
        self.running = False
        self.showing_example = False
        self._grid: tuple[tuple, Any] | None = None
        self._store_key: tuple | None = None
        self._texts: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

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
        if not self._store_fits(model):
            self.close_store()
        self.events.model_changed.emit(model)

    def _store_fits(self, model: Any) -> bool:
        """Whether the open store stays open with ``model``.

        A store opened by its path does when the model is None or the one that made it; a
        slide's store never does (its key holds the model).
        """
        if not self._by_path():
            return False
        wanted = self.store.signature.get("model_fingerprint")
        return model is None or not wanted or model.fingerprint == wanted

    # ------------------------------------------------------------------ slide and options
    def set_slide(self, slide: Any, source: Any = None) -> None:
        """Work on ``slide`` (None: no slide); ``source`` is what it was opened from."""
        if slide is self.slide and source is self.slide_source:
            return
        self._check_idle("change the slide")
        self.slide, self.slide_source = slide, source
        self.close_store()
        self.events.slide_changed.emit(slide)

    def open_slide(self, path: str | os.PathLike, *, slide_mpp: float | None = None) -> Any:
        """Open a slide file and work on it; returns the slide."""
        from napari_conch.engine.embed import open_slide_checked

        mpp = slide_mpp if slide_mpp is not None else self.options.slide_mpp
        slide = open_slide_checked(path, mpp)
        self.set_slide(slide, source=Path(path))
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
        if self._store_key is not None and not self._by_path() and self._store_key != self._key():
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
        if self.store is not None and (self.running or self._by_path()):
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
        return (id(slide), model.fingerprint, o.level, o.mpp, self.tile_size, o.stride)

    def _key(self) -> tuple:
        return (*self._grid_key(), self.options.store_root)

    def _by_path(self) -> bool:
        """Whether the open store was opened by its path, without a slide."""
        return self._store_key is not None and self._store_key[0] == _BY_PATH

    def _check_idle(self, what: str) -> None:
        if self.running:
            raise InputError(f"cannot {what} while an embedding run is under way: cancel it first")

    # ------------------------------------------------------------------ stores
    def store_path(self) -> Path:
        """Where the store of (slide, model, grid) is, or would be made."""
        from napari_conch.engine.store import store_path_for

        return store_path_for(self.slide, self.model, self.grid, self.options.store_root)

    def open_store(self, *, create: bool = True) -> Any:
        """The store of (slide, model, grid), opened (and made when ``create``) once.

        With ``create=False``, returns None when there is no store yet. The store is opened for
        reading: showing maps takes no writer lock, so a ``napari-conch embed`` of the same
        slide can run while the viewer is open; :meth:`embed_run` takes the lock for the run
        only. A store of another slide, model or grid raises
        :class:`~napari_conch.errors.StoreError`; one made in another compute precision is read
        as it is (continuing it in this precision is refused when a run starts). A store opened
        by its path (:meth:`open_store_at`) is the one returned.
        """
        if self.running:
            return self.store
        if self._by_path():
            return self.store
        key = self._key()
        if self.store is not None and self._store_key == key:
            if self.index is None:  # left by a run without the live index
                self.index = _index_of(self.store)
            return self.store
        from napari_conch.engine.embed import open_store
        from napari_conch.engine.store import (
            EmbeddingStore,
            describe_mismatch,
            make_signature,
            signature_matches,
        )

        path = self.store_path()
        if path.exists():
            store = EmbeddingStore.open(path)
            wanted = make_signature(self.slide, self.model, self.grid)
            if not signature_matches(store.signature, wanted, writing=False):
                raise StoreError(
                    f"{path}: store was made from something else: "
                    f"{describe_mismatch(store.signature, wanted)}; "
                    "choose another store folder or delete this one"
                )
        elif create:
            store = open_store(self.slide, self.model, self.grid, self.options.store_root)
            store.close()  # made; the writer lock is taken again for each run
        else:
            return None
        self.store, self._store_key = store, key
        self.index = _index_of(store)
        self.events.store_changed.emit(store)
        return store

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
        from napari_conch.engine.store import EmbeddingStore

        self._check_idle("open another store")
        store = EmbeddingStore.open(path)
        wanted = store.signature.get("model_fingerprint")
        if self.model is not None and wanted and self.model.fingerprint != wanted:
            raise StoreError(
                f"{store.path}: made by another model than {self.model.source} (fingerprint "
                "differs)"
            )
        self.set_slide(None)
        self.close_store()
        self.store, self._store_key = store, (_BY_PATH, store.path)
        self.index = _index_of(store)
        self.events.store_changed.emit(store)
        return store

    def close_store(self) -> None:
        """Forget the open store, its index and the map made from it."""
        if self.store is None and self.index is None:
            return
        self.store, self.index, self._store_key = None, None, None
        self.events.store_changed.emit(None)
        self.set_result(None)

    def find_store(self, root: str | os.PathLike | None = None) -> Any:
        """The store of this slide and model with the most embedded tiles, whatever its grid.

        ``root``: the folder to look in (default: the options' ``store_root``, else the cache).
        """
        from napari_conch.engine.stores import find_store

        folder = root if root is not None else self.options.store_root
        return find_store(self.require_slide(), self.require_model(), folder)

    def live_embeddings(self) -> tuple[Any, Any, Path] | None:
        """``(index, grid, store path)`` of the open store, or None when none is open."""
        if self.index is None or self.store is None:
            return None
        return self.index.compacted(), self.store.grid, Path(self.store.path)

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
            and each batch's embeddings are read back (``vectors``). False for a run whose maps
            nobody shows meanwhile (the CLI): no index is read (``vectors`` is None); one is
            built from the store when asked for later (:meth:`open_store`).

        Raises
        ------
        InputError
            Without a model or a slide, or while a run is under way.
        StoreError
            When the store cannot be opened or made, or another process writes it (after
            ``wait``).
        """
        from napari_conch.engine.embed import embed_slide_iter, open_store

        self._check_idle("start another run")
        slide, model = self.require_slide(), self.require_model()
        grid, options = self.grid, self.options
        if live:
            self.open_store(create=True)  # shown (and its index read) even when another writes it
        # the run writes through its own handle, which holds the store's writer lock until
        # finish_run: another process (a CLI run) is told who writes the store meanwhile
        store = open_store(slide, model, grid, options.store_root, wait=wait)
        try:
            if live and wait is not None:
                self.index = _index_of(store)  # with what the other writer wrote meanwhile
            events = embed_slide_iter(
                slide, model, grid, store, options, region=region, cancel=cancel
            )
        except BaseException:
            store.close()
            raise
        if not live:
            self.close_store()
            self._store_key = self._key()
            self.events.store_changed.emit(store)
        self._writer = self.store = store  # same store: the map's index stays as it is
        self.running = True
        self.events.running_changed.emit(True)
        return _with_vectors(events, store) if live else _without_vectors(events)

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
        events = self.embed_run(region=region, cancel=cancel, wait=wait, live=live)
        summary = None
        try:
            while True:
                try:
                    event, vectors = next(events)
                except StopIteration as stop:
                    summary = stop.value
                    return summary
                self.add_progress(event, vectors)
                if on_progress is not None:
                    on_progress(event)
        finally:
            events.close()  # stopped early (an interruption): the run is recorded, then ended
            self.finish_run(summary)

    # ------------------------------------------------------------------ prompts and maps
    def set_prompts(self, request: PromptRequest | None) -> None:
        """The prompts to show (checked; None or no prompt: none)."""
        if request is not None and not request.prompts:
            request = None
        if request is not None:
            request.check()
        self.request = request
        self.showing_example = False
        self.events.prompts_changed.emit(request)

    def missing_texts(self, request: PromptRequest | None = None) -> list[str]:
        """Classes of ``request`` (default: the current one) not encoded with this model yet."""
        request = request if request is not None else self.request
        if request is None:
            return []
        fingerprint = self.require_model().fingerprint
        cached = self._texts
        return [c for c in request.classes if (fingerprint, request.sentences(c)) not in cached]

    def encode_texts(
        self, request: PromptRequest, classes: list[str] | None = None
    ) -> dict[tuple, np.ndarray]:
        """Text embeddings of ``classes`` of ``request`` (default: all) with the current model.

        Slow (the text tower); no state change: safe to run in a worker thread. Pass the result
        to :meth:`remember_texts`. Embeddings are cached per (model, sentences), so a class
        typed again, or the same class in another request, is not encoded twice.
        """
        from napari_conch.engine.prompts import embed_prompt_sets

        model = self.require_model()
        out = {}
        for name in request.classes if classes is None else classes:
            _, vectors = embed_prompt_sets(model, request.class_set(name))
            out[(model.fingerprint, request.sentences(name))] = vectors[0]
        return out

    def remember_texts(self, encoded: dict[tuple, np.ndarray]) -> None:
        """Cache text embeddings from :meth:`encode_texts`."""
        self._texts.update(encoded)

    def update_maps(self) -> Any:
        """The maps of the current prompts over the embedded tiles, set as the result.

        Returns None (and changes nothing) when there are no prompts, no open store, or a
        prompt is not encoded yet (see :meth:`missing_texts`).
        """
        request = self.request
        if request is None or self.index is None or self.missing_texts(request):
            return None
        from napari_conch.engine.query import run_query

        fingerprint = self.model.fingerprint
        names = request.classes
        queries = np.stack([self._texts[(fingerprint, request.sentences(n))] for n in names])
        result = run_query(
            self.index,
            names,
            queries,
            self.grid,
            logit_scale=float(self.model.logit_scale),
            background=request.background,
            threshold=request.threshold,
        )
        self.showing_example = False
        self.set_result(result)
        return result

    def query(self, request: PromptRequest) -> Any:
        """Blocking (scripts, CLI): set the prompts, encode what is missing, return the maps."""
        self.set_prompts(request)
        self.open_store(create=False)
        if self.index is None:
            raise InputError("embed the slide first: no tile embeddings to query")
        missing = self.missing_texts(request)
        if missing:
            self.remember_texts(self.encode_texts(request, missing))
        return self.update_maps()

    def set_result(self, result: Any) -> None:
        """Show ``result`` (a QueryResult, or None)."""
        if result is None and self.result is None:
            return
        self.result = result
        self.events.result_changed.emit(result)

    def tile_at(self, y: float, x: float) -> tuple[int, int] | None:
        """The grid tile under level-0 pixel ``(y, x)`` (see :func:`tile_at`)."""
        return tile_at(self.grid, y, x)

    def show_example(self, row: int, col: int, threshold: float | None = None) -> Any:
        """Show the similarity to tile ``(row, col)`` (query by example); returns the result."""
        from napari_conch.engine.query import example_query, run_query

        if self.index is None:
            raise InputError("embed the slide first: no tile embeddings to compare with")
        vector = example_query(self.index.compacted(), [(row, col)])
        name = f"like tile ({row}, {col})"
        result = run_query(self.index, [name], vector[None], self.grid, threshold=threshold)
        self.showing_example = True
        self.set_result(result)
        return result

    def export(
        self, path: str | os.PathLike | None, *, metadata: dict[str, Any] | None = None
    ) -> Path:
        """Write the map on show (format by the file's extension); returns the file written."""
        return self.export_job(path, metadata=metadata)()

    def export_job(
        self, path: str | os.PathLike | None, *, metadata: dict[str, Any] | None = None
    ) -> Callable[[], Path]:
        """Check ``path`` and what there is to export now; returns the writing, to run later.

        The returned call holds the map on show and writes it (safe in a worker thread);
        :meth:`export` runs it at once. ``metadata``: entries added to what the file records
        (the store, the model source, the slide).
        """
        from functools import partial

        from napari_conch.engine.export import export_result

        choose = "choose a file to export to (.tif, .geojson, .csv or .npy)"
        if path is None or str(path).strip() in ("", "."):
            raise InputError(choose)
        if Path(path).expanduser().is_dir():
            raise InputError(f"{choose}: {path} is a folder")
        if self.result is None or self.store is None:
            raise InputError("nothing to export yet: type a prompt first")
        slide, mpp = self._slide_facts()
        recorded = {"store": str(self.store.path)}
        if self.model is not None:
            recorded["model_source"] = str(self.model.source)
        if slide:
            recorded["slide"] = str(slide)
        recorded.update(metadata or {})
        return partial(
            export_result, path, self.result, self.store.grid, mpp=mpp, metadata=recorded
        )

    def _slide_facts(self) -> tuple[Any, float | None]:
        """The slide's path and level-0 MPP: the slide's, else what the store records."""
        if self.slide is not None:
            return self.slide.path, self.slide.mpp
        attrs = self.store.attrs
        return attrs.get("slide_path"), attrs.get("slide_mpp")


def tile_at(grid: Any, y: float, x: float) -> tuple[int, int] | None:
    """The tile under level-0 pixel ``(y, x)``: among those covering it, the nearest centre.

    Returns None outside the grid's tiles (or for a non-finite point).
    """
    if not math.isfinite(x + y):
        return None
    step, size = grid.cell_size_level0, grid.tile_size_level0
    row = min(max(round((y - size / 2) / step), 0), grid.rows - 1)
    col = min(max(round((x - size / 2) / step), 0), grid.cols - 1)
    x0, y0, x1, y1 = grid.tile_box(row, col)
    inside = x0 <= x + 0.5 < x1 and y0 <= y + 0.5 < y1
    return (int(row), int(col)) if inside else None


def _index_of(store: Any) -> LiveIndex:
    """A live index of the store's embedded tiles (reads the store's embeddings)."""
    from napari_conch.engine.query import QueryIndex

    return LiveIndex(QueryIndex.from_store(store))


def _without_vectors(events: Generator) -> Generator[ProgressItem, None, Any]:
    """Each event with None for its vectors (a run without the live index)."""
    return mapped(events, lambda event: (event, None))


def _with_vectors(events: Generator, store: Any) -> Generator[ProgressItem, None, Any]:
    """Each event with its batch's embeddings, read back from the store (in the caller's thread).

    Closing this generator closes the engine's, so the run is recorded and its readers stop.
    """

    def with_vectors(event: Any) -> ProgressItem:
        if len(event.rows):
            return event, store.embeddings_at(event.rows, event.cols)
        return event, np.zeros((0, store.embed_dim), np.float32)

    return mapped(events, with_vectors)
