"""IMDN (Hui et al., ACM MM 2019): information multi-distillation blocks with contrast-aware
channel attention (per-channel mean + standard deviation over the whole image).

Parameter names follow the authors' code, github.com/Zheng222/IMDN (``model/architecture.py``
and ``model/block.py``: ``fea_conv``, ``IMDB<i>.c{1..5}``, ``IMDB<i>.cca.conv_du.{0,2}``,
``c.0``, ``LR_conv``, ``upsampler.0``), so ``IMDN_x{2,3,4}.pth`` load with ``strict=True``.
``width`` is nf (64), ``depth`` the number of IMDBs (6).
"""
from __future__ import annotations

import torch
from torch import nn

from lam_trt.errors import InputError

from ._blocks import CALayer, DistillationNet, check_positive, default_conv


def _contrast(x: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation over all positions (the authors' ``stdv_channels``)."""
    pixels = x.size(2) * x.size(3)
    mean = x.sum(3, keepdim=True).sum(2, keepdim=True) / pixels
    var = (x - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / pixels
    return var.pow(0.5)


class CCALayer(CALayer):
    """Contrast-aware channel attention: (std + mean) -> 1x1 squeeze -> 1x1 excite -> sigmoid."""

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return _contrast(x) + self.avg_pool(x)


class _IMDModule(nn.Module):
    def __init__(self, channels: int, distillation_rate: float = 0.25):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = default_conv(channels, channels, 3)
        self.c2 = default_conv(self.remaining, channels, 3)
        self.c3 = default_conv(self.remaining, channels, 3)
        self.c4 = default_conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(0.05, True)
        self.c5 = default_conv(channels, channels, 1)  # channels == 4 * distilled
        self.cca = CCALayer(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, rest = [], x
        for conv in (self.c1, self.c2, self.c3):
            distilled, rest = torch.split(self.act(conv(rest)), (self.distilled, self.remaining), dim=1)
            kept.append(distilled)
        out = torch.cat(kept + [self.c4(rest)], dim=1)
        return self.c5(self.cca(out)) + x


class IMDN(DistillationNet):
    def __init__(self, scale: int = 4, width: int = 64, depth: int = 6, in_channels: int = 3):
        check_positive("imdn", scale=scale, depth=depth)
        if width < 16 or width % 4:
            # distillation keeps width/4 channels per step; the attention squeezes width by 16
            raise InputError(f"imdn needs a width that is a multiple of 4 and at least 16, got {width}")
        super().__init__("IMDB", lambda: _IMDModule(width), scale, width, depth, in_channels)
