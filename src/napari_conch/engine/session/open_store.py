"""The embedding store a :class:`~napari_conch.engine.session.session.Session` has open, and its
index.

A session has at most one store open, for one of two reasons:

- the store of its (slide, model, grid) under the options' store root, found or made there
  (:func:`read_store_for`): a store of something else is refused;
- a store given by its folder, worked on without its slide (:func:`read_store_at`: the CLI's
  ``query`` and ``top-tiles``): a model that did not make it is refused.

:class:`SessionStore` holds the open store, the :class:`LiveIndex` of its embedded tiles and what
the store was opened for, and announces each change on the session's ``store_changed`` signal;
the session decides when a store is opened or closed (a change of slide, model or grid, a run).
Stores are opened for reading here: only a run takes the writer lock
(:meth:`Session.embed_run <napari_conch.engine.session.session.Session.embed_run>`), and
:func:`with_vectors` reads each of its batches back for the live index.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.session.live_index import LiveIndex
from napari_conch.errors import StoreError
from napari_conch.generators import mapped

#: What the generator of :meth:`Session.embed_run
#: <napari_conch.engine.session.session.Session.embed_run>` yields: the event and the batch's
#: vectors
#: (None for a run without the live index).
ProgressItem = tuple[Any, np.ndarray | None]
#: The first item of the key of a store opened by its path (:meth:`SessionStore.hold_at`).
_BY_PATH = "store at"


class SessionStore:
    """The store a session has open, the live index of its tiles, and what it was opened for.

    Parameters
    ----------
    changed : SignalInstance
        The session's ``store_changed`` signal: emitted with the store held, or None once closed.

    Attributes
    ----------
    store : EmbeddingStore or None
        The open store.
    index : LiveIndex or None
        Its embedded tiles (None after a run without the live index, until :meth:`indexed`).
    key : tuple or None
        What the store was opened for: the session's key of (slide, model, grid, store root), or
        ``("store at", path)`` for a store opened by its path (:meth:`hold_at`).
    """

    def __init__(self, changed: Any) -> None:
        self._changed = changed
        self.store: Any = None
        self.index: LiveIndex | None = None
        self.key: tuple | None = None

    @property
    def by_path(self) -> bool:
        """Whether the open store was opened by its path, without a slide."""
        return self.key is not None and self.key[0] == _BY_PATH

    def fits(self, model: Any) -> bool:
        """Whether the open store stays open with ``model``.

        A store opened by its path does when the model is None or the one that made it; a
        slide's store never does (its key holds the model).
        """
        return self.by_path and made_by(self.store, model)

    def hold(self, store: Any, key: tuple, *, index: bool = True) -> None:
        """Hold ``store``, opened for ``key``; read its live index when ``index``; announce it."""
        self.store, self.key = store, key
        if index:
            self.index = index_of(store)
        self._changed.emit(store)

    def hold_at(self, store: Any) -> None:
        """Hold ``store``, opened by its path (see :func:`read_store_at`); announce it."""
        self.hold(store, (_BY_PATH, store.path))

    def swap_handle(self, store: Any, *, reindex: bool = False) -> None:
        """Hold ``store``, another handle on the open store (a run's), without announcing it.

        The map shows the same store, so its index stays, unless ``reindex``: then it is read
        again from ``store`` (what another writer wrote meanwhile).
        """
        index = index_of(store) if reindex else self.index
        self.store, self.index = store, index

    def indexed(self) -> Any:
        """The open store, its live index read first when there is none (after a run without)."""
        if self.index is None:
            self.index = index_of(self.store)
        return self.store

    def close(self) -> bool:
        """Forget the store and its index, announcing it; False when there was nothing to close."""
        if self.store is None and self.index is None:
            return False
        self.store, self.index, self.key = None, None, None
        self._changed.emit(None)
        return True

    def live_embeddings(self) -> tuple[Any, Any, Path] | None:
        """``(index, grid, store path)`` of the open store, or None when none is open."""
        if self.index is None or self.store is None:
            return None
        return self.index.compacted(), self.store.grid, Path(self.store.path)


def read_store_for(
    slide: Any, model: Any, grid: Any, root: str | os.PathLike | None, *, create: bool
) -> Any:
    """The store of (slide, model, grid) under ``root``, opened for reading, or None.

    An existing store is checked against what is asked: a store of another slide, model or grid
    raises :class:`~napari_conch.errors.StoreError`; one made in another compute precision is
    read as it is (continuing it in this precision is refused when a run starts). Without one,
    it is made when ``create`` (its writer lock given back at once), else there is none: None.
    """
    from napari_conch.engine.embed import open_store
    from napari_conch.engine.store.embedding_store import (
        EmbeddingStore,
        describe_mismatch,
        make_signature,
        signature_matches,
        store_path_for,
    )

    path = store_path_for(slide, model, grid, root)
    if path.exists():
        store = EmbeddingStore.open(path)
        wanted = make_signature(slide, model, grid)
        if not signature_matches(store.signature, wanted, writing=False):
            raise StoreError(
                f"{path}: store was made from something else: "
                f"{describe_mismatch(store.signature, wanted)}; "
                "choose another store folder or delete this one"
            )
        return store
    if not create:
        return None
    store = open_store(slide, model, grid, root)
    store.close()  # made; the writer lock is taken again for each run
    return store


def read_store_at(path: str | os.PathLike, model: Any) -> Any:
    """The existing store at ``path``, opened for reading, refused when ``model`` did not make it.

    ``model`` None is taken as any. Nothing is created and no writer lock is taken.

    Raises
    ------
    StoreError
        When ``path`` is not an embedding store (or a damaged one), or ``model`` did not make it.
    """
    from napari_conch.engine.store.embedding_store import EmbeddingStore

    store = EmbeddingStore.open(path)
    if not made_by(store, model):
        raise StoreError(
            f"{store.path}: made by another model than {model.source} (fingerprint differs)"
        )
    return store


def made_by(store: Any, model: Any) -> bool:
    """Whether ``model`` may read ``store``: None, or the model that made it (when recorded)."""
    wanted = store.signature.get("model_fingerprint")
    return model is None or not wanted or model.fingerprint == wanted


def index_of(store: Any) -> LiveIndex:
    """A live index of the store's embedded tiles (reads the store's embeddings)."""
    from napari_conch.engine.query import QueryIndex

    return LiveIndex(QueryIndex.from_store(store))


def without_vectors(events: Generator) -> Generator[ProgressItem, None, Any]:
    """Each event with None for its vectors (a run without the live index)."""
    return mapped(events, lambda event: (event, None))


def with_vectors(events: Generator, store: Any) -> Generator[ProgressItem, None, Any]:
    """Each event with its batch's embeddings, read back from the store (in the caller's thread).

    Closing this generator closes the engine's, so the run is recorded and its readers stop.
    """

    def with_batch(event: Any) -> ProgressItem:
        if len(event.rows):
            return event, store.embeddings_at(event.rows, event.cols)
        return event, np.zeros((0, store.embed_dim), np.float32)

    return mapped(events, with_batch)
