"""Building blocks shared by several zoo networks.

Module layouts (and so the parameter names they produce) follow the EDSR-PyTorch code base
(github.com/sanghyun-son/EDSR-PyTorch, ``src/model/common.py``), which EDSR, RCAN, RNAN, SAN and
MSRN all import: ``MeanShift`` is a frozen 1x1 convolution whose weight and bias are stored in
the published checkpoints, ``Upsampler`` is a ``Sequential`` of (conv, PixelShuffle) pairs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lam_trt.errors import InputError

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def check_scale(arch: str, scale: int, allowed: tuple[int, ...]) -> None:
    """Reject a scale the architecture's published code cannot build."""
    if scale not in allowed:
        raise InputError(f"{arch} supports scales {', '.join(map(str, allowed))}, not {scale}")


def check_positive(arch: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise InputError(f"{arch}: {name} must be at least 1, got {value}")


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Conv2d):
    """Adds or subtracts the DIV2K mean as a fixed 1x1 convolution (its weights are in checkpoints)."""

    def __init__(self, rgb_range: float, sign: float = -1.0, channels: int = 3) -> None:
        super().__init__(channels, channels, kernel_size=1)
        # The published code is RGB-only; other channel counts get no shift.
        mean = torch.tensor(DIV2K_RGB_MEAN) if channels == 3 else torch.zeros(channels)
        self.weight.data = torch.eye(channels).view(channels, channels, 1, 1)
        self.bias.data = sign * rgb_range * mean
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip; ``body.0`` and ``body.2`` hold the weights."""

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, kernel_size), nn.ReLU(True), default_conv(n_feats, n_feats, kernel_size)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1:
            res = res * self.res_scale
        return res + x


class Upsampler(nn.Sequential):
    """(conv to 4x channels, PixelShuffle(2)) per factor of 2, or one (9x, PixelShuffle(3))."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise InputError(f"this upsampler supports scales 2^n and 3, not {scale}")
        super().__init__(*layers)


def pixelshuffle_block(in_channels: int, out_channels: int, scale: int) -> nn.Sequential:
    """One 3x3 conv to ``out_channels * scale^2`` and one PixelShuffle (IMDN, RFDN)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))
