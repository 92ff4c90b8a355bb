"""The classifier taught by example: the text prior, learning, cross-validation, check next."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.learn import classifier as learn
from napari_conch.engine.learn.annotations import Examples
from napari_conch.engine.learn.learner import Learner
from napari_conch.engine.query import QueryIndex, run_query
from napari_conch.errors import InputError
from napari_conch.slide import TileGrid

SCALE = 14.0


def make_grid(rows: int, cols: int, tile: int = 8, stride: int = 4) -> TileGrid:
    shape = ((rows - 1) * stride + tile, (cols - 1) * stride + tile)
    return TileGrid(0, 2.0, 1.0, tile, stride, rows, cols, shape)


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rows=12, cols=14, dim=16, seed=0, noise=0.6):
    """Embeddings of three clusters (left, middle, right thirds) and their centres."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(3, dim)))
    truth = np.minimum(np.arange(cols) * 3 // cols, 2)[None, :].repeat(rows, 0)
    emb = unit(centres[truth] + noise * rng.normal(size=(rows, cols, dim)) / np.sqrt(dim))
    emb[0, 0] = np.nan  # one tile not computed
    return emb, centres, truth


def test_without_examples_it_is_the_zero_shot_map_exactly():
    emb, centres, _ = clustered()
    rng = np.random.default_rng(5)
    text = unit(centres + 0.8 * rng.normal(size=centres.shape))
    index = QueryIndex(emb)
    grid = make_grid(*index.shape)
    names = ["a", "b", "c"]
    zero_shot = run_query(index, names, text, grid, logit_scale=SCALE)
    learner = Learner(index, grid, SCALE, dict(zip(names, text, strict=True)))
    outcome = learner.retrain()
    result = outcome.result
    np.testing.assert_allclose(result.probs, zero_shot.probs, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(result.labels, zero_shot.labels)
    np.testing.assert_allclose(result.cell_probs, zero_shot.cell_probs, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(result.cell_labels, zero_shot.cell_labels)
    assert np.array_equal(outcome.classifier.weights, text) and not outcome.classifier.bias.any()
    assert outcome.validation.folds == 0 and "not enough" in outcome.validation.message


def test_examples_move_it_towards_the_truth():
    emb, centres, truth = clustered()
    index = QueryIndex(emb)
    grid = make_grid(*index.shape)
    # a poor prior: the text of "a" points at cluster b's centre, and the other way round
    text = {"a": centres[1], "b": centres[0], "c": centres[2]}
    learner = Learner(index, grid, SCALE, text)
    before = learner.retrain(validate=False).result.labels
    valid = index.valid
    acc_before = np.mean(before[valid] == truth[valid] + 1)
    rng = np.random.default_rng(1)
    picks = {}
    for k, name in enumerate("abc"):
        rows, cols = np.nonzero((truth == k) & valid)
        for i in rng.choice(len(rows), 4, replace=False):
            picks[(rows[i], cols[i])] = name
    learner.set_examples(Examples.from_dict(picks))
    outcome = learner.retrain()
    after = outcome.result.labels
    acc_after = np.mean(after[valid] == truth[valid] + 1)
    assert acc_before < 0.5 < 0.9 < acc_after
    assert outcome.validation.folds == 4 and outcome.validation.accuracy > 0.8
    assert set(outcome.validation.recall) == {"a", "b", "c"}
    # each example the classifier sees is labelled as taught
    for (r, c), name in picks.items():
        assert after[r, c] == "abc".index(name) + 1


def test_one_example_moves_the_probability_of_its_class_up():
    emb, centres, _ = clustered(seed=3)
    index = QueryIndex(emb)
    text = {"a": centres[0], "b": centres[1], "c": centres[2]}
    learner = Learner(index, make_grid(*index.shape), SCALE, text)
    p0 = learner.retrain(validate=False).result.probs
    learner.label_tiles([(3, 3)], "c")  # a tile of cluster a, taught as c
    p1 = learner.retrain(validate=False).result.probs
    assert p1[2, 3, 3] > p0[2, 3, 3] + 0.05


def test_a_class_with_examples_only_is_learned():
    emb, centres, truth = clustered(seed=2)
    index = QueryIndex(emb)
    text = {"a": centres[0], "b": centres[1]}
    learner = Learner(index, make_grid(*index.shape), SCALE, text)
    learner.label_tiles([(2, 12), (5, 13), (8, 11)], "necrosis")
    assert learner.classes == ["a", "b", "necrosis"]
    labels = learner.retrain().result.labels
    right = (truth == 2) & index.valid
    assert np.mean(labels[right] == 3) > 0.9


def test_a_class_with_no_example_and_no_prompt_is_an_error():
    emb, centres, _ = clustered()
    index = QueryIndex(emb)
    learner = Learner(index, make_grid(*index.shape), SCALE, {"a": centres[0]})
    learner.add_class("necrosis")
    with pytest.raises(InputError, match="'necrosis' has no embedded example and no prompt"):
        learner.retrain()
    learner.label_tiles([(0, 0)], "necrosis")  # tile (0, 0) has no embedding
    with pytest.raises(InputError, match="no embedded example"):
        learner.retrain()
    with pytest.raises(InputError, match="two or more classes"):
        Learner(index, make_grid(*index.shape), SCALE, {"a": centres[0]}).retrain()


def test_examples_outside_the_grid_are_refused():
    emb, centres, _ = clustered()
    index = QueryIndex(emb)
    learner = Learner(index, make_grid(*index.shape), SCALE, {"a": centres[0], "b": centres[1]})
    with pytest.raises(InputError, match=r"\(12, 0\) is outside the 12 x 14 grid"):
        learner.label_tiles([(12, 0)], "a")


def test_balanced_weights_make_a_class_with_many_examples_not_win_by_number():
    rng = np.random.default_rng(0)
    a, b = unit(rng.normal(size=(2, 16)))
    x = unit(
        np.concatenate([a + 0.3 * rng.normal(size=(40, 16)), b + 0.3 * rng.normal(size=(4, 16))])
    )
    y = np.array([0] * 40 + [1] * 4)
    weights = learn._balanced_weights(y, 2)
    assert weights[:40].sum() == pytest.approx(0.5) and weights[40:].sum() == pytest.approx(0.5)
    model = learn.train(["a", "b"], {}, SCALE, x, y)
    assert (model.predict(x) == y).all()


def test_cross_validation_reports_precision_recall_and_not_enough():
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(3, 16)))
    x = unit(np.repeat(centres, [6, 3, 1], axis=0) + 0.2 * rng.normal(size=(10, 16)))
    y = np.array([0] * 6 + [1] * 3 + [2])
    cv = learn.cross_validate(["a", "b", "c"], {}, SCALE, x, y)
    assert cv.folds == 3 and cv.not_enough == ["c"]
    assert cv.recall == {"a": 1.0, "b": 1.0} and cv.precision == {"a": 1.0, "b": 1.0}
    assert cv.support == {"a": 6, "b": 3} and cv.accuracy == 1.0
    assert "not enough examples" in cv.table() and "3-fold" in cv.message
    cv = learn.cross_validate(["a", "b"], {}, SCALE, x[[0, 1, 6]], np.array([0, 0, 1]))
    assert cv.folds == 0 and cv.not_enough == ["b"] and cv.accuracy is None


def test_cross_validation_detects_a_wrong_class():
    """Examples whose classes are mixed up score low: the numbers are not flattering."""
    rng = np.random.default_rng(1)
    x = unit(rng.normal(size=(20, 16)))
    y = np.array([0, 1] * 10)  # labels carry no information
    cv = learn.cross_validate(["a", "b"], {}, SCALE, x, y)
    assert cv.folds == 5 and cv.accuracy < 0.8


def test_check_next_lists_the_least_sure_unlabelled_tiles():
    emb, centres, _ = clustered()
    index = QueryIndex(emb)
    text = {"a": centres[0], "b": centres[1], "c": centres[2]}
    learner = Learner(index, make_grid(*index.shape), SCALE, text)
    outcome = learner.retrain(validate=False, n_uncertain=5)
    probs = np.sort(outcome.result.probs, axis=0)
    margin = probs[-1] - probs[-2]
    ranked = np.sort(margin[index.valid])[:5]
    got = [u.margin for u in outcome.uncertain]
    np.testing.assert_allclose(got, ranked, atol=1e-6)
    first = outcome.uncertain[0]
    assert margin[first.row, first.col] == pytest.approx(first.margin, abs=1e-6)
    # a tile taught as an example leaves the list
    learner.label_tiles([(first.row, first.col)], first.best)
    again = learner.retrain(validate=False, n_uncertain=50).uncertain
    assert (first.row, first.col) not in {(u.row, u.col) for u in again}


def test_check_next_lists_every_unlabelled_tile_when_fewer_than_asked():
    """All but a few embedded tiles labelled (one with no example of a prompted class, one
    class from the examples alone): each unlabelled embedded tile is listed, once."""
    emb, centres, truth = clustered(rows=6, cols=8)
    index = QueryIndex(emb)
    learner = Learner(index, make_grid(*index.shape), SCALE, {"a": centres[0], "b": centres[1]})
    tiles = [tuple(int(v) for v in t) for t in np.argwhere(index.valid)]
    labelled, left = tiles[:-7], tiles[-7:]
    names = [["a", "b", "c"][truth[r, c]] for r, c in labelled]
    learner.set_examples(Examples(*np.array(labelled).T, names))
    listed = learner.retrain(validate=False, n_uncertain=20).uncertain
    assert sorted((u.row, u.col) for u in listed) == sorted(left)
    assert all(np.isfinite(u.margin) for u in listed)
    learner.set_examples(Examples(*np.array(tiles).T, ["a"] * (len(tiles) - 1) + ["c"]))
    assert learner.retrain(validate=False).uncertain == []  # nothing left to check


def test_classifier_parameters_round_trip():
    rng = np.random.default_rng(0)
    model = learn.LinearClassifier(
        ("a", "b"), unit(rng.normal(size=(2, 8))), np.array([0.1, -0.1], np.float32), SCALE
    )
    back = learn.LinearClassifier.from_dict(model.to_dict())
    assert back.names == model.names and back.logit_scale == SCALE
    np.testing.assert_array_equal(back.weights, model.weights)
    np.testing.assert_array_equal(back.bias, model.bias)
    with pytest.raises(InputError, match="do not fit"):
        learn.LinearClassifier.from_dict({**model.to_dict(), "bias": [0.0]})
