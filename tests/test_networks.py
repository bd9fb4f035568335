"""Whole networks: the attribution graph of each small SR net agrees with torch.autograd through it.

Random weights, two input sizes each (one square, one not), float32 graph against a float64
PyTorch reference (relative L2 < 1e-4), plus each net once through the dynamo exporter.
"""
from __future__ import annotations

import pytest

from nets import NETS, ResidualCA, export_onnx, seeded

# the ops that make each architecture what it is; they must survive export onto the data path
SIGNATURE_OPS = {
    "ResidualCA": ("GlobalAveragePool", "Sigmoid", "DepthToSpace"),
    "TinyRRDB": ("Concat", "LeakyRelu", "Resize"),
    "TinyAttentionSR": ("LayerNormalization", "Softmax", "MatMul", "Erf", "DepthToSpace"),
    "BicubicResidualX2": ("Resize", "DepthToSpace"),
}
SIZES = [(12, 12), (16, 20)]


@pytest.mark.parametrize("hw", SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
@pytest.mark.parametrize("name", list(NETS))
def test_network_matches_autograd(name: str, hw: tuple[int, int], tmp_path, check_attribution):
    net = seeded(NETS[name])
    source = export_onnx(net, (3, *hw), tmp_path / f"{name}.onnx")
    check_attribution(source, net, (3, *hw), SIGNATURE_OPS[name], rtol=1e-4)


def test_residual_ca_x4(tmp_path, check_attribution):
    net = seeded(ResidualCA, scale=4)
    source = export_onnx(net, (3, 8, 8), tmp_path / "rcan_x4.onnx")
    check_attribution(source, net, (3, 8, 8), SIGNATURE_OPS["ResidualCA"], rtol=1e-4)


@pytest.mark.parametrize("name", list(NETS))
def test_network_from_dynamo_exporter(name: str, tmp_path, check_attribution):
    net = seeded(NETS[name], seed=1)
    source = export_onnx(net, (3, 12, 12), tmp_path / f"{name}_dynamo.onnx", dynamo=True)
    ops = tuple(op for op in SIGNATURE_OPS[name] if op != "GlobalAveragePool")  # dynamo emits ReduceMean
    check_attribution(source, net, (3, 12, 12), ops, rtol=1e-4)


@pytest.mark.parametrize("name", ["ResidualCA", "TinyAttentionSR"])
def test_fixed_shape_network_accepts_any_batch(name: str, tmp_path, check_attribution):
    """Batch 1 baked into the source (Reshape constants included) must not limit the path batch."""
    net = seeded(NETS[name])
    source = export_onnx(net, (3, 8, 8), tmp_path / f"{name}_fixed.onnx", dynamic_hw=False, dynamic_batch=False)
    check_attribution(source, net, (3, 8, 8), SIGNATURE_OPS[name], n=3, rtol=1e-4)
