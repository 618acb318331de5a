"""The house's floors: every import in the package runs down (or sideways inside one part), never up.

Read from the code with ``ast`` (nothing is imported or run). A new module belongs to a part; a new
part gets a floor here, and docs/architecture.md says why it stands where it does.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from support.paths import PACKAGE

FLOORS = [
    {"errors", "events", "durable", "brokerurl"},
    {"config"},
    {"overrides", "provision", "audio"},
    {"models"},
    {"hw"},
    {"skills", "knowledge"},
    {"pipeline"},
    {"engines"},
    {"supervisor"},
    {"telemetry"},
    {"fleet", "optimize"},
    {"settings"},
    {"skillhost"},
    {"appliance"},
    {"commands"},
    {"cli", "__main__"},
]
"""Ground floor first. A part is a top-level module or sub-package of harken."""

ALLOWED_UP: set[tuple[str, str]] = set()
"""(importing module, imported module) pairs that run up, each explained in docs/architecture.md. None today."""


def _floor_of() -> dict[str, int]:
    return {part: n for n, parts in enumerate(FLOORS) for part in parts}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["harken", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every module of the package each module imports, anywhere in it (also inside functions)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in (name, "harken"):
                    edges[name].add(target)
    return edges


def _part(module: str) -> str:
    return module.split(".")[1]


def test_every_part_of_the_package_has_a_floor():
    floor = _floor_of()
    parts = {_part(m) for m in _modules() if m != "harken"}
    assert parts - floor.keys() == set(), "give each new part a floor in FLOORS (and docs/architecture.md)"
    assert floor.keys() - parts == set(), "FLOORS names a part that is gone"


def test_imports_run_down():
    floor = _floor_of()
    up = sorted((a, b) for a, bs in _imports(_modules()).items() for b in bs
                if floor[_part(b)] > floor[_part(a)] and (a, b) not in ALLOWED_UP)
    assert up == []


def test_no_module_imports_itself_back():
    """No circle of modules: A imports B imports ... imports A (the cycles that lazy imports hide too)."""
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in _modules():
        if module not in index:
            visit(module)
    assert circles == []


def test_module_names_are_distinct():
    """One file name, one job: no two modules share a base name (``__init__`` aside)."""
    names: dict[str, list[str]] = defaultdict(list)
    for module, path in _modules().items():
        if path.name != "__init__.py":
            names[path.stem].append(module)
    assert {stem: mods for stem, mods in names.items() if len(mods) > 1} == {}
