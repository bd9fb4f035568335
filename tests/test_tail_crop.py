"""The upsampling tail's reverse pass on a crop per window (export/tail_crop.py) against whole tensors.

Each op's crop rule is checked on its own against ONNX Runtime running the op on the whole tensor:
the node on the input box's crop must give the whole output on the output box, for windows at the
edges and inside. The cropped graphs must give what the same graph without crops gives (mostly bit
for bit; relative L2 below 1e-5 asserted, the many-windows standard), and one window what autograd
gives.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from lam_trt.errors import InputError
from lam_trt.export import GraphOptions, build_attribution_graph
from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.crops import Box, Span
from lam_trt.export.options import TAIL_CROP_KEY
from lam_trt.export.torch_export import export_onnx
from lam_trt.export.vjp import CROP_RULES
from lam_trt.runner import GraphRunner
from nets import NETS, seeded
from test_zoo import small_model

NO_CROP = 10 ** 6  # a bound no box fits under: the graph without crops


# ---- each crop rule against the op on whole tensors -------------------------------------------
def run_node(op: str, x: np.ndarray, consts: dict[str, np.ndarray], inputs: list[str], attrs: dict) -> np.ndarray:
    import onnxruntime as ort

    node = helper.make_node(op, ["x", *inputs], ["y"], **attrs)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def cut(x: np.ndarray, box: Box, q: tuple[int, int]) -> np.ndarray:
    """Window q's crop of x at ``box``, zeros beyond the edges."""
    (r, c) = (box.rows.m * q[0] + box.rows.c, box.cols.m * q[1] + box.cols.c)
    out = np.zeros((*x.shape[:2], box.rows.s, box.cols.s), x.dtype)
    h, w = x.shape[2:]
    r0, r1, c0, c1 = max(r, 0), min(r + box.rows.s, h), max(c, 0), min(c + box.cols.s, w)
    out[:, :, r0 - r:r1 - r, c0 - c:c1 - c] = x[:, :, r0:r1, c0:c1]
    return out


def inside(y: np.ndarray, box: Box, q: tuple[int, int]) -> np.ndarray:
    """0/1 mask of the box positions inside y."""
    rows = box.rows.m * q[0] + box.rows.c + np.arange(box.rows.s)
    cols = box.cols.m * q[1] + box.cols.c + np.arange(box.cols.s)
    return ((rows >= 0) & (rows < y.shape[2]))[:, None] & ((cols >= 0) & (cols < y.shape[3]))[None, :]


OPS = [  # (op, attrs, weight shape or resize scales, input size, output box spans (m, c, s))
    ("Conv", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (4, 3, 3, 3), 12, (1, 0, 5)),
    ("Conv", dict(kernel_shape=[3, 5], pads=[0, 2, 2, 1], dilations=[2, 1]), (4, 3, 3, 5), 12, (2, -1, 6)),
    ("Conv", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=3), (6, 1, 3, 3), 12, (1, -2, 4)),
    ("ConvTranspose", dict(kernel_shape=[2, 2], strides=[2, 2]), (3, 4, 2, 2), 8, (2, 0, 5)),
    ("ConvTranspose", dict(kernel_shape=[3, 3], strides=[3, 3]), (3, 2, 3, 3), 6, (3, 1, 7)),
    ("ConvTranspose", dict(kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]), (3, 4, 4, 4), 8, (2, 0, 5)),
    ("ConvTranspose", dict(kernel_shape=[9, 9], strides=[2, 2], pads=[4, 4, 4, 4], output_padding=[1, 1]),
     (3, 1, 9, 9), 8, (4, -1, 6)),
    ("ConvTranspose", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], dilations=[2, 2]),
     (3, 4, 3, 3), 10, (1, 2, 4)),
    ("Resize", dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"), 2, 8, (4, 1, 5)),
    ("Resize", dict(mode="nearest", coordinate_transformation_mode="half_pixel"), 3, 6, (3, -1, 7)),
]


