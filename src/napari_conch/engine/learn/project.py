"""An annotation project saved inside its embedding store, and found again with it.

The project lives at ``<store>/annotations/project.json`` (the store's verify and repair leave
the ``annotations`` folder alone). The folder also holds an empty zarr group's ``zarr.json``, so
that zarr, listing the store's members, sees a group rather than warning about a foreign folder.

It holds the classes (name, colour, the prompt's synonyms or none for classes learned from
examples alone), the templates, the examples as
``[row, col, class]`` on the store's grid, the prior strength, and the last trained classifier's
parameters. It records the store's signature hash, so a project is never applied to another
grid. Saving writes a temporary file and renames it into place.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_conch.engine.export.writers import atomic_path
from napari_conch.engine.learn.annotations import Color, Examples
from napari_conch.engine.learn.classifier import DEFAULT_STRENGTH, LinearClassifier
from napari_conch.errors import InputError, StoreError
from napari_conch.json_input import read_json

#: Folder inside the store that holds annotation projects.
ANNOTATIONS_FOLDER = "annotations"
#: The project file's name inside that folder.
PROJECT_FILE = "project.json"
#: The ``zarr.json`` of an empty zarr 3 group.
EMPTY_GROUP = {"zarr_format": 3, "node_type": "group", "attributes": {}}
#: Version of the JSON layout.
PROJECT_FORMAT = 1


def project_path(store_path: str | os.PathLike) -> Path:
    """``<store>/annotations/project.json``."""
    return Path(store_path) / ANNOTATIONS_FOLDER / PROJECT_FILE


@dataclass
class AnnotationProject:
    """Everything needed to take up annotating a store again.

    Attributes
    ----------
    classes
        Class name -> prompt synonyms (empty for a class learned from examples alone), in order.
    colors
        Class name -> RGB.
    templates
        ``"conch"``, ``"none"`` or a list of templates for the prompts.
    examples
        The example tiles.
    strength
        The prior strength used for training.
    classifier
        The last trained classifier, when there is one.
    store_signature
        :func:`~napari_conch.engine.store.embedding_store.signature_hash` of the store it belongs
        to.
    """

    classes: dict[str, list[str]] = field(default_factory=dict)
    colors: dict[str, Color] = field(default_factory=dict)
    templates: str | list[str] = "conch"
    examples: Examples = field(default_factory=Examples)
    strength: float = DEFAULT_STRENGTH
    classifier: LinearClassifier | None = None
    store_signature: str | None = None

    @property
    def prompts(self) -> dict[str, list[str]]:
        """The classes that have a prompt, with their synonyms."""
        return {n: s for n, s in self.classes.items() if s}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able project."""
        return {
            "format": PROJECT_FORMAT,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "store_signature": self.store_signature,
            "classes": [
                {"name": n, "prompt": list(s), "color": list(self.colors.get(n, ()) or []) or None}
                for n, s in self.classes.items()
            ],
            "templates": self.templates,
            "strength": self.strength,
            "examples": self.examples.to_json(),
            "classifier": None if self.classifier is None else self.classifier.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "project") -> AnnotationProject:
        """Rebuild a project from :meth:`to_dict`'s output."""
        if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
            raise InputError(f"{source}: not an annotation project of format {PROJECT_FORMAT}")
        try:
            classes = {
                str(c["name"]): [str(s) for s in c.get("prompt") or []] for c in data["classes"]
            }
            colors = {
                str(c["name"]): tuple(int(v) for v in c["color"])
                for c in data["classes"]
                if c.get("color")
            }
            classifier = data.get("classifier")
            return cls(
                classes=classes,
                colors=colors,
                templates=data.get("templates", "conch"),
                examples=Examples.from_json(data.get("examples", [])),
                strength=float(data.get("strength", DEFAULT_STRENGTH)),
                classifier=None if classifier is None else LinearClassifier.from_dict(classifier),
                store_signature=data.get("store_signature"),
            )
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise InputError(f"{source}: malformed annotation project ({exc})") from None


def save_project(store: Any, project: AnnotationProject) -> Path:
    """Write ``project`` into ``store``'s ``annotations`` folder atomically; return its path.

    ``store`` is an :class:`~napari_conch.engine.store.embedding_store.EmbeddingStore`; the project
    records its signature hash.
    """
    from napari_conch.engine.store.embedding_store import signature_hash

    project.store_signature = signature_hash(store.signature)
    path = project_path(store.path)
    marker = path.parent / "zarr.json"
    try:
        path.parent.mkdir(exist_ok=True)
        if not marker.is_file():
            with atomic_path(marker) as tmp:
                tmp.write_text(json.dumps(EMPTY_GROUP), encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"{path.parent}: cannot create the annotations folder ({exc})") from None
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(project.to_dict(), indent=1), encoding="utf-8")
    return path


def load_project(store: Any) -> AnnotationProject | None:
    """The project saved in ``store``, or None when it has none.

    Raises
    ------
    InputError
        When the file is damaged.
    StoreError
        When it was saved for a store of another signature.
    """
    from napari_conch.engine.store.embedding_store import signature_hash

    path = project_path(store.path)
    if not path.is_file():
        return None
    data = read_json(path, "annotation project")
    project = AnnotationProject.from_dict(data, str(path))
    wanted = signature_hash(store.signature)
    if project.store_signature not in (None, wanted):
        raise StoreError(f"{path}: the project was saved for another store (signature differs)")
    return project
