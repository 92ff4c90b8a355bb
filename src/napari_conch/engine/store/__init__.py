"""Embedding stores: the zarr store of a slide's tile embeddings, its integrity checks, its
lock, and finding a slide's stores.

- :mod:`.embedding_store`: :class:`~.embedding_store.EmbeddingStore` (layout in ``docs/store.md``).
- :mod:`.integrity`: checksums bound to each tile's place; verify and repair.
- :mod:`.lock`: one writer per store, across processes and machines.
- :mod:`.lookup`: a slide's stores for a model, whatever their grid.
"""
