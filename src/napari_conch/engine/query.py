"""Prompts to maps: cosine similarity, class probabilities and labels over a tile grid.

The core takes plain arrays: tile embeddings ``[rows, cols, D]`` with a mask of computed tiles,
and unit-norm query vectors ``[K, D]`` (text prompts from :mod:`.prompts`, or tile examples).
:class:`QueryIndex` keeps the computed tiles' embeddings as one contiguous, L2-normalised float32
matrix, so a new prompt's map is one matrix product and a scatter into the grid.

Maps never invent values: tiles that were not computed (background, pending, failed) are NaN in
float maps and 0 in label maps.

- One prompt: cosine similarity ``[rows, cols]``.
- Several prompts: probabilities ``softmax(logit_scale * cosine)`` over the classes, with
  ``logit_scale`` the model's own temperature (``exp`` of its learnt parameter, as
  ``LoadedModel.logit_scale`` gives it; CONCH's zero-shot classification), and labels
  ``argmax + 1``; label 0 where not computed, where the winning probability is below a
  threshold, or where the background class wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_conch.engine.overlap import (
    MapGeometry,
    cell_geometry,
    overlap_average,
    overlap_factor,
)
from napari_conch.engine.prompts import PromptSet, load_prompt_set, text_queries
from napari_conch.errors import InputError

__all__ = [
    "MapGeometry",
    "PromptSet",
    "QueryIndex",
    "QueryResult",
    "classify",
    "example_query",
    "labels_from_probs",
    "load_prompt_set",
    "run_query",
    "similarity_map",
    "softmax_probs",
    "text_queries",
]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise InputError("a query vector is zero or not finite")
    return (x / norms).astype(np.float32)


class QueryIndex:
    """The computed tiles' embeddings, ready for repeated queries.

    Parameters
    ----------
    embeddings
        ``[rows, cols, D]`` tile embeddings (any float dtype; NaN rows are not computed).
    valid
        bool ``[rows, cols]``: tiles that were computed. Default: tiles whose embedding is finite.
        Tiles marked valid whose embedding is not finite or zero are treated as not computed.

    Attributes
    ----------
    vectors
        float32 ``[N, D]``, C-contiguous, each row L2-normalised (float16 stores lose a little
        norm; renormalising makes the dot product an exact cosine).
    flat_index
        int64 ``[N]``: position of each row in the flattened ``[rows, cols]`` grid.
    """

    def __init__(self, embeddings: np.ndarray, valid: np.ndarray | None = None) -> None:
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 3:
            raise InputError(f"embeddings must be [rows, cols, D], got shape {embeddings.shape}")
        rows, cols, dim = embeddings.shape
        if valid is None:
            valid = np.ones((rows, cols), dtype=bool)
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (rows, cols):
            raise InputError(f"valid mask {valid.shape} does not fit the grid {(rows, cols)}")
        flat = np.flatnonzero(valid)
        vectors = embeddings.reshape(rows * cols, dim)[flat].astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1)
        good = np.isfinite(norms) & (norms > 0)
        if not good.all():
            flat, vectors, norms = flat[good], vectors[good], norms[good]
        vectors /= norms[:, None]
        self._init(flat, vectors, (rows, cols))

    def _init(self, flat: np.ndarray, vectors: np.ndarray, shape: tuple[int, int]) -> None:
        self.flat_index = np.ascontiguousarray(flat, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.shape = (int(shape[0]), int(shape[1]))
        self._lookup: dict[int, int] | None = None

    @classmethod
    def from_arrays(
        cls, vectors: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
    ) -> QueryIndex:
        """Build from the computed tiles only: ``vectors [N, D]`` at ``(rows[i], cols[i])``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if vectors.ndim != 2 or len(vectors) != len(rows) or len(rows) != len(cols):
            raise InputError("vectors, rows and cols must describe the same tiles")
        norms = np.linalg.norm(vectors, axis=1)
        good = np.isfinite(norms) & (norms > 0)
        index = cls.__new__(cls)
        flat = rows[good] * shape[1] + cols[good]
        index._init(flat, vectors[good] / norms[good, None], shape)
        return index

    @classmethod
    def from_store(cls, store: Any) -> QueryIndex:
        """Build from an :class:`~napari_conch.engine.store.embedding_store.EmbeddingStore` (DONE
        tiles only).

        Reads the whole embeddings array once (a bulk read is far faster than gathering the
        DONE tiles one by one), so it briefly holds ``rows x cols x D`` float32.
        """
        from napari_conch.engine.store.embedding_store import TileStatus

        done = store.status() == TileStatus.DONE
        if not done.any():
            rows, cols = np.nonzero(done)
            empty = np.zeros((0, store.embed_dim), np.float32)
            return cls.from_arrays(empty, rows, cols, tuple(store.grid.shape))
        return cls(store.embeddings(), done)

    @property
    def size(self) -> int:
        """Number of computed tiles."""
        return len(self.flat_index)

    @property
    def dim(self) -> int:
        """Embedding size."""
        return self.vectors.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """bool ``[rows, cols]``: tiles with an embedding."""
        mask = np.zeros(self.shape[0] * self.shape[1], dtype=bool)
        mask[self.flat_index] = True
        return mask.reshape(self.shape)

    def cosine(self, queries: np.ndarray) -> np.ndarray:
        """Cosine of every computed tile with unit-norm ``queries [K, D]``: ``[K, N]``."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InputError(f"queries must be [K, {self.dim}], got shape {queries.shape}")
        if len(queries) == 1:
            return (self.vectors @ queries[0])[None]
        return np.ascontiguousarray((self.vectors @ queries.T).T)

    def to_map(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Scatter ``[K, N]`` per-tile values into ``[K, rows, cols]`` maps (``fill`` elsewhere)."""
        values = np.asarray(values)
        out = np.full((len(values), self.shape[0] * self.shape[1]), fill, dtype=values.dtype)
        out[:, self.flat_index] = values
        return out.reshape(len(values), *self.shape)

    def cosine_maps(self, queries: np.ndarray) -> np.ndarray:
        """float32 ``[K, rows, cols]`` cosine maps of unit-norm ``queries``; NaN if not computed."""
        return self.to_map(self.cosine(queries))

    def position(self, row: int, col: int) -> int:
        """Row of :attr:`vectors` holding tile ``(row, col)``; InputError when not computed."""
        rows, cols = self.shape
        if not (0 <= row < rows and 0 <= col < cols):
            raise InputError(f"tile ({row}, {col}) is outside the {rows} x {cols} grid")
        if self._lookup is None:
            self._lookup = {int(f): i for i, f in enumerate(self.flat_index)}
        found = self._lookup.get(int(row) * cols + int(col))
        if found is None:
            raise InputError(f"tile ({row}, {col}) has no embedding (not computed)")
        return found


