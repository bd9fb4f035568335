"""Small SR networks covering the architecture families LAM is used on, and an ONNX export helper.

Widths are tiny (8-16 channels) so whole-network gradient tests run in well under a second each.
Every net maps [N,3,h,w] to [N,3,s*h,s*w] and is deterministic for a given seed.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from torch import nn


def lr_image(h: int = 12, w: int = 12) -> np.ndarray:
    """A textured crop of a real photograph, float32 [3, h, w] in [0, 1]."""
    crop = skdata.astronaut()[180:180 + h, 200:200 + w]
    return np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32) / 255.0


def seeded(module_cls: type[nn.Module], seed: int = 0, **kwargs) -> nn.Module:
    """Instantiate with a fixed seed, in eval mode."""
    torch.manual_seed(seed)
    return module_cls(**kwargs).eval()


class ChannelAttention(nn.Module):
    """RCAN-style squeeze-and-excitation gate."""

    def __init__(self, nf: int, reduction: int = 4):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(nf, nf // reduction, 1), nn.ReLU(),
            nn.Conv2d(nf // reduction, nf, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResidualCA(nn.Module):
    """RCAN in miniature: residual blocks with channel attention, PixelShuffle x2 or x4."""

    def __init__(self, nf: int = 8, blocks: int = 2, scale: int = 2):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError("scale must be 2 or 4")
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(), nn.Conv2d(nf, nf, 3, padding=1),
                          ChannelAttention(nf))
            for _ in range(blocks))
        self.body_end = nn.Conv2d(nf, nf, 3, padding=1)
        ups: list[nn.Module] = []
        for _ in range(scale // 2):
            ups += [nn.Conv2d(nf, 4 * nf, 3, padding=1), nn.PixelShuffle(2)]
        self.up = nn.Sequential(*ups)
        self.tail = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        y = head
        for block in self.blocks:
            y = y + block(y)
        return self.tail(self.up(self.body_end(y) + head))


class DenseBlock(nn.Module):
    """ESRGAN residual dense block: each conv sees all earlier features; residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc, 3, padding=1) for i in range(4))
        self.last = nn.Conv2d(nf + 4 * gc, nf, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.last(torch.cat(feats, 1))


class RRDB(nn.Module):
    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.dense = nn.Sequential(*(DenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.dense(x)


class TinyRRDB(nn.Module):
    """ESRGAN in miniature: RRDB trunk, nearest x2 interpolation upsampling."""

    def __init__(self, nf: int = 8, gc: int = 4, blocks: int = 1):
        super().__init__()
        self.first = nn.Conv2d(3, nf, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(blocks)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.up_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.hr_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.last = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.first(x)
        feat = feat + self.trunk_conv(self.trunk(feat))
        feat = F.leaky_relu(self.up_conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.last(F.leaky_relu(self.hr_conv(feat), 0.2))


class SelfAttention(nn.Module):
    """Multi-head global self-attention over tokens [N, L, dim]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        n, length, dim = t.shape
        return t.reshape(n, length, self.heads, dim // self.heads).transpose(1, 2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(t)), self._split(self.k(t)), self._split(self.v(t))
        attn = torch.softmax(q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5), dim=-1)
        out = (attn @ v).transpose(1, 2)
        return self.proj(out.reshape(t.shape))


class TinyAttentionSR(nn.Module):
    """SwinIR-like block without windows: every pixel attends to every pixel; PixelShuffle x2."""

    def __init__(self, dim: int = 8, heads: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.up = nn.Sequential(nn.Conv2d(dim, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        n, c, h, w = feat.shape
        t = feat.flatten(2).transpose(1, 2)
        t = t + self.attn(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return self.up(t.transpose(1, 2).reshape(n, c, h, w) + feat)


class BicubicResidualX2(nn.Module):
    """A few convs + PixelShuffle x2 on top of a bicubic-upsampled global residual."""

    def __init__(self, nf: int = 8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, nf, 3, padding=1), nn.ReLU(), nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(),
            nn.Conv2d(nf, 3 * 4, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)


NETS: dict[str, type[nn.Module]] = {
    "ResidualCA": ResidualCA,
    "TinyRRDB": TinyRRDB,
    "TinyAttentionSR": TinyAttentionSR,
    "BicubicResidualX2": BicubicResidualX2,
}


def export_onnx(module: nn.Module, shape: tuple[int, ...], path: str | Path, opset: int | None = None,
                dynamo: bool = False, dynamic_hw: bool = True, dynamic_batch: bool = True) -> Path:
    """Export module (float32, eval) to a self-contained ONNX file with input "input", output "output".

    shape is (C,h,w) or (N,C,h,w). opset defaults to 17 (TorchScript exporter) or 18 (dynamo).
    The dynamo exporter falls back to static shapes where torch.export rejects the dynamic dims.
    """
    path = Path(path)
    module = module.float().eval()
    n = shape[0] if len(shape) == 4 else (2 if dynamo and dynamic_batch else 1)
    example = (torch.rand(n, *shape[-3:]),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            _export_dynamo(module, example, path, opset or 18, dynamic_hw, dynamic_batch)
        else:
            axes = ({0: "batch"} if dynamic_batch else {}) | ({2: "height", 3: "width"} if dynamic_hw else {})
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset or 17,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": axes} if axes else None)
    return path


def _export_dynamo(module: nn.Module, example: tuple[torch.Tensor], path: Path, opset: int,
                   dynamic_hw: bool, dynamic_batch: bool) -> None:
    dims: dict[int, torch.export.Dim] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
    if dynamic_hw:
        dims |= {2: torch.export.Dim("height", min=4, max=4096), 3: torch.export.Dim("width", min=4, max=4096)}
    kwargs = dict(dynamo=True, opset_version=opset, input_names=["input"], output_names=["output"],
                  external_data=False, verbose=False)
    try:
        torch.onnx.export(module, example, str(path), dynamic_shapes=(dims,) if dims else None, **kwargs)
    except Exception:  # torch.export could not keep these dims symbolic for this module
        if not dims:
            raise
        torch.onnx.export(module, example, str(path), **kwargs)
