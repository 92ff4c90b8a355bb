"""The napari side of napari-conch: reader, sample data and the dock widgets.

This subpackage is the only part of napari-conch that imports Qt or napari. Its modules are
named in ``napari.yaml`` and imported by napari on use:

- :mod:`.reader`: whole-slide files as multiscale RGB image layers.
- :mod:`.sample_data`, :mod:`.synthetic`: the sample slides (a lazily generated synthetic slide,
  the real CC0 slide, the demo model's held-out images).
- :mod:`.docks`: the four docks (prompts, caption, annotate, cohort), their panels and plumbing.
- :mod:`.layers`: engine results as napari layers, and the legend, colour bar and view that
  follow them.
- :mod:`.session_registry`: one :class:`~napari_conch.engine.session.session.Session` per viewer.
- :mod:`.demo`, :mod:`.warmup`: the demo start of ``napari-conch view``; imports warmed off the
  GUI thread.
- :mod:`.fastpaths`: every use of napari's, vispy's and Qt's private names, each with a plain
  fallback, all off with ``NAPARI_CONCH_FAST_PATHS=0``.

Importing any of these changes nothing outside napari-conch: no garbage-collector, interpreter,
thread or vispy setting. ``napari-conch view``, a process of our own, makes such settings
(:func:`.fastpaths.process.tune_process`).
"""
