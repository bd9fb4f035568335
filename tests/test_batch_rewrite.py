"""The batch axis: attribution graphs run several path images at once wherever the network allows,
exact against autograd image by image; where a graph cannot batch, the runner runs one path image
at a time, exact, and says so (stderr and result).

Each pattern that used to pin the batch to 1 is a small module, exported by both torch exporters,
run at batch 3 and compared with float64 autograd of the same module one image at a time.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lam_trt.export import build_attribution_graph, save_attribution_graph
from lam_trt.runner import GraphRunner
from nets import export_onnx

SHAPE = (3, 8, 8)


def per_image_reference(harness, fn, path, weights, window):
    """Autograd one image at a time: what every path image contributes on its own."""
    refs = [harness.reference(fn, path[i:i + 1], weights[i:i + 1], window) for i in range(len(path))]
    return (np.concatenate([r.detector for r in refs]), sum(r.attribution for r in refs),
            np.concatenate([r.contribution for r in refs]))


def window_of(fn, harness) -> tuple[int, int, int, int]:
    with torch.no_grad():
        out = fn(torch.rand(1, *SHAPE))
    return harness.default_window(tuple(out.shape[2:]))


# ---- graphs that cannot batch: the runner falls back, exact, and says so -----------------------
class MixesTheBatch(nn.Module):
    """Each image scaled by a sum over the whole batch: one image at a time it is conv(x)^2, a
    batch of several mixes them, so no batch rewrite can make it batch (BatchNorm in train mode)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y * y.sum(0, keepdim=True)


class FirstImage(nn.Module):
    """x[0]: one image whatever the batch; a graph built from it computes the first path image
    only, however many it is given (a batch-1 shape no rewrite can undo)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x[0].unsqueeze(0))


def run_with_runner(tmp_path, graph: onnx.ModelProto, path, weights, window, batch_size: int):
    graph_path = tmp_path / "graph.onnx"
    save_attribution_graph(graph, graph_path)
    runner = GraphRunner(graph_path, provider="cpu", batch_size=batch_size)
    return runner, runner.run(path, weights, window)


def assert_exact(out, expected, harness, rtol=1e-5):
    detector, attribution, contribution = expected
    assert harness.rel_l2(out.detector, detector) < rtol
    assert harness.rel_l2(out.attribution, attribution) < rtol
    assert harness.rel_l2(out.contribution, contribution) < rtol


def test_graph_that_mixes_the_batch_is_marked_and_runs_one_image_at_a_time(tmp_path, harness, capfd):
    torch.manual_seed(0)
    net = MixesTheBatch().eval()
    source = export_onnx(net, SHAPE, tmp_path / "mixes.onnx")
    graph = build_attribution_graph(str(source), SHAPE)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert meta["lam_trt.max_batch"] == "1" and "differs" in meta["lam_trt.batch_limit_reason"]
    path, weights = harness.random_batch(5, SHAPE, seed=1)
    window = window_of(net, harness)
    runner, out = run_with_runner(tmp_path, graph, path, weights, window, batch_size=4)
    assert runner.batch_size == 1 and out.chunks == 5
    assert "differs" in runner.batch_fallback
    assert "one at a time" in capfd.readouterr().err
    assert_exact(out, per_image_reference(harness, net, path, weights, window), harness)


def test_runner_falls_back_when_a_batch_returns_the_wrong_count(tmp_path, harness, capfd):
    """Without the build-time probe, the runner still notices mid-run and redoes the chunk."""
    torch.manual_seed(0)
    net = FirstImage().eval()
    source = export_onnx(net, SHAPE, tmp_path / "first.onnx")
    graph = build_attribution_graph(str(source), SHAPE, check_batch=False)
    assert not any(p.key == "lam_trt.max_batch" for p in graph.metadata_props)
    path, weights = harness.random_batch(4, SHAPE, seed=2)
    window = window_of(net, harness)
    runner, out = run_with_runner(tmp_path, graph, path, weights, window, batch_size=3)
    assert runner.batch_size == 1 and out.chunks == 4
    assert runner.batch_fallback  # onnxruntime's error or the wrong count of detector values
    assert "one at a time" in capfd.readouterr().err
    assert_exact(out, per_image_reference(harness, net, path, weights, window), harness)


def test_probe_finds_the_first_image_model_too(tmp_path):
    torch.manual_seed(0)
    source = export_onnx(FirstImage().eval(), SHAPE, tmp_path / "first.onnx")
    meta = {p.key: p.value for p in build_attribution_graph(str(source), SHAPE).metadata_props}
    assert meta.get("lam_trt.max_batch") == "1"
