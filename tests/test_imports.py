"""The package's import graph: modules import one way, with no cycles (function-level imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import dnic_utils

PACKAGE = Path(dnic_utils.__file__).resolve().parent


def module_name(path: Path) -> str:
    """'dnic_utils.data.splits' for dnic_utils/data/splits.py, 'dnic_utils.data' for its __init__.py."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    """True for `if TYPE_CHECKING:`, whose imports never run."""
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package modules a file imports, at any depth of its code except under TYPE_CHECKING."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import plots` imports a module; `from .config import X` imports config
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in out if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports; importing a.b.c from outside package a.b also runs a.b's __init__."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imported(p, modules) for p in paths}
    for name, targets in graph.items():
        for target in list(targets):
            parent = target.rpartition(".")[0]
            if parent in modules and parent != "dnic_utils" and not name.startswith(parent + ".") and name != parent:
                targets.add(parent)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def test_the_import_graph_of_dnic_utils_is_acyclic() -> None:
    graph = import_graph()
    assert len(graph) > 20 and "dnic_utils.config" in graph["dnic_utils.train"]  # the graph is real, not empty
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_leaf_modules_import_nothing_of_the_package() -> None:
    graph = import_graph()
    for leaf in ("dnic_utils.errors", "dnic_utils.settings", "dnic_utils.files"):
        assert graph[leaf] == set(), leaf
    assert graph["dnic_utils.devices"] <= {"dnic_utils.errors"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
