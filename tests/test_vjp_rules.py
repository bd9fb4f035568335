"""Every VJP rule against torch.autograd: a one-op model, its attribution graph in ONNX Runtime, and
the float64 PyTorch gradient of the same computation (relative L2 < 1e-5 in float32).

Exported cases go through torch.onnx.export (TorchScript, opset 17, dynamic batch and H/W);
ops torch never emits (auto_pad, DCR, SpaceToDepth, GatherND, Mish, GroupNormalization, ...)
are built by hand with onnx.helper next to an equivalent torch function.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import onnx
from onnx import helper
from torch import nn

from nets import export_onnx


class Fn(nn.Module):
    """A module from a function of (self, x); tensors become buffers (so .double() converts them)."""

    def __init__(self, fn: Callable[[nn.Module, torch.Tensor], torch.Tensor], **members: torch.Tensor | nn.Module):
        super().__init__()
        self.fn = fn
        for name, value in members.items():
            if isinstance(value, nn.Module):
                self.add_module(name, value)
            else:
                self.register_buffer(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x)


def randomized(module: nn.Module) -> nn.Module:
    """Non-trivial affine parameters and running statistics (defaults of 1 and 0 hide bugs)."""
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("running_var") else torch.randn_like(t) * 0.5
                        + (1.0 if name.endswith("weight") and t.dim() == 1 else 0.0))
    return module.eval()


def rand(*shape: int, low: float | None = None) -> torch.Tensor:
    """Random constants; with low, uniform in [low, low + 1) (for divisors kept away from 0)."""
    return torch.rand(*shape) + low if low is not None else torch.randn(*shape)


def pos(x: torch.Tensor) -> torch.Tensor:
    """Keep an op's input away from 0 where its derivative is singular."""
    return x * x + 0.5


@dataclass
class Case:
    id: str
    ops: tuple[str, ...]
    make: Callable[[], nn.Module]
    shape: tuple[int, int, int] = (3, 8, 8)
    opset: int = 17


def case(id: str, ops: str | tuple[str, ...], make: Callable[[], nn.Module], shape=(3, 8, 8), opset=17) -> Case:
    return Case(id, (ops,) if isinstance(ops, str) else ops, make, shape, opset)


def fn(f: Callable[[nn.Module, torch.Tensor], torch.Tensor], **members: Callable[[], torch.Tensor | nn.Module]):
    """A Case factory building Fn(f) with freshly drawn members (drawn after the test seeds torch)."""
    return lambda: Fn(f, **{k: m() for k, m in members.items()})


def _swap(parts: tuple[torch.Tensor, ...], dim: int) -> torch.Tensor:
    """Recombine split parts differently, so a rule that mixes up the parts' gradients fails."""
    return torch.cat([parts[1], parts[0] * parts[0]], dim)


