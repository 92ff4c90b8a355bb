"""Text -> image retrieval: the tiles of a slide that best match a prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_conch.engine.prompts import text_queries
from napari_conch.engine.query import QueryIndex
from napari_conch.errors import NapariConchError
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
