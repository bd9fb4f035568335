"""PAN (Zhao et al., ECCVW 2020): self-calibrated blocks with pixel attention (SCPA) and
pixel-attention upsampling blocks (nearest upsampling, conv, PA, conv), plus a bilinear skip.

Parameter names follow the authors' code, github.com/zhaohengyuan1/PAN (``codes/models/archs/
PAN_arch.py``: ``conv_first``, ``SCPA_trunk.<i>.{conv1_a,conv1_b,k1.0,PAConv.k{2,3,4},conv3}``,
``trunk_conv``, ``upconv{1,2}``, ``att{1,2}.conv``, ``HRconv{1,2}``, ``conv_last``), so
``PANx{2,3,4}.pth`` load with ``strict=True``. ``width`` is nf (40), ``depth`` nb (16);
``up_width`` is unf (24).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import check_positive, check_scale


class _PA(nn.Module):
    def __init__(self, nf: int):
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class _PAConv(nn.Module):
    def __init__(self, nf: int):
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class _SCPA(nn.Module):
    def __init__(self, nf: int, reduction: int = 2):
        super().__init__()
        group_width = nf // reduction
        self.conv1_a = nn.Conv2d(nf, group_width, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, group_width, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(group_width, group_width, 3, padding=1, bias=False))
        self.PAConv = _PAConv(group_width)
        self.conv3 = nn.Conv2d(group_width * reduction, nf, 1, bias=False)
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        out_b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return self.conv3(torch.cat([out_a, out_b], dim=1)) + x


class PAN(nn.Module):
    def __init__(self, scale: int = 4, width: int = 40, depth: int = 16, in_channels: int = 3, up_width: int = 24):
        super().__init__()
        check_scale("pan", scale, (2, 3, 4))
        check_positive("pan", width=width, depth=depth, up_width=up_width)
        self.scale = scale
        self.conv_first = nn.Conv2d(in_channels, width, 3, 1, 1)
        self.SCPA_trunk = nn.Sequential(*[_SCPA(width) for _ in range(depth)])
        self.trunk_conv = nn.Conv2d(width, width, 3, 1, 1)
        self.upconv1 = nn.Conv2d(width, up_width, 3, 1, 1)
        self.att1 = _PA(up_width)
        self.HRconv1 = nn.Conv2d(up_width, up_width, 3, 1, 1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(up_width, up_width, 3, 1, 1)
            self.att2 = _PA(up_width)
            self.HRconv2 = nn.Conv2d(up_width, up_width, 3, 1, 1)
        self.conv_last = nn.Conv2d(up_width, in_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, True)

    def _upsample(self, fea: torch.Tensor, factor: int, upconv: nn.Module, att: nn.Module, hrconv: nn.Module):
        fea = upconv(F.interpolate(fea, scale_factor=factor, mode="nearest"))
        return self.lrelu(hrconv(self.lrelu(att(fea))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        if self.scale == 4:
            fea = self._upsample(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = self._upsample(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = self._upsample(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        ilr = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.conv_last(fea) + ilr
