"""Many slides at once.

- :mod:`.classify`: slide-level zero-shot classification and its metrics.
- :mod:`.cluster`: embedding a cohort here or on a dask.distributed cluster.
- :mod:`.view`: what the napari Cohort dock shows, without Qt.
- :mod:`.search`: search across stores.
- :mod:`.csv_paths`: how result CSVs name stores (relative to the CSV's folder).
"""
