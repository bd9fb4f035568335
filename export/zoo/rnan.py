"""RNAN (Zhang et al., ICLR 2019): residual attention groups whose mask branch downsamples,
processes and upsamples the features; the first and the last group add a non-local block
(embedded Gaussian attention over all positions) to the mask branch.

Parameter names follow the authors' code, github.com/yulunzhang/RNAN (``SR/code/model/rnan.py``
and ``common.py``: ``sub_mean``, ``head.0``, ``body_nl_low.0.body.0.RA_{RB1,TB,MB,tail}...``,
``body.<g>.body.{0,1}``, ``body.<G-2>``, ``body_nl_high...``, ``tail.0.<k>``, ``tail.1``,
``add_mean``), so ``RNAN_SR_F64G10P48BIX{2,3,4}.pt`` load with ``strict=True``. ``width`` is
n_feats (64), ``depth`` n_resgroups (10, at least 2). Needs even input sizes (the mask branch
halves and doubles them). Pixel values 0..255 inside (``rgb_range=255``).
"""
from __future__ import annotations

import torch
from torch import nn

from lam_trt.errors import InputError

from . import _blocks
from ._blocks import EDSRStyle, ResBlock, check_positive, check_scale, default_conv


class NonLocalBlock2D(_blocks.NonLocalBlock2D):
    """Embedded Gaussian non-local block; the softmax runs over dim 1, as in the authors' code."""

    softmax_dim = 1


class _MaskBranch(nn.Module):
    """ResBlock, strided conv down, two ResBlocks, transposed conv up, skip, ResBlock, 1x1, sigmoid."""

    def __init__(self, n_feats: int, non_local: bool):
        super().__init__()
        first: list[nn.Module] = [NonLocalBlock2D(n_feats, n_feats // 2)] if non_local else []
        self.MB_RB1 = nn.Sequential(*first, ResBlock(n_feats))
        self.MB_Down = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, stride=2, padding=1))
        self.MB_RB2 = nn.Sequential(ResBlock(n_feats), ResBlock(n_feats))
        self.MB_Up = nn.Sequential(nn.ConvTranspose2d(n_feats, n_feats, 6, stride=2, padding=2))
        self.MB_RB3 = nn.Sequential(ResBlock(n_feats))
        self.MB_1x1conv = nn.Sequential(nn.Conv2d(n_feats, n_feats, 1))
        self.MB_sigmoid = nn.Sequential(nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_rb1 = self.MB_RB1(x)
        x_up = self.MB_Up(self.MB_RB2(self.MB_Down(x_rb1)))
        return self.MB_sigmoid(self.MB_1x1conv(self.MB_RB3(x_rb1 + x_up)))


class _TrunkBranch(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(ResBlock(n_feats), ResBlock(n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _ResAttModule(nn.Module):
    def __init__(self, n_feats: int, non_local: bool):
        super().__init__()
        self.RA_RB1 = nn.Sequential(ResBlock(n_feats))
        self.RA_TB = nn.Sequential(_TrunkBranch(n_feats))
        self.RA_MB = nn.Sequential(_MaskBranch(n_feats, non_local))
        self.RA_tail = nn.Sequential(ResBlock(n_feats), ResBlock(n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.RA_RB1(x)
        return self.RA_tail(self.RA_TB(x) * self.RA_MB(x) + x)


class _ResGroup(nn.Module):
    def __init__(self, n_feats: int, non_local: bool):
        super().__init__()
        self.body = nn.Sequential(_ResAttModule(n_feats, non_local), default_conv(n_feats, n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class RNAN(EDSRStyle):
    def __init__(
        self, scale: int = 4, width: int = 64, depth: int = 10, in_channels: int = 3, rgb_range: float = 255.0
    ):
        super().__init__()
        check_scale("rnan", scale, (1, 2, 3, 4, 8))
        check_positive("rnan", width=width)
        if depth < 2:
            raise InputError(f"rnan needs depth >= 2 (its first and last groups are non-local), got {depth}")
        self._add_head(in_channels, width, rgb_range)
        self.body_nl_low = nn.Sequential(_ResGroup(width, True))
        self.body = nn.Sequential(*[_ResGroup(width, False) for _ in range(depth - 2)], default_conv(width, width, 3))
        self.body_nl_high = nn.Sequential(_ResGroup(width, True))
        self._add_tail(scale, width, in_channels)

    def trunk(self, shallow: torch.Tensor) -> torch.Tensor:
        return self.body_nl_high(self.body(self.body_nl_low(shallow))) + shallow
