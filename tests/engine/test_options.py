"""RunOptions: one set of defaults, every value checked before anything touches the disk."""

from __future__ import annotations

import numpy as np
import pytest

from napari_conch.engine.options import DEFAULTS, RunOptions
from napari_conch.errors import InputError


def test_defaults_are_the_documented_ones():
    assert DEFAULTS.min_tissue == 0.25
    assert DEFAULTS.batch_size == 32
    assert DEFAULTS.tile_size is None and DEFAULTS.stride is None
    assert RunOptions.from_dict(DEFAULTS.to_dict()) == DEFAULTS


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"min_tissue": 2}, "min_tissue=2"),
        ({"min_tissue": float("nan")}, "finite"),
        ({"tile_size": 100000}, "tile_size=100000"),
        ({"tile_size": 0}, "tile_size=0"),
        ({"stride": -1}, "stride=-1"),
        ({"level": 1, "mpp": 0.5}, "one or the other"),
        ({"mpp": 0}, "mpp=0"),
        ({"precision": "fp64"}, "precision='fp64'"),
        ({"num_readers": 1.5}, "whole number"),
    ],
)
def test_bad_values_are_one_line_errors(changes, words):
    with pytest.raises(InputError, match=words.replace("(", r"\(")) as info:
        RunOptions(**changes)
    assert "\n" not in str(info.value)


def test_numpy_integers_from_widgets_are_accepted():
    assert RunOptions(tile_size=np.int64(224)).tile_size == 224


def test_unknown_keys_are_refused():
    with pytest.raises(InputError, match="colour"):
        RunOptions.from_dict({"colour": "red"})


def test_tile_size_for_uses_the_model_default():
    class Model:
        image_size = 96
        default_tile_size = 128

    assert RunOptions().tile_size_for(Model()) == 128
    assert RunOptions(tile_size=64).tile_size_for(Model()) == 64
