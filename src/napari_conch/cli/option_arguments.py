"""Command-line arguments made from the options dataclasses' field metadata.

Each option of :mod:`napari_conch.engine.options` says its flag, help, metavar and choices in its
:class:`~napari_conch.engine.options.Surface`, and what numbers it accepts in its
:class:`~napari_conch.bounds.Bounds`; its default is the dataclass's. :func:`add_options` adds
the arguments a subcommand shows, with ``type=`` checking the bounds and the default filled into
the help, and :func:`options_from_args` turns the parsed arguments back into the dataclass.
Arguments that are no option (paths, outputs) stay written in their subcommand.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from napari_conch.bounds import bounds_of
from napari_conch.cli.common import number
from napari_conch.engine.options import help_text, surface_of


def argument_settings(
    cls: Any, name: str, defaults: Any = None, *, words: str | None = None
) -> dict[str, Any]:
    """The keywords of ``parser.add_argument`` for ``cls``'s option ``name``.

    Parameters
    ----------
    cls : type
        An options dataclass (``RunOptions``, ``CaptionOptions``, ...).
    name : str
        The field.
    defaults : instance of cls, optional
        Where the default comes from (``None``: the dataclass's own).
    words : str, optional
        The help's words when a subcommand says it its own way (the default is still added).
    """
    surface = surface_of(cls, name)
    base = cls() if defaults is None else defaults
    settings: dict[str, Any] = {
        "dest": name,
        "default": getattr(base, name),
        "help": help_text(cls, name, base, words=words),
    }
    if surface.metavar is not None:
        settings["metavar"] = surface.metavar
    if surface.choices is not None:
        settings["choices"] = surface.choices
    try:
        settings["type"] = number(bounds_of(cls, name))
    except KeyError:
        pass  # a text option
    return settings


def add_option(
    parser: Any,
    cls: Any,
    name: str,
    defaults: Any = None,
    *,
    words: str | None = None,
    aliases: Sequence[str] = (),
    dest: str | None = None,
    choices: Sequence[str] | None = None,
) -> argparse.Action:
    """Add the argument of ``cls``'s option ``name`` to ``parser`` (a parser or a group).

    ``aliases`` are more flags for it, ``dest`` another attribute name (``-k`` as ``args.k``),
    ``choices`` fewer choices than the option's (a command that offers only some); see
    :func:`argument_settings` for the rest.
    """
    flag = surface_of(cls, name).flag
    if flag is None:
        raise KeyError(f"{cls.__name__}.{name} has no command-line flag")
    settings = argument_settings(cls, name, defaults, words=words)
    if dest is not None:
        settings["dest"] = dest
    if choices is not None:
        settings["choices"] = tuple(choices)
    return parser.add_argument(flag, *aliases, **settings)


def add_options(parser: Any, cls: Any, names: Sequence[str], defaults: Any = None) -> None:
    """Add the arguments of ``cls``'s options ``names``, in that order."""
    for name in names:
        add_option(parser, cls, name, defaults)


def options_from_args(
    cls: Any, args: argparse.Namespace, names: Sequence[str], defaults: Any = None
) -> Any:
    """``defaults`` (``None``: ``cls()``) with the parsed values of ``names``; checked by the
    dataclass, so a bad combination is an error before any work."""
    import dataclasses

    base = cls() if defaults is None else defaults
    return dataclasses.replace(base, **{name: getattr(args, name) for name in names})
