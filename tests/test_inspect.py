"""`lam-trt inspect`: interface, cost and receptive field against hand-computed values."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from lam_trt.cli import app
from lam_trt.errors import InputError
from lam_trt.export.model_report import inspect_model
from lam_trt.export.receptive_field import receptive_field
from lam_trt.export.torch_export import export_onnx
from lam_trt.export.zoo import build

runner = CliRunner()


def small(arch: str, scale: int, **options) -> torch.nn.Module:
    """Random weights, all distinct (the exporter merges identical initializers, e.g. PReLU's 0.25s)."""
    torch.manual_seed(0)
    model = build(arch, scale=scale, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model


def exported(tmp_path: Path, arch: str, scale: int, size: int = 16, fixed: bool = False, **options) -> Path:
    path = tmp_path / f"{arch}.onnx"
    export_onnx(small(arch, scale, **options), path, in_channels=3, size=(size, size), fixed_hw=fixed)
    return path


# Araujo et al.: r grows by (k - 1) * j per layer, in LR pixels; j halves at each x2 upsampling.
@pytest.mark.parametrize("arch, scale, options, expected", [
    # FSRCNN(m=4) x2 -- the paper's Table 1 value: 5x5 conv (5), four 3x3 (+8), 1x1s (+0),
    # 9x9 transposed conv with stride 2 (+8 * 1/2)
    ("fsrcnn", 2, dict(width=8, depth=4, shrink=4), 17),
    # FSRCNN(m=1) x4: 5 + 2 + 8/4
    ("fsrcnn", 4, dict(width=8, depth=1, shrink=4), 9),
    # EDSR(2 blocks) x2: head 3x3 (3), 2 blocks x 2 convs (+8), body conv (+2), upsampler conv
    # at LR (+2), PixelShuffle(2), tail conv at HR (+2 * 1/2)
    ("edsr", 2, dict(width=8, depth=2), 16),
    # EDSR(3 blocks) x4: 3 + 12 + 2, upsampler conv (+2), PS, conv (+1), PS, tail conv (+0.5)
    ("edsr", 4, dict(width=8, depth=3), 20.5),
])
def test_receptive_field_hand_computed(tmp_path: Path, arch: str, scale: int, options: dict, expected: float) -> None:
    path = exported(tmp_path, arch, scale, **options)
    report = inspect_model(path)
    assert report["receptive_field"] == expected
    assert report["receptive_field_hw"] == [expected, expected]
    assert receptive_field(onnx.load(str(path)), (16, 16)) == expected  # the runtime's entry: the field alone


def test_window_attention_counts_as_a_window_sized_kernel(tmp_path: Path) -> None:
    # conv_first (3); 2 RSTBs x 2 blocks of 4x4-window attention (+3 each = +12); the RSTB convs
    # (+2 each); conv_after_body (+2); conv_before_upsample (+2); upsample conv (+2); PS; conv_last (+1)
    path = exported(tmp_path, "swinir", 2, fixed=True, width=12, depth=2, blocks_per_layer=2, num_heads=2,
                    window_size=4, img_size=16)
    report = inspect_model(path)
    assert report["receptive_field"] == 3 + 12 + 4 + 2 + 2 + 2 + 1
    assert report["analysis_size"] == [16, 16]  # the model's fixed size


@pytest.mark.parametrize("arch, options", [
    ("rcan", dict(width=16, depth=1, n_resblocks=1)),  # channel attention: global average pooling
    ("imdn", dict(width=16, depth=1)),  # contrast-aware attention: mean and std over the image
    ("rnan", dict(width=8, depth=2)),  # non-local block: attention over all positions
    ("san", dict(width=16, depth=1, n_resblocks=1)),  # covariance pooling
])
def test_whole_image_operations_make_the_field_global(tmp_path: Path, arch: str, options: dict) -> None:
    path = exported(tmp_path, arch, 2, **options)
    report = inspect_model(path)
    assert report["receptive_field"] == "global"
    assert report["receptive_field_hw"] is None
    assert receptive_field(onnx.load(str(path)), (20, 24)) == "global"


def test_interface_parameters_ops_and_flops(tmp_path: Path) -> None:
    width, shrink, mapping = 8, 4, 2
    path = exported(tmp_path, "fsrcnn", 2, width=width, depth=mapping, shrink=shrink)
    report = inspect_model(path, (32, 24))
    model = onnx.load(str(path))
    assert report["inputs"] == [{"name": "input", "shape": ["batch", 3, "height", "width"]}]
    assert report["outputs"][0]["name"] == "output"
    assert report["scale"] == 2 and report["channels"] == {"input": 3, "output": 3}
    assert report["analysis_size"] == [32, 24]
    assert report["parameters"] == sum(p.numel() for p in small("fsrcnn", 2, width=width, depth=mapping, shrink=shrink).parameters())
    assert report["ops"] == dict(Counter(n.op_type for n in model.graph.node))
    # multiply-accumulates per LR pixel: 5x5 conv 3->d, 1x1 d->s, m 3x3 s->s, 1x1 s->d, and the
    # 9x9 transposed conv d->3, which costs d*3*81 per *input* pixel
    macs = 25 * 3 * width + width * shrink + mapping * 9 * shrink * shrink + shrink * width + 81 * width * 3
    assert report["gflops_per_lr_pixel"] == pytest.approx(2 * macs / 1e9, rel=1e-3)
    assert report["unsupported_ops"] == []
    assert report["metadata"] == {}


def _hand_model(op: str, tmp_path: Path) -> Path:
    """input -> Conv -> <op> -> Reshape -> output, with a Shape op (no gradient, not on the path) for the shape."""
    w = numpy_helper.from_array(np.ones((3, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node(op, ["c"], ["o"]),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Reshape", ["o", "s"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, "H", "W"])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, str(path))
    return path


def test_ops_without_a_gradient_rule_are_named(tmp_path: Path) -> None:
    from lam_trt.export.vjp import supported_op_types

    op = next((o for o in ("Shrink", "ThresholdedRelu") if o not in supported_op_types()), None)
    if op is None:
        pytest.skip("every candidate op has a gradient rule")  # elementwise: the field stays 3
    path = _hand_model(op, tmp_path)
    report = inspect_model(path)
    assert report["unsupported_ops"] == [op]  # Shape is not on the gradient path
    assert report["receptive_field"] == 3
    result = runner.invoke(app, ["inspect", str(path)])  # the report, then exit 1: a script can gate on it
    assert result.exit_code == 1 and "no gradient rule" in result.output and f"cannot be attributed: no gradient rule for {op}" in result.output


def test_cli_json_and_table(tmp_path: Path) -> None:
    path = exported(tmp_path, "edsr", 2, width=8, depth=2)
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["receptive_field"] == 16
    result = runner.invoke(app, ["inspect", str(path), "--lr-size", "20x30"])
    assert result.exit_code == 0, result.output
    assert "receptive field" in result.stdout and "16 x 16 LR pixels" in result.stdout


def test_cli_errors(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nope.onnx")])
    assert missing.exit_code == 2 and "not found" in missing.output
    (tmp_path / "bad.onnx").write_text("not a model")
    assert runner.invoke(app, ["inspect", str(tmp_path / "bad.onnx")]).exit_code == 2
    path = exported(tmp_path, "swinir", 2, fixed=True, width=12, depth=1, blocks_per_layer=2, num_heads=2,
                    window_size=4, img_size=16)
    wrong_size = runner.invoke(app, ["inspect", str(path), "--lr-size", "32x32"])
    assert wrong_size.exit_code == 2 and "fixed at 16x16" in wrong_size.output
    with pytest.raises(InputError, match="HxW"):
        from lam_trt.bench import parse_size

        parse_size("16by16")


def test_shape_inference_leaves_no_file_in_the_working_folder(tmp_path: Path, monkeypatch) -> None:
    """ONNX Runtime's symbolic shape inference, where it cannot finish (an op it does not know),
    saves sym_shape_infer_temp.onnx into the current folder: lam-trt keeps what it inferred and
    writes nothing into the user's folder."""
    from onnx import TensorProto, helper

    from lam_trt.export.receptive_field import static_shapes

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Foo", ["x"], ["t"], domain="my.ops"),
                               helper.make_node("Relu", ["t"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("my.ops", 1)])
    monkeypatch.chdir(tmp_path)
    assert static_shapes(model, (1, 3, 8, 8))["x"] == (1, 3, 8, 8)
    assert list(tmp_path.iterdir()) == []
