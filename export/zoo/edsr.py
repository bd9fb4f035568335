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

from torch import nn

from ._blocks import EDSRStyle, ResBlock, check_positive, check_scale, default_conv


class EDSR(EDSRStyle):
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
        self._add_head(in_channels, width, rgb_range)
        self.body = nn.Sequential(
            *[ResBlock(width, 3, res_scale) for _ in range(depth)], default_conv(width, width, 3)
        )
        self._add_tail(scale, width, in_channels)