def mod(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    return lambda: randomized(factory())


EXPORTED: list[Case] = [
    # Conv
    case("Conv-3x3", "Conv", mod(lambda: nn.Conv2d(3, 4, 3, padding=1))),
    case("Conv-1x1", "Conv", mod(lambda: nn.Conv2d(3, 5, 1))),
    case("Conv-stride2", "Conv", mod(lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1)), (3, 12, 12)),
    case("Conv-dilation2", "Conv", mod(lambda: nn.Conv2d(3, 4, 3, padding=2, dilation=2))),
    case("Conv-groups2", "Conv", mod(lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2)), (4, 8, 8)),
    case("Conv-depthwise", "Conv", mod(lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4)), (4, 8, 8)),
    case("Conv-rect-stride-dilation-nobias", "Conv",
         mod(lambda: nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False)),
         (3, 10, 9)),
    # ConvTranspose
    case("ConvTranspose-k4s2p1", "ConvTranspose", mod(lambda: nn.ConvTranspose2d(3, 4, 4, 2, 1)), (3, 5, 5)),
    case("ConvTranspose-output-padding", "ConvTranspose",
         mod(lambda: nn.ConvTranspose2d(3, 4, 3, 2, 1, output_padding=1)), (3, 5, 6)),
    case("ConvTranspose-groups2", "ConvTranspose",
         mod(lambda: nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1, groups=2)), (4, 5, 5)),
    case("ConvTranspose-dilation2-nobias", "ConvTranspose",
         mod(lambda: nn.ConvTranspose2d(3, 2, 3, 1, 1, dilation=2, bias=False)), (3, 6, 6)),
    # activations
    case("Relu", "Relu", fn(lambda m, x: F.relu(x))),
    case("LeakyRelu", "LeakyRelu", fn(lambda m, x: F.leaky_relu(x, 0.2))),
    case("PRelu-per-channel", "PRelu", mod(lambda: nn.PReLU(3))),
    case("PRelu-single", "PRelu", mod(lambda: nn.PReLU(1))),
    # slice adjoints join their blocks with one Concat when the blocks tile the axis, else pad and sum
    case("Slice-blocks-tile", "Slice", fn(lambda m, x: torch.cat([x[:, 1:] * 2, torch.sin(x[:, :1])], 1))),
    case("Slice-blocks-overlap", "Slice", fn(lambda m, x: x[:, :2] * x[:, 1:])),
    case("Slice-blocks-gap", "Slice", fn(lambda m, x: x[:, :1] * x[:, 2:])),
    case("Slice-blocks-and-whole", "Slice", fn(lambda m, x: x * 2 + torch.cat([x[:, :1], x[:, 1:] * 3], 1))),
    case("Gather-rows-tile", "Gather",
         fn(lambda m, x: torch.stack([x[:, 0] * x[:, 1], x[:, 2] + x[:, 1], torch.tanh(x[:, 0])], 1))),
    # reductions hand back lazily broadcast gradients (no Expand) through reductions and Pow
    case("Reduce-chain-contrast", ("ReduceSum", "ReduceMean", "Pow"),
         fn(lambda m, x: x * ((x - x.mean((2, 3), keepdim=True)) ** 2).sum(2, keepdim=True).sum(3, keepdim=True))),
    case("Reduce-no-keepdims-chain", ("ReduceSum", "Pow"),
         fn(lambda m, x: x + (x ** 2).sum(2).sum(2)[:, :, None, None] * m.c, c=lambda: rand(1, 1, 8, 8))),
    case("Reduce-two-lazy-parts", ("ReduceSum", "Pow"),
         fn(lambda m, x: x * (x ** 2).sum(2, keepdim=True) + (x ** 2).sum(3, keepdim=True) * m.c,
            c=lambda: rand(1, 1, 8, 8))),
    case("Pow-1-after-reduce", ("ReduceMean", "Pow", "Reshape"),
         fn(lambda m, x: torch.pow(x.reshape(-1, 3, 64, 1), m.one).mean((2, 3), keepdim=True) * m.c,
            one=lambda: torch.tensor(1.0), c=lambda: rand(1, 1, 8, 8))),
    # slopes in [0, 1] take the output-based rule; others the Where on the input
    case("LeakyRelu-negative-slope", "LeakyRelu", fn(lambda m, x: F.leaky_relu(x, -0.3))),
    case("LeakyRelu-slope-above-1", "LeakyRelu", fn(lambda m, x: F.leaky_relu(x, 1.5))),
    case("PRelu-unit-slopes", "PRelu", fn(lambda m, x: F.prelu(x, m.w), w=lambda: torch.tensor([0.0, 0.25, 1.0]))),
    case("PRelu-mixed-slopes", "PRelu", fn(lambda m, x: F.prelu(x, m.w), w=lambda: torch.tensor([-0.5, 0.3, 1.7]))),
    case("Sigmoid", "Sigmoid", fn(lambda m, x: torch.sigmoid(x))),
    case("Tanh", "Tanh", fn(lambda m, x: torch.tanh(x))),
    case("HardSigmoid", "HardSigmoid", fn(lambda m, x: F.hardsigmoid(4 * x))),
    case("HardSwish", "HardSwish", fn(lambda m, x: F.hardswish(4 * x))),
    case("Elu", "Elu", fn(lambda m, x: F.elu(x, 0.7))),
    case("Softplus", "Softplus", fn(lambda m, x: F.softplus(x))),
    case("Mish-decomposed", ("Softplus", "Tanh", "Mul"), fn(lambda m, x: F.mish(x))),
    case("Erf", "Erf", fn(lambda m, x: torch.erf(x))),
    case("Gelu-decomposed-erf", "Erf", fn(lambda m, x: F.gelu(x))),
    case("Gelu-opset20", "Gelu", fn(lambda m, x: F.gelu(x)), opset=20),
    case("Gelu-tanh-opset20", "Gelu", fn(lambda m, x: F.gelu(x, approximate="tanh")), opset=20),
    # elementwise math
    case("Exp", "Exp", fn(lambda m, x: torch.exp(x))),
    case("Log", "Log", fn(lambda m, x: torch.log(pos(x)))),
    case("Sqrt", "Sqrt", fn(lambda m, x: torch.sqrt(pos(x)))),
    case("Pow-cube", "Pow", fn(lambda m, x: x ** 3)),
    case("Pow-1.5", "Pow", fn(lambda m, x: pos(x) ** 1.5)),
    case("Pow-minus-half", "Pow", fn(lambda m, x: pos(x) ** -0.5)),
    case("Abs", "Abs", fn(lambda m, x: torch.abs(x))),
    case("Neg", "Neg", fn(lambda m, x: -x)),
    case("Reciprocal", "Reciprocal", fn(lambda m, x: torch.reciprocal(pos(x)))),
    case("Clip-both", "Clip", fn(lambda m, x: x.clamp(-0.5, 0.7))),
    case("Clip-min-only", "Clip", fn(lambda m, x: x.clamp(min=-0.3))),
    case("Clip-relu6", "Clip", fn(lambda m, x: F.relu6(4 * x))),
    case("Min-const-C11", "Min", fn(lambda m, x: torch.minimum(x, m.c), c=lambda: rand(3, 1, 1))),
    case("Max-data-broadcast", "Max", fn(lambda m, x: torch.maximum(x, x.mean(1, keepdim=True)))),
    case("Min-data-data", "Min", fn(lambda m, x: torch.minimum(x, torch.sin(3 * x)))),
    # binary arithmetic, broadcasting against constants and between data tensors
    case("Add-const-C11", "Add", fn(lambda m, x: x + m.c, c=lambda: rand(3, 1, 1))),
    case("Add-const-11W", "Add", fn(lambda m, x: x + m.c, c=lambda: rand(1, 1, 8))),
    case("Sub-const-11W", "Sub", fn(lambda m, x: x - m.c, c=lambda: rand(1, 1, 8))),
    case("Sub-const-minus-data", "Sub", fn(lambda m, x: m.c - x, c=lambda: rand(3, 1, 1))),
    case("Mul-const-C11", "Mul", fn(lambda m, x: x * m.c, c=lambda: rand(3, 1, 1))),
    case("Mul-const-11W", "Mul", fn(lambda m, x: x * m.c, c=lambda: rand(1, 1, 8))),
    case("Div-by-const-C11", "Div", fn(lambda m, x: x / m.c, c=lambda: rand(3, 1, 1, low=0.5))),
    case("Div-const-by-data", "Div", fn(lambda m, x: torch.div(m.c, pos(x)), c=lambda: rand(1, 1, 8))),
    case("Add-data-N1HW", "Add", fn(lambda m, x: x + x.mean(1, keepdim=True) * 2)),
    case("Sub-data-NCH1", "Sub", fn(lambda m, x: x - torch.tanh(x).mean(3, keepdim=True))),
    case("Mul-data-NC11", "Mul", fn(lambda m, x: x * torch.sigmoid(x).mean((2, 3), keepdim=True))),
    case("Mul-data-same-shape", "Mul", fn(lambda m, x: x * torch.sin(x))),
    case("Div-data-data", "Div", fn(lambda m, x: torch.sin(x) / pos(x))),
    case("Div-data-N1HW", "Div", fn(lambda m, x: x / pos(x).mean(1, keepdim=True))),
    # selection and type
    case("Where-data-data", "Where", fn(lambda m, x: torch.where(x > 0, x, 0.1 * x))),
    case("Where-const-branch", "Where", fn(lambda m, x: torch.where(x > 0.2, x, m.c), c=lambda: rand(3, 1, 1))),
    case("Where-const-cond", "Where",
         fn(lambda m, x: torch.where(m.mask, x * x, x), mask=lambda: torch.rand(1, 1, 8) > 0.5)),
    case("Cast-double-roundtrip", "Cast", fn(lambda m, x: (x.double() * 2).float())),
    # shape ops
    case("Reshape-rows", "Reshape", fn(lambda m, x: x.reshape(-1, 3, 4, 16))),
    case("Reshape-mix-channels", "Reshape", fn(lambda m, x: x.reshape(-1, 6, 4, 8) * m.c, c=lambda: rand(6, 1, 1))),
    case("Flatten", "Flatten", fn(lambda m, x: (torch.flatten(x, 1) * m.c).reshape(-1, 3, 8, 8), c=lambda: rand(192))),
    case("Unsqueeze-Squeeze", ("Unsqueeze", "Squeeze"),
         fn(lambda m, x: (x.unsqueeze(2) * m.c).squeeze(2), c=lambda: rand(3, 1, 1, 8))),
    case("Transpose-HW", "Transpose", fn(lambda m, x: x.transpose(2, 3)), (3, 8, 6)),
    case("Transpose-perm0312", "Transpose", fn(lambda m, x: x.permute(0, 3, 1, 2)), (4, 6, 8)),
    case("Expand-channels", "Expand", fn(lambda m, x: x.mean(1, keepdim=True).expand(-1, 3, -1, -1) * x)),
    case("Expand-spatial", "Expand", fn(lambda m, x: torch.tanh(x).amax((2, 3), keepdim=True).expand(-1, -1, 8, 8))),
    case("Tile-channels", "Tile", fn(lambda m, x: x.repeat(1, 2, 1, 1) * m.c, c=lambda: rand(6, 1, 1))),
    case("Tile-spatial", "Tile", fn(lambda m, x: x.repeat(1, 1, 2, 3) * m.c, c=lambda: rand(1, 16, 1))),
    case("Concat-channels", "Concat", fn(lambda m, x: torch.cat([x, 2 * x * x], 1))),
    case("Concat-same-tensor-twice", "Concat", fn(lambda m, x: torch.cat([x, x], 1) * m.c, c=lambda: rand(6, 1, 1))),
    case("Concat-rows", "Concat", fn(lambda m, x: torch.cat([x, torch.sin(x[:, :, :3])], 2))),
    case("Split-uneven", "Split", fn(lambda m, x: _swap(torch.split(x, [1, 2], 1), 1))),
    case("Split-chunk-width", "Split", fn(lambda m, x: _swap(torch.split(x, [4, 4], 3), 3))),
    case("Slice-crop", "Slice", fn(lambda m, x: x[:, :, 1:7, 2:])),
    case("Slice-step2", "Slice", fn(lambda m, x: x[:, :, ::2, 1::2]), (3, 12, 12)),
    case("Slice-negative-start", "Slice", fn(lambda m, x: x[:, 1:, -6:, :-1])),
    case("Slice-step-minus1", "Slice", fn(lambda m, x: torch.flip(x, [3]) * m.c, c=lambda: rand(1, 1, 8))),
    case("Slice-step-minus1-2d", "Slice", fn(lambda m, x: torch.flip(x, [2, 3]) * m.c, c=lambda: rand(8, 8))),
    case("Gather-channels-repeated", "Gather",
         fn(lambda m, x: x[:, m.idx], idx=lambda: torch.tensor([2, 0, 0, 1]))),
    case("Gather-width-repeated", "Gather",
         fn(lambda m, x: torch.index_select(x, 3, m.idx), idx=lambda: torch.tensor([0, 7, 7, 3, 2, 5]))),
    case("Gather-scalar-index", "Gather", fn(lambda m, x: torch.stack([x[:, 2], x[:, 0] * 2, x[:, 2] ** 2], 1))),
    case("Gather-negative-index", "Gather", fn(lambda m, x: x[:, :, m.idx], idx=lambda: torch.tensor([-1, 0, -3, 4]))),
    case("Pad-constant", "Pad", fn(lambda m, x: F.pad(x, (1, 2, 0, 3), mode="constant", value=0.5))),
    case("Pad-constant-negative", "Pad", fn(lambda m, x: F.pad(x, (-1, 2, 1, -2)))),
    case("Pad-reflect", "Pad", fn(lambda m, x: F.pad(x, (2, 1, 1, 3), mode="reflect"))),
    case("Pad-edge", "Pad", fn(lambda m, x: F.pad(x, (1, 2, 3, 0), mode="replicate"))),
    case("PixelShuffle-as-ConvTranspose", "DepthToSpace", lambda: nn.PixelShuffle(2), (12, 4, 4)),
    # Resize
    case("Resize-nearest-x2", "Resize", fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="nearest")), (3, 6, 6)),
    case("Resize-nearest-x3", "Resize", fn(lambda m, x: F.interpolate(x, scale_factor=3, mode="nearest")), (3, 5, 4)),
    case("Resize-nearest-x1.5", "Resize", fn(lambda m, x: F.interpolate(x, scale_factor=1.5, mode="nearest"))),
    case("Resize-nearest-size", "Resize", fn(lambda m, x: F.interpolate(x, size=(11, 13), mode="nearest"))),
    case("Resize-bilinear-x2", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)), (3, 6, 6)),
    case("Resize-bilinear-x2-align", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)), (3, 6, 6)),
    case("Resize-bilinear-x3", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)), (3, 5, 4)),
    case("Resize-bilinear-x1.5", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=1.5, mode="bilinear", align_corners=False))),
    case("Resize-bilinear-size", "Resize",
         fn(lambda m, x: F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False))),
    case("Resize-bilinear-size-align", "Resize",
         fn(lambda m, x: F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=True))),
    case("Resize-bilinear-downsize", "Resize",
         fn(lambda m, x: F.interpolate(x, size=(5, 6), mode="bilinear", align_corners=False)), (3, 12, 12)),
    case("Resize-bicubic-x2", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)), (3, 6, 6)),
    case("Resize-bicubic-x2-align", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=True)), (3, 6, 6)),
    case("Resize-bicubic-x1.5", "Resize",
         fn(lambda m, x: F.interpolate(x, scale_factor=1.5, mode="bicubic", align_corners=False))),
    case("Resize-bicubic-size", "Resize",
         fn(lambda m, x: F.interpolate(x, size=(11, 13), mode="bicubic", align_corners=False))),
    # linear algebra
    case("MatMul-const", "MatMul", fn(lambda m, x: x @ m.w, w=lambda: rand(8, 5))),
    case("MatMul-data-data", "MatMul", fn(lambda m, x: x @ x.transpose(2, 3))),
    case("MatMul-data-broadcast", "MatMul", fn(lambda m, x: x @ torch.tanh(x).mean(1, keepdim=True))),
    case("Gemm-linear", "Gemm",
         mod(lambda: nn.Sequential(nn.Flatten(1), nn.Linear(192, 48), nn.Unflatten(1, (3, 4, 4))))),
    case("Einsum-data-data", "Einsum", fn(lambda m, x: torch.einsum("nchw,nchv->ncwv", x, torch.sin(x)))),
    case("Einsum-const", "Einsum", fn(lambda m, x: torch.einsum("nchw,cd->ndhw", x, m.w), w=lambda: rand(3, 4))),
    # normalisation, reductions, pooling
    case("Softmax-channels", "Softmax", fn(lambda m, x: torch.softmax(2 * x, 1))),
    case("Softmax-width", "Softmax", fn(lambda m, x: torch.softmax(2 * x, -1))),
    case("ReduceMean-HW-keepdims", "ReduceMean", fn(lambda m, x: x * x.mean((2, 3), keepdim=True))),
    case("ReduceMean-channels-nokeep", "ReduceMean", fn(lambda m, x: x - (x * x).mean(1).unsqueeze(1))),
    case("ReduceSum-channels-keepdims", "ReduceSum", fn(lambda m, x: (x * x).sum(1, keepdim=True))),
    case("ReduceSum-rows-nokeep", "ReduceSum", fn(lambda m, x: x * torch.sin(x).sum(2).unsqueeze(2))),
    case("ReduceL2-channels", "ReduceL2", fn(lambda m, x: x / torch.norm(x, dim=1, keepdim=True))),
    case("ReduceL2-HW", "ReduceL2", fn(lambda m, x: x * torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True))),
    case("GlobalAveragePool", "GlobalAveragePool", fn(lambda m, x: x * m.gap(x * x), gap=lambda: nn.AdaptiveAvgPool2d(1))),
    case("AveragePool-3x3-include-pad", "AveragePool", lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=True)),
    case("AveragePool-3x3-exclude-pad", "AveragePool", lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False)),
    case("AveragePool-2x2-stride2", "AveragePool", lambda: nn.AvgPool2d(2, 2)),
    case("AveragePool-ceil-exclude-pad", "AveragePool",
         lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (3, 10, 10)),
    case("AveragePool-ceil-include-pad", "AveragePool",
         lambda: nn.AvgPool2d(3, 2, 0, ceil_mode=True, count_include_pad=True), (3, 10, 10)),
    case("MaxPool-3x3-stride1-overlap", "MaxPool", lambda: nn.MaxPool2d(3, 1, 1)),
    case("MaxPool-2x2-stride2", "MaxPool", lambda: nn.MaxPool2d(2, 2)),
    case("MaxPool-ceil", "MaxPool", lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True), (3, 10, 10)),
    case("MaxPool-ties-first-wins", ("Resize", "MaxPool"),  # nearest x2 makes every window hold ties
         lambda: nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.MaxPool2d(3, 1, 1))),
    case("MaxPool-dilation2", "MaxPool", lambda: nn.MaxPool2d(3, 1, 1, dilation=2)),
    case("MaxPool-7x7-stride3", "MaxPool", lambda: nn.MaxPool2d(7, 3), (3, 15, 15)),
    case("LayerNormalization-width", "LayerNormalization", mod(lambda: nn.LayerNorm(8))),
    case("LayerNormalization-CHW", "LayerNormalization", mod(lambda: nn.LayerNorm((3, 8, 8)))),
    case("LayerNormalization-no-affine", "LayerNormalization", mod(lambda: nn.LayerNorm(8, elementwise_affine=False))),
    case("InstanceNormalization", "InstanceNormalization", mod(lambda: nn.InstanceNorm2d(3, affine=True))),
    case("GroupNorm-torch-decomposed", "InstanceNormalization", mod(lambda: nn.GroupNorm(2, 4)), (4, 6, 6)),
    case("BatchNormalization-on-input", "BatchNormalization", mod(lambda: nn.BatchNorm2d(3))),
    case("BatchNormalization-after-relu", "BatchNormalization",
         mod(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4)))),
]


