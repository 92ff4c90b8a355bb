"""The prompt side of the widget, without Qt: prompts -> query vectors -> maps over the grid.

A :class:`MapSession` holds what one (slide, model, grid) needs for prompting: the store, a
:class:`LiveIndex` of the embedded tiles (growing while a run is under way) and the text
embeddings of the prompts typed so far, cached per (prompt, templates) so that a new line costs
one text encoding and an unchanged one none. All the math is the engine's
(:func:`~napari_conch.engine.query.run_query`, :func:`~napari_conch.engine.prompts.text_queries`,
:func:`~napari_conch.engine.query.example_query`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_conch.engine.prompts import PromptSet, text_queries
from napari_conch.engine.query import QueryIndex, QueryResult, example_query, run_query
from napari_conch.errors import InputError


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


@dataclass(frozen=True)
class PromptRequest:
    """What the prompt box asks for: classes (one per line), templates, background."""

    prompts: tuple[str, ...]
    templates: str = "conch"
    background: str | None = None
    threshold: float | None = None

    @classmethod
    def from_text(
        cls, text: str, *, templates: bool, background: str = "", threshold: float = 0.0
    ) -> PromptRequest:
        """Parse the prompt box: one prompt per non-empty line."""
        lines = tuple(line.strip() for line in text.splitlines() if line.strip())
        bg = background.strip() or None
        return cls(lines, "conch" if templates else "none", bg, threshold or None)

    @property
    def classes(self) -> list[str]:
        """The class names: the prompts, then the background when given."""
        names = list(self.prompts)
        return [*names, self.background] if self.background else names

    def check(self) -> None:
        """Raise :class:`InputError` for a request that cannot become a map."""
        if not self.prompts:
            raise InputError("type at least one prompt (one per line)")
        PromptSet.from_prompts(self.classes, self.templates)  # raises for duplicates


@dataclass
class MapSession:
    """Everything prompting needs for one (slide, model, grid, store)."""

    slide: Any
    model: Any
    grid: Any
    store: Any
    index: LiveIndex
    _texts: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def from_store(cls, slide: Any, model: Any, grid: Any, store: Any) -> MapSession:
        """A session over what the store holds now."""
        return cls(slide, model, grid, store, LiveIndex(QueryIndex.from_store(store)))

    def missing_texts(self, request: PromptRequest) -> list[str]:
        """Classes of ``request`` whose text embedding is not cached yet."""
        return [c for c in request.classes if (c, request.templates) not in self._texts]

    def encode(self, classes: list[str], templates: str) -> dict[tuple[str, str], np.ndarray]:
        """Text embeddings of classes (the slow part; run it off the GUI thread)."""
        out = {}
        for name in classes:
            _, vectors = text_queries(self.model, [name], templates)
            out[(name, templates)] = vectors[0]
        return out

    def remember(self, encoded: dict[tuple[str, str], np.ndarray]) -> None:
        """Cache text embeddings from :meth:`encode`."""
        self._texts.update(encoded)

    def query(self, request: PromptRequest) -> QueryResult:
        """Maps of a request whose texts are cached (see :meth:`missing_texts`)."""
        request.check()
        missing = self.missing_texts(request)
        if missing:
            raise InputError(f"prompt {missing[0]!r} is not encoded yet")
        names = request.classes
        queries = np.stack([self._texts[(n, request.templates)] for n in names])
        return run_query(
            self.index,
            names,
            queries,
            self.grid,
            logit_scale=float(self.model.logit_scale),
            background=request.background,
            threshold=request.threshold,
        )

    def tile_at(self, y: float, x: float) -> tuple[int, int] | None:
        """The tile whose centre is nearest to level-0 pixel ``(y, x)`` among those covering it."""
        grid = self.grid
        step, size = grid.cell_size_level0, grid.tile_size_level0
        row = min(max(round((y - size / 2) / step), 0), grid.rows - 1)
        col = min(max(round((x - size / 2) / step), 0), grid.cols - 1)
        x0, y0, x1, y1 = grid.tile_box(row, col)
        inside = x0 <= x + 0.5 < x1 and y0 <= y + 0.5 < y1
        return (int(row), int(col)) if inside and math.isfinite(x + y) else None

    def example(self, row: int, col: int, threshold: float | None = None) -> QueryResult:
        """The similarity map to tile ``(row, col)`` (query by example)."""
        index = self.index.compacted()
        vector = example_query(index, [(row, col)])
        name = f"like tile ({row}, {col})"
        return run_query(self.index, [name], vector[None], self.grid, threshold=threshold)
