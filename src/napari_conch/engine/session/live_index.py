"""A query index that grows batch by batch while a run is under way.

:class:`LiveIndex` answers what :func:`~napari_conch.engine.query.run_query` asks of an index
(``shape``, ``valid``, ``cosine_maps``) while tiles arrive, at the cost of one small product per
batch for the queries on show. The session keeps one per store
(:class:`~napari_conch.engine.session.open_store.SessionStore`).
"""

from __future__ import annotations

import numpy as np

from napari_conch.engine.query import QueryIndex


class LiveIndex:
    """A :class:`QueryIndex` that grows batch by batch, keeping the current queries' maps.

    ``run_query`` only asks an index for ``shape``, ``valid`` and ``cosine_maps``; this class
    answers ``cosine_maps`` for unchanged queries from its cache, updated for each added batch
    (one small product per batch), and merges the batches into one index when the queries change.
    """

    def __init__(self, base: QueryIndex) -> None:
        self._base = base
        self._pending: list[QueryIndex] = []
        self.shape = base.shape
        self._valid = base.valid
        self._queries: np.ndarray | None = None
        self._cosine: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        """bool ``[rows, cols]``: tiles with an embedding."""
        return self._valid.copy()

    @property
    def size(self) -> int:
        """Number of embedded tiles."""
        return int(np.count_nonzero(self._valid))

    def add(self, rows: np.ndarray, cols: np.ndarray, vectors: np.ndarray) -> None:
        """Add embedded tiles (rows whose vector is not finite are ignored)."""
        batch = QueryIndex.from_arrays(vectors, rows, cols, self.shape)
        if batch.size == 0:
            return
        self._pending.append(batch)
        self._valid.flat[batch.flat_index] = True
        if self._cosine is not None:
            new = batch.cosine_maps(self._queries)
            self._cosine = np.where(np.isfinite(new), new, self._cosine)

    def compacted(self) -> QueryIndex:
        """One :class:`QueryIndex` of every tile added so far."""
        if self._pending:
            parts = [self._base, *self._pending]
            vectors = np.concatenate([p.vectors for p in parts])
            rows, cols = np.divmod(np.concatenate([p.flat_index for p in parts]), self.shape[1])
            self._base = QueryIndex.from_arrays(vectors, rows, cols, self.shape)
            self._pending = []
        return self._base

    def cosine_maps(self, queries: np.ndarray) -> np.ndarray:
        """float32 ``[K, rows, cols]`` cosine maps of unit-norm queries; NaN where not embedded."""
        queries = np.asarray(queries, dtype=np.float32)
        if self._queries is None or not np.array_equal(queries, self._queries):
            self._cosine = self.compacted().cosine_maps(queries)
            self._queries = queries.copy()
        return self._cosine.copy()
