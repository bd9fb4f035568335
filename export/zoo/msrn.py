"""MSRN (Li et al., ECCV 2018): multi-scale residual blocks with parallel 3x3 and 5x5 paths,
every block's output concatenated for a hierarchical feature fusion before upsampling.

Parameter names follow the authors' code, github.com/MIVRC/MSRN-PyTorch (``MSRN/Train/model/
msrn.py``, also in EDSR-PyTorch ``src/model/msrn.py``: ``sub_mean``, ``head.0``,
``body.<i>.conv_{3,5}_{1,2}``, ``body.<i>.confusion``, ``tail.0`` (1x1 fusion), ``tail.1``,
``tail.2.<k>`` (upsampler), ``tail.3``, ``add_mean``). ``width`` is n_feats (64), ``depth`` the
number of MSRBs (8). The published weights expect pixel values in 0..255 (``rgb_range=255``).
"""
from __future__ import annotations

import torch
from torch import nn

from ._blocks import EDSRStyle, check_positive, check_scale, default_conv


class _MSRB(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.conv_3_1 = default_conv(n_feats, n_feats, 3)
        self.conv_3_2 = default_conv(n_feats * 2, n_feats * 2, 3)
        self.conv_5_1 = default_conv(n_feats, n_feats, 5)
        self.conv_5_2 = default_conv(n_feats * 2, n_feats * 2, 5)
        self.confusion = nn.Conv2d(n_feats * 4, n_feats, 1)
        self.relu = nn.ReLU(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = torch.cat([self.relu(self.conv_3_1(x)), self.relu(self.conv_5_1(x))], 1)
        out = torch.cat([self.relu(self.conv_3_2(mid)), self.relu(self.conv_5_2(mid))], 1)
        return self.confusion(out) + x


class MSRN(EDSRStyle):
    def __init__(
        self, scale: int = 4, width: int = 64, depth: int = 8, in_channels: int = 3, rgb_range: float = 255.0
    ):
        super().__init__()
        check_scale("msrn", scale, (2, 3, 4, 8))
        check_positive("msrn", width=width, depth=depth)
        self._add_head(in_channels, width, rgb_range)
        self.body = nn.Sequential(*[_MSRB(width) for _ in range(depth)])
        # tail.0 and tail.1 fuse the concatenated features before the upsampler
        fusion = nn.Conv2d(width * (depth + 1), width, 1), default_conv(width, width, 3)
        self._add_tail(scale, width, in_channels, *fusion)

    def trunk(self, head: torch.Tensor) -> torch.Tensor:
        outs, x = [], head
        for block in self.body:
            x = block(x)
            outs.append(x)
        # hierarchical feature fusion: every block's output and the head's, in this order
        return torch.cat(outs + [head], 1)
