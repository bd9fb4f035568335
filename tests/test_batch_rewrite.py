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


# ---- patterns that pinned the batch to 1 ----------------------------------------------------------
class Head(nn.Module):
    """conv in, the pattern, conv out: every pattern sees [N, 4, 8, 8] features."""

    def __init__(self):
        super().__init__()
        self.conv_in, self.conv_out = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.pattern(self.conv_in(x)))


class NormalizedWindows(Head):
    """F.normalize over windows x batch on one axis: Expand(norm, Shape(x)) (DITN, GRL, Swin2SR)."""

    def pattern(self, y):
        windows = y.reshape(-1, 4, 4, 2, 8).transpose(2, 3).reshape(-1, 16, 8)  # [N*8, 16, 8]
        out = F.normalize(windows, dim=-1) * 2.0 + windows
        return out.reshape(-1, 2, 4, 4, 8).transpose(2, 3).reshape(y.shape)


class LinearOnFlatBatch(Head):
    """nn.Linear on [N*H*W, C] (a Gemm in TorchScript) with a per-pixel constant added (CodeFormer)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.register_buffer("position", torch.randn(64, 4))

    def pattern(self, y):
        n = y.shape[0]
        tokens = y.permute(0, 2, 3, 1).reshape(-1, 4)
        mixed = self.linear(tokens) + self.position.repeat(n, 1)
        return mixed.reshape(n, 8, 8, 4).permute(0, 3, 1, 2)


class CodebookLookup(Head):
    """Nearest-codeword one-hot by ScatterElements into zeros [N*H*W, codes] (RestoreFormer, FeMaSR)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("codebook", torch.randn(16, 4))

    def pattern(self, y):
        n = y.shape[0]
        z = y.permute(0, 2, 3, 1).reshape(-1, 4)
        distance = (z ** 2).sum(1, keepdim=True) + (self.codebook ** 2).sum(1) - 2 * z @ self.codebook.t()
        nearest = torch.argmin(distance, dim=1).unsqueeze(1)
        one_hot = torch.zeros(nearest.shape[0], 16, dtype=z.dtype).scatter_(1, nearest, 1)
        quantised = (one_hot @ self.codebook).reshape(n, 8, 8, 4).permute(0, 3, 1, 2)
        return y + quantised


class SplitAfterTranspose(Head):
    """q, k, v sliced on axis 0 after a permute moved the batch to axis 1 (SCUNet, FDAT)."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 12)

    def pattern(self, y):
        n = y.shape[0]
        tokens = y.flatten(2).transpose(1, 2)                                 # [N, 64, 4]
        qkv = self.qkv(tokens).reshape(n, 64, 3, 4).permute(2, 0, 1, 3)      # [3, N, 64, 4]
        q, k, v = qkv[0:1], qkv[1:2], qkv[2:3]
        attention = torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=-1)
        return (attention @ v)[0].transpose(1, 2).reshape(y.shape)


class GateOnPermutedView(Head):
    """Squeeze-excite on a permuted view of tokens: the dynamo exporter's as_strided gathers from
    the flattened [N*C] means (HAT's channel attention)."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 1),
                                  nn.Sigmoid())

    def pattern(self, y):
        n = y.shape[0]
        tokens = y.flatten(2).transpose(1, 2)                                 # [N, 64, 4]
        view = tokens.reshape(n, 8, 8, 4).permute(0, 3, 1, 2)
        return view * self.gate(view)


