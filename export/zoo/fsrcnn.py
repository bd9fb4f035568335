"""FSRCNN (Dong, Loy & Tang, ECCV 2016): feature extraction, shrinking, m mapping layers,
expanding and one transposed convolution that upsamples.

Parameter names follow the most used PyTorch port, github.com/yjn870/FSRCNN-pytorch
(``models.py``: ``first_part``, ``mid_part``, ``last_part``), whose released x2/x3/x4 weights
load here with ``strict=True`` for ``in_channels=1`` (they were trained on the Y channel).
``width`` is the paper's d (56), ``depth`` its m (4), ``shrink`` its s (12).
"""
from __future__ import annotations

import torch
from torch import nn

from ._blocks import check_positive


class FSRCNN(nn.Module):
    def __init__(self, scale: int = 4, width: int = 56, depth: int = 4, in_channels: int = 3, shrink: int = 12):
        super().__init__()
        check_positive("fsrcnn", scale=scale, width=width, depth=depth, shrink=shrink)
        self.first_part = nn.Sequential(nn.Conv2d(in_channels, width, 5, padding=2), nn.PReLU(width))
        mid: list[nn.Module] = [nn.Conv2d(width, shrink, 1), nn.PReLU(shrink)]
        for _ in range(depth):
            mid += [nn.Conv2d(shrink, shrink, 3, padding=1), nn.PReLU(shrink)]
        mid += [nn.Conv2d(shrink, width, 1), nn.PReLU(width)]
        self.mid_part = nn.Sequential(*mid)
        # output_padding = scale - 1 makes the output exactly scale x the input size.
        self.last_part = nn.ConvTranspose2d(
            width, in_channels, 9, stride=scale, padding=4, output_padding=scale - 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_part(self.mid_part(self.first_part(x)))
