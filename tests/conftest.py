"""Shared harness: build an attribution graph, run it in ONNX Runtime, compare with torch.autograd.

Test modules import nothing from here; they take the fixtures at the bottom (`check_attribution`,
`harness`). Helper modules beside this file (nets.py, reference_lam.py) are importable by their bare
names: pytest puts tests/ on sys.path.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from lam_trt.export.autodiff import unsupported_nodes
from reference_lam import Gradients, weighted_gradients

Window = tuple[int, int, int, int]  # (top, left, height, width)
SHAPE_OPS = {"Shape", "Size"}  # their outputs never carry a gradient


@dataclass
class GraphRun:
    detector: np.ndarray  # [N]
    attribution: np.ndarray  # [C,h,w]
    contribution: np.ndarray  # [N]


def data_path_ops(model: onnx.ModelProto) -> set[str]:
    """Op types of the nodes that depend on the graph's data input (not only on its shape)."""
    constants = {i.name for i in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in constants}
    ops = set()
    for node in model.graph.node:
        if node.op_type not in SHAPE_OPS and any(name in live for name in node.input if name):
            ops.add(node.op_type)
            live.update(node.output)
    return ops


def default_window(out_hw: tuple[int, int]) -> Window:
    """A window strictly inside the (H-1)x(W-1) detector map where the map allows a margin."""
    rows, cols = out_hw[0] - 1, out_hw[1] - 1
    top, left = rows // 4, cols // 4
    return top, left, max(1, rows - top - rows // 5), max(1, cols - left - cols // 5)


def rel_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    scale = float(np.linalg.norm(expected))
    return float(np.linalg.norm(np.asarray(actual, np.float64) - expected)) / (scale if scale > 0 else 1.0)


def make_session(graph: onnx.ModelProto | str | Path) -> ort.InferenceSession:
    source = graph.SerializeToString() if isinstance(graph, onnx.ModelProto) else str(graph)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def hand_model(nodes: list[onnx.NodeProto], input_shape: tuple[int, int, int], opset: int = 17,
               initializers: dict[str, np.ndarray] | None = None, check: bool = True) -> onnx.ModelProto:
    """A hand-built model: input "input" [N,C,h,w] (N dynamic) -> "output", for ops torch never emits.

    check=False skips onnx.checker, which rejects ops deprecated later (opset-18 GroupNormalization)."""
    graph = helper.make_graph(
        nodes, "hand_built", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "C_out", "H_out", "W_out"])],
        initializer=[numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)  # readable by the onnxruntime we test with
    if check:
        onnx.checker.check_model(model)
    return model


def build_graph(source: onnx.ModelProto | str | Path, input_shape: tuple[int, int, int]) -> onnx.ModelProto:
    from lam_trt.export import build_attribution_graph

    return build_attribution_graph(source if isinstance(source, onnx.ModelProto) else str(source), input_shape)


def run_graph(session: ort.InferenceSession, path: np.ndarray, weights: np.ndarray, window: Window) -> GraphRun:
    feeds = {"path": path.astype(np.float32), "weights": weights.astype(np.float32),
             "windows": np.asarray(window, dtype=np.int64)[None]}
    d, a, c = (v[0] for v in session.run(["detector", "attribution", "contribution"], feeds))
    n, shape = path.shape[0], path.shape[1:]
    assert d.shape == (n,) and c.shape == (n,) and a.shape == shape, (d.shape, a.shape, c.shape)
    return GraphRun(d, a, c)


def as_float64(fn: nn.Module | Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float64 copy of a module (constants created in forward promote to float64 by themselves)."""
    return copy.deepcopy(fn).double().eval() if isinstance(fn, nn.Module) else fn


def reference(fn: Callable, path: np.ndarray, weights: np.ndarray, window: Window) -> Gradients:
    top, left, height, width = window
    g = weighted_gradients(as_float64(fn), torch.from_numpy(path).double(), torch.from_numpy(weights).double(),
                           top, left, (height, width))
    return Gradients(*(t.numpy() for t in g))


def assert_matches(run: GraphRun, ref: Gradients, rtol: float) -> None:
    errors = {"detector": rel_l2(run.detector, ref.detector),
              "attribution": rel_l2(run.attribution, ref.attribution),
              "contribution": rel_l2(run.contribution, ref.contribution)}
    np.testing.assert_allclose(run.detector, ref.detector, rtol=rtol, err_msg="detector per item")
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v < rtol}
    assert not bad, f"relative L2 error above {rtol:g}: {bad}"


def random_batch(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, *shape)).astype(np.float32),
            rng.standard_normal((n, *shape)).astype(np.float32))


def assert_source_matches_torch(source: onnx.ModelProto | str | Path, fn: Callable, x: np.ndarray) -> tuple[int, int]:
    """The exported ONNX must compute what torch computes, else a failure would blame the wrong side."""
    expected = as_float64(fn)(torch.from_numpy(x).double()).detach().numpy()
    session = make_session(source)
    name = session.get_inputs()[0].name
    if session.get_inputs()[0].shape[0] == 1:  # a fixed-batch source runs one item at a time
        actual = np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    else:
        actual = session.run(None, {name: x})[0]
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max()), 1e-6)
    assert float(np.abs(actual - expected).max()) <= 1e-5 * scale + 1e-6, "source ONNX differs from torch"
    assert expected.ndim == 4 and min(expected.shape[2:]) >= 3, f"output {expected.shape} is not an image"
    return expected.shape[2], expected.shape[3]


class AttributionChecker:
    """check(source, fn, input_shape, ops): the graph of source agrees with autograd through fn."""

    def __call__(self, source: onnx.ModelProto | str | Path, fn: Callable, input_shape: tuple[int, int, int],
                 ops: str | tuple[str, ...] = (), n: int = 2, rtol: float = 1e-5, seed: int = 0,
                 window: Window | None = None) -> GraphRun:
        model = source if isinstance(source, onnx.ModelProto) else onnx.load(str(source))
        present = data_path_ops(model)
        for op in (ops,) if isinstance(ops, str) else ops:
            assert op in present, f"{op} is not on the data path of the source model: {sorted(present)}"
        path, weights = random_batch(n, input_shape, seed)
        out_hw = assert_source_matches_torch(source, fn, path)
        window = window or default_window(out_hw)
        graph = build_graph(source, input_shape)
        assert not unsupported_nodes(model), "the pre-check refuses a graph the builder builds"
        run = run_graph(make_session(graph), path, weights, window)
        assert_matches(run, reference(fn, path, weights, window), rtol)
        return run


@pytest.fixture
def shared_graph_cache(tmp_path_factory, monkeypatch):
    """One graph cache for the whole session (modules ask for it with ``usefixtures``): every
    attribution graph is built once however many tests use it."""
    monkeypatch.setenv("LAM_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "graph-cache"))


@pytest.fixture(scope="session")
def check_attribution() -> AttributionChecker:
    return AttributionChecker()


@pytest.fixture(scope="session")
def harness() -> SimpleNamespace:
    """The building blocks above, for tests that need more than one check_attribution call."""
    return SimpleNamespace(
        data_path_ops=data_path_ops, default_window=default_window, rel_l2=rel_l2, make_session=make_session,
        hand_model=hand_model, build_graph=build_graph, run_graph=run_graph, reference=reference,
        assert_matches=assert_matches, random_batch=random_batch,
        assert_source_matches_torch=assert_source_matches_torch)