# ---- hand-built models: ops and attributes torch never emits ----------------------------------

Build = Callable[[np.random.Generator], tuple[list, dict[str, np.ndarray], Callable[[torch.Tensor], torch.Tensor]]]


@dataclass
class HandCase:
    id: str
    op: str
    build: Build  # rng -> (nodes, initializers, equivalent torch function)
    shape: tuple[int, int, int] = (3, 8, 8)
    opset: int = 17
    checkable: bool = True  # False: onnx.checker rejects the op as deprecated, ONNX Runtime still runs it


def t(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(a).to(like.dtype)


def same_pads(size: int, k: int, s: int, upper: bool) -> tuple[int, int]:
    """(begin, end) padding of ONNX auto_pad SAME_UPPER / SAME_LOWER."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def conv_pads(pads: tuple[int, int, int, int], k: int = 3, stride: int = 1) -> Build:
    """Conv with explicit pads [top, left, bottom, right] against F.pad + F.conv2d."""
    def build(rng):
        w, b = rng.standard_normal((4, 3, k, k), np.float32), rng.standard_normal(4, np.float32)
        node = helper.make_node("Conv", ["input", "w", "b"], ["output"], pads=list(pads), strides=[stride] * 2)
        top, left, bottom, right = pads
        return [node], {"w": w, "b": b}, lambda x: F.conv2d(F.pad(x, (left, right, top, bottom)), t(w, x), t(b, x),
                                                             stride=stride)
    return build


def conv_auto_pad(auto_pad: str, k: int, stride: int, size: int) -> Build:
    def build(rng):
        w = rng.standard_normal((4, 3, k, k), np.float32)
        node = helper.make_node("Conv", ["input", "w"], ["output"], auto_pad=auto_pad, strides=[stride] * 2,
                                kernel_shape=[k, k])
        if auto_pad == "VALID":
            pad = (0, 0, 0, 0)
        else:
            begin, end = same_pads(size, k, stride, auto_pad == "SAME_UPPER")
            pad = (begin, end, begin, end)
        return [node], {"w": w}, lambda x: F.conv2d(F.pad(x, pad), t(w, x), stride=stride)
    return build


def conv_transpose_output_shape(rng):
    """ConvTranspose-17 with output_shape: the full 18x18 result cropped to 15x16, the odd padding
    pixel at the beginning (the ONNX spec for auto_pad NOTSET; checked against ONNX Runtime)."""
    w = rng.standard_normal((3, 4, 4, 4), np.float32)
    node = helper.make_node("ConvTranspose", ["input", "w"], ["output"], strides=[2, 2], output_shape=[15, 16])
    return [node], {"w": w}, lambda x: F.conv_transpose2d(x, t(w, x), stride=2)[:, :, 2:17, 1:17]


def depth_to_space_dcr(rng):
    def ref(x):
        n, c, h, w = x.shape
        return x.reshape(n, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c // 4, 2 * h, 2 * w)
    return [helper.make_node("DepthToSpace", ["input"], ["output"], blocksize=2, mode="DCR")], {}, ref


def space_to_depth(rng):
    def ref(x):
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
    return [helper.make_node("SpaceToDepth", ["input"], ["output"], blocksize=2)], {}, ref


def gather_nd(rng):
    """GatherND over (row, channel) pairs, repeats included, of x moved to [H,C,N,W]."""
    idx = np.stack([rng.integers(0, 8, 12), rng.integers(0, 3, 12)], 1).astype(np.int64)
    idx[5] = idx[2]  # a repeated index: its gradients must add up
    nodes = [helper.make_node("Transpose", ["input"], ["hcnw"], perm=[2, 1, 0, 3]),
             helper.make_node("GatherND", ["hcnw", "idx"], ["knw"]),
             helper.make_node("Reshape", ["knw", "shape"], ["abnw"]),
             helper.make_node("Transpose", ["abnw"], ["output"], perm=[2, 0, 1, 3])]
    shape = np.array([3, 4, -1, 8], np.int64)

    def ref(x):
        xt = x.permute(2, 1, 0, 3)
        return xt[idx[:, 0], idx[:, 1]].reshape(3, 4, -1, 8).permute(2, 0, 1, 3)
    return nodes, {"idx": idx, "shape": shape}, ref


def identity(rng):
    return [helper.make_node("Identity", ["input"], ["output"])], {}, lambda x: x


def dropout_inference(rng):
    node = helper.make_node("Dropout", ["input", "ratio"], ["output", "mask"])
    return [node], {"ratio": np.array(0.3, np.float32)}, lambda x: x


def mish(rng):
    return [helper.make_node("Mish", ["input"], ["output"])], {}, F.mish


def group_norm(per_channel: bool) -> Build:
    """GroupNormalization: opset 18 takes scale/bias per group, opset 21 per channel."""
    def build(rng):
        n_scale = 4 if per_channel else 2
        scale = (rng.standard_normal(n_scale) * 0.5 + 1).astype(np.float32)
        bias = rng.standard_normal(n_scale).astype(np.float32)
        node = helper.make_node("GroupNormalization", ["input", "s", "b"], ["output"], num_groups=2, epsilon=1e-5)

        def ref(x):
            s, b = t(scale, x), t(bias, x)
            if not per_channel:
                s, b = s.repeat_interleave(2), b.repeat_interleave(2)
            return F.group_norm(x, 2, eps=1e-5) * s[:, None, None] + b[:, None, None]
        return [node], {"s": scale, "b": bias}, ref
    return build


def gemm_trans_a(rng):
    """Gemm(A^T, B) * alpha + beta * C with A given transposed, B not."""
    b, c = rng.standard_normal((192, 48), np.float32), rng.standard_normal(48, np.float32)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("Transpose", ["flat"], ["flat_t"], perm=[1, 0]),
             helper.make_node("Gemm", ["flat_t", "B", "C"], ["y"], transA=1, alpha=0.5, beta=2.0),
             helper.make_node("Reshape", ["y", "shape"], ["output"])]
    inits = {"B": b, "C": c, "shape": np.array([-1, 3, 4, 4], np.int64)}
    return nodes, inits, lambda x: (0.5 * x.flatten(1) @ t(b, x) + 2.0 * t(c, x)).reshape(-1, 3, 4, 4)


def gemm_trans_b(rng):
    b, c = rng.standard_normal((48, 192), np.float32), rng.standard_normal((1, 48), np.float32)
    nodes = [helper.make_node("Flatten", ["input"], ["flat"]),
             helper.make_node("Gemm", ["flat", "B", "C"], ["y"], transB=1, alpha=1.5),
             helper.make_node("Reshape", ["y", "shape"], ["output"])]
    inits = {"B": b, "C": c, "shape": np.array([-1, 3, 4, 4], np.int64)}
    return nodes, inits, lambda x: (1.5 * x.flatten(1) @ t(b, x).T + t(c, x)).reshape(-1, 3, 4, 4)


def upsample_opset9(rng):
    node = helper.make_node("Upsample", ["input", "scales"], ["output"], mode="nearest")
    scales = np.array([1, 1, 2, 2], np.float32)
    return [node], {"scales": scales}, lambda x: F.interpolate(x, scale_factor=2, mode="nearest")


def resize_nearest_half_pixel(rng):
    """half_pixel + round_prefer_ceil is torch's "nearest-exact" (which torch cannot export)."""
    node = helper.make_node("Resize", ["input", "", "scales"], ["output"], mode="nearest",
                            coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil")
    scales = np.array([1, 1, 1.5, 1.5], np.float32)
    return [node], {"scales": scales}, lambda x: F.interpolate(x, scale_factor=1.5, mode="nearest-exact")


def reshape_zero_copies_dim(rng):
    """Reshape's 0 copies the input's dimension (allowzero=0)."""
    node = helper.make_node("Reshape", ["input", "shape"], ["output"])
    return [node], {"shape": np.array([0, 6, -1, 8], np.int64)}, lambda x: x.reshape(x.shape[0], 6, -1, 8)


def slice_negative_axis_step(rng):
    node = helper.make_node("Slice", ["input", "starts", "ends", "axes", "steps"], ["output"])
    inits = {"starts": np.array([-1, 1], np.int64), "ends": np.array([-100, 8], np.int64),
             "axes": np.array([-1, -2], np.int64), "steps": np.array([-2, 1], np.int64)}
    return [node], inits, lambda x: torch.flip(x, [3])[:, :, 1:8, ::2]


def sum_variadic(rng):
    c = rng.standard_normal((3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["input", "input"], ["sq"]),
             helper.make_node("Sum", ["input", "sq", "c"], ["output"])]
    return nodes, {"c": c}, lambda x: x + x * x + t(c, x)


def split_num_outputs(rng):
    """Opset 18 splits into equal parts by num_outputs instead of sizes."""
    nodes = [helper.make_node("Split", ["input"], ["a", "b"], axis=3, num_outputs=2),
             helper.make_node("Mul", ["a", "a"], ["a2"]),
             helper.make_node("Concat", ["b", "a2"], ["output"], axis=3)]

    def ref(x):
        a, b = torch.split(x, [4, 4], 3)
        return torch.cat([b, a * a], 3)
    return nodes, {}, ref


def pad_axes(rng):
    """Opset 18 Pad with an axes input: pads name only the listed axes."""
    node = helper.make_node("Pad", ["input", "pads", "", "axes"], ["output"], mode="reflect")
    inits = {"pads": np.array([1, 2, 3, 0], np.int64), "axes": np.array([3, 2], np.int64)}
    return [node], inits, lambda x: F.pad(x, (1, 3, 2, 0), mode="reflect")


def softmax_opset11_coerced(rng):
    """Before opset 13, Softmax(axis=1) normalises over all of C*H*W at once."""
    node = helper.make_node("Softmax", ["input"], ["output"], axis=1)
    return [node], {}, lambda x: torch.softmax(x.flatten(1), 1).reshape(x.shape)


HAND_BUILT: list[HandCase] = [
    HandCase("Conv-pads-asymmetric", "Conv", conv_pads((0, 1, 2, 1))),
    HandCase("Conv-pads-asymmetric-stride2", "Conv", conv_pads((1, 0, 0, 2), stride=2), (3, 9, 9)),
    HandCase("Conv-SAME_UPPER-k4", "Conv", conv_auto_pad("SAME_UPPER", 4, 1, 8)),
    HandCase("Conv-SAME_LOWER-k4", "Conv", conv_auto_pad("SAME_LOWER", 4, 1, 8)),
    HandCase("Conv-SAME_UPPER-stride2", "Conv", conv_auto_pad("SAME_UPPER", 3, 2, 8)),
    HandCase("Conv-SAME_LOWER-stride2", "Conv", conv_auto_pad("SAME_LOWER", 3, 2, 8)),
    HandCase("Conv-VALID-stride2", "Conv", conv_auto_pad("VALID", 3, 2, 9), (3, 9, 9)),
    HandCase("DepthToSpace-DCR", "DepthToSpace", depth_to_space_dcr, (12, 4, 4)),
    HandCase("ConvTranspose-output-shape-odd-padding", "ConvTranspose", conv_transpose_output_shape),
    HandCase("SpaceToDepth", "SpaceToDepth", space_to_depth),
    HandCase("GatherND", "GatherND", gather_nd),
    HandCase("Identity", "Identity", identity),
    HandCase("Dropout-inference", "Dropout", dropout_inference),
    HandCase("Mish-opset18", "Mish", mish, opset=18),
    HandCase("GroupNormalization-opset18", "GroupNormalization", group_norm(False), (4, 6, 6), opset=18,
             checkable=False),
    HandCase("GroupNormalization-opset21", "GroupNormalization", group_norm(True), (4, 6, 6), opset=21),
    HandCase("Gemm-transA-alpha-beta", "Gemm", gemm_trans_a),
    HandCase("Gemm-transB-bias2d", "Gemm", gemm_trans_b),
    HandCase("Upsample-opset9-nearest", "Upsample", upsample_opset9, (3, 5, 5), opset=9),
    HandCase("Resize-nearest-half-pixel-x1.5", "Resize", resize_nearest_half_pixel),
    HandCase("Reshape-zero-copies-dim", "Reshape", reshape_zero_copies_dim),
    HandCase("Slice-negative-axes-step-minus2", "Slice", slice_negative_axis_step),
    HandCase("Sum-variadic-broadcast", "Sum", sum_variadic),
    HandCase("Split-opset18-num-outputs", "Split", split_num_outputs, opset=18),
    HandCase("Pad-opset18-axes", "Pad", pad_axes, opset=18),
    HandCase("Softmax-opset11-coerced", "Softmax", softmax_opset11_coerced, (3, 4, 4), opset=11),
]

BY_ID = {c.id: c for c in EXPORTED}
OPSET11 = ["Conv-stride2", "Clip-relu6", "Unsqueeze-Squeeze", "Split-uneven", "ReduceSum-channels-keepdims",
           "Pad-reflect", "Resize-bilinear-x2", "Resize-nearest-size", "Softmax-channels", "Slice-step2",
           "Gather-channels-repeated"]
# opset 18 moved Split sizes, Pad axes and every Reduce* axes to inputs
DYNAMO = ["Conv-groups2", "PixelShuffle-as-ConvTranspose", "Resize-bilinear-x2", "Resize-bicubic-x2", "LayerNormalization-width",
          "ReduceMean-HW-keepdims", "ReduceSum-channels-keepdims", "ReduceL2-HW", "Softmax-width", "Split-uneven",
          "Pad-reflect"]
FIXED = ["Conv-3x3", "Reshape-mix-channels", "Gemm-linear", "Resize-bilinear-x1.5", "Softmax-width",
         "Expand-channels", "Tile-spatial", "Slice-step-minus1"]


def exported(c: Case, tmp_path, **export_kwargs) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    module = c.make()
    return module, export_onnx(module, c.shape, tmp_path / f"{c.id}.onnx", **export_kwargs)


@pytest.mark.parametrize("c", EXPORTED, ids=lambda c: c.id)
def test_exported_op(c: Case, tmp_path, check_attribution):
    module, source = exported(c, tmp_path, opset=c.opset)
    check_attribution(source, module, c.shape, c.ops)


@pytest.mark.parametrize("c", HAND_BUILT, ids=lambda c: c.id)
def test_hand_built_op(c: HandCase, harness, check_attribution):
    nodes, inits, ref = c.build(np.random.default_rng(0))
    check_attribution(harness.hand_model(nodes, c.shape, c.opset, inits, c.checkable), ref, c.shape, c.op)


@pytest.mark.parametrize("case_id", OPSET11)
def test_opset11(case_id: str, tmp_path, check_attribution):
    c = BY_ID[case_id]
    module, source = exported(c, tmp_path, opset=11)
    check_attribution(source, module, c.shape, c.ops)


@pytest.mark.parametrize("case_id", DYNAMO)
def test_dynamo_exporter(case_id: str, tmp_path, check_attribution):
    c = BY_ID[case_id]
    module, source = exported(c, tmp_path, dynamo=True)
    check_attribution(source, module, c.shape, c.ops)


@pytest.mark.parametrize("case_id", FIXED)
def test_fixed_shape_source_accepts_any_batch(case_id: str, tmp_path, check_attribution):
    """A source exported for batch 1 at one size (no dynamic axes) still attributes N=3 at once."""
    c = BY_ID[case_id]
    module, source = exported(c, tmp_path, dynamic_hw=False, dynamic_batch=False)
    check_attribution(source, module, c.shape, c.ops, n=3)


def test_initializers_listed_as_graph_inputs(tmp_path, check_attribution):
    """Old exporters (keep_initializers_as_inputs) list every weight as a graph input too."""
    c = BY_ID["BatchNormalization-after-relu"]
    module, source = exported(c, tmp_path)
    model = onnx.load(str(source))
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in model.graph.initializer)
    check_attribution(model, module, c.shape, c.ops)


@pytest.mark.parametrize("activation, slopes", [
    (lambda m, x: F.leaky_relu(x, 0.2), [0.0] * 3), (lambda m, x: F.prelu(x, m.w), [0.1, 0.5, 0.0]),
    (lambda m, x: F.leaky_relu(x, 1.5), [0.0] * 3), (lambda m, x: F.prelu(x, m.w), [-0.5, 0.3, 1.7]),
], ids=["LeakyRelu-output-rule", "PRelu-output-rule", "LeakyRelu-input-rule", "PRelu-input-rule"])
def test_slope_at_zero_and_denormals(activation, slopes, tmp_path, harness):
    """Both slope rules equal PyTorch's x > 0 choice where x is 0, -0 or denormal."""
    module = Fn(activation, w=torch.tensor(slopes))
    source = export_onnx(module, (3, 4, 4), tmp_path / "act.onnx")
    path, weights = harness.random_batch(2, (3, 4, 4), 0)
    # on a diagonal, so that every detector gradient magnitude they enter stays far from 0
    path[0, :2, [0, 1, 2], [0, 1, 2]] = np.array([[0.0, -0.0, 1e-42], [-1e-42, 1.2e-38, -3e-39]], np.float32).T
    window = (0, 0, 3, 3)
    run = harness.run_graph(harness.make_session(harness.build_graph(source, (3, 4, 4))), path, weights, window)
    harness.assert_matches(run, harness.reference(module, path, weights, window), 1e-6)
