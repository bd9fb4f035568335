"""CARN (Ahn, Kang & Sohn, ECCV 2018): cascading residual blocks, where every block's output
is concatenated with all earlier ones and fused by a 1x1 convolution, at two levels.

Parameter names follow the authors' code, github.com/nmhkahn/CARN-pytorch (``carn/model/carn.py``
and ``ops.py``: ``sub_mean.shifter``, ``entry``, ``b<i>.b<j>.body.{0,2}``, ``b<i>.c<j>.body.0``,
``c<i>.body.0``, ``upsample.up.body.<k>``, ``exit``, ``add_mean.shifter``). The released
``carn.pth`` was trained with ``multi_scale=True`` and stores ``upsample.up{2,3,4}`` (build with
``multi_scale=True`` to load it; ``scale`` picks the branch that runs); a single-scale model
stores ``upsample.up``.
``width`` is the channel count (64 in the paper), ``depth`` the number of cascading blocks (3).
"""
from __future__ import annotations

import torch
from torch import nn

from ._blocks import MeanShift, Upsampler, check_positive, check_scale


class _MeanShift(nn.Module):
    def __init__(self, sign: float, channels: int):
        super().__init__()
        self.shifter = MeanShift(1.0, sign, channels)  # pixel values in [0, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class _BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(True), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


def _cascade(x: torch.Tensor, blocks: list[nn.Module], fusers: list[nn.Module]) -> torch.Tensor:
    """The cascading mechanism: concatenate every block output so far, fuse with a 1x1 conv."""
    concat = out = x
    for block, fuse in zip(blocks, fusers):
        concat = torch.cat([concat, block(out)], dim=1)
        out = fuse(concat)
    return out


class _Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        for i in (1, 2, 3):
            setattr(self, f"b{i}", _ResidualBlock(channels))
        for i in (1, 2, 3):
            setattr(self, f"c{i}", _BasicBlock(channels * (i + 1), channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cascade(x, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])


class _UpsampleBlock(nn.Module):
    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.body = Upsampler(scale, channels, relu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Upsample(nn.Module):
    def __init__(self, channels: int, scale: int, multi_scale: bool):
        super().__init__()
        self.key = f"up{scale}" if multi_scale else "up"
        if multi_scale:
            self.up2, self.up3, self.up4 = (_UpsampleBlock(channels, s) for s in (2, 3, 4))
        else:
            self.up = _UpsampleBlock(channels, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.key)(x)


class CARN(nn.Module):
    def __init__(
        self, scale: int = 4, width: int = 64, depth: int = 3, in_channels: int = 3, multi_scale: bool = False
    ):
        super().__init__()
        check_scale("carn", scale, (2, 3, 4) if multi_scale else (2, 3, 4, 8))
        check_positive("carn", width=width, depth=depth)
        self.depth = depth
        self.sub_mean = _MeanShift(-1.0, in_channels)
        self.add_mean = _MeanShift(1.0, in_channels)
        self.entry = nn.Conv2d(in_channels, width, 3, padding=1)
        for i in range(1, depth + 1):
            setattr(self, f"b{i}", _Block(width))
        for i in range(1, depth + 1):
            setattr(self, f"c{i}", _BasicBlock(width * (i + 1), width))
        self.upsample = _Upsample(width, scale, multi_scale)
        self.exit = nn.Conv2d(width, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(self.sub_mean(x))
        names = range(1, self.depth + 1)
        x = _cascade(x, [getattr(self, f"b{i}") for i in names], [getattr(self, f"c{i}") for i in names])
        return self.add_mean(self.exit(self.upsample(x)))
