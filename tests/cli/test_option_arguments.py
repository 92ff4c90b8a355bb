"""The CLI's option arguments are made from the options dataclasses: same flags, same defaults,
the default in the help, the bounds checked by argparse."""

from __future__ import annotations

import argparse

import pytest

from napari_conch.bounds import bounds_of
from napari_conch.cli import build_parser
from napari_conch.cli import classify_slides as classify_cli
from napari_conch.cli import embed as embed_cli
from napari_conch.cli.option_arguments import options_from_args
from napari_conch.engine.options import (
    CAPTION_DEFAULTS,
    DEFAULTS,
    DEMO_PROMPT_DEFAULTS,
    PROMPT_DEFAULTS,
    RANK_TEXTS_DEFAULTS,
    SEARCH_DEFAULTS,
    CaptionOptions,
    PromptOptions,
    RunOptions,
    SearchOptions,
    help_text,
    surface_of,
    surfaced_fields,
)

TEMPLATES = {"templates": "templates"}
BOTH = {"templates": "templates", "threshold": "threshold"}
COMMANDS_NEEDS = ["s.svs", "--prompts", "p.json", "--out", "o.csv"]
RANK_NEEDS = ["s.svs", "--box", "0", "0", "1", "1", "--text", "x"]
#: (subcommand, the least it needs, options class, defaults, {option: dest}).
COMMANDS = [
    ("embed", ["s.svs"], RunOptions, DEFAULTS, {n: n for n in embed_cli.EMBED_OPTIONS}),
    (
        "classify-slides",
        ["s.svs", "--prompts", "p.json", "--out", "o.csv"],
        RunOptions,
        DEFAULTS,
        {n: n for n in classify_cli.EMBED_OPTIONS},
    ),
    (
        "caption",
        ["s.svs", "--box", "0", "0", "1", "1"],
        CaptionOptions,
        CAPTION_DEFAULTS,
        {n: n for n in surfaced_fields(CaptionOptions)},
    ),
    ("search", ["st.zarr", "--prompt", "x"], SearchOptions, SEARCH_DEFAULTS, {"search_hits": "k"}),
    ("query", ["st.zarr", "--prompt", "x", "--out", "o.csv"], PromptOptions, PROMPT_DEFAULTS, BOTH),
    ("learn", ["st.zarr", "--save"], PromptOptions, PROMPT_DEFAULTS, TEMPLATES),
    ("classify-slides", COMMANDS_NEEDS, PromptOptions, PROMPT_DEFAULTS, TEMPLATES),
    ("search", ["st.zarr", "--prompt", "x"], PromptOptions, PROMPT_DEFAULTS, TEMPLATES),
    ("top-tiles", ["st.zarr", "--prompt", "x"], PromptOptions, PROMPT_DEFAULTS, TEMPLATES),
    ("rank-texts", RANK_NEEDS, PromptOptions, RANK_TEXTS_DEFAULTS, TEMPLATES),
    ("demo", ["--out", "d"], PromptOptions, DEMO_PROMPT_DEFAULTS, TEMPLATES),
    ("top-tiles", ["st.zarr", "--prompt", "x"], SearchOptions, SEARCH_DEFAULTS, {"top_tiles": "k"}),
]
IDS = [f"{command[0]}-{command[2].__name__}" for command in COMMANDS]


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    (action,) = [a for a in parser._actions if a.dest == dest]
    return action


@pytest.mark.parametrize(("command", "needs", "cls", "defaults", "dests"), COMMANDS, ids=IDS)
def test_parsed_defaults_are_the_dataclass_defaults(command, needs, cls, defaults, dests):
    args = build_parser().parse_args([command, *needs])
    for name, dest in dests.items():
        assert getattr(args, dest) == getattr(defaults, name), (command, name)


@pytest.mark.parametrize(("command", "needs", "cls", "defaults", "dests"), COMMANDS, ids=IDS)
def test_help_says_each_default_of_the_dataclass(command, needs, cls, defaults, dests):
    parser = _subparser(command)
    shown = " ".join(parser.format_help().split())  # argparse wraps the lines
    for name, dest in dests.items():
        action = _action(parser, dest)
        surface = surface_of(cls, name)
        assert surface.flag in action.option_strings, (command, name)
        if not action.help.startswith(surface.help):  # the command's own words, then the default
            words = action.help.rsplit(" (default", 1)[0]
            assert action.help == help_text(cls, name, defaults, words=words), (command, name)
        else:
            assert action.help == help_text(cls, name, defaults), (command, name)
        assert action.help in shown, (command, name)
        default = getattr(defaults, name)
        if isinstance(default, str):
            assert action.help.endswith(f"(default: {default})"), (command, name)
        elif default is not None:
            assert action.help.endswith(f"(default {default:g})"), (command, name)


def test_embed_and_caption_show_every_option_that_has_a_flag():
    """Every run option with a flag is an ``embed`` argument; every caption option a
    ``caption`` argument."""
    for cls, command in ((RunOptions, "embed"), (CaptionOptions, "caption")):
        flagged = {n for n in surfaced_fields(cls) if surface_of(cls, n).flag is not None}
        dests = {a.dest for a in _subparser(command)._actions}
        assert flagged <= dests, (command, flagged - dests)


@pytest.mark.parametrize(("command", "needs", "cls", "defaults", "dests"), COMMANDS, ids=IDS)
def test_numbers_out_of_bounds_are_refused_by_argparse(
    command, needs, cls, defaults, dests, capsys
):
    for name in dests:
        try:
            bounds = bounds_of(cls, name)
        except KeyError:
            continue  # a text option
        flag = surface_of(cls, name).flag
        # every whole-number option here refuses -1, every decimal one nan
        wrong = "-1" if bounds.kind is int else "nan"
        assert bounds.problem(int(wrong) if bounds.kind is int else float(wrong)), (command, name)
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([command, *needs, flag, wrong])
        assert info.value.code == 2
        assert f"argument {flag}" in capsys.readouterr().err


def test_arguments_come_back_as_the_options():
    args = build_parser().parse_args(
        ["embed", "s.svs", "--min-tissue", "0.5", "--batch-size", "8", "--store", "out"]
    )
    assert embed_cli.run_options(args) == DEFAULTS.replace(
        min_tissue=0.5, batch_size=8, store_root="out"
    )
    args = build_parser().parse_args(["classify-slides", *COMMANDS[1][1], "--tile-size", "64"])
    assert classify_cli.run_options(args) == DEFAULTS.replace(tile_size=64)
    args = build_parser().parse_args(["caption", *COMMANDS[2][1], "--strategy", "greedy"])
    caption = options_from_args(CaptionOptions, args, surfaced_fields(CaptionOptions))
    assert caption == CAPTION_DEFAULTS.replace(strategy="greedy")


def test_the_region_level_left_out_is_the_regions_own():
    args = build_parser().parse_args(
        ["rank-texts", "s.svs", "--box", "0", "0", "1", "1", "--text", "x"]
    )
    assert args.level is None and args.mpp is None
    assert (
        "pyramid level to read at (default: level 0)"
        in _action(_subparser("caption"), "level").help
    )
