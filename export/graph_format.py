"""The graph-cache key's code part: a hash of exactly the modules that building a graph imports.

The modules are found by following the import statements of ``attribution_graph`` through the source
files (imports inside functions too), so a rule module counts because the registry imports it, and a
module the builder never imports (the model report, the exporters) changes no key.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

PACKAGE = "lam_trt.export"
HERE = Path(__file__).resolve().parent
ENTRY = "attribution_graph"


# Import statements, read from the text (parsing every module's syntax tree costs each CLI start
# a tenth of a second or more): "from X import a, b" (parenthesised over lines too) and "import X".
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
PLAIN_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n]+)", re.M)


def imported_modules(path: Path, package: str) -> set[str]:
    """Dotted names of every module ``path`` (a module of ``package``) imports, anywhere in the file;
    ``from X import y`` gives ``X`` and ``X.y`` (y may be a submodule)."""
    text = path.read_text()
    names = {name for match in PLAIN_IMPORT.finditer(text) for name in _names(match.group(1))}
    for dots, module, imported in FROM_IMPORT.findall(text):
        base = module
        if dots:
            parent = package.split(".")[: len(package.split(".")) - len(dots) + 1]
            base = ".".join(parent + ([module] if module else []))
        names.add(base)
        names.update(f"{base}.{name}" for name in _names(imported))
    return names


def _names(imported: str) -> list[str]:
    """``a, b as c, (d)`` -> [a, b, d]: comments, parentheses and aliases dropped."""
    bare = re.sub(r"#[^\n]*", "", imported).replace("(", " ").replace(")", " ")
    return [part.split()[0] for part in bare.split(",") if part.split()]


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
