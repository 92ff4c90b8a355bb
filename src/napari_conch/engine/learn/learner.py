"""The state of teaching by example: classes, examples, and the classifier they train.

:class:`Learner` is what the CLI and the Annotate dock share: the computed tiles
(:class:`~napari_conch.engine.query.QueryIndex`) of a store's grid, the text embeddings of the
prompted classes, the user's examples, and :meth:`Learner.retrain`, which trains the classifier
(:mod:`napari_conch.engine.learn.classifier`) and returns its maps, cross-validation and the tiles
to check next. It is plain Python (no Qt), so the dock runs :meth:`~Learner.retrain` off the GUI
thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_conch.engine.learn import classifier as learn
from napari_conch.engine.learn.annotations import Color, Examples, class_colors
from napari_conch.engine.query import QueryIndex, QueryResult
from napari_conch.errors import InputError


@dataclass
class Outcome:
    """What one retraining gives.

    Attributes
    ----------
    classifier
        The trained classifier.
    result
        Its maps over the grid (:func:`~napari_conch.engine.learn.classifier.learned_result`).
    validation
        Cross-validated precision and recall on the examples (None when not asked).
    uncertain
        Tiles to check next, least sure first.
    used, unembedded
        Examples used for training, and examples on tiles without an embedding (not used).
    seconds
        Time of training + maps (without the cross-validation), and of the cross-validation.
    """

    classifier: learn.LinearClassifier
    result: QueryResult
    validation: learn.CrossValidation | None
    uncertain: list[learn.Uncertain]
    used: int
    unembedded: int
    seconds: dict[str, float] = field(default_factory=dict)


class Learner:
    """Classes (prompted or example-only), examples on a grid, and the classifier they train.

    Parameters
    ----------
    index
        The computed tiles of the store.
    grid
        The store's tile grid.
    logit_scale
        The model's temperature.
    text
        Class name -> unit-norm text embedding ``[D]`` for the prompted classes, in order.
    colors
        Colours of classes (others get the map colour of their position).
    strength
        Pull towards the prior (:data:`~napari_conch.engine.learn.classifier.DEFAULT_STRENGTH`).
    """

    def __init__(
        self,
        index: QueryIndex,
        grid: Any,
        logit_scale: float,
        text: dict[str, np.ndarray],
        *,
        colors: dict[str, Color] | None = None,
        strength: float = learn.DEFAULT_STRENGTH,
    ) -> None:
        if tuple(grid.shape) != index.shape:
            raise InputError(f"grid {tuple(grid.shape)} does not fit the index {index.shape}")
        self.index = index
        self.grid = grid
        self.logit_scale = float(logit_scale)
        self.text = {n: np.asarray(v, dtype=np.float32) for n, v in text.items()}
        self.extra: list[str] = []
        self.given_colors = dict(colors or {})
        self.strength = float(learn.STRENGTH_BOUNDS.check("strength", strength))
        self.examples = Examples()

    # ------------------------------------------------------------------ classes
    @property
    def classes(self) -> list[str]:
        """Prompted classes, then classes named by the user or the examples only."""
        names = list(self.text) + [n for n in self.extra if n not in self.text]
        return names + [n for n in self.examples.classes if n not in names]

    @property
    def colors(self) -> dict[str, Color]:
        """The colour of every class."""
        return class_colors(self.classes, self.given_colors)

    def canonical(self, name: str) -> str:
        """The known class that ``name`` names, ignoring case ("Tumor" is "tumor"), else it."""
        name = str(name).strip()
        known = {n.casefold(): n for n in reversed(self.classes)}
        return known.get(name.casefold(), name)

    def add_class(self, name: str, color: Color | None = None) -> str:
        """Add a class learned from examples alone (no prompt); return its name as known."""
        name = self.canonical(name)
        if not name:
            raise InputError("a class name cannot be empty")
        if name not in self.classes:
            self.extra.append(name)
        if color is not None:
            self.given_colors[name] = tuple(int(v) for v in color)
        return name

    # ------------------------------------------------------------------ examples
    def set_examples(self, examples: Examples) -> None:
        """Replace the examples (tiles outside the grid are refused).

        Class names that differ from a known class only in case are taken as that class.
        """
        rows, cols = self.index.shape
        bad = (examples.rows < 0) | (examples.rows >= rows)
        bad |= (examples.cols < 0) | (examples.cols >= cols)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"example tile ({examples.rows[i]}, {examples.cols[i]}) is outside the "
                f"{rows} x {cols} grid"
            )
        names = [self.canonical(n) for n in examples.names]
        self.examples = Examples(examples.rows, examples.cols, names)

    def label_tiles(self, tiles: Sequence[tuple[int, int]], name: str | None) -> None:
        """Make ``tiles`` examples of class ``name`` (None: remove them from the examples)."""
        if name is not None:
            name = self.add_class(name)
        self.set_examples(self.examples.with_tiles(tiles, name))

    def training_set(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Unit-norm vectors ``[M, D]`` and class numbers of the embedded examples, and the
        number of examples whose tile has no embedding."""
        positions = np.full(self.index.shape[0] * self.index.shape[1], -1, dtype=np.int64)
        positions[self.index.flat_index] = np.arange(self.index.size)
        flat = self.examples.rows * self.index.shape[1] + self.examples.cols
        where = positions[flat]
        keep = where >= 0
        number = {n: i for i, n in enumerate(self.classes)}
        labels = np.asarray([number[n] for n in self.examples.names], dtype=np.int64)[keep]
        return self.index.vectors[where[keep]], labels, int(np.count_nonzero(~keep))

    # ------------------------------------------------------------------ learning
    def check_classes(self, labels: np.ndarray | None = None) -> None:
        """Raise :class:`InputError` when fewer than two classes or one has nothing to learn.

        ``labels`` are the class numbers of :meth:`training_set` (read from it when None).
        """
        names = self.classes
        if len(names) < 2:
            raise InputError("teaching needs two or more classes (prompts or annotated classes)")
        if labels is None:
            _, labels, _ = self.training_set()
        counts = np.bincount(labels, minlength=len(names))
        for k, name in enumerate(names):
            if name not in self.text and counts[k] == 0:
                raise InputError(
                    f"class {name!r} has no embedded example and no prompt: nothing to learn from"
                )

    def validate(self) -> learn.CrossValidation:
        """Cross-validated precision and recall of the classifier on the current examples."""
        vectors, labels, _ = self.training_set()
        self.check_classes(labels)
        return learn.cross_validate(
            self.classes, self.text, self.logit_scale, vectors, labels, self.strength
        )

    def retrain(self, *, validate: bool = True, n_uncertain: int = 20) -> Outcome:
        """Train on the current examples; return the maps, validation and tiles to check."""
        if self.index.size == 0:
            raise InputError("the store has no embedded tiles")
        vectors, labels, missing = self.training_set()
        self.check_classes(labels)
        names = self.classes
        start = time.perf_counter()
        classifier = learn.train(names, self.text, self.logit_scale, vectors, labels, self.strength)
        trained = time.perf_counter()
        result = learn.learned_result(self.index, classifier, self.grid)
        mapped = time.perf_counter()
        flat = self.examples.rows * self.index.shape[1] + self.examples.cols
        probs = result.probs.reshape(len(names), -1)[:, self.index.flat_index]
        uncertain = learn.check_next(self.index, probs, names, flat, n_uncertain)
        done = time.perf_counter()
        validation = None
        if validate:
            validation = learn.cross_validate(
                names, self.text, self.logit_scale, vectors, labels, self.strength
            )
        return Outcome(
            classifier=classifier,
            result=result,
            validation=validation,
            uncertain=uncertain,
            used=len(labels),
            unembedded=missing,
            seconds={
                "train": trained - start,
                "maps": mapped - trained,
                "check_next": done - mapped,
                "cross_validation": time.perf_counter() - done,
            },
        )