def example_query(index: QueryIndex, tiles: Sequence[tuple[int, int]]) -> np.ndarray:
    """Query by example: the normalised mean of some tiles' embeddings, float32 ``[D]``.

    Raises
    ------
    InputError
        When ``tiles`` is empty or names a tile outside the grid or not computed.
    """
    tiles = list(tiles)
    if not tiles:
        raise InputError("query by example needs at least one tile")
    rows = [index.position(int(r), int(c)) for r, c in tiles]
    return _unit_rows(index.vectors[rows].mean(axis=0, keepdims=True))[0]


def similarity_map(index: QueryIndex, query: np.ndarray) -> np.ndarray:
    """float32 ``[rows, cols]`` cosine similarity with one unit-norm query ``[D]``."""
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    return index.cosine_maps(query)[0]


def softmax_probs(cosines: np.ndarray, logit_scale: float) -> np.ndarray:
    """``softmax(logit_scale * cosine)`` over the first axis (classes).

    Parameters
    ----------
    cosines
        ``[K, ...]`` cosine similarities; NaN where not computed.
    logit_scale
        The model's temperature, already exponentiated as
        :attr:`~napari_conch.model.loaded.LoadedModel.logit_scale` gives it (``exp`` of the
        checkpoint's ``logit_scale`` parameter; about 100 for CONCH).
    """
    if not np.isfinite(logit_scale) or logit_scale <= 0:
        raise InputError(f"logit scale {logit_scale} must be a positive number")
    logits = np.float32(logit_scale) * np.asarray(cosines, dtype=np.float32)
    logits -= np.max(logits, axis=0, keepdims=True)  # the largest becomes exp(0) = 1: no overflow
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def labels_from_probs(
    probs: np.ndarray, threshold: float | None = None, background: int | None = None
) -> np.ndarray:
    """Labels ``argmax + 1`` over the classes, numbering the non-background classes 1, 2, ...

    Label 0 where the probabilities are NaN (not computed), where the highest probability is
    below ``threshold``, or where class ``background`` (an index into the first axis) wins.
    """
    probs = np.asarray(probs)
    n = probs.shape[0]
    if background is not None and not 0 <= background < n:
        raise InputError(f"background class {background} is not one of the {n} classes")
    valid = np.all(np.isfinite(probs), axis=0)
    filled = np.where(valid, probs, -np.inf)
    winner = np.argmax(filled, axis=0)
    numbers = np.arange(1, n + 1)
    if background is not None:
        numbers[background] = 0
        numbers[background + 1 :] -= 1
    labels = numbers[winner]
    labels[~valid] = 0
    if threshold is not None:
        labels[np.max(filled, axis=0) < threshold] = 0
    return labels.astype(np.uint16 if n > 255 else np.uint8)


