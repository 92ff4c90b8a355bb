"""The teaching-by-example part of a :class:`~napari_conch.engine.session.session.Session`.

:class:`SessionExamples` holds the classes and example tiles the user teaches the map with:

- the classes: the prompts on show (they are the prior), then the classes with a prompt from a
  loaded project, then the classes named by the user, imported or loaded (learned from examples
  alone); each keeps its colour when others come and go;
- the examples: tiles of the open store's grid with a class name
  (:class:`~napari_conch.engine.learn.annotations.Examples`), forgotten when another store is
  opened (they belong to its grid);
- the project saved in the store (``<store>/annotations/project.json``,
  :mod:`napari_conch.engine.learn.project`), saved and taken up from here.

The text encodings of the prompted classes are the session's (cached per model and sentences,
:class:`~napari_conch.engine.session.maps.SessionMaps`); :meth:`SessionExamples.learner` gives
the :class:`~napari_conch.engine.learn.learner.Learner` of this state, whose retraining may run
in a worker. Changes are announced by ``classes_changed`` and ``examples_changed``; a napari
layer only shows the examples, and the user's painting comes back as :meth:`label_tiles`.

It is a base class of ``Session`` and is not used alone (it reads the session's ``request``,
``store``, ``model``, ``events``, ``live_embeddings`` and text caches).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_conch.engine.learn.annotations import Color, Examples, class_colors
from napari_conch.engine.session.prompt_request import PromptRequest
from napari_conch.errors import InputError

#: What the session says when there is no store to teach on.
NO_EMBEDDINGS = "embed the slide first (Prompt highlighter): no tile embeddings"


class SessionExamples:
    """Classes, colours and example tiles on the open store's grid; its saved project.

    Attributes
    ----------
    examples : Examples
        The example tiles.
    extra_classes : list of str
        Classes without a prompt (named by the user, imported, loaded or left by a prompt that
        went while it had examples), in the order they came.
    prompted_classes : list of str
        Classes with a prompt from a loaded project that the prompts on show do not name.
    given_colors : dict
        Class name -> RGB, fixed once a class is known (or given by an import or a project).
    """

    # what the Session provides (with ``live_embeddings``, ``require_model``,
    # ``missing_texts`` and ``text_vectors``)
    events: Any
    request: Any
    store: Any
    model: Any
    live_embeddings: Any
    require_model: Any
    missing_texts: Any
    text_vectors: Any

    def __init__(self) -> None:
        self.examples = Examples()
        self.extra_classes: list[str] = []
        self.prompted_classes: list[str] = []
        self.given_colors: dict[str, Color] = {}
        self._announced: list[str] = []

    def _follow_prompts_and_store(self) -> None:
        """Connect the session's own signals (called once its events exist)."""
        self.events.prompts_changed.connect(self._classes_follow)
        self.events.store_changed.connect(self._examples_follow_store)

    # ------------------------------------------------------------------ classes
    @property
    def learning_prompts(self) -> tuple[list[str], str]:
        """Classes with a prompt (the session's, then a loaded project's), and the templates."""
        request = self.request
        names = list(request.classes) if request is not None else []
        names += [n for n in self.prompted_classes if n not in names]
        return names, request.templates if request is not None else "conch"

    @property
    def classes(self) -> list[str]:
        """Prompted classes, then the classes added, imported or loaded."""
        names = self.learning_prompts[0]
        return names + [n for n in self.extra_classes if n not in names]

    @property
    def class_colors(self) -> dict[str, Color]:
        """The colour of every class (given ones, else the map colour of its position)."""
        return class_colors(self.classes, self.given_colors)

    def canonical(self, name: str) -> str:
        """The known class that ``name`` names, ignoring case ("Tumor" is "tumor"), else it."""
        known = {n.casefold(): n for n in reversed(self.classes)}
        name = str(name).strip()
        return known.get(name.casefold(), name)

    def add_class(self, name: str, color: Color | None = None) -> str:
        """Add a class learned from examples alone; returns its name as known."""
        name = self.canonical(name)
        if not name:
            raise InputError("type a class name first")
        if name not in self.classes:
            self.extra_classes.append(name)
        if color is not None:
            self.given_colors[name] = tuple(int(v) for v in color)
        self._classes_follow()
        return name

    def _classes_follow(self, *_: Any) -> None:
        """A class that has examples stays (learned from them); every class keeps its colour;
        ``classes_changed`` when the list changed."""
        self.extra_classes.extend(n for n in self.examples.classes if n not in self.classes)
        for name, color in self.class_colors.items():
            self.given_colors.setdefault(name, color)
        classes = self.classes
        if classes != self._announced:
            self._announced = classes
            self.events.classes_changed.emit(classes)

    # ------------------------------------------------------------------ examples
    def learning_grid(self) -> Any:
        """The open store's grid (its embeddings are what is learned from)."""
        live = self.live_embeddings()
        if live is None:
            raise InputError(NO_EMBEDDINGS)
        return live[1]

    def set_examples(self, examples: Examples) -> None:
        """Replace the examples (their new classes added); ``examples_changed``.

        Raises
        ------
        InputError
            Without embeddings, or for a tile outside the store's grid.
        """
        rows, cols = self.learning_grid().shape
        outside = (examples.rows < 0) | (examples.rows >= rows)
        outside |= (examples.cols < 0) | (examples.cols >= cols)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"tile ({examples.rows[i]}, {examples.cols[i]}) is outside the {rows} x {cols} grid"
            )
        names = [self.canonical(n) for n in examples.names]
        self.examples = Examples(examples.rows, examples.cols, names)
        self._classes_follow()
        self.events.examples_changed.emit(self.examples)

    def label_tiles(self, tiles: Iterable[tuple[int, int]], name: str | None) -> None:
        """Make ``tiles`` examples of ``name`` (None: not examples any more)."""
        name = None if name is None else self.canonical(name)
        self.set_examples(self.examples.with_tiles(list(tiles), name))

    def add_examples(self, examples: Examples) -> None:
        """Add ``examples`` to those there are (a tile given again takes its new class)."""
        merged = self.examples.as_dict()
        merged.update({k: self.canonical(v) for k, v in examples.as_dict().items()})
        self.set_examples(Examples.from_dict(merged))

    def import_geojson(self, path: str | os.PathLike) -> Examples:
        """Add the tiles of a QuPath GeoJSON file's shapes as examples (their colours too);
        returns the examples found."""
        from napari_conch.engine.learn.annotations import examples_from_shapes, read_geojson

        shapes = read_geojson(path)
        grid = self.learning_grid()
        for name, color in shapes.colors().items():
            self.given_colors[self.canonical(name)] = color
        found = examples_from_shapes(grid, shapes)
        self.add_examples(found)
        return found

    def _examples_follow_store(self, _store: Any) -> None:
        """Another store (or none): the examples of the old grid go."""
        if len(self.examples):
            self.examples = Examples()
            self.events.examples_changed.emit(self.examples)

    # ------------------------------------------------------------------ learning
    def learning_request(self) -> PromptRequest:
        """The prompted classes as a request (a prompt file's synonyms and templates kept)."""
        names, templates = self.learning_prompts
        shown = self.request
        return PromptRequest(
            tuple(names), templates, prompt_set=shown.prompt_set if shown is not None else None
        )

    def learner(self) -> Any:
        """A :class:`~napari_conch.engine.learn.learner.Learner` of the classes and examples
        over the store's embeddings, or None while a prompted class is not encoded yet (encode
        ``missing_texts(learning_request())`` first)."""
        from napari_conch.engine.learn.learner import Learner

        live = self.live_embeddings()
        if live is None:
            raise InputError(NO_EMBEDDINGS)
        index, grid, _ = live
        model = self.require_model()
        request = self.learning_request()
        if self.missing_texts(request):
            return None
        text = self.text_vectors(request)
        learner = Learner(index, grid, float(model.logit_scale), text, colors=self.given_colors)
        for name in self.extra_classes:
            learner.add_class(name)
        learner.set_examples(self.examples)
        return learner

    # ------------------------------------------------------------------ project
    def save_project(self, classifier: Any = None) -> Path:
        """Save classes, colours, examples (and ``classifier``) in the store; returns the file."""
        from napari_conch.engine.learn.project import AnnotationProject, save_project

        self.learning_grid()
        prompted, templates = self.learning_prompts
        project = AnnotationProject(
            classes={n: ([n] if n in prompted else []) for n in self.classes},
            colors=self.class_colors,
            templates=templates,
            examples=self.examples,
            classifier=classifier,
        )
        return save_project(self.store, project)

    def load_project(self) -> Any:
        """Take up the project saved in the store: classes, colours, examples; returns it.

        Raises
        ------
        InputError
            Without embeddings, when the store holds no project, or for a damaged one.
        StoreError
            For a project saved for another store.
        """
        from napari_conch.engine.learn.project import load_project

        self.learning_grid()
        project = load_project(self.store)
        if project is None:
            raise InputError(f"{self.store.path} holds no saved annotation project")
        current = self.learning_prompts[0]
        for name, synonyms in project.classes.items():
            if synonyms and name not in current and name not in self.prompted_classes:
                self.prompted_classes.append(name)
            elif not synonyms and name not in self.extra_classes:
                self.extra_classes.append(name)
        self.given_colors.update(project.colors)
        self.set_examples(project.examples)
        return project

    def has_project(self) -> bool:
        """Whether the open store holds a saved annotation project."""
        from napari_conch.engine.learn.project import project_path

        return self.store is not None and project_path(self.store.path).is_file()