@pytest.mark.parametrize("op, attrs, param, size, span", OPS, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_crop_rule_puts_the_op_on_the_box(op, attrs, param, size, span):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3 if op != "ConvTranspose" else param[0], size, size)).astype(np.float32)
    if op == "Resize":
        consts, inputs = {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, param, param], np.float32)}, ["roi", "scales"]
    else:
        consts, inputs = {"w": rng.standard_normal(param).astype(np.float32), "b": rng.standard_normal(
            param[0] if op == "Conv" else param[1] * attrs.get("group", 1)).astype(np.float32)}, ["w", "b"]
    y = run_node(op, x, consts, inputs, attrs)
    b = GraphBuilder({"x": x.shape, "y": y.shape, **{k: v.shape for k, v in consts.items()}}, {}, dict(consts), 17)
    out = Box(Span(*span), Span(*span))
    step = CROP_RULES[op](b, Node(op, ["x", *inputs], ["y"], attrs, "n"), out)
    assert step is not None
    box = step.output
    assert box.rows.c <= out.rows.c and box.rows.end >= out.rows.end  # it holds the box asked for
    kept = {f"c{k}": v for k, v in step.consts.items()}
    names = [f"c{k}" if k in step.consts else name for k, name in enumerate(inputs, start=1)][:(step.arity or 9) - 1]
    last = -(-y.shape[2] // box.rows.m)  # past it a window's box starts beyond the output
    for q in [(q, r) for q in range(last + 1) for r in (0, q)]:
        if box.rows.m * q[0] + box.rows.c >= y.shape[2]:
            continue
        crop = run_node(op, cut(x, step.inputs[0], q), {**consts, **kept}, names, step.attrs)
        expected, mask = cut(y, box, q), inside(y, box, q)
        assert crop.shape == expected.shape, (q, crop.shape, expected.shape)
        np.testing.assert_allclose(crop[..., mask], expected[..., mask], rtol=1e-5, atol=1e-5, err_msg=str(q))


def test_no_crop_rule_for_whole_image_ops():
    """Ops that mix positions beyond a kernel have no crop rule: the crop ends before them."""
    for op in ("Softmax", "GlobalAveragePool", "ReduceMean", "MatMul", "Reshape", "Transpose", "Resize"):
        assert (op in CROP_RULES) == (op == "Resize"), op


# ---- graphs -----------------------------------------------------------------------------------------
def windows_for(h: int, w: int, bound: int) -> np.ndarray:
    """(top, left, height, width): corners, edges, inside, a duplicate, sizes up to ``bound``."""
    return np.array([[0, 0, bound, bound], [h - bound, w - bound, bound, bound], [h - 3, 1, 3, bound],
                     [h // 2, w // 2 - 1, bound - 1, 2], [5, w - 5, 3, 4], [5, w - 5, 3, 4], [3, 7, 1, 1]], np.int64)


def graphs(source, shape, bound: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    cropped, whole = (build_attribution_graph(str(source), shape, options=GraphOptions(window_bound=b), check_batch=False)
                      for b in (bound, NO_CROP))
    meta = {p.key: p.value for p in cropped.metadata_props}
    assert TAIL_CROP_KEY in meta and json.loads(meta[TAIL_CROP_KEY])["nodes"] > 0, "nothing was cropped"
    assert TAIL_CROP_KEY not in {p.key for p in whole.metadata_props}
    return cropped, whole


def assert_same_windows(harness, cropped, whole, path, weights, windows) -> None:
    feeds = {"path": path, "weights": weights, "windows": windows}
    got, want = (harness.make_session(g).run(["detector", "attribution", "contribution"], feeds) for g in (cropped, whole))
    for k in range(len(windows)):
        assert harness.rel_l2(got[1][k], want[1][k]) < 1e-5, f"window {k} {windows[k].tolist()}"
        np.testing.assert_allclose(got[0][k], want[0][k], rtol=1e-6, err_msg=f"window {k}: detector")
        assert harness.rel_l2(got[2][k], want[2][k]) < 1e-5, f"window {k}: contribution"


ZOO = [("edsr", 4), ("rrdbnet", 4), ("pan", 2), ("fsrcnn", 3), ("rcan", 2), ("swinir", 2), ("rfdn", 2), ("imdn", 3)]


@pytest.mark.parametrize("name, scale", ZOO, ids=[n for n, _ in ZOO])
def test_cropped_tail_equals_whole_tensors_on_the_zoo(name: str, scale: int, tmp_path, harness):
    """Pixel shuffles (as ConvTranspose), nearest upsampling, a strided deconvolution, pixel and
    channel attention, a bilinear skip from the input, channel concatenations and splits (RFDN,
    IMDN): windows at the corners and edges."""
    model = small_model(name, scale=scale).float().eval()
    size = 16
    source = tmp_path / f"{name}.onnx"
    export_onnx(model, source, in_channels=3, size=(size, size))
    cropped, whole = graphs(source, (3, size, size), 6)
    path, weights = harness.random_batch(2, (3, size, size), seed=5)
    h = w = size * scale
    assert_same_windows(harness, cropped, whole, path, weights, windows_for(h, w, 6))
    window = (h - 7, 2, 6, 5)  # the reference needs the neighbour row below
    run = harness.run_graph(harness.make_session(cropped), path, weights, window)
    harness.assert_matches(run, harness.reference(model, path, weights, window), 1e-4)


@pytest.mark.parametrize("name", ["TinyRRDB", "BicubicResidualX2"])
def test_cropped_tail_equals_whole_tensors_on_small_nets(name: str, tmp_path, harness):
    from nets import export_onnx as export_small

    net = seeded(NETS[name])
    source = export_small(net, (3, 12, 12), tmp_path / f"{name}.onnx")
    path, weights = harness.random_batch(3, (3, 12, 12), seed=6)
    h, w = harness.assert_source_matches_torch(source, net, path)
    cropped, whole = graphs(source, (3, 12, 12), 4)
    assert_same_windows(harness, cropped, whole, path, weights, windows_for(h, w, 4))


def test_a_window_larger_than_the_bound_is_nan_and_refused(tmp_path, harness):
    net = seeded(NETS["TinyRRDB"])
    from nets import export_onnx as export_small

    source = export_small(net, (3, 12, 12), tmp_path / "rrdb.onnx")
    graph = build_attribution_graph(str(source), (3, 12, 12), options=GraphOptions(window_bound=4), check_batch=False)
    path, weights = harness.random_batch(2, (3, 12, 12), seed=7)
    out = harness.make_session(graph).run(["attribution"], {"path": path, "weights": weights,
                                                            "windows": np.array([[0, 0, 4, 4], [2, 2, 5, 3]], np.int64)})[0]
    assert np.isnan(out).all(), "a window past the bound must not give a number"
    onnx.save(graph, tmp_path / "graph.onnx")
    runner = GraphRunner(tmp_path / "graph.onnx", "cpu", threads=1)
    with pytest.raises(InputError, match="window 1 is 3x5 px, larger than the 4 px"):
        runner.run(path, weights, [(0, 0, 4, 4), (2, 2, 5, 3)])


def test_attributor_builds_a_graph_for_larger_windows(tmp_path, monkeypatch):
    """Windows above the default bound get a graph of their own (bound rounded up to 16s), the same
    numbers as a graph without crops; the default bound's runner is kept beside it."""
    import lam_trt
    from nets import export_onnx as export_small

    monkeypatch.setenv("LAM_TRT_CACHE", str(tmp_path / "cache"))
    net = seeded(NETS["TinyRRDB"])
    source = export_small(net, (3, 24, 24), tmp_path / "rrdb.onnx")
    image = np.random.default_rng(8).uniform(0, 1, (3, 24, 24)).astype(np.float32)
    attributor = lam_trt.Attributor(str(source), provider="cpu", threads=1)
    small = attributor.attribute(image, window=(3, 4), size=8, steps=6, crop="off")
    large = attributor.attribute(image, window=(2, 1), size=20, steps=6, crop="off")
    assert sorted(k[-1] for k in attributor._runners) == [16, 32]
    whole = lam_trt.Attributor(str(source), provider="cpu", threads=1, graph_options=GraphOptions(window_bound=NO_CROP))
    for result, (window, size) in ((small, ((3, 4), 8)), (large, ((2, 1), 20))):
        expected = whole.attribute(image, window=window, size=size, steps=6, crop="off")
        assert np.abs(result.attribution - expected.attribution).max() <= 1e-6 * np.abs(expected.attribution).max()
    assert large.meta["graph_options"]["window_bound"] == 32


def test_build_probes_use_windows_within_the_bound(tmp_path):
    """The build-time probes run windows the graph attributes: with whole-output windows a bounded
    graph would give NaN on both sides, and a graph that mixes the batch would pass unflagged."""
    import torch
    from nets import export_onnx as export_small
    from test_batch_rewrite import SHAPE, MixesTheBatch

    torch.manual_seed(0)
    source = export_small(MixesTheBatch().eval(), SHAPE, tmp_path / "mixes.onnx")
    graph = build_attribution_graph(str(source), SHAPE, options=GraphOptions(window_bound=3))
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["lam_trt.window_bound"] == "3"
    assert meta["lam_trt.max_batch"] == "1" and "differs" in meta["lam_trt.batch_limit_reason"]


def test_windows_probe_finds_mixed_windows_in_a_bounded_graph(tmp_path):
    from nets import export_onnx as export_small
    from test_windows import with_windows_reversed

    from lam_trt.export.batch_probe import probe_session
    from lam_trt.export.window_probe import windows_limit

    source = export_small(seeded(NETS["TinyRRDB"]), (3, 12, 12), tmp_path / "rrdb.onnx")
    graph = build_attribution_graph(str(source), (3, 12, 12), options=GraphOptions(window_bound=4), check_batch=False)
    assert TAIL_CROP_KEY in {p.key for p in graph.metadata_props}
    out = (3, 24, 24)
    assert windows_limit(probe_session(graph), (3, 12, 12), out, 2, 4) is None
    reason = windows_limit(probe_session(with_windows_reversed(graph)), (3, 12, 12), out, 2, 4)
    assert reason and "attribution for two windows at once differs" in reason
