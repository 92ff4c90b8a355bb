"""Text -> image retrieval: the tiles of a slide that best match a prompt."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.prompts import text_queries
from napari_conch.engine.query import QueryIndex
from napari_conch.errors import InputError, NapariConchError
from napari_conch.slide import TileGrid


@dataclass(frozen=True)
class TileHit:
    """One retrieved tile: its grid cell, level-0 box ``(x0, y0, x1, y1)`` and cosine."""

    rank: int
    row: int
    col: int
    box: tuple[float, float, float, float]
    score: float


def top_tiles(index: QueryIndex, grid: TileGrid, query: np.ndarray, k: int = 10) -> list[TileHit]:
    """The ``k`` computed tiles most similar to ``query`` (a unit vector ``[D]``), best first."""
    if k < 1:
        raise NapariConchError(f"k must be at least 1, not {k}")
    if index.size == 0:
        raise NapariConchError("the store has no embedded tiles yet: run 'napari-conch embed'")
    scores = index.cosine(np.asarray(query, dtype=np.float32)[None])[0]
    k = min(k, scores.size)
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    boxes = grid.boxes()
    hits = []
    for rank, i in enumerate(best, start=1):
        row, col = divmod(int(index.flat_index[i]), grid.cols)
        box = tuple(float(v) for v in boxes[row, col])
        hits.append(TileHit(rank, row, col, box, float(scores[i])))
    return hits


def top_tiles_for_prompt(
    index: QueryIndex,
    grid: TileGrid,
    model,
    prompt: str | Sequence[str],
    k: int = 10,
    templates: str = "conch",
) -> list[TileHit]:
    """Top tiles for a text prompt (CONCH templates ensembled by default)."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if len(prompts) != 1:
        raise NapariConchError("top tiles take exactly one prompt")
    _, embeddings = text_queries(model, prompts, templates)
    return top_tiles(index, grid, embeddings[0], k)


@dataclass(frozen=True)
class TopTiles:
    """The best tiles for a prompt, their grid and the store their embeddings came from."""

    hits: list[TileHit]
    grid: Any
    store_path: Path


def top_tiles_job(
    slide: Any,
    model: Any,
    root: str | os.PathLike | None,
    live: tuple | None,
    prompt: str,
    k: int,
    templates: str,
) -> TopTiles:
    """Top tiles for a prompt from ``live`` ``(index, grid, path)``, else the store under ``root``.

    Raises
    ------
    InputError
        When neither is there: the slide was not embedded with this model.
    """
    from napari_conch.engine.store.lookup import find_store, store_folder

    if live is None:
        store = find_store(slide, model, root)
        if store is None:
            raise InputError(
                f"embed the slide first: no embeddings of {slide.name} with this model in "
                f"{store_folder(root)}"
            )
        live = (QueryIndex.from_store(store), store.grid, store.path)
    index, grid, path = live
    hits = top_tiles_for_prompt(index, grid, model, prompt, k, templates)
    return TopTiles(hits, grid, Path(path))
