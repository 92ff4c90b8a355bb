"""The napari side of napari-conch: reader, sample data and the dock widgets.

This subpackage is the only part of napari-conch that imports Qt or napari. Its modules are
named in ``napari.yaml`` and imported by napari on use:

- :mod:`.reader`: whole-slide files as multiscale RGB image layers.
- :mod:`.sample_data`: a lazily generated synthetic slide and the real CC0 slide.
- :mod:`.dock_base`: the base of every dock (session, notices, slide layer, clicks, workers).
- :mod:`.layout`: compact docks (a scroll area napari docks, foldable sections, tabs).
- :mod:`.warmup`: what the first model and maps import, imported in a background thread.
- :mod:`.session_registry`: one :class:`~napari_conch.engine.session.Session` per viewer.
- :mod:`.widget`: the prompt highlighter (model, slide, embedding, prompts, export).
- :mod:`.caption_widget`: caption and retrieval (region captions, ranked texts, top tiles).
- :mod:`.layer_steps`: new map layers shown in steps, one per event-loop turn.
- :mod:`.gl_context`: layers removed with the canvas's OpenGL context current.
- :mod:`.fastpaths`: every use of napari's, vispy's and Qt's private names, each with a plain
  fallback, all off with ``NAPARI_CONCH_FAST_PATHS=0``.

Importing any of these changes nothing outside napari-conch: no garbage-collector, interpreter,
thread or vispy setting. ``napari-conch view``, a process of our own, makes such settings
(:func:`.fastpaths.process.tune_process`).
"""
