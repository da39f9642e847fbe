"""The module graph: no import cycle among kubefab's modules (imports inside functions count), and product
code never imports the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGES = ("playbooks", "pki")


def module_graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(("kubefab", *path.relative_to(ROOT).with_suffix("").parts)).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            # `from kubefab.playbooks.components import x` needs the package itself, not `x` when x is a name in it.
            deps |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return [*path[path.index(d) :], d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle() -> None:
    graph = module_graph()
    assert len(graph) > 40
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_product_code_never_imports_the_tests() -> None:
    sources = [
        p
        for package in PACKAGES
        for p in (ROOT / package).rglob("*.py")
        if any(
            (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "tests")
            or (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "tests" for a in n.names))
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert not sources, sources
