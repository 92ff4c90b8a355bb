"""How result CSVs name stores: from the CSV's own folder, so they open from any working folder.

``classify-slides`` (``slides.csv``) and ``search`` (hits CSV) write one store path per row; the
Cohort dock opens those stores later, from a napari that may have been started anywhere. A path
relative to the working folder of the command that wrote it breaks then, so the writers name
stores with :func:`store_reference` and the readers resolve them with
:func:`resolve_store_reference`.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_conch.engine.store.embedding_store import default_cache_root


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def store_reference(store: str | os.PathLike, folder: str | os.PathLike) -> str:
    """How a CSV in ``folder`` names ``store``.

    Relative to ``folder`` (a project moved or copied with its CSV and its stores still opens),
    except a store in the napari-conch cache folder (:func:`default_cache_root`), which does not
    move with a project, or one on another drive: those are written absolute.
    """
    store = Path(store).expanduser().resolve()
    folder = Path(folder).expanduser().resolve()
    if _inside(store, default_cache_root().expanduser().resolve()):
        return str(store)
    try:
        return os.path.relpath(store, folder)
    except ValueError:  # Windows: another drive
        return str(store)


def resolve_store_reference(reference: str, folder: str | os.PathLike) -> Path:
    """The store a CSV in ``folder`` names: a relative name from the CSV's folder (not the working
    folder), an absolute one as it is (:func:`store_reference` inverted)."""
    path = Path(reference).expanduser()
    return path if path.is_absolute() else (Path(folder).expanduser() / path).resolve()
