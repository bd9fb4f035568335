"""The runtime's shape: it reaches the export package only through ``lam_trt.export``'s public API,
and the memory limit counts the memory where the provider runs (a fake CuPy stands in for a GPU)."""
from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

import lam_trt.export
from lam_trt import runner
from lam_trt.errors import MemoryBudgetError

RUNTIME = Path(__file__).resolve().parent.parent / "lam_trt"
# The export command builds models from PyTorch checkpoints: these modules need the optional export
# extra (PyTorch), so lam_trt.export does not import them for every user.
TORCH_MODULES = {"lam_trt.export.checkpoint", "lam_trt.export.torch_export"}


def private_export_imports(source: str) -> list[str]:
    """Every import in ``source`` that reaches into lam_trt.export past its public API."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("lam_trt.export.")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("lam_trt.export."):
                found.append(node.module)
            elif node.module == "lam_trt.export":
                found += [f"lam_trt.export.{a.name}" for a in node.names if a.name not in lam_trt.export.__all__]
            elif node.module == "lam_trt" and any(a.name == "export" for a in node.names):
                found.append("lam_trt.export (the package object, not its names)")
    return [name for name in found if name not in TORCH_MODULES]


def test_the_runtime_uses_only_the_public_export_api():
    offenders = {str(p.relative_to(RUNTIME)): private_export_imports(p.read_text())
                 for p in sorted(RUNTIME.rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_check_catches_a_private_import():
    assert private_export_imports("from lam_trt.export.source import image_io") == ["lam_trt.export.source"]
    assert private_export_imports("import lam_trt.export.inspect") == ["lam_trt.export.inspect"]
    assert private_export_imports("from lam_trt.export import canonicalise") == ["lam_trt.export.canonicalise"]
    assert private_export_imports("from lam_trt.export import load_source_model") == []


PIPELINE = [RUNTIME / f"{name}.py" for name in
            ("attributor", "crop", "window", "result", "provenance", "runner", "device", "images", "metrics")]
PIPELINE += [*sorted((RUNTIME.parent / "kernels").glob("*.py")), RUNTIME.parent / "export" / "model.py"]


def function_lengths(path: Path) -> dict[str, int]:
    """{file:Class.function or file:function: lines} of every function in ``path``."""
    lengths = {}
    for top in ast.parse(path.read_text()).body:
        prefix = f"{top.name}." if isinstance(top, ast.ClassDef) else ""
        for n in ast.walk(top):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{path.name}:{prefix}{n.name}"] = n.end_lineno - n.lineno + 1
    return lengths


def test_the_pipeline_reads_in_short_functions():
    """The attribution pipeline's modules: no function over 50 lines, and Attributor.attribute an
    orchestrator of at most 25 (its signature and docstring included)."""
    lengths = {k: v for path in PIPELINE for k, v in function_lengths(path).items()}
    assert {k: v for k, v in lengths.items() if v > 50} == {}
    assert lengths["attributor.py:Attributor.attribute"] <= 25


def fake_cupy(free: int) -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(memGetInfo=lambda: (free, 4 * free)))
    return module


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.delenv(runner.MEMORY_ENV, raising=False)
    monkeypatch.setattr(runner, "available_memory", lambda: 64 << 30)
    return 64 << 30


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_providers_count_the_devices_free_memory(monkeypatch, host, provider):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(3 << 30))
    assert runner.memory_limit(provider) == 3 << 30
    assert runner.memory_limit("cpu") == host


def test_without_cupy_a_gpu_provider_falls_back_to_host_memory(monkeypatch, host):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    assert runner.memory_limit("cuda") == host


def test_the_environment_overrides_the_device(monkeypatch, host):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(3 << 30))
    monkeypatch.setenv(runner.MEMORY_ENV, "512M")
    assert runner.memory_limit("cuda") == 512 << 20


def test_a_forward_pass_larger_than_the_gpu_is_refused_on_the_gpu_only(monkeypatch, host):
    """A 1024x1024 image whose forward pass needs 8 GiB fits the host's 64 GiB, not a 3 GiB GPU."""
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(3 << 30))
    model = types.SimpleNamespace(forward_bytes=lambda shape: 8 << 30)
    runner.check_forward_fits(model, (3, 1024, 1024), "cpu")
    with pytest.raises(MemoryBudgetError, match="needs at least 8.0 GiB of memory, and 3.0 GiB is available"):
        runner.check_forward_fits(model, (3, 1024, 1024), "cuda")
