"""The package's import graph: no cycles (imports inside functions count too) and imports only point down.

Read from the source with ``ast``, so an import inside a function, a ``TYPE_CHECKING`` block or a
branch that a test never runs counts the same as one at the top of a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "portmon"

SHARED = "shared"
"""The modules at the top of the package (model, registry, portspec, output, ...): what every layer uses."""

ALLOWED: dict[str, frozenset[str]] = {
    SHARED: frozenset({SHARED}),
    "collect": frozenset({SHARED, "collect"}),
    "ownership": frozenset({SHARED, "collect", "ownership"}),
    "query": frozenset({SHARED, "collect", "ownership", "query"}),
    "history": frozenset({SHARED, "collect", "ownership", "query", "history"}),
    "export": frozenset({SHARED, "collect", "ownership", "query", "export"}),
    "remote": frozenset({SHARED, "collect", "remote"}),
    "actions": frozenset({SHARED, "collect", "ownership", "query", "actions"}),
    "ui": frozenset({SHARED, "collect", "ownership", "query", "history", "export", "actions", "remote", "ui"}),
    "cli": frozenset(
        {SHARED, "collect", "ownership", "query", "history", "export", "actions", "remote", "ui", "cli"}
    ),
}
"""Which layers each layer may import (its own included): cli -> ui -> actions/query -> collect -> shared.

A new subpackage must be placed here before it can be imported; the test below names it otherwise.
"""

TERMINAL_LIBRARIES = ("textual", "rich")
"""Third-party packages only ``portmon.ui`` may import."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    """``portmon.collect.procfs`` -> ``collect``; ``portmon.model`` (and ``portmon``) -> shared."""
    if module == "portmon.__main__":  # ``python -m portmon``: the command line's entry point
        return "cli"
    parts = module.split(".")
    if len(parts) >= 2 and f"portmon.{parts[1]}" in MODULES and MODULES[f"portmon.{parts[1]}"].name == "__init__.py":
        return parts[1]
    return SHARED


def imported_names(module: str, tree: ast.AST) -> set[str]:
    """Every module named by an import anywhere in the tree, relative imports resolved.

    ``from portmon.cli import kill`` names ``portmon.cli.kill`` when that is a module, else ``portmon.cli``.
    """
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            for alias in node.names:
                full = f"{stem}.{alias.name}"
                names.add(full if full in MODULES else stem)
    return names


def import_graph() -> dict[str, set[str]]:
    """portmon module -> the portmon modules it imports (a package's ``__init__`` is not counted for its parent)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = {
            name for name in imported_names(module, tree) if name in MODULES and name != module and name != "portmon"
        }
    return graph


def third_party_imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    return {name.split(".")[0] for name in imported_names(module, tree) if name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module (or a module importing itself), sorted.

    Tarjan's algorithm, iteratively, so the depth of the package cannot hit the recursion limit.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        cycles.append(sorted(component))
    return sorted(cycles)


def test_the_graph_sees_every_kind_of_import() -> None:
    tree = ast.parse(
        "import portmon.model\n"
        "from portmon.query import sorting\n"
        "from . import context\n"
        "from ..registry import Registry\n"
        "def late():\n"
        "    from portmon.collect.base import Collector\n"
        "if TYPE_CHECKING:\n"
        "    from portmon.output import endpoint\n"
    )
    names = imported_names("portmon.cli.list", tree)
    assert {
        "portmon.model",
        "portmon.query.sorting",
        "portmon.cli.context",
        "portmon.registry",
        "portmon.collect.base",
        "portmon.output",
    } <= names


def test_find_cycles_finds_direct_indirect_and_self_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}, "f": set()}
    assert find_cycles(graph) == [["a", "b", "c"], ["d"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_subpackage_has_a_place_in_the_layers() -> None:
    unknown = sorted({layer_of(m) for m in MODULES} - set(ALLOWED))
    assert not unknown, f"subpackages without a layer: {unknown}; add each to ALLOWED in tests/test_layers.py"


def test_layer_of_names_the_subpackage_or_shared() -> None:
    assert layer_of("portmon.collect.procfs") == "collect"
    assert layer_of("portmon.cli") == "cli"
    assert layer_of("portmon.model") == SHARED
    assert layer_of("portmon") == SHARED
    assert layer_of("portmon.__main__") == "cli"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down(module: str) -> None:
    layer = layer_of(module)
    allowed = ALLOWED.get(layer, frozenset())
    upward = sorted(name for name in import_graph_cached()[module] if layer_of(name) not in allowed)
    assert not upward, f"{module} ({layer}) imports {upward}; {layer} may import only {sorted(allowed)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) != "ui"))
def test_only_the_ui_imports_terminal_libraries(module: str) -> None:
    assert not third_party_imports(module) & set(TERMINAL_LIBRARIES)


def test_the_rules_catch_an_upward_import() -> None:
    # The rule table itself: a collector importing the CLI, or the query layer importing actions, is refused.
    assert "cli" not in ALLOWED["collect"]
    assert "actions" not in ALLOWED["query"]
    assert "ui" not in ALLOWED["actions"] and "cli" not in ALLOWED["ui"]
    assert ALLOWED[SHARED] == {SHARED}


_GRAPH: dict[str, set[str]] = {}


def import_graph_cached() -> dict[str, set[str]]:
    if not _GRAPH:
        _GRAPH.update(import_graph())
    return _GRAPH
