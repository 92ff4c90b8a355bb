"""The import graph of the package: layers that only point down, parts without cycles.

Read from the source with :mod:`ast` (nothing is imported), at the level of the parts a reader
sees in the tree: ``model``, ``slide``, ``demo``, ``cli``, the top modules of ``engine`` and of
``_napari``, and each of their sub-packages (``engine.store``, ``_napari.docks``, ...).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import napari_conch

PACKAGE = Path(napari_conch.__file__).parent

#: What each layer may import (besides itself and the package's top modules: errors, bounds...).
ALLOWED = {
    "model": set(),
    "slide": set(),
    "engine": {"model", "slide"},
    "demo": {"model", "slide", "engine"},
    "_napari": {"model", "slide", "engine", "demo"},
    "cli": {"model", "slide", "engine", "demo", "_napari"},
}


def _module_name(path: Path) -> str:
    parts = ("napari_conch", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file()


def _imports(path: Path) -> set[str]:
    """The napari_conch modules ``path`` imports (at any place in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("napari_conch."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("napari_conch"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
    return {name for name in found if name != "napari_conch"}


def _part(module: str) -> str:
    """The part of the tree a module belongs to: ``engine``, ``engine.store``, ``model``..."""
    parts = module.split(".")[1:]
    if not parts:
        return "top"
    if parts == ["__main__"]:
        return "cli"  # python -m napari_conch runs the CLI
    if len(parts) == 1 and not (PACKAGE / parts[0]).is_dir():
        return "top"
    if (
        parts[0] in ("engine", "_napari")
        and len(parts) > 1
        and (PACKAGE / parts[0] / parts[1]).is_dir()
    ):
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _part(_module_name(path))
        for target in _imports(path):
            if _part(target) != source:
                graph[source].add(_part(target))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_parts_of_the_package_import_each_other_without_cycles():
    assert _cycles(_graph()) == []


def test_layers_only_import_downwards():
    upward = []
    for source, targets in _graph().items():
        layer = source.split(".")[0]
        if layer == "top":
            continue  # errors, bounds, json_input, generators; __main__ runs the CLI
        for target in targets:
            other = target.split(".")[0]
            if other not in ("top", layer) and other not in ALLOWED[layer]:
                upward.append(f"{source} -> {target}")
    assert upward == []


def test_the_graph_sees_the_sub_packages():
    graph = _graph()
    assert {"engine.store", "engine.session", "_napari.docks", "_napari.layers"} <= set(graph)
    assert "engine.store" in graph["engine.session"]  # a known edge, so the reader is not blind
