"""The pieces of ``train/`` the demo model's numbers rest on: AUC, colour deconvolution, held-out
separation, and the tokenizer format."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("train", reason="the training folder is not present (installed package)")
from train.evaluate_demo import tile_boxes
from train.images import read_json
from train.labels import hdab_concentrations
from train.metrics import roc_auc
from train.sampling import random_boxes


def _pairwise_auc(scores, positive):
    pos, neg = scores[positive], scores[~positive]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_roc_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    positive = rng.random(60) < 0.4
    assert roc_auc(scores, positive) == pytest.approx(_pairwise_auc(scores, positive))
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [False, False, True, True]) == 1.0
    with pytest.raises(ValueError, match="positives and negatives"):
        roc_auc([0.1, 0.2], [True, True])


def test_hdab_deconvolution_separates_brown_from_blue():
    brown = np.array([[[150, 100, 60]]], np.uint8)  # DAB
    blue = np.array([[[90, 100, 170]]], np.uint8)  # haematoxylin
    white = np.array([[[255, 255, 255]]], np.uint8)
    h_brown, d_brown = hdab_concentrations(brown)
    h_blue, d_blue = hdab_concentrations(blue)
    _, d_white = hdab_concentrations(white)
    assert d_brown[0, 0] > 0.2 > d_blue[0, 0]
    assert h_blue[0, 0] > h_brown[0, 0]
    assert abs(d_white[0, 0]) < 1e-6


def test_training_boxes_never_touch_heldout_boxes():
    rng = np.random.default_rng(0)
    for entry in read_json()["images"]:
        boxes = random_boxes(entry["train_boxes"], entry["tile"], (0.8, 1.25), 2000, rng)
        for hx0, hy0, hx1, hy1 in entry["heldout_boxes"]:
            overlap_x = (boxes[:, 0] < hx1) & (boxes[:, 2] > hx0)
            overlap_y = (boxes[:, 1] < hy1) & (boxes[:, 3] > hy0)
            assert not (overlap_x & overlap_y).any(), entry["name"]
        grid = tile_boxes(entry["heldout_boxes"], entry["tile"], entry["eval_stride"])
        assert len(grid) > 0


def test_trained_tokenizer_has_the_conch_format(tmp_path):
    from napari_conch.model import Tokenizer
    from train.tokenizer_training import train_tokenizer

    path = tmp_path / "tok.json"
    train_tokenizer(["tumor cells", "stroma", "lymphocytes"] * 3, 300).save(str(path))
    tok = Tokenizer.from_file(path, context_length=8)
    ids = tok.encode("Tumor cells")
    assert ids[0, 0] == 1 and 2 in ids[0].tolist()
    assert tok.decode(ids[0]) == "tumor cells"
