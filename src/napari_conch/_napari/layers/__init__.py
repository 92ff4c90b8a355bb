"""Engine results as napari layers, and the screen that follows them.

- :mod:`.map_layers`: maps placed exactly on the slide layer.
- :mod:`.examples`: the Annotate dock's painted examples and learned maps.
- :mod:`.regions`: boxes of a slide as shapes, and back.
- :mod:`.slide_source`: from an image layer to the engine's slide.
- :mod:`.slide_view`: the view fitted to a slide; the scale bar.
- :mod:`.on_show`: the legend, caption and key that follow the map on show.
- :mod:`.steps`: new layers shown in steps, one per event-loop turn.
- :mod:`.gl_context`: layers removed with the canvas's OpenGL context current.
"""
