"""RFDN (Liu, Tang & Wu, ECCVW 2020, AIM 2020 efficient SR winner): residual feature
distillation blocks, each ending in enhanced spatial attention (ESA: a strided conv, a 7x7 max
pool and a bilinear upsampling back to full size).

Parameter names follow the authors' code, github.com/njulj/RFDN (``RFDN.py`` and ``block.py``:
``fea_conv``, ``B<i>.c{1,2,3}_{d,r}``, ``B<i>.c4``, ``B<i>.c5``, ``B<i>.esa.conv{1,2,3,3_,4,_f,_max}``,
``c.0``, ``LR_conv``, ``upsampler.0``), so ``RFDN_AIM.pth`` loads with ``strict=True``.
``width`` is nf (50), ``depth`` the number of RFDBs (4). ESA needs inputs of at least 15x15.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import DistillationNet, check_positive, default_conv


class ESA(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        f = n_feats // 4
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)
        self.sigmoid = nn.Sigmoid()
        self.relu = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = self.relu(self.conv3(self.relu(self.conv_max(v_max))))
        c3 = F.interpolate(self.conv3_(c3), (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        return x * self.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class _RFDB(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.dc = channels // 2
        self.c1_d = default_conv(channels, self.dc, 1)
        self.c1_r = default_conv(channels, channels, 3)
        self.c2_d = default_conv(channels, self.dc, 1)
        self.c2_r = default_conv(channels, channels, 3)
        self.c3_d = default_conv(channels, self.dc, 1)
        self.c3_r = default_conv(channels, channels, 3)
        self.c4 = default_conv(channels, self.dc, 3)
        self.act = nn.LeakyReLU(0.05, True)
        self.c5 = default_conv(self.dc * 4, channels, 1)
        self.esa = ESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled, r = [], x
        for conv_d, conv_r in ((self.c1_d, self.c1_r), (self.c2_d, self.c2_r), (self.c3_d, self.c3_r)):
            distilled.append(self.act(conv_d(r)))
            r = self.act(conv_r(r) + r)
        out = torch.cat(distilled + [self.act(self.c4(r))], dim=1)
        return self.esa(self.c5(out))


class RFDN(DistillationNet):
    def __init__(self, scale: int = 4, width: int = 50, depth: int = 4, in_channels: int = 3):
        check_positive("rfdn", scale=scale, width=width, depth=depth)
        super().__init__("B", lambda: _RFDB(width), scale, width, depth, in_channels)
