"""Preprocessing: exact at the input size, CONCH's resize/crop otherwise, and the input rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_conch.errors import InputError
from napari_conch.model import Preprocess
from napari_conch.model.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, to_uint8_rgb


def manual(tiles: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def test_exact_when_tiles_have_the_input_size():
    tiles = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = Preprocess(32)(tiles)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, manual(tiles))


def test_resize_shorter_side_then_centre_crop():
    tiles = np.zeros((1, 40, 80, 3), dtype=np.uint8)
    tiles[:, :, 30:50] = 255  # a white band in the middle stays in the middle
    out = Preprocess(20)(tiles)
    assert out.shape == (1, 3, 20, 20)
    row = out[0, 0, 10]
    assert row[10] > row[0] and torch.allclose(row, row.flip(0), atol=1e-5)


def test_one_tile_and_tensor_input():
    tile = np.full((16, 16, 3), 128, dtype=np.uint8)
    assert Preprocess(16)(tile).shape == (1, 3, 16, 16)
    assert torch.equal(Preprocess(16)(torch.from_numpy(tile)), Preprocess(16)(tile))


def test_greyscale_rgba_uint16_rules():
    grey = np.full((1, 8, 8), 200, dtype=np.uint8)
    assert torch.equal(to_uint8_rgb(grey), torch.full((1, 8, 8, 3), 200, dtype=torch.uint8))
    assert to_uint8_rgb(grey[..., None]).shape == (1, 8, 8, 3)
    rgba = np.zeros((1, 2, 2, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent -> white
    assert int(to_uint8_rgb(rgba).min()) == 255
    rgba[..., 3] = 255  # opaque black stays black
    assert int(to_uint8_rgb(rgba).max()) == 0
    deep = np.full((1, 2, 2, 3), 65535, dtype=np.uint16)
    assert int(to_uint8_rgb(deep).min()) == 255


@pytest.mark.parametrize(
    ("tiles", "match"),
    [
        (np.zeros((1, 8, 8, 3), dtype=np.float32), "dtype"),
        (np.zeros((1, 8, 8, 2), dtype=np.uint8), "not RGB"),
        (np.zeros((8,), dtype=np.uint8), "not RGB"),
        ([[1, 2, 3]], "numpy array or torch tensor"),
    ],
)
def test_refused_inputs(tiles, match):
    with pytest.raises(InputError, match=match):
        Preprocess(8)(tiles)
