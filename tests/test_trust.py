"""Numbers a QA gate can trust (issue 12): model identity with external data, the graph cache's
recovery, degenerate windows, structured warnings, the --hr scale check and result.json provenance.

Models are hand-built ONNX graphs (Conv, Relu, DepthToSpace): no torch export, a few ms each.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

from lam_trt.attributor import Attributor
from lam_trt.cli import app

STEPS = 8


def sr_model(seed: int = 0, scale: int = 2, out_channels: int = 3, width: int = 6) -> onnx.ModelProto:
    """conv 3x3 -> relu -> conv 3x3 -> DepthToSpace(scale): a tiny x``scale`` SR net, dynamic h, w."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.4, (width, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.4, (out_channels * scale * scale, width, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["o"], pads=[1, 1, 1, 1])]
    if scale > 1:
        nodes.append(helper.make_node("DepthToSpace", ["o"], ["output"], blocksize=scale, mode="CRD"))
    else:
        nodes.append(helper.make_node("Identity", ["o"], ["output"]))
    graph = helper.make_graph(
        nodes, "tiny_sr", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", out_channels, "H", "W"])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def save_external(model: onnx.ModelProto, path: Path) -> Path:
    """``path`` plus its weights in ``path.name + '.data'`` beside it."""
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{path.name}.data", size_threshold=0)
    return path


def textured_image(size: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((3, size, size)).astype(np.float32)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("LAM_TRT_CACHE", str(root))
    return root


def attribute(model, image, cache_dir, **kwargs):
    kwargs = {"window": (4, 4), "size": 8, "steps": STEPS, "rule": "trapezoid", **kwargs}
    return Attributor(model, provider="cpu", cache_dir=cache_dir).attribute(image, **kwargs)


# ------------------------------------------------------------------------- model identity

def test_changed_external_weights_are_a_new_model(tmp_path, cache):
    """The cache key and the reported sha256 cover the .data file: changed weights, new graph."""
    path = save_external(sr_model(seed=0), tmp_path / "model.onnx")
    first = attribute(path, textured_image(), cache)
    data = path.with_name("model.onnx.data")
    weights = np.frombuffer(data.read_bytes(), np.float32)
    data.write_bytes(np.random.default_rng(5).permutation(weights).tobytes())  # the .onnx is unchanged
    second = attribute(path, textured_image(), cache)
    fresh = attribute(path, textured_image(), tmp_path / "fresh-cache")
    assert second.meta["model"]["sha256"] != first.meta["model"]["sha256"]
    assert second.meta["runtime"]["graph_cache_hit"] is False
    np.testing.assert_allclose(second.attribution, fresh.attribution, rtol=1e-5, atol=1e-7)
    assert not np.allclose(second.attribution, first.attribution)
    assert abs(second.completeness_gap_relative) < 0.2         # the old weights' map would miss by far


def test_model_sha256_is_the_file_hash_without_external_data(tmp_path):
    from lam_trt.export.source import model_sha256

    path = tmp_path / "m.onnx"
    onnx.save(sr_model(), str(path))
    assert model_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
