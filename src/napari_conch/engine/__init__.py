"""The headless core: slides + model -> embedding stores -> prompt maps. No Qt, no napari.

Modules
-------
store
    :class:`~napari_conch.engine.store.embedding_store.EmbeddingStore`, the zarr store of tile
    embeddings.
embed
    :func:`~napari_conch.engine.embed.embed_slide_iter` (progress events),
    :func:`~napari_conch.engine.embed.embed_slide` (blocking) and
    :func:`~napari_conch.engine.embed.embed` (from paths).
distributed
    The same on a ``dask.distributed`` cluster.
prompts, query, export
    Prompts to maps (CONCH templates, ensembles, overlap averaging), and maps to files.
region, retrieval
    Image to text for a region (captions, ranked texts), and text to the best tiles.
options, session
    :class:`~napari_conch.engine.options.RunOptions` (one set of defaults) and the evented
    :class:`~napari_conch.engine.session.session.Session` that docks, CLI and scripts share (its
    store, maps and signals in ``session_store``, ``session_maps`` and ``session_events``).

The names below are imported on first use, so ``import napari_conch.engine`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "EmbeddingStore": "napari_conch.engine.store.embedding_store",
    "TileStatus": "napari_conch.engine.store.embedding_store",
    "store_path_for": "napari_conch.engine.store.embedding_store",
    "EmbedProgress": "napari_conch.engine.progress",
    "EmbedSummary": "napari_conch.engine.progress",
    "embed": "napari_conch.engine.embed",
    "embed_slide": "napari_conch.engine.embed",
    "embed_slide_iter": "napari_conch.engine.embed",
    "QueryIndex": "napari_conch.engine.query",
    "run_query": "napari_conch.engine.query",
    "text_queries": "napari_conch.engine.prompts",
    "export_result": "napari_conch.engine.export.writers",
    "top_tiles_for_prompt": "napari_conch.engine.retrieval",
    "rank_texts": "napari_conch.engine.region",
    "caption_region": "napari_conch.engine.region",
    "RunOptions": "napari_conch.engine.options",
    "Session": "napari_conch.engine.session.session",
    "find_store": "napari_conch.engine.store.lookup",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
