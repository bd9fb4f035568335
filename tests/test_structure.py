"""The project's shape, checked from its source: no import cycle among its modules (data flows one way:
image -> path -> attribution graph -> runner -> result -> report) and no function longer than 50 lines."""
from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package name it is installed as (pyproject.toml's package-dir)
PACKAGES = {"lam_trt": "lam_trt", "export": "lam_trt.export", "kernels": "lam_trt.kernels"}
MAX_FUNCTION_LINES = 50


def project_modules() -> dict[str, Path]:
    """Every project module by its installed dotted name (a package by its own name)."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """The project modules this one imports, at any depth (a function-level import is an edge too: it
    hides a cycle, it does not remove it); ``from A import B`` is an edge to A.B where that is a
    module, else to A. Imports under ``if TYPE_CHECKING:`` never run and do not count."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _type_checking_only(node, parents):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not _type_checking_only(node, parents):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "modules that import each other (directly or around a loop):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "lam_trt.scaleout" in graph["lam_trt.commands.batch"]       # imported inside the command
    assert "lam_trt.kernels.gaussian" in graph["lam_trt.kernels.paths"]  # ``from .gaussian import ...``
    assert "lam_trt.batch.rows" in graph["lam_trt.scaleout"]


def long_functions() -> list[str]:
    out = []
    for name, path in project_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_longer_than_50_lines():
    long = long_functions()
    assert not long, "functions longer than 50 lines:\n" + "\n".join(long)


def test_attribute_is_a_short_orchestrator():
    """Attributor.attribute reads as image -> path -> endpoints -> crop -> runner -> result: at most 25
    lines, its signature and docstring included."""
    tree = ast.parse((ROOT / "lam_trt" / "attributor.py").read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Attributor"]
    [method] = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "attribute"]
    assert method.end_lineno - method.lineno + 1 <= 25
