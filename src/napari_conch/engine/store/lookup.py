"""Finding the embedding store of a slide and a model, whatever grid it was made with.

A store's folder name holds a hash of its signature (slide, model, grid, preprocessing), so a
store can only be found by name when the grid is known. :func:`matching_stores` opens the stores
under a folder and keeps those whose signature is exactly what
:func:`~napari_conch.engine.store.embedding_store.make_signature` gives for this slide and model on
the store's own grid; :func:`find_store` picks the one with the most embedded tiles.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_conch.engine.store.embedding_store import (
    EmbeddingStore,
    TileStatus,
    default_cache_root,
    make_signature,
    signature_matches,
)
from napari_conch.errors import StoreError


def store_folder(root: str | os.PathLike | None = None) -> Path:
    """The folder of the stores: ``root``, else the user cache folder."""
    return Path(root).expanduser() if root is not None else default_cache_root()


def matching_stores(
    slide: Any, model: Any, root: str | os.PathLike | None = None
) -> list[EmbeddingStore]:
    """The stores under ``root`` (default: the cache folder) made from ``slide`` and ``model``."""
    base = store_folder(root)
    if not base.is_dir():
        return []
    found = []
    for path in sorted(base.glob("*.zarr")):
        try:
            store = EmbeddingStore.open(path)
            wanted = make_signature(slide, model, store.grid)
            if signature_matches(store.signature, wanted, writing=False):
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


def model_for_store(
    store: EmbeddingStore,
    *,
    source: Any = None,
    config: Any = None,
    tokenizer: Any = None,
    device: str | None = None,
    precision: str | None = None,
) -> Any:
    """The model that made ``store``, loaded and checked against the store's fingerprint.

    The model, config and tokenizer are the ones the store records, unless given (``source``,
    ``config``, ``tokenizer``: e.g. a CONCH checkpoint now found elsewhere).

    Raises
    ------
    StoreError
        When the store does not record its model and none is given, or the model found is
        another one (its fingerprint differs from the store's).
    """
    from napari_conch.model import load_model

    attrs = store.attrs
    source = source or attrs.get("model_source")
    if not source:
        raise StoreError(f"{store.path}: the store does not record its model; give the model")
    model = load_model(
        source,
        config=config or attrs.get("model_config"),
        tokenizer=tokenizer or attrs.get("model_tokenizer"),
        device=device,
        precision=precision,
    )
    wanted = store.signature.get("model_fingerprint")
    if wanted and model.fingerprint != wanted:
        raise StoreError(
            f"{store.path}: made by another model than {source} (fingerprint differs); "
            "give the model (and config) used to embed"
        )
    return model
