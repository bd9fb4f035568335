"""RCAN (Zhang et al., ECCV 2018): residual groups of residual channel-attention blocks; the
channel attention pools each feature map over the whole image.

Parameter names follow the authors' code, github.com/yulunzhang/RCAN (``RCAN_TrainCode/code/
model/rcan.py``: ``sub_mean``, ``head.0``, ``body.<g>.body.<b>.body.{0,2}``,
``body.<g>.body.<b>.body.3.conv_du.{0,2}``, ``body.<g>.body.<n>``, ``body.<G>``, ``tail.0.<k>``,
``tail.1``, ``add_mean``), the naming of ``RCAN_BIX{2,3,4,8}.pt`` and of spandrel's RCAN, which
load with ``strict=True``. ``width`` is n_feats (64), ``depth`` n_resgroups (10); ``n_resblocks``
(20) and ``reduction`` (16) are keywords. Pixel values 0..255 inside (``rgb_range=255``).
"""
from __future__ import annotations

import torch
from torch import nn

from ._blocks import CALayer, EDSRStyle, check_positive, check_scale, default_conv


class _RCAB(nn.Module):
    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, 3), nn.ReLU(True), default_conv(n_feats, n_feats, 3), CALayer(n_feats, reduction)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class _ResidualGroup(nn.Module):
    def __init__(self, n_feats: int, reduction: int, n_resblocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *[_RCAB(n_feats, reduction) for _ in range(n_resblocks)], default_conv(n_feats, n_feats, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RCAN(EDSRStyle):
    def __init__(
        self,
        scale: int = 4,
        width: int = 64,
        depth: int = 10,
        in_channels: int = 3,
        n_resblocks: int = 20,
        reduction: int = 16,
        rgb_range: float = 255.0,
    ):
        super().__init__()
        check_scale("rcan", scale, (1, 2, 3, 4, 8))
        check_positive("rcan", width=width, depth=depth, n_resblocks=n_resblocks, squeezed=width // reduction)
        self._add_head(in_channels, width, rgb_range)
        self.body = nn.Sequential(
            *[_ResidualGroup(width, reduction, n_resblocks) for _ in range(depth)], default_conv(width, width, 3)
        )
        self._add_tail(scale, width, in_channels)
