"""The import structure: every module imports, the modules of bench and methods import each
other without a cycle, and the harness reaches the methods only through the registry (it may
import the method interface, ``methods.base``, which the one batch loop and the fused path run).

The graph is read from the source with :mod:`ast`: the imports a module runs when it is imported
(its top level and class bodies, not its functions, nor ``if TYPE_CHECKING:`` blocks). A package
importing its own submodules by discovery (``methods/__init__.py``) adds no edge to that graph,
and neither does a submodule's implicit import of its package.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods")
# what the harness may import from methods: the interface, not a method
METHOD_INTERFACE = {"methods.base"}
REGISTRY_LOADER = ("bench.registry", "_load_plugins")


def module_files() -> dict[str, Path]:
    """Dotted name -> file of every module of the packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    assert not node.level, f"{module}: a relative import (the packages import absolutely)"
    base = node.module or ""
    found = {f"{base}.{alias.name}" for alias in node.names} & known  # from pkg import submodule
    if base in known and not found:
        found.add(base)
    return found


def imports_of(tree: ast.Module, module: str, known: set[str], *, runtime_only: bool = True,
               ) -> list[tuple[str, str | None]]:
    """(imported module, enclosing function or None) of every import in ``tree``.

    runtime_only: only what runs on import (no function bodies, no TYPE_CHECKING blocks).
    """
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not runtime_only:
                    visit(child, child.name)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(ast.Module(body=[sub], type_ignores=[]), function)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((target, function) for target in _targets(child, module, known))
            else:
                visit(child, function)

    visit(tree, None)
    return found


def import_graph() -> dict[str, set[str]]:
    known = set(MODULES)
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = {target for target, _ in imports_of(tree, module, known)} - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, str] = {}   # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_the_imports_that_run_and_only_those() -> None:
    source = ("from typing import TYPE_CHECKING\nfrom bench import store\nimport bench.data\n"
              "from bench.config import RunSpec\n"
              "if TYPE_CHECKING:\n    from bench.engine import RunContext\n"
              "def f():\n    import methods\n"
              "class C:\n    from bench import stats\n")
    known = set(MODULES)
    tree = ast.parse(source)
    assert {t for t, _ in imports_of(tree, "bench.x", known)} == {
        "bench.store", "bench.data", "bench.config", "bench.stats"}
    assert ("methods", "f") in imports_of(tree, "bench.x", known, runtime_only=False)


def test_bench_and_methods_import_without_a_cycle() -> None:
    graph = import_graph()
    assert graph["bench.data"] >= {"bench.data_real", "bench.image_data"}  # the graph is read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _method_imports() -> dict[str, list[tuple[str, str | None]]]:
    """Bench module -> (methods module, enclosing function or None) of each of its imports of
    the methods package other than the interface."""
    known = set(MODULES)
    out: dict[str, list[tuple[str, str | None]]] = {}
    for module, path in MODULES.items():
        if not module.startswith("bench"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        where = [(target, function) for target, function in imports_of(
                     tree, module, known, runtime_only=False)
                 if target.split(".")[0] == "methods" and target not in METHOD_INTERFACE]
        if where:
            out[module] = where
    return out


def test_the_harness_reaches_the_methods_only_through_the_registry() -> None:
    found = _method_imports()
    registry, loader = REGISTRY_LOADER
    assert found.pop(registry, None) == [("methods", loader)], (
        "bench.registry loads the methods in its loader")
    assert not found, f"{found} import methods; reach them through bench.registry"


def test_the_method_interface_is_a_module_of_the_graph() -> None:
    assert METHOD_INTERFACE <= set(MODULES)
    assert {"bench.stats", "bench.grid.session", "bench.reporting.records"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(set(MODULES) - {"bench.__main__"}))
def test_every_module_imports(module) -> None:
    assert importlib.import_module(module).__file__ == str(MODULES[module])
