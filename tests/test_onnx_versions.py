"""lam-trt's own small models (the Resize/AveragePool probes) must load in the ONNX Runtime installed,
whatever IR version the installed onnx writes by default (found on a GPU machine: onnx 1.23 writes
IR 14, ONNX Runtime 1.31 reads up to 13, and every network with a Resize failed to build)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from conftest import hand_model
from lam_trt.export import build_attribution_graph


@pytest.mark.parametrize("node", [
    helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="linear"),
    helper.make_node("AveragePool", ["input"], ["output"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
], ids=["Resize", "AveragePool"])
def test_graph_builds_when_onnx_default_ir_is_beyond_onnxruntime(monkeypatch, node):
    inits = {"scales": np.array([1, 1, 2, 2], np.float32)} if node.op_type == "Resize" else {}
    model = hand_model([node], (1, 6, 6), initializers=inits)
    monkeypatch.setattr(onnx, "IR_VERSION", 99)  # no ONNX Runtime reads IR 99
    graph = build_attribution_graph(model, (1, 6, 6))
    assert graph.ir_version == model.ir_version
