"""The graph-cache key's code part: a hash of exactly the modules that building a graph imports.

The modules are found by following the import statements of ``attribution_graph`` through the source
files (imports inside functions too), so a rule module counts because the registry imports it, and a
module the builder never imports (the model report, the exporters) changes no key.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "lam_trt.export"
HERE = Path(__file__).resolve().parent
ENTRY = "attribution_graph"


def imported_modules(path: Path, package: str) -> set[str]:
    """Dotted names of every module ``path`` (a module of ``package``) imports, anywhere in the file;
    ``from X import y`` gives ``X`` and ``X.y`` (y may be a submodule)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def module_file(folder: Path, name: str) -> Path | None:
    """The source of ``lam_trt.export.<name>`` under ``folder`` (None: not a module there)."""
    base = folder.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def graph_modules(folder: Path = HERE) -> list[str]:
    """Modules of lam_trt.export (names relative to it) that importing the graph builder loads, its
    subpackages' ``__init__`` included; the package's own ``__init__`` (the public face) is not."""
    seen: set[str] = set()
    todo = [ENTRY]
    while todo:
        name = todo.pop()
        path = module_file(folder, name)
        if name in seen or path is None:
            continue
        seen.add(name)
        package = f"{PACKAGE}.{name}" if path.name == "__init__.py" else f"{PACKAGE}.{name}".rpartition(".")[0]
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # a submodule runs its package first
        todo += [m[len(PACKAGE) + 1:] for m in imported_modules(path, package) if m.startswith(PACKAGE + ".")]
    return sorted(seen)


def code_fingerprint(folder: Path = HERE) -> str:
    """A hash of the code that shapes an attribution graph: any change to a rule, the detector or the
    specialisation gives new cache keys, so no cache serves a graph an older lam-trt built."""
    digest = hashlib.sha256()
    for name in graph_modules(folder):
        digest.update(name.encode() + b"\0" + module_file(folder, name).read_bytes())
    return digest.hexdigest()[:12]