class SelfAttentionSeqFirst(Head):
    """nn.MultiheadAttention on (HW, N, C) tokens: its out-projection is a Gemm on [HW*N, C], a
    reshape that at batch 1 looks like [HW, N*C] (CodeFormer)."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 2)
        self.position = nn.Parameter(torch.randn(64, 4))

    def pattern(self, y):
        tokens = y.flatten(2).permute(2, 0, 1)                                # [64, N, 4]
        query = tokens + self.position.unsqueeze(1).repeat(1, y.shape[0], 1)
        return (tokens + self.attention(query, query, tokens)[0]).permute(1, 2, 0).reshape(y.shape)


class ConstantQueries(Head):
    """Learned queries repeated per item attend to the image (a folded [heads, Q, d] operand of a
    batched MatMul, FusedMatMul after ONNX Runtime's fusion), einsum back to pixels (DDColor)."""

    def __init__(self):
        super().__init__()
        self.queries = nn.Embedding(5, 4)
        self.attention = nn.MultiheadAttention(4, 2)
        self.mix = nn.Conv2d(5, 4, 1)

    def pattern(self, y):
        memory = y.flatten(2).permute(2, 0, 1)                                # [64, N, 4]
        queries = self.queries.weight.unsqueeze(1).repeat(1, y.shape[0], 1)  # [5, N, 4]
        attended = self.attention(queries, memory, memory)[0]
        return self.mix(torch.einsum("qbc,bchw->bqhw", attended, y))


class WindowsTracedAtBatch1(Head):
    """Swin's window_reverse with B = int(windows / windows per image): the TorchScript export
    bakes B = 1, so the source itself reshapes wrongly at other batches (the channel axis grows);
    its shapes there must not steer the batch rewrite (HAT, Swin2SR, GRL). (The dynamo export
    bakes its example batch 2 and is wrong even at batch 1: not a case.)"""

    def pattern(self, y):
        windows = y.reshape(-1, 4, 2, 4, 2, 4).permute(0, 2, 4, 3, 5, 1).reshape(-1, 16, 4)  # [N*4, 16, 4]
        windows = windows * torch.sigmoid(windows.sum(1, keepdim=True))
        batch = int(windows.shape[0] / 4)
        image = windows.reshape(batch, 2, 2, 4, 4, -1).permute(0, 1, 3, 2, 4, 5).reshape(batch, 8, 8, -1)
        return image.permute(0, 3, 1, 2)


PATTERNS = [NormalizedWindows, LinearOnFlatBatch, CodebookLookup, SplitAfterTranspose, GateOnPermutedView,
            SelfAttentionSeqFirst, ConstantQueries]


CASES = [(WindowsTracedAtBatch1, False)] + [(p, dynamo) for p in PATTERNS for dynamo in (False, True)]


@pytest.mark.parametrize("pattern, dynamo", CASES,
                         ids=[f"{p.__name__}-{'dynamo' if d else 'torchscript'}" for p, d in CASES])
def test_pattern_runs_batched_and_exact(pattern, dynamo, tmp_path, harness):
    torch.manual_seed(0)
    net = pattern().eval()
    source = export_onnx(net, SHAPE, tmp_path / "net.onnx", dynamo=dynamo)
    graph = build_attribution_graph(str(source), SHAPE)
    meta = {p.key: p.value for p in graph.metadata_props}
    assert "lam_trt.max_batch" not in meta, meta.get("lam_trt.batch_limit_reason")
    path, weights = harness.random_batch(3, SHAPE, seed=3)
    window = window_of(net, harness)
    run = harness.run_graph(harness.make_session(graph), path, weights, window)
    assert_exact(run, per_image_reference(harness, net, path, weights, window), harness)


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


def test_graph_that_mixes_the_batch_is_marked_and_runs_one_image_at_a_time(tmp_path, harness):
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
    assert_exact(out, per_image_reference(harness, net, path, weights, window), harness)


def test_runner_falls_back_when_a_batch_returns_the_wrong_count(tmp_path, harness):
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
    assert_exact(out, per_image_reference(harness, net, path, weights, window), harness)


def test_probe_finds_the_first_image_model_too(tmp_path):
    torch.manual_seed(0)
    source = export_onnx(FirstImage().eval(), SHAPE, tmp_path / "first.onnx")
    meta = {p.key: p.value for p in build_attribution_graph(str(source), SHAPE).metadata_props}
    assert meta.get("lam_trt.max_batch") == "1"


def test_attribute_reports_the_fallback_in_the_result(tmp_path):
    import lam_trt

    torch.manual_seed(0)
    source = export_onnx(MixesTheBatch().eval(), SHAPE, tmp_path / "mixes.onnx")
    image = np.random.default_rng(4).random(SHAPE, dtype=np.float32)
    result = lam_trt.Attributor(source, provider="cpu", cache_dir=tmp_path / "cache").attribute(
        image, window=(1, 1), size=4, steps=6, internal_batch_size=4, crop=False)
    runtime = result.meta["runtime"]
    assert runtime["batch_size"] == 1 and "differs" in runtime["batch_fallback"]
    assert [w.code for w in result.warnings if "one at a time" in w.message] == ["batch-fallback"]
