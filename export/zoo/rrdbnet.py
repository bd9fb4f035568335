"""RRDBNet, the ESRGAN generator (Wang et al., ECCVW 2018): residual-in-residual dense blocks
and nearest-neighbour upsampling followed by convolutions.

Parameter names follow BasicSR, github.com/XPixelGroup/BasicSR (``basicsr/archs/rrdbnet_arch.py``:
``conv_first``, ``body.<i>.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up{1,2}``, ``conv_hr``,
``conv_last``), the naming of ``RRDB_ESRGAN_x4`` / ``ESRGAN_SRx4_DF2KOST_official`` / Real-ESRGAN
``params_ema`` weights, which load with ``strict=True``. Like BasicSR, scales 1 and 2 unshuffle
the input first and keep the fixed x4 upsampler. ``width`` is num_feat (64), ``depth`` num_block (23).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import check_positive, check_scale


class _ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(self.lrelu(conv(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = _ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = _ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = _ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(
        self, scale: int = 4, width: int = 64, depth: int = 23, in_channels: int = 3, num_grow_ch: int = 32
    ):
        super().__init__()
        check_scale("rrdbnet", scale, (1, 2, 4))
        check_positive("rrdbnet", width=width, depth=depth, num_grow_ch=num_grow_ch)
        self.unshuffle = {1: 4, 2: 2, 4: 1}[scale]
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, width, 3, 1, 1)
        self.body = nn.Sequential(*[_RRDB(width, num_grow_ch) for _ in range(depth)])
        self.conv_body = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_hr = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_last = nn.Conv2d(width, in_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))
