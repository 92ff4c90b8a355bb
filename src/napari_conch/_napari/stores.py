"""Finding the embedding store of a slide and a model, whatever grid it was made with.

A store's folder name holds a hash of its signature (slide, model, grid, preprocessing), so a
store can only be found by name when the grid is known. The caption widget does not ask for the
grid again: it opens the stores under a folder and keeps those whose signature is exactly what
:func:`~napari_conch.engine.store.make_signature` gives for this slide and model on the store's
own grid. Among several (several grids), the one with the most embedded tiles is used.

:func:`top_tiles_job` (what the widget runs in a worker) takes the embeddings from there, or from
a Prompt highlighter's live index when it works on the same slide and model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_conch.engine.store import (
    EmbeddingStore,
    TileStatus,
    default_cache_root,
    make_signature,
)
from napari_conch.errors import InputError, StoreError

if TYPE_CHECKING:
    from napari_conch.engine.retrieval import TileHit


def matching_stores(
    slide: Any, model: Any, root: str | os.PathLike | None = None
) -> list[EmbeddingStore]:
    """The stores under ``root`` (default: the cache folder) made from ``slide`` and ``model``."""
    base = Path(root).expanduser() if root is not None else default_cache_root()
    if not base.is_dir():
        return []
    found = []
    for path in sorted(base.glob("*.zarr")):
        try:
            store = EmbeddingStore.open(path)
            if store.signature == make_signature(slide, model, store.grid):
                found.append(store)
        except (StoreError, KeyError, TypeError, ValueError):
            continue  # not a store of ours, or damaged: it is not this slide's store
    return found


def find_store(
    slide: Any, model: Any, root: str | os.PathLike | None = None
) -> EmbeddingStore | None:
    """The store of ``slide`` and ``model`` with the most embedded tiles, or None."""
    stores = matching_stores(slide, model, root)
    if not stores:
        return None
    return max(stores, key=lambda s: int((s.status() == TileStatus.DONE).sum()))


@dataclass(frozen=True)
class TopTiles:
    """What the top-tiles worker returns: the hits, their grid and where the embeddings are."""

    hits: list[TileHit]
    grid: Any
    store_path: Path


def top_tiles_job(
    slide: Any,
    model: Any,
    root: str | None,
    live: tuple | None,
    prompt: str,
    k: int,
    templates: str,
) -> TopTiles:
    """Top tiles for a prompt from ``live`` (index, grid, path) or the store under ``root``."""
    from napari_conch.engine.query import QueryIndex
    from napari_conch.engine.retrieval import top_tiles_for_prompt

    if live is None:
        store = find_store(slide, model, root)
        if store is None:
            where = root or default_cache_root()
            raise InputError(
                f"embed the slide first: no embeddings of {slide.name} with this model in {where}"
            )
        live = (QueryIndex.from_store(store), store.grid, store.path)
    index, grid, path = live
    return TopTiles(top_tiles_for_prompt(index, grid, model, prompt, k, templates), grid, path)
