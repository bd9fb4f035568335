"""Properties of the attribution graph itself: valid standard ONNX, one graph for every window,
survives saving, batch-independent, and a clear error for ops without a gradient rule."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from onnx import TensorProto, helper

from lam_trt.errors import UnsupportedOpError
from nets import NETS, export_onnx, seeded

SHAPE = (3, 8, 8)  # every net here is x2: output 16x16, detector map 15x15
STANDARD_DOMAINS = {"", "ai.onnx"}


@pytest.fixture(scope="module", params=["ResidualCA", "TinyAttentionSR"])
def built(request, tmp_path_factory, harness):
    """(net, source path, attribution graph, session), built once per net for this module."""
    net = seeded(NETS[request.param])
    source = export_onnx(net, SHAPE, tmp_path_factory.mktemp(request.param) / "source.onnx")
    graph = harness.build_graph(source, SHAPE)
    return net, source, graph, harness.make_session(graph)


def test_passes_full_onnx_check(built):
    onnx.checker.check_model(built[2], full_check=True)


def test_only_standard_onnx_ops(built):
    graph = built[2]
    assert {o.domain for o in graph.opset_import} <= STANDARD_DOMAINS
    assert {n.domain for n in graph.graph.node} <= STANDARD_DOMAINS
    scatter = [n.name or n.op_type for n in graph.graph.node if n.op_type in ("ScatterND", "ScatterElements")
               and any(a.name == "reduction" and a.s not in (b"", b"none") for a in n.attribute)]
    assert not scatter, f"scatter with reduction (not portable to TensorRT): {scatter}"


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def test_signature(built):
    graph = built[2].graph
    inputs, outputs = {i.name: i for i in graph.input}, {o.name: o for o in graph.output}
    assert set(inputs) == {"path", "weights", "windows"}
    assert {"detector", "attribution", "contribution"} <= set(outputs)
    for name in ("path", "weights"):
        assert inputs[name].type.tensor_type.elem_type == TensorProto.FLOAT
        assert isinstance(_dims(inputs[name])[0], str) and _dims(inputs[name])[1:] == list(SHAPE)
    assert inputs["windows"].type.tensor_type.elem_type == TensorProto.INT64 and _dims(inputs["windows"]) == ["K", 4]


def test_sr_output_is_the_models_output(built, harness):
    """The graph's ``sr`` is the network's own output tensor (renamed, no copy), equal to F(path)."""
    net, source, graph, session = built
    assert not any(n.op_type == "Identity" and "sr" in n.output for n in graph.graph.node)
    path, weights = harness.random_batch(3, SHAPE, 1)
    sr = session.run(["sr"], {"path": path, "weights": weights, "windows": np.array([[2, 2, 8, 8]], np.int64)})[0]
    expected = harness.make_session(source).run(None, {"input": path})[0]
    np.testing.assert_allclose(sr, expected, rtol=1e-6, atol=1e-6)


def test_one_graph_serves_every_window(built, harness):
    net, _, _, session = built
    path, weights = harness.random_batch(2, SHAPE, seed=3)
    runs = []
    for window in [(0, 0, 4, 4), (15 - 5, 15 - 6, 5, 6), (2, 7, 8, 3)]:  # the second touches the map's edge
        run = harness.run_graph(session, path, weights, window)
        harness.assert_matches(run, harness.reference(net, path, weights, window), rtol=1e-4)
        runs.append(run.attribution)
    assert harness.rel_l2(runs[0], runs[1]) > 0.1, "moving the window did not move the attribution"


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_save_and_reload(built, harness, tmp_path, external: bool):
    _, _, graph, session = built
    target = tmp_path / "graph.onnx"
    # default size_threshold: ORT cannot shape-infer with small shape constants stored externally
    onnx.save(graph, str(target), save_as_external_data=external, all_tensors_to_one_file=True,
              location="graph.onnx.data")
    assert (tmp_path / "graph.onnx.data").exists() == external
    reloaded = onnx.load(str(target))
    onnx.checker.check_model(str(target))  # full_check cannot read shape constants stored externally
    path, weights = harness.random_batch(2, SHAPE, seed=4)
    window = (3, 3, 8, 8)
    expected = harness.run_graph(session, path, weights, window)
    for again in (harness.make_session(target), harness.make_session(reloaded)):
        got = harness.run_graph(again, path, weights, window)
        for field in ("detector", "attribution", "contribution"):
            np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))


def test_batch_items_are_independent(built, harness):
    """N=3 at once gives each item's detector and contribution as N=1 does, and the sum of their maps."""
    _, _, _, session = built
    path, weights = harness.random_batch(3, SHAPE, seed=5)
    window = (4, 2, 6, 9)
    together = harness.run_graph(session, path, weights, window)
    alone = [harness.run_graph(session, path[i:i + 1], weights[i:i + 1], window) for i in range(3)]
    np.testing.assert_allclose(together.detector, [a.detector[0] for a in alone], rtol=1e-6)
    np.testing.assert_allclose(together.contribution, [a.contribution[0] for a in alone], rtol=1e-5, atol=1e-6)
    assert harness.rel_l2(together.attribution, sum(a.attribution for a in alone)) < 1e-6


