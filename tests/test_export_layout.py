"""How export/ hangs together: earlier stages import no rule module, the graph-cache key follows the
modules the graph builder imports, and one geometry resolver serves every windowed op."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lam_trt.export.builder import Node
from lam_trt.export.graph_format import code_fingerprint, graph_modules, imported_modules
from lam_trt.export.vjp.geometry import geometry

ROOT = Path(__file__).resolve().parent.parent
EXPORT = ROOT / "export"
RULES = EXPORT / "vjp"
RULE_MODULES = {p.stem for p in RULES.glob("*.py")} - {"__init__"}
# the registry (export/vjp/__init__.py) and the reverse-mode pass may import rule modules
MAY_IMPORT_RULES = {RULES / "__init__.py", EXPORT / "autodiff.py"}
SOURCES = sorted(p for folder in ("export", "lam_trt", "kernels") for p in (ROOT / folder).rglob("*.py"))


def ast_imports(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, by Python's own parser (``from X import y``: X and X.y)."""
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


def package_of(path: Path) -> str:
    """The package a source file belongs to, by the install mapping (export/ is lam_trt.export)."""
    parts = list(path.relative_to(ROOT).parent.parts)
    if parts and parts[0] in ("export", "kernels"):
        parts = ["lam_trt"] + parts
    return ".".join(parts)


def test_no_module_outside_the_rules_imports_a_rule_module() -> None:
    assert EXPORT / "specialise.py" in SOURCES and RULES / "conv.py" in SOURCES
    offenders = []
    for path in SOURCES:
        if path.parent == RULES or path in MAY_IMPORT_RULES:
            continue
        rules = {m for m in ast_imports(path, package_of(path))
                 if m.startswith("lam_trt.export.vjp.") and m.split(".")[3] in RULE_MODULES}
        offenders += [f"{path.relative_to(ROOT)} imports {m}" for m in sorted(rules)]
    assert not offenders, offenders


def test_the_import_check_sees_rule_imports(tmp_path: Path) -> None:
    """The check above can fail: both import forms of a rule module are seen, at any depth."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from lam_trt.export.vjp.conv import vjp_conv\n"
                      "from lam_trt.export.vjp import shape\n")
    found = ast_imports(source, "lam_trt.export")
    assert {"lam_trt.export.vjp.conv", "lam_trt.export.vjp.shape"} <= found


def test_the_cache_keys_import_reader_agrees_with_pythons_parser() -> None:
    """graph_format reads import statements from the text (fast at every start); the parser is the truth."""
    for path in SOURCES:
        project = lambda names: {n for n in names if n.startswith("lam_trt")}  # noqa: E731
        assert project(imported_modules(path, package_of(path))) == project(ast_imports(path, package_of(path))), path


def test_graph_modules_are_the_builders_imports() -> None:
    modules = graph_modules(EXPORT)
    assert {"attribution_graph", "autodiff", "specialise", "detector", "source", "vjp", "vjp.conv",
            "vjp.conv_weights", "vjp.separable"} <= set(modules)
    assert not {"model_report", "receptive_field", "torch_export", "checkpoint", "train", "train_demo"} & set(modules)


def test_cache_key_follows_the_builders_code(tmp_path: Path) -> None:
    """Editing a module the builder never imports keeps the key; editing a rule module changes it."""
    copy = tmp_path / "export"
    shutil.copytree(EXPORT, copy, ignore=shutil.ignore_patterns("__pycache__", "zoo"))
    key = code_fingerprint(copy)
    assert key == code_fingerprint(EXPORT)
    with open(copy / "model_report.py", "a") as f:
        f.write("\n# an edit the graph builder never sees\n")
    assert code_fingerprint(copy) == key
    with open(copy / "vjp" / "conv.py", "a") as f:
        f.write("\n# an edit to a rule\n")
    assert code_fingerprint(copy) != key


def run_node(node: onnx.NodeProto, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("op, attrs", [
    ("Conv", dict(auto_pad="SAME_UPPER", strides=[2, 1])),
    ("Conv", dict(auto_pad="SAME_LOWER", strides=[2, 2])),  # ORT has no dilated SAME
    ("Conv", dict(auto_pad="VALID", strides=[1, 2])),
    ("ConvTranspose", dict(strides=[2, 2], output_shape=[9, 10])),  # odd total padding: the extra pixel first
    ("ConvTranspose", dict(strides=[2, 2], output_shape=[10, 11], dilations=[1, 2])),
    ("ConvTranspose", dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ("ConvTranspose", dict(strides=[2, 1], auto_pad="SAME_LOWER")),
])
def test_geometry_resolves_pads_as_onnx_runtime_does(op: str, attrs: dict) -> None:
    """The one geometry resolver's explicit pads give ONNX Runtime's own output for auto_pad/output_shape."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((2, 3, 4, 3) if op == "ConvTranspose" else (3, 2, 4, 3)).astype(np.float32)
    expected = run_node(helper.make_node(op, ["x", "w"], ["y"], **attrs), x, w)
    geo = geometry(Node.from_proto(helper.make_node(op, ["x", "w"], ["y"], **attrs)), x.shape, w.shape, expected.shape)
    explicit = {k: v for k, v in attrs.items() if k not in ("auto_pad", "output_shape")}
    actual = run_node(helper.make_node(op, ["x", "w"], ["y"], **explicit, pads=geo.pads), x, w)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
