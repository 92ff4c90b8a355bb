"""Maps to files.

- :mod:`.writers`: CSV, TIFF, GeoJSON and NPY writers (temporary file + rename).
- :mod:`.polygons`: GeoJSON polygons traced from the label grid.
- :mod:`.map_tiff`: pyramidal OME-TIFF maps laid over the slide, and reading them back.
"""
