"""RunOptions: one set of defaults, every value checked before anything touches the disk."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest

from napari_conch.bounds import bounds_of
from napari_conch.engine.options import (
    CAPTION_DEFAULTS,
    DEFAULTS,
    DOCK_CAPTION_DEFAULTS,
    MAX_TILE_SIZE,
    OPTION_CLASSES,
    SEARCH_DEFAULTS,
    CaptionOptions,
    RunOptions,
    SearchOptions,
    help_text,
    surface_of,
    surfaced_fields,
)
from napari_conch.errors import InputError
from napari_conch.model.config import STRATEGIES


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


# ---------------------------------------------------------------- one source of options


def test_every_surfaced_option_says_what_it_is_and_its_default_is_valid():
    for cls in OPTION_CLASSES:
        names = surfaced_fields(cls)
        assert names, cls
        for name in names:
            surface = surface_of(cls, name)
            assert surface.help and "default" not in surface.help, (cls, name)
            default = getattr(cls(), name)
            if default is None:  # what "left out" means is said, unless nothing is to say
                assert surface.unset or name in ("seed",), (cls, name)
            with contextlib.suppress(KeyError):
                assert bounds_of(cls, name).problem(default) is None, (cls, name)


def test_help_fills_in_the_default_of_the_dataclass():
    assert help_text(RunOptions, "min_tissue") == "minimum tissue fraction of a tile (default 0.25)"
    assert help_text(RunOptions, "batch_size").endswith(f"(default {DEFAULTS.batch_size})")
    assert help_text(RunOptions, "tile_size").endswith("(default: the model's own)")
    assert help_text(CaptionOptions, "strategy") == "decoding strategy (default: beam)"
    assert help_text(CaptionOptions, "seed") == "makes sampling reproducible"
    dock = help_text(CaptionOptions, "max_length", DOCK_CAPTION_DEFAULTS)
    assert dock.endswith(f"(default {DOCK_CAPTION_DEFAULTS.max_length})")
    assert help_text(RunOptions, "level", words="read level") == "read level (default: level 0)"


def test_the_help_reads_the_default_from_the_options_it_is_given():
    """The default in a help is the value of the options object, never a copy of it."""
    assert help_text(RunOptions, "min_tissue", RunOptions(min_tissue=0.5)).endswith("(default 0.5)")
    assert help_text(RunOptions, "batch_size", RunOptions(batch_size=7)).endswith("(default 7)")


def test_caption_options_pass_every_value_to_the_model():
    from napari_conch.model.config import GenerationConfig

    cfg = CAPTION_DEFAULTS.generation_config()
    assert isinstance(cfg, GenerationConfig)
    assert dataclasses.asdict(cfg) == dataclasses.asdict(CAPTION_DEFAULTS)
    assert (CAPTION_DEFAULTS.strategy, CAPTION_DEFAULTS.max_length) == ("beam", 40)
    assert (DOCK_CAPTION_DEFAULTS.strategy, DOCK_CAPTION_DEFAULTS.max_length) == ("greedy", 30)
    with pytest.raises(InputError, match="num_beams=0"):
        CaptionOptions(num_beams=0)  # the model's bounds, checked here too
    with pytest.raises(InputError, match="min_length=9 is more than max_length=4"):
        CaptionOptions(min_length=9, max_length=4).generation_config()


def test_search_options_count_from_one():
    assert (SEARCH_DEFAULTS.top_tiles, SEARCH_DEFAULTS.search_hits) == (10, 20)
    with pytest.raises(InputError, match="top_tiles=0"):
        SearchOptions(top_tiles=0)


def test_one_tile_size_resolution():
    """The model's own size is ``model_tile_size``; the option, when given, comes first."""
    from napari_conch.model.sources import SourceInfo, model_tile_size

    recommended = SourceInfo(name="x", kind="bundled", display_name="x", default_tile_size=128)
    plain = SourceInfo(name="y", kind="path", display_name="y")
    assert model_tile_size(recommended, 96) == 128
    assert model_tile_size(plain, 448) == 448

    class Model:
        image_size = 96
        default_tile_size = model_tile_size(plain, image_size)

    assert RunOptions().tile_size_for(Model()) == 96
    assert RunOptions(tile_size=64).tile_size_for(Model()) == 64


def test_panel_fields_follow_the_options():
    from napari_conch.engine.option_fields import panel_field

    tile = panel_field(RunOptions, "tile_size")
    assert (tile.kind, tile.value, tile.minimum, tile.maximum) == ("int", 0, 0, MAX_TILE_SIZE)
    assert tile.zero_is_unset and tile.read(0) is None and tile.read(224) == 224
    assert "0: the model's own" in tile.tooltip
    tissue = panel_field(RunOptions, "min_tissue")
    assert (tissue.value, tissue.minimum, tissue.maximum) == (DEFAULTS.min_tissue, 0, 1)
    assert tissue.slider and not tissue.zero_is_unset and tissue.read(0) == 0.0
    level = panel_field(RunOptions, "level")
    assert level.read(0) == 0 and level.shown(None) == 0  # level 0 is a level, not "unset"
    store = panel_field(RunOptions, "store_root")
    assert store.kind == "folder" and store.read("") is None and store.read(".") is None
    strategy = panel_field(CaptionOptions, "strategy", DOCK_CAPTION_DEFAULTS)
    assert strategy.choices == STRATEGIES and strategy.value == "greedy"
    with pytest.raises(KeyError, match="num_readers has no panel label"):
        panel_field(RunOptions, "num_readers")


def test_the_device_field_offers_the_model_devices_and_auto():
    from napari_conch.engine.option_fields import panel_field
    from napari_conch.engine.options import PANEL_DEVICES
    from napari_conch.model.device import COMPUTE_DEVICES

    assert PANEL_DEVICES == COMPUTE_DEVICES
    device = panel_field(RunOptions, "device")
    assert device.choices == ("auto", *COMPUTE_DEVICES) and device.value == "auto"
    assert device.read("auto") is None and device.read("cuda") == "cuda"
