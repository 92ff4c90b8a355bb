"""No default of an option is written outside ``engine/options.py``.

The command line (``cli/``), the napari side (``_napari/``) and the slide layer (``slide/``) are
read as Python syntax trees, and every place where an option's default could be written as a
literal is looked at: a parameter default, a keyword argument, a widget's ``value``, an
``add_argument`` default or help. An option is any field of the options dataclasses that has a
surface, by its field name or its command-line name (``--beams`` is ``beams``, ``-k`` is ``k``).
``None`` (left out) is no default and is allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import napari_conch
from napari_conch.engine.options import OPTION_CLASSES, surface_of, surfaced_fields

SRC = Path(napari_conch.__file__).parent
#: Folders whose code must take every option default from engine/options.py.
CHECKED = ("cli", "_napari", "slide")
#: "default 0.25", "default: 32" in a help text.
DEFAULT_IN_TEXT = re.compile(r"default:? ?\d")


def _option_names() -> tuple[frozenset[str], frozenset[str]]:
    names, flags = set(), set()
    for cls in OPTION_CLASSES:
        for name in surfaced_fields(cls):
            names.add(name)
            flag = surface_of(cls, name).flag
            if flag is not None:
                flags.add(flag)
                names.add(flag.lstrip("-").replace("-", "_"))
    return frozenset(names), frozenset(flags)


NAMES, FLAGS = _option_names()


def _literal(node: ast.AST | None) -> bool:
    """A written value: a number or a text (``None`` and true/false are no default)."""
    return (
        isinstance(node, ast.Constant)
        and node.value is not None
        and not isinstance(node.value, bool)
    ) or (isinstance(node, ast.UnaryOp) and _literal(node.operand))


def _texts(node: ast.AST) -> list[str]:
    """The literal parts of a string or f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant)]
    if isinstance(node, ast.BinOp):
        return _texts(node.left) + _texts(node.right)
    return []


def _target_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def literal_defaults(source: str, where: str = "<code>") -> list[str]:
    """Every place in ``source`` where an option's default is written as a literal."""
    found = []

    def say(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{node.lineno}: {what}")

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            with_default = positional[len(positional) - len(args.defaults) :]
            pairs = list(zip(with_default, args.defaults, strict=True))
            pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)  # None: no default
            for arg, default in pairs:
                if arg.arg in NAMES and _literal(default):
                    say(default, f"parameter {arg.arg}={ast.unparse(default)}")
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in NAMES and _literal(kw.value):
                    say(kw.value, f"keyword {kw.arg}={ast.unparse(kw.value)}")
            if _target_name(node.func) == "add_argument":
                flags = {a.value for a in node.args if isinstance(a, ast.Constant)}
                if flags & FLAGS:
                    for kw in node.keywords:
                        if kw.arg == "default" and _literal(kw.value):
                            say(kw.value, f"{sorted(flags)} default={ast.unparse(kw.value)}")
                        if kw.arg == "help" and any(map(DEFAULT_IN_TEXT.search, _texts(kw.value))):
                            say(kw.value, f"{sorted(flags)} help says a default")
        elif isinstance(node, ast.Assign):
            value = node.value
            for target in node.targets:
                name = _target_name(target)
                if name == "value" and isinstance(target, ast.Attribute):
                    name = _target_name(target.value)  # panel.tile_size.value = 128
                    if name in NAMES and _literal(value):
                        say(value, f"{name}.value = {ast.unparse(value)}")
                elif name in NAMES and isinstance(value, ast.Call):
                    for kw in value.keywords:
                        if kw.arg == "value" and _literal(kw.value):
                            say(kw.value, f"{name} = widget(value={ast.unparse(kw.value)})")
    return found


def test_the_checker_finds_each_way_of_writing_a_default():
    """Each way a default could be copied is found (the check cannot pass by finding nothing)."""
    written = """
def scan(slide, grid, min_tissue=0.25): ...
def run(*, batch_size=32): ...
options = RunOptions(tile_size=448)
self.k = SpinBox(label="k", min=1, value=10)
panel.tile_size.value = 128
p.add_argument("--min-tissue", type=float, default=0.25)
p.add_argument("--batch-size", type=int, help=f"tiles per call (default 32)")
p.add_argument("--beams", help="beams (default: 4)")
p.add_argument("-k", default=20)
"""
    assert len(literal_defaults(written)) == 9
    allowed = """
def scan(slide, grid, min_tissue, tile_size=None, quiet=False): ...
options = RunOptions(tile_size=args.tile_size)
self.k = option_widget(SearchOptions, "top_tiles")
p.add_argument("--box", nargs=4, default=[0, 0, 1, 1], help="the box (default 0 0 1 1)")
p.add_argument("--stride", help=f"step (default {DEFAULTS.stride})")
"""
    assert literal_defaults(allowed) == []


@pytest.mark.parametrize("folder", CHECKED)
def test_no_option_default_is_written_outside_engine_options(folder):
    found = []
    for path in sorted((SRC / folder).rglob("*.py")):
        found += literal_defaults(path.read_text(), str(path.relative_to(SRC)))
    assert found == [], "\n".join(found)
