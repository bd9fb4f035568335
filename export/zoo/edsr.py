"""EDSR (Lim et al., CVPRW 2017): residual blocks without batch norm, a global skip, and a
PixelShuffle upsampler.

Parameter names follow the authors' code, github.com/sanghyun-son/EDSR-PyTorch
(``src/model/edsr.py``: ``sub_mean``, ``head.0``, ``body.<i>.body.{0,2}``, ``body.<n>``,
``tail.0.<k>``, ``tail.1``, ``add_mean``), so ``edsr_baseline_x{2,3,4}.pt`` (width 64, depth 16)
and ``edsr_x{2,3,4}.pt`` (width 256, depth 32, ``res_scale=0.1``) load with ``strict=True``.
Those weights expect pixel values in 0..255 (``rgb_range=255``); this module takes and returns
[0, 1] and scales internally.
"""
from __future__ import annotations

import torch
from torch import nn

from ._blocks import MeanShift, ResBlock, Upsampler, check_positive, check_scale, default_conv


class EDSR(nn.Module):
    def __init__(
        self,
        scale: int = 4,
        width: int = 64,
        depth: int = 16,
        in_channels: int = 3,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
    ):
        super().__init__()
        check_scale("edsr", scale, (1, 2, 3, 4, 8))
        check_positive("edsr", width=width, depth=depth)
        self.rgb_range = rgb_range
        self.sub_mean = MeanShift(rgb_range, -1.0, in_channels)
        self.add_mean = MeanShift(rgb_range, 1.0, in_channels)
        self.head = nn.Sequential(default_conv(in_channels, width, 3))
        self.body = nn.Sequential(
            *[ResBlock(width, 3, res_scale) for _ in range(depth)], default_conv(width, width, 3)
        )
        self.tail = nn.Sequential(Upsampler(scale, width), default_conv(width, in_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        x = self.body(x) + x
        return self.add_mean(self.tail(x)) / self.rgb_range
