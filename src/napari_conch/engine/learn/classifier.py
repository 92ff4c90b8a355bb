"""Teach by example: a linear classifier on tile embeddings with the text prompts as its prior.

The classifier scores a tile ``x`` (a unit-norm embedding) for class ``k`` as
``s_k(x) = w_k . x + b_k`` and turns the scores into probabilities exactly as the zero-shot
query does: ``softmax(logit_scale * s)`` (:func:`~napari_conch.engine.query.softmax_probs`),
with ``logit_scale`` the model's own temperature. It starts at the zero-shot classifier:
``w_k`` is the class's text embedding ``t_k`` (CONCH's prompt ensemble, as
:func:`~napari_conch.engine.prompts.embed_prompt_sets` makes it) and ``b_k = 0``, so with no
example it gives exactly the probabilities and labels of
:func:`~napari_conch.engine.query.run_query`.

The user's examples move it: training minimises the class-balanced cross-entropy of the examples
(each class weighs the same, however many examples it has) plus an L2 pull of the weights back
towards the prior, measured in cosine units::

    sum_i a_i CE(softmax(logit_scale * s(x_i)), y_i) + strength / 2 * (|W - T|^2 + |b|^2)

with ``a_i = 1 / (classes with examples * examples of class y_i)``. A few examples only nudge
the text prior; many examples outweigh it. A class that has examples but no prompt starts from
its examples' mean embedding (query by example), so it is learned from examples alone.

Also here: cross-validated per-class precision and recall on the examples (stratified k-fold),
and the tiles the classifier is least sure about (smallest margin between its two most likely
classes), to check next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_conch.bounds import Bounds
from napari_conch.engine.query import (
    QueryIndex,
    QueryResult,
    check_grid,
    result_from_scores,
    softmax_probs,
)
from napari_conch.errors import InputError

#: Default weight of the pull towards the prior (see the module docstring).
DEFAULT_STRENGTH = 1.0
#: The strengths accepted: a finite number above 0.
STRENGTH_BOUNDS = Bounds(minimum=0, above=True)
#: Largest number of folds of the cross-validation.
MAX_FOLDS = 5
#: Iterations of L-BFGS at most (it usually converges in a few dozen).
MAX_ITERATIONS = 200


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class LinearClassifier:
    """Per-class weights and biases in cosine units, and the temperature that scales them.

    Attributes
    ----------
    names
        Class names, in order (label ``k + 1`` is ``names[k]``).
    weights
        float32 ``[K, D]``: ``w_k``.
    bias
        float32 ``[K]``: ``b_k``.
    logit_scale
        The model's temperature (``exp`` of its learnt parameter).
    """

    names: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    logit_scale: float

    def scores(self, index: QueryIndex) -> np.ndarray:
        """``[K, N]`` scores ``w . x + b`` of the index's tiles (cosines when at the prior)."""
        scores = index.cosine(self.weights)
        if np.any(self.bias):
            scores += self.bias[:, None]
        return scores

    def probs(self, index: QueryIndex) -> np.ndarray:
        """``[K, N]`` class probabilities of the index's tiles."""
        return softmax_probs(self.scores(index), self.logit_scale)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """Class number (0-based) of each unit-norm row of ``vectors [N, D]``."""
        return np.argmax(np.asarray(vectors, np.float32) @ self.weights.T + self.bias, axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (:meth:`from_dict` inverts it)."""
        return {
            "names": list(self.names),
            "logit_scale": float(self.logit_scale),
            "weights": self.weights.astype(float).tolist(),
            "bias": self.bias.astype(float).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearClassifier:
        """Rebuild a classifier from :meth:`to_dict`'s output."""
        try:
            names = tuple(str(n) for n in data["names"])
            weights = np.asarray(data["weights"], dtype=np.float32)
            bias = np.asarray(data["bias"], dtype=np.float32)
            scale = float(data["logit_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"classifier parameters are malformed ({exc})") from None
        if weights.ndim != 2 or len(weights) != len(names) or bias.shape != (len(names),):
            raise InputError("classifier parameters do not fit its class names")
        return cls(names, weights, bias, scale)


def class_priors(
    names: Sequence[str],
    text: dict[str, np.ndarray],
    vectors: np.ndarray,
    labels: np.ndarray,
) -> np.ndarray:
    """The starting weights ``[K, D]``: each class's text embedding, else its examples' mean.

    Raises
    ------
    InputError
        When a class has neither a prompt nor an example.
    """
    rows = []
    for k, name in enumerate(names):
        if name in text:
            rows.append(np.asarray(text[name], dtype=np.float32))
            continue
        mine = vectors[labels == k]
        if len(mine) == 0:
            raise InputError(f"class {name!r} has no example and no prompt: nothing to learn from")
        rows.append(_unit(mine.mean(axis=0)).astype(np.float32))
    return np.stack(rows).astype(np.float32)


def _balanced_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = np.count_nonzero(counts)
    return 1.0 / (present * counts[labels])


def fit(
    names: Sequence[str],
    prior: np.ndarray,
    logit_scale: float,
    vectors: np.ndarray,
    labels: np.ndarray,
    strength: float = DEFAULT_STRENGTH,
) -> LinearClassifier:
    """Train from the prior on examples (unit-norm ``vectors [N, D]``, class numbers ``labels``).

    With no example the result is the prior itself (zero bias), the zero-shot classifier.
    """
    names = tuple(names)
    prior = np.asarray(prior, dtype=np.float32)
    if prior.shape[0] != len(names):
        raise InputError(f"{len(names)} class names for {prior.shape[0]} prior vectors")
    if not np.isfinite(logit_scale) or logit_scale <= 0:
        raise InputError(f"logit scale {logit_scale} must be a positive number")
    STRENGTH_BOUNDS.check("strength", strength)
    k, dim = prior.shape
    labels = np.asarray(labels, dtype=np.int64)
    from scipy.optimize import minimize  # here even without examples: the first call (zero-shot,
    # in the dock's worker) pays the import, not the first stroke

    if len(labels) == 0:
        return LinearClassifier(names, prior.copy(), np.zeros(k, np.float32), float(logit_scale))

    x = np.asarray(vectors, dtype=np.float64)
    a = _balanced_weights(labels, k)
    onehot = np.zeros((len(labels), k))
    onehot[np.arange(len(labels)), labels] = 1.0
    v0 = np.concatenate([prior.astype(np.float64), np.zeros((k, 1))], axis=1) * logit_scale
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)  # bias as a constant feature
    pull = strength / logit_scale**2  # optimised in logit units: V = logit_scale * [W, b]

    # The products below are small (examples x 513 x classes): numpy's einsum computes them in
    # one thread, where a multi-threaded BLAS call spends more on waking its threads than on the
    # sums, ten times more on a busy 2-core machine (fitting 500 examples: 2 s against 0.2 s).
    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        v = flat.reshape(k, dim + 1)
        z = np.einsum("nd,kd->nk", xb, v)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        total = p.sum(axis=1, keepdims=True)
        p /= total
        ce = np.log(total[:, 0]) - z[np.arange(len(z)), labels]
        diff = v - v0
        value = float(a @ ce) + 0.5 * pull * float(np.sum(diff * diff))
        grad = np.einsum("nk,nd->kd", (p - onehot) * a[:, None], xb) + pull * diff
        return value, grad.ravel()

    found = minimize(
        loss, v0.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS}
    )
    v = found.x.reshape(k, dim + 1) / logit_scale
    return LinearClassifier(
        names, v[:, :dim].astype(np.float32), v[:, dim].astype(np.float32), float(logit_scale)
    )


def train(
    names: Sequence[str],
    text: dict[str, np.ndarray],
    logit_scale: float,
    vectors: np.ndarray,
    labels: np.ndarray,
    strength: float = DEFAULT_STRENGTH,
) -> LinearClassifier:
    """:func:`class_priors` then :func:`fit`: the classifier for classes and examples."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    prior = class_priors(names, text, vectors, labels)
    return fit(names, prior, logit_scale, vectors, labels, strength)


@dataclass
class CrossValidation:
    """Cross-validated quality of the classifier on the user's examples.

    Attributes
    ----------
    folds
        ``k`` of the stratified k-fold (0 when there were not enough examples).
    precision, recall
        Per evaluated class (two or more examples).
    support
        Examples per evaluated class.
    accuracy, balanced_accuracy
        Over the held-out predictions; None when not evaluated.
    not_enough
        Classes with fewer than two examples (not evaluated; still used for training).
    message
        A one-line summary, or why there is none.
    """

    folds: int = 0
    precision: dict[str, float] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    support: dict[str, int] = field(default_factory=dict)
    accuracy: float | None = None
    balanced_accuracy: float | None = None
    not_enough: list[str] = field(default_factory=list)
    message: str = ""

    def table(self) -> str:
        """Per-class lines ``class  precision  recall  examples``, then the summary."""
        lines = [f"{'class':<24} precision  recall  examples"]
        for name, n in self.support.items():
            lines.append(f"{name:<24} {self.precision[name]:9.3f} {self.recall[name]:7.3f} {n:9d}")
        lines += [f"{name:<24} not enough examples (< 2)" for name in self.not_enough]
        lines.append(self.message)
        return "\n".join(lines)


def _folds(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number of each example: each class spread evenly over the folds, shuffled."""
    fold = np.zeros(len(labels), dtype=np.int64)
    start = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (np.arange(len(members)) + start) % k
        start += len(members)
    return fold


def cross_validate(
    names: Sequence[str],
    text: dict[str, np.ndarray],
    logit_scale: float,
    vectors: np.ndarray,
    labels: np.ndarray,
    strength: float = DEFAULT_STRENGTH,
    max_folds: int = MAX_FOLDS,
    seed: int = 0,
) -> CrossValidation:
    """Stratified k-fold precision and recall of :func:`train` on the examples.

    ``k`` is the smallest number of examples of a class with two or more, capped at
    ``max_folds``. Classes with fewer than two examples are not evaluated (named in
    ``not_enough``) but stay in every training fold. Each fold's example-only classes start
    from the mean of that fold's training examples, so no held-out example leaks into it.
    """
    names = list(names)
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(names))
    evaluated = [k for k in range(len(names)) if counts[k] >= 2]
    out = CrossValidation(not_enough=[names[k] for k in range(len(names)) if counts[k] < 2])
    if len(evaluated) < 2:
        out.message = "not enough examples: cross-validation needs two classes with 2+ examples"
        return out
    k = int(min(max_folds, min(counts[c] for c in evaluated)))
    pool = np.flatnonzero(np.isin(labels, evaluated))
    always = np.flatnonzero(~np.isin(labels, evaluated))
    fold = _folds(labels[pool], k, np.random.default_rng(seed))
    predicted = np.empty(len(pool), dtype=np.int64)
    for f in range(k):
        held = pool[fold == f]
        kept = np.concatenate([pool[fold != f], always])
        model = train(names, text, logit_scale, vectors[kept], labels[kept], strength)
        predicted[fold == f] = model.predict(vectors[held])
    truth = labels[pool]
    for c in evaluated:
        name = names[c]
        hits = np.count_nonzero((predicted == c) & (truth == c))
        called = np.count_nonzero(predicted == c)
        out.precision[name] = hits / called if called else 0.0
        out.recall[name] = hits / counts[c]
        out.support[name] = int(counts[c])
    out.folds = k
    out.accuracy = float(np.mean(predicted == truth))
    out.balanced_accuracy = float(np.mean(list(out.recall.values())))
    out.message = (
        f"{k}-fold cross-validated accuracy {out.accuracy:.3f}, balanced accuracy "
        f"{out.balanced_accuracy:.3f} on {len(pool)} examples"
    )
    return out


