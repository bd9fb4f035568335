"""Building blocks shared by several zoo networks.

Module layouts (and so the parameter names they produce) follow the EDSR-PyTorch code base
(github.com/sanghyun-son/EDSR-PyTorch, ``src/model/common.py``), which EDSR, RCAN, RNAN, SAN and
MSRN all import: ``MeanShift`` is a frozen 1x1 convolution whose weight and bias are stored in
the published checkpoints, ``Upsampler`` is a ``Sequential`` of (conv, PixelShuffle) pairs, and
``EDSRStyle`` is their common skeleton (``sub_mean``, ``head``, a trunk, ``tail``, ``add_mean``).
``DistillationNet`` is the skeleton RFDN took over from IMDN; ``CALayer``, ``squeeze_excite`` and
``NonLocalBlock2D`` are the attention pieces several networks share.
"""
from __future__ import annotations

import math
from typing import Callable

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


def rgb_mean(channels: int) -> torch.Tensor:
    """The DIV2K mean for 3 channels; zeros otherwise (the published code is RGB-only)."""
    return torch.tensor(DIV2K_RGB_MEAN) if channels == 3 else torch.zeros(channels)


class MeanShift(nn.Conv2d):
    """Adds or subtracts the DIV2K mean as a fixed 1x1 convolution (its weights are in checkpoints)."""

    def __init__(self, rgb_range: float, sign: float = -1.0, channels: int = 3) -> None:
        super().__init__(channels, channels, kernel_size=1)
        self.weight.data = torch.eye(channels).view(channels, channels, 1, 1)
        self.bias.data = sign * rgb_range * rgb_mean(channels)
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
    """(conv to 4x channels, PixelShuffle(2)) per factor of 2, or one (9x, PixelShuffle(3));
    ``relu`` puts a ReLU between each conv and its shuffle (CARN's upsampler)."""

    def __init__(self, scale: int, n_feats: int, relu: bool = False) -> None:
        if scale & (scale - 1) == 0:
            factors = [2] * int(math.log2(scale))
        elif scale == 3:
            factors = [3]
        else:
            raise InputError(f"this upsampler supports scales 2^n and 3, not {scale}")
        layers: list[nn.Module] = []
        for factor in factors:
            layers.append(default_conv(n_feats, factor**2 * n_feats, 3))
            if relu:
                layers.append(nn.ReLU(True))
            layers.append(nn.PixelShuffle(factor))
        super().__init__(*layers)


def pixelshuffle_block(in_channels: int, out_channels: int, scale: int) -> nn.Sequential:
    """One 3x3 conv to ``out_channels * scale^2`` and one PixelShuffle (IMDN, RFDN)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))


class EDSRStyle(nn.Module):
    """The EDSR-PyTorch skeleton: ``add_mean(tail(trunk(head(sub_mean(x * rgb_range))))) / rgb_range``.

    Subclasses call ``_add_head``, build their body, then call ``_add_tail``: that order is the
    authors' (it fixes the state-dict order and which random numbers each layer's initialisation
    draws). ``trunk`` is ``body(x) + x`` (the global residual) unless a subclass overrides it.
    """

    def _add_head(self, in_channels: int, width: int, rgb_range: float) -> None:
        self.rgb_range = rgb_range
        self.sub_mean = MeanShift(rgb_range, -1.0, in_channels)
        self.add_mean = MeanShift(rgb_range, 1.0, in_channels)
        self.head = nn.Sequential(default_conv(in_channels, width, 3))

    def _add_tail(self, scale: int, width: int, out_channels: int, *before: nn.Module) -> None:
        """``tail``: the ``before`` layers (already built), the upsampler and a 3x3 conv out."""
        self.tail = nn.Sequential(*before, Upsampler(scale, width), default_conv(width, out_channels, 3))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        return self.add_mean(self.tail(self.trunk(x))) / self.rgb_range


def squeeze_excite(channels: int, reduction: int) -> nn.Sequential:
    """1x1 squeeze to ``channels // reduction``, ReLU, 1x1 excite, sigmoid (the ``conv_du``)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels // reduction, 1),
        nn.ReLU(True),
        nn.Conv2d(channels // reduction, channels, 1),
        nn.Sigmoid(),
    )


class CALayer(nn.Module):
    """Channel attention (RCAN): global average pool -> 1x1 squeeze -> ReLU -> 1x1 excite -> sigmoid.

    Subclasses change the per-channel descriptor by overriding ``pool``.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = squeeze_excite(channels, reduction)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.avg_pool(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.pool(x))


class NonLocalBlock2D(nn.Module):
    """Embedded Gaussian non-local block without sub-sampling or batch norm.

    The softmax runs over ``softmax_dim`` of the [B, HW (queries), HW (keys)] affinities: -1,
    over keys, unless a subclass sets another dimension.
    """

    softmax_dim = -1

    def __init__(self, in_channels: int, inter_channels: int):
        super().__init__()
        self.inter_channels = inter_channels
        self.g = nn.Conv2d(in_channels, inter_channels, 1)
        self.W = nn.Conv2d(inter_channels, in_channels, 1)
        self.theta = nn.Conv2d(in_channels, inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, inter_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g_x = self.g(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
        theta_x = self.theta(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
        phi_x = self.phi(x).view(b, self.inter_channels, -1)
        attention = torch.softmax(torch.matmul(theta_x, phi_x), dim=self.softmax_dim)
        y = torch.matmul(attention, g_x).permute(0, 2, 1).contiguous().view(b, self.inter_channels, h, w)
        return self.W(y) + x


class DistillationNet(nn.Module):
    """The IMDN skeleton, which RFDN keeps: ``fea_conv``, ``depth`` blocks named
    ``<block_prefix><i>`` (i from 1), every block's output fused by ``c`` (1x1 conv, LeakyReLU
    0.05), ``LR_conv``, a global skip and ``upsampler`` (one conv and one PixelShuffle)."""

    def __init__(
        self, block_prefix: str, block: Callable[[], nn.Module], scale: int, width: int, depth: int, in_channels: int
    ):
        super().__init__()
        self.block_prefix, self.depth = block_prefix, depth
        self.fea_conv = default_conv(in_channels, width, 3)
        for i in range(1, depth + 1):
            setattr(self, f"{block_prefix}{i}", block())
        self.c = nn.Sequential(nn.Conv2d(width * depth, width, 1), nn.LeakyReLU(0.05, True))
        self.LR_conv = default_conv(width, width, 3)
        self.upsampler = pixelshuffle_block(width, in_channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        outs, out = [], fea
        for i in range(1, self.depth + 1):
            out = getattr(self, f"{self.block_prefix}{i}")(out)
            outs.append(out)
        return self.upsampler(self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea)