def _det_gate(x: str) -> list[onnx.NodeProto]:
    """x * det(x over the last two axes): Det on the data path, output still an image."""
    return [helper.make_node("Det", [x], ["det"], name="the_det"),
            helper.make_node("Unsqueeze", ["det", "axes23"], ["det4"]),
            helper.make_node("Mul", [x, "det4"], ["output"])]


def _hardmax_gate(x: str, out: str = "output") -> list[onnx.NodeProto]:
    return [helper.make_node("Hardmax", [x], ["hard"], name="the_hardmax", axis=-1),
            helper.make_node("Mul", [x, "hard"], [out])]


AXES23 = {"axes23": np.array([2, 3], np.int64)}


@pytest.mark.parametrize("nodes, expected", [
    (_det_gate("input"), [("Det", "the_det")]),
    (_hardmax_gate("input"), [("Hardmax", "the_hardmax")]),
    (_hardmax_gate("input", "hm_out") + _det_gate("hm_out"), [("Hardmax", "the_hardmax"), ("Det", "the_det")]),
], ids=["Det", "Hardmax", "Hardmax-then-Det"])
def test_op_without_rule_is_named(nodes, expected, harness):
    source = harness.hand_model(nodes, SHAPE, initializers=AXES23)
    with pytest.raises(UnsupportedOpError) as info:
        harness.build_graph(source, SHAPE)
    for op_type, node in expected:
        assert op_type in str(info.value) and node in str(info.value)
        assert (op_type, node) in info.value.nodes


def test_op_without_rule_off_the_data_path_is_fine(harness, check_attribution):
    """Det of a constant needs no gradient rule: only ops the input flows through do."""
    rng = np.random.default_rng(0)
    square = rng.standard_normal((3, 4, 4)).astype(np.float32)
    nodes = [helper.make_node("Det", ["square"], ["det"], name="const_det"),
             helper.make_node("Unsqueeze", ["det", "axes12"], ["det3"]),
             helper.make_node("Mul", ["input", "det3"], ["output"])]
    source = harness.hand_model(nodes, SHAPE, initializers={"square": square, "axes12": np.array([1, 2], np.int64)})
    det = torch.from_numpy(np.linalg.det(square.astype(np.float64)))
    check_attribution(source, lambda x: x * det[:, None, None], SHAPE, "Mul")


class FlatRows(nn.Module):
    """Output exactly flat in its first rows: the detector's sqrt sees exact zeros there."""

    def __init__(self):
        super().__init__()
        mask = torch.ones(1, 1, 8, 8)
        mask[..., :3, :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * self.mask


@pytest.mark.parametrize("window", [(0, 0, 6, 6), (4, 1, 3, 5)], ids=["flat-inside-window", "flat-outside-window"])
def test_flat_output_gives_zero_not_nan(window, tmp_path, check_attribution):
    """d sqrt(s)/ds at s = 0 is 0 (LAM-SPEC.md), and flat pixels outside the window do not matter."""
    net = FlatRows()
    source = export_onnx(net, SHAPE, tmp_path / "flat.onnx")
    run = check_attribution(source, net, SHAPE, "Tanh", window=window)
    assert np.isfinite(run.attribution).all() and np.isfinite(run.detector).all()


def test_source_names_do_not_clash(tmp_path, check_attribution):
    """A source whose input is called "path" and output "detector" still gets a working graph."""
    net = seeded(NETS["BicubicResidualX2"])
    model = onnx.load(str(export_onnx(net, SHAPE, tmp_path / "source.onnx")))
    renames = {"input": "path", "output": "detector"}
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    check_attribution(model, net, SHAPE, "Resize")
