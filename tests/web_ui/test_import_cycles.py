"""No import cycles inside web_ui/: a module that two views share lives in its own module, not in one of the views.

Every import counts wherever it is (module level or inside a function: a lazy import hides a cycle, it does not
remove it), except those under ``if TYPE_CHECKING:`` (never run) and a package's own ``__init__`` importing its
submodules (``views.register`` imports every view; each view takes ``ctx`` from the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_import_direction import module_name

ROOT = Path(__file__).resolve().parents[2]


def _type_checking_nodes(tree: ast.AST) -> set[ast.AST]:
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(ast.walk(child))
    return skipped


def import_graph(package: str = "web_ui") -> dict[str, set[str]]:
    files = {module_name(p, ROOT): p for p in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if node in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - (node.level - 1)] if node.level else []
                target = ".".join([*base, node.module] if node.module else base)
                targets = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            for target in targets:
                if target in files and target != name and not (is_package and target.startswith(name + ".")):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, as the path of modules from its smallest name back to it."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return found


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    assert "web_ui.views" in graph["web_ui.app"]  # `from .views import register` inside create_app
    assert "web_ui.agents" in graph["web_ui.views.connect"]


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_web_ui_has_no_import_cycles() -> None:
    assert [" → ".join(cycle) for cycle in cycles(import_graph())] == []
