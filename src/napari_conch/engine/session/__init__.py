"""The session: the evented, Qt-free state a viewer or a script works on.

- :mod:`.session`: :class:`~.session.Session` (model, slide, options, grid, runs).
- :mod:`.maps`: its prompts, text embeddings, maps, query by example and export.
- :mod:`.events`: its psygnal signals.
- :mod:`.open_store`: the store it has open and its live index.
- :mod:`.live_index`: a query index that grows batch by batch during a run.
- :mod:`.prompt_request`: what a prompt box asks for.
"""
