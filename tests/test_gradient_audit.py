"""Gradient paths cut by a data-dependent selection are named; a quantiser's lost straight-through
estimator is detected, and --straight-through gives torch autograd's map for it.

RestoreFormer (spandrel, small config) quantises with ``z + (z_q - z).detach()``; the ONNX export
drops the detach, so the exported function's exact derivative through the codebook is zero.
"""
from __future__ import annotations

import contextlib
import copy
import types
import numpy as np
import pytest
import torch
from onnx import helper

from lam_trt.export import build_attribution_graph
from lam_trt.export.options import GraphOptions, export_warnings

pytest.importorskip("spandrel")


@contextlib.contextmanager
def detach_is_identity():
    original = torch.Tensor.detach
    torch.Tensor.detach = lambda self: self
    try:
        yield
    finally:
        torch.Tensor.detach = original


def without_detach(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose quantiser ignores .detach(): the function the ONNX export really contains."""
    twin = copy.deepcopy(model)
    quantize = twin.model.quantize
    forward = type(quantize).forward

    def detach_free(self, *args, **kwargs):
        with detach_is_identity():
            return forward(self, *args, **kwargs)

    quantize.forward = types.MethodType(detach_free, quantize)
    return twin


@pytest.fixture(scope="module")
def restoreformer(tmp_path_factory):
    from spandrel_cases import CASES_BY_NAME, build_model, export_case

    case = CASES_BY_NAME["RestoreFormer"]
    model = build_model(case)
    path = tmp_path_factory.mktemp("restoreformer") / "restoreformer.onnx"
    export_case(model, torch.rand(1, 3, case.size, case.size), str(path), "torchscript")
    return model, path, (3, case.size, case.size)


def check(harness, graph, fn, shape, rtol=1e-4):
    path, weights = harness.random_batch(1, shape, 0)
    path = np.clip(0.5 + 0.2 * path, 0, 1).astype(np.float32)
    window = harness.default_window(shape[1:])
    run = harness.run_graph(harness.make_session(graph), path, weights, window)
    expected = harness.reference(fn, path, weights, window)
    return harness.rel_l2(run.attribution, expected.attribution)


def test_lost_straight_through_is_named_and_exact_for_the_exported_function(restoreformer, harness) -> None:
    model, path, shape = restoreformer
    graph = build_attribution_graph(str(path), shape)
    [warning] = export_warnings(graph)
    assert "'/model/quantize/Add_1'" in warning and "ArgMin '/model/quantize/ArgMin'" in warning
    assert "--straight-through" in warning
    assert check(harness, graph, without_detach(model), shape) < 1e-4
    assert check(harness, graph, model, shape) > 0.5  # torch's straight-through map is far from it


def test_straight_through_option_matches_torch_autograd(restoreformer, harness) -> None:
    model, path, shape = restoreformer
    graph = build_attribution_graph(str(path), shape, options=GraphOptions(straight_through=True))
    [warning] = export_warnings(graph)
    assert warning.startswith("straight-through estimator applied at '/model/quantize/Add_1'")
    assert check(harness, graph, model, shape) < 1e-4


def test_selection_that_cuts_the_gradient_is_named(harness) -> None:
    """y = x * x[channel of largest mean], as a one-hot mask: the choice carries no gradient."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["score"], axes=[2, 3], keepdims=0),
        helper.make_node("ArgMax", ["score"], ["best"], axis=1, keepdims=1, name="router"),
        helper.make_node("OneHot", ["best", "depth", "values"], ["hot"], axis=-1),  # [N, 1, 3]
        helper.make_node("Transpose", ["hot"], ["hot_t"], perm=[0, 2, 1]),
        helper.make_node("Unsqueeze", ["hot_t", "last"], ["mask"]),  # [N, 3, 1, 1]
        helper.make_node("Mul", ["input", "mask"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "channel"], ["picked"], keepdims=1),
        helper.make_node("Mul", ["input", "picked"], ["output"]),
    ]
    model = harness.hand_model(nodes, (3, 5, 5), initializers={
        "depth": np.array(3, np.int64), "values": np.array([0, 1], np.float32),
        "last": np.array([3], np.int64), "channel": np.array([1], np.int64)})
    graph = build_attribution_graph(model, (3, 5, 5))
    [warning] = export_warnings(graph)
    assert "ArgMax 'router'" in warning and "does not flow" in warning


def test_plain_network_has_no_warning(harness) -> None:
    w = np.ones((2, 2, 3, 3), np.float32)
    model = harness.hand_model([helper.make_node("Conv", ["input", "W"], ["output"], pads=[1, 1, 1, 1])],
                               (2, 4, 4), initializers={"W": w})
    assert export_warnings(build_attribution_graph(model, (2, 4, 4))) == []


def test_a_model_that_onnxruntime_cannot_run_is_blamed_on_the_export(harness) -> None:
    """A file whose own graph fails in ONNX Runtime (here a Reshape to an impossible shape): one
    line that says the export is at fault, not a probe error."""
    from lam_trt.errors import ModelError

    nodes = [helper.make_node("Shape", ["input"], ["shape"]),
             helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
             helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["input", "target"], ["output"])]
    model = harness.hand_model(nodes, (3, 4, 4), initializers={
        "zero": np.array([0], np.int64), "one": np.array([1], np.int64), "rest": np.array([5, 7, 7], np.int64)})
    with pytest.raises(ModelError, match=r"^the exported model itself does not run in ONNX Runtime at input "
                                         r"\[3, 4, 4\] \(a fault of the export, not of lam-trt"):
        build_attribution_graph(model, (3, 4, 4))
