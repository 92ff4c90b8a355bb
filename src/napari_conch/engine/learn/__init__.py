"""Teaching the map by example.

- :mod:`.classifier`: the linear classifier whose prior is the prompts' zero-shot classifier.
- :mod:`.learner`: classes, example tiles and ``retrain()``, shared by CLI and Annotate dock.
- :mod:`.annotations`: QuPath GeoJSON shapes to example tiles and back.
- :mod:`.project`: the annotation project kept in the store.
- :mod:`.export`: the learned map's writers.
"""