def classify(
    cosines: np.ndarray,
    logit_scale: float,
    *,
    threshold: float | None = None,
    background: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``[K, ...]`` and labels ``[...]`` from cosine maps (see :func:`softmax_probs`
    and :func:`labels_from_probs`)."""
    if np.asarray(cosines).shape[0] < 2:
        raise InputError("classification needs two or more classes")
    probs = softmax_probs(cosines, logit_scale)
    return probs, labels_from_probs(probs, threshold, background)


@dataclass
class QueryResult:
    """Everything one query gives: per-tile maps and their stride-resolution cell maps.

    ``cosine``, ``probs`` and ``labels`` are per tile (``[K, rows, cols]`` / ``[rows, cols]``);
    the ``cell_`` arrays are the overlap-averaged maps placed by ``geometry`` (equal to the tile
    maps when stride = tile). ``probs`` is None for a single class; ``labels`` is None for a single
    class without threshold. ``label_names[i]`` names label ``i + 1``.
    """

    names: list[str]
    background: str | None
    threshold: float | None
    cosine: np.ndarray
    probs: np.ndarray | None
    labels: np.ndarray | None
    cell_cosine: np.ndarray
    cell_probs: np.ndarray | None
    cell_labels: np.ndarray | None
    geometry: MapGeometry
    valid: np.ndarray

    @property
    def label_names(self) -> list[str]:
        """Names of labels 1, 2, ... (the classes but the background)."""
        return [n for n in self.names if n != self.background]

    def cell_map(self) -> tuple[np.ndarray, list[str]]:
        """The map to save as an image, float32, and its channel names.

        One class: its cosine ``[H, W]``. Several: ``[K + 1, H, W]``, the probability of each
        class then the label (as float).
        """
        if self.cell_probs is None:
            return self.cell_cosine[0], [self.names[0]]
        channels = [*self.cell_probs, self.cell_labels.astype(np.float32)]
        return np.stack(channels).astype(np.float32), [
            *(f"prob_{n}" for n in self.names),
            "label",
        ]


def run_query(
    index: QueryIndex,
    names: Sequence[str],
    queries: np.ndarray,
    grid: Any,
    *,
    logit_scale: float | None = None,
    background: str | None = None,
    threshold: float | None = None,
) -> QueryResult:
    """Maps of one or more queries over a grid.

    Parameters
    ----------
    index
        The computed tiles.
    names, queries
        Class names and their unit-norm embeddings ``[K, D]``.
    grid
        The tile grid (its ``tile_size``, ``stride``, ``cell_size_level0``, ``origin_level0``).
    logit_scale
        The model's logit scale; needed with two or more classes.
    background
        Name of the class whose wins become label 0.
    threshold
        Several classes: minimum winning probability. One class: minimum cosine for label 1.
    """
    names = list(names)
    queries = np.asarray(queries, dtype=np.float32)
    if len(names) != len(queries):
        raise InputError(f"{len(names)} class names for {len(queries)} query vectors")
    if background is not None and background not in names:
        raise InputError(f"background class {background!r} is not one of the prompts")
    check_grid(index, grid)
    return result_from_scores(
        index,
        names,
        index.cosine_maps(queries),
        grid,
        logit_scale=logit_scale,
        background=background,
        threshold=threshold,
    )


def check_grid(index: QueryIndex, grid: Any) -> None:
    """InputError when ``grid``'s shape is not the index's."""
    if tuple(grid.shape) != index.shape:
        raise InputError(f"grid {tuple(grid.shape)} does not fit the index {index.shape}")


def result_from_scores(
    index: QueryIndex,
    names: list[str],
    cosine: np.ndarray,
    grid: Any,
    *,
    logit_scale: float | None = None,
    background: str | None = None,
    threshold: float | None = None,
) -> QueryResult:
    """A query's result from its per-tile score maps ``cosine [K, rows, cols]`` (NaN where not
    computed): the probabilities and labels, and the overlap-averaged cell maps.

    The arguments are :func:`run_query`'s, already checked (:func:`check_grid` included).
    """
    k = overlap_factor(grid.tile_size, grid.stride)
    cell_cosine = overlap_average(cosine, k)
    probs = labels = cell_probs = cell_labels = None
    if len(names) >= 2:
        if logit_scale is None:
            raise InputError("several prompts need the model's logit scale")
        bg = names.index(background) if background is not None else None
        probs, labels = classify(cosine, logit_scale, threshold=threshold, background=bg)
        cell_probs = overlap_average(probs, k)
        cell_labels = labels_from_probs(cell_probs, threshold, bg)
    elif threshold is not None:
        labels = (np.nan_to_num(cosine[0], nan=-np.inf) >= threshold).astype(np.uint8)
        cell_labels = (np.nan_to_num(cell_cosine[0], nan=-np.inf) >= threshold).astype(np.uint8)
    return QueryResult(
        names=names,
        background=background,
        threshold=threshold,
        cosine=cosine,
        probs=probs,
        labels=labels,
        cell_cosine=cell_cosine,
        cell_probs=cell_probs,
        cell_labels=cell_labels,
        geometry=cell_geometry(grid),
        valid=index.valid,
    )