@dataclass(frozen=True)
class Uncertain:
    """A tile to check next: grid position and the classifier's margin there."""

    row: int
    col: int
    margin: float
    best: str
    second: str


def check_next(
    index: QueryIndex,
    probs: np.ndarray,
    names: Sequence[str],
    labelled: np.ndarray | None = None,
    n: int = 20,
) -> list[Uncertain]:
    """The ``n`` unlabelled tiles with the smallest margin between their two likeliest classes.

    Parameters
    ----------
    index
        The computed tiles.
    probs
        ``[K, N]`` probabilities of the index's tiles (:meth:`LinearClassifier.probs`).
    labelled
        Flat grid positions (``row * cols + col``) of the examples, left out of the list.
    """
    probs = np.asarray(probs)
    if probs.shape[0] < 2 or index.size == 0:
        return []
    top2 = np.partition(probs, -2, axis=0)[-2:]
    margin = top2[1] - top2[0]
    if labelled is not None and len(labelled):
        margin = np.where(np.isin(index.flat_index, labelled), np.inf, margin)
    n = int(min(n, np.count_nonzero(np.isfinite(margin))))
    if n <= 0:
        return []
    chosen = np.argpartition(margin, n - 1)[:n]
    chosen = chosen[np.argsort(margin[chosen], kind="stable")]
    order = np.argsort(-probs[:, chosen], axis=0)
    cols = index.shape[1]
    return [
        Uncertain(
            int(index.flat_index[i] // cols),
            int(index.flat_index[i] % cols),
            float(margin[i]),
            names[order[0, j]],
            names[order[1, j]],
        )
        for j, i in enumerate(chosen)
    ]


def learned_result(index: QueryIndex, classifier: LinearClassifier, grid: Any) -> QueryResult:
    """The classifier's maps over the grid, shaped as a query's result (for the writers).

    ``cosine`` holds the scores ``w . x + b`` (the cosines at the prior), ``probs`` and
    ``labels`` the classifier's, and the ``cell_`` maps their overlap averages, as
    :func:`~napari_conch.engine.query.run_query` makes them.
    """
    if len(classifier.names) < 2:
        raise InputError("a classifier needs two or more classes")
    check_grid(index, grid)
    scores = index.to_map(classifier.scores(index))
    return result_from_scores(
        index, list(classifier.names), scores, grid, logit_scale=classifier.logit_scale
    )
