"""The napari side of napari-conch: reader, sample data, the prompt highlighter dock widget.

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
- :mod:`.interpreter`: interpreter settings that keep napari's event loop running beside our
  background threads.
- :mod:`.shader_parsing`: vispy's shader variable parsing in linear time.

napari imports this package the first time it uses napari-conch (reader, sample or dock): the
viewer's objects, made by then, are frozen out of full garbage collections and the interpreter
lock is passed between threads more often (:func:`.interpreter.keep_event_loop_running`), and
vispy parses its shaders in linear time (:func:`.shader_parsing.speed_up_shader_parsing`).
"""

from napari_conch._napari.interpreter import keep_event_loop_running
from napari_conch._napari.shader_parsing import speed_up_shader_parsing

keep_event_loop_running()
speed_up_shader_parsing()
