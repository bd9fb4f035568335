"""Random nodes become one fixed draw (or zeros): the map is reproducible and equals autograd of the
network with that noise held fixed."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lam_trt.errors import InputError
from lam_trt.export import build_attribution_graph
from lam_trt.export.options import RANDOM_OPS_KEY, GraphOptions, export_warnings
from lam_trt.export.random_ops import RANDOM_OPS

SHAPE = (3, 6, 6)
WEIGHT = np.random.default_rng(3).standard_normal((3, 3, 3, 3)).astype(np.float32) * 0.5


def noisy_model(noise_nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """output = Conv(tanh(x + x * noise), W): the noise enters non-linearly, so it shapes the map."""
    nodes = noise_nodes + [
        helper.make_node("Mul", ["input", "noise"], ["modulated"]),
        helper.make_node("Add", ["input", "modulated"], ["scaled"]),
        helper.make_node("Tanh", ["scaled"], ["act"]),
        helper.make_node("Conv", ["act", "W"], ["output"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(nodes, "noisy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 6, 6])],
                              initializer=[numpy_helper.from_array(WEIGHT, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def normal_like() -> list[onnx.NodeProto]:
    return [helper.make_node("RandomNormalLike", ["input"], ["noise"], name="inject", scale=0.3)]


def torch_fn(noise: np.ndarray):
    w = torch.from_numpy(WEIGHT).double()
    n = torch.from_numpy(np.array(noise)).double()
    return lambda x: torch.nn.functional.conv2d(torch.tanh(x + x * n), w, padding=1)


def folded_noise(graph: onnx.ModelProto) -> np.ndarray:
    """The fixed draw: the replaced node's output, an initializer of the built graph."""
    return next(numpy_helper.to_array(t) for t in graph.graph.initializer if t.name == "noise")


def test_seeded_draw_is_fixed_reproducible_and_exact(harness) -> None:
    path, weights = harness.random_batch(3, SHAPE, 0)
    window = (1, 1, 4, 4)
    graph = build_attribution_graph(noisy_model(normal_like()), SHAPE, options=GraphOptions(seed=7))
    assert not {n.op_type for n in graph.graph.node} & RANDOM_OPS
    noise = folded_noise(graph)
    assert noise.shape == (1, *SHAPE) and 0.1 < noise.std() < 0.6  # a N(0, 0.3^2) draw, shared by the batch
    run = harness.run_graph(harness.make_session(graph), path, weights, window)
    harness.assert_matches(run, harness.reference(torch_fn(noise), path, weights, window), 1e-5)
    again = build_attribution_graph(noisy_model(normal_like()), SHAPE, options=GraphOptions(seed=7))
    np.testing.assert_array_equal(folded_noise(again), noise)
    other = build_attribution_graph(noisy_model(normal_like()), SHAPE, options=GraphOptions(seed=8))
    assert not np.allclose(folded_noise(other), noise)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert '"nodes": ["inject"]' in meta[RANDOM_OPS_KEY] and '"seed": 7' in meta[RANDOM_OPS_KEY]
    assert any("inject" in w and "seed 7" in w for w in export_warnings(graph))


def test_zeros_gives_the_noise_free_map(harness) -> None:
    path, weights = harness.random_batch(2, SHAPE, 1)
    window = (1, 1, 4, 4)
    graph = build_attribution_graph(noisy_model(normal_like()), SHAPE, options=GraphOptions(random_ops="zeros"))
    run = harness.run_graph(harness.make_session(graph), path, weights, window)
    harness.assert_matches(run, harness.reference(torch_fn(np.zeros((1, *SHAPE))), path, weights, window), 1e-5)
    assert any("zeros" in w for w in export_warnings(graph))


@pytest.mark.parametrize("nodes", [
    [helper.make_node("RandomUniform", [], ["noise"], name="u", shape=[1, *SHAPE], low=-0.5, high=0.5)],
    [helper.make_node("RandomUniformLike", ["input"], ["noise"], name="u", low=-0.5, high=0.5)],
    [helper.make_node("Sigmoid", ["input"], ["p"]),
     helper.make_node("Bernoulli", ["p"], ["noise"], name="coin", dtype=TensorProto.FLOAT)],
], ids=["RandomUniform", "RandomUniformLike", "Bernoulli"])
def test_other_random_ops_become_constants(nodes, harness) -> None:
    path, weights = harness.random_batch(2, SHAPE, 2)
    window = (1, 1, 4, 4)
    graph = build_attribution_graph(noisy_model(nodes), SHAPE)
    assert not {n.op_type for n in graph.graph.node} & RANDOM_OPS
    session = harness.make_session(graph)
    first = harness.run_graph(session, path, weights, window)
    second = harness.run_graph(harness.make_session(build_attribution_graph(noisy_model(nodes), SHAPE)),
                               path, weights, window)
    np.testing.assert_array_equal(first.attribution, second.attribution)
    if nodes[-1].op_type != "Bernoulli":  # the draw does not depend on the image: check the map with it
        harness.assert_matches(first, harness.reference(torch_fn(folded_noise(graph)), path, weights, window), 1e-5)


def test_multinomial_is_fixed() -> None:
    """Multinomial -> Gumbel-max with one fixed draw: the same class every run, from softmax(logits)."""
    from lam_trt.export.random_ops import RandomOpsPolicy, fix_random_ops
    import onnxruntime as ort

    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 5])
    out = helper.make_tensor_value_info("y", TensorProto.INT32, [2, 4])
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Multinomial", ["logits"], ["y"], name="pick", sample_size=4)], "m", [logits], [out]),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    report = fix_random_ops(model, RandomOpsPolicy(seed=3))
    assert report.nodes == ["pick"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.log(np.array([[0.0, 0, 1, 0, 0], [0.5, 0.5, 0, 0, 0]], np.float32) + 1e-30)
    y = session.run(None, {"logits": x})[0]
    assert y.shape == (2, 4) and (y[0] == 2).all() and set(y[1]) <= {0, 1}


def test_bad_mode_is_refused() -> None:
    with pytest.raises(InputError, match="random-ops"):
        GraphOptions(random_ops="fresh")


def test_cli_says_so_and_records_it(tmp_path, monkeypatch) -> None:
    """lam-trt attribute: the replacement on stderr and in result.json; zeros and seeds give other maps."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from lam_trt.cli import app

    monkeypatch.setenv("LAM_TRT_CACHE", str(tmp_path / "cache"))
    model = noisy_model(normal_like())
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = SHAPE[0]
    onnx.save(model, str(tmp_path / "noisy.onnx"))
    image = np.random.default_rng(0).integers(0, 255, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "lr.png")
    maps = {}
    for name, extra in (("seeded", []), ("again", []), ("zeros", ["--random-ops", "zeros"]), ("other", ["--seed", "5"])):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["attribute", str(tmp_path / "noisy.onnx"), str(tmp_path / "lr.png"),
                                          "--window", "1", "1", "--size", "4", "--steps", "8", "--out", str(out),
                                          "--provider", "cpu", *extra])
        assert result.exit_code == 0, result.output
        assert "random node(s) (inject) replaced by" in result.stderr
        saved = json.loads((out / "result.json").read_text())
        assert any("inject" in w for w in saved["export_warnings"])
        maps[name] = np.load(out / "attribution.npy")
    np.testing.assert_array_equal(maps["seeded"], maps["again"])
    assert not np.allclose(maps["seeded"], maps["zeros"]) and not np.allclose(maps["seeded"], maps["other"])
