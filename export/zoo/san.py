"""SAN (Dai et al., CVPR 2019): second-order channel attention (covariance pooling over all
positions, matrix square root by Newton-Schulz iteration) in share-source residual groups, with
region-level non-local attention (one non-local block per image quadrant) before and after.

Parameter names follow the authors' code, github.com/daitao/SAN (``TrainCode/model/san.py``:
``sub_mean``, ``head.0``, ``non_local.non_local.{g,theta,phi,W}``, ``non_local.soca.conv_du``,
``gamma``, ``RG.<g>.rcab.<b>.conv_first.{0,2}``, ``RG.<g>.soca.conv_du.{0,2}``,
``RG.<g>.conv_last``, ``RG.<g>.gamma``, ``conv_last``, ``tail.0.<k>``, ``tail.1``, ``add_mean``),
so ``SAN_BI{2,3,4,8}X.pt`` load with ``strict=True``; the authors' unused modules
(``conv_last``, ``non_local.soca``, ``RG.<g>.gamma``) are kept for that reason.

Two rewrites keep the maths and make the export cheap and standard: the covariance uses the
centred features instead of the authors' explicit M x M centring matrix (M = H*W), and the
quadrant outputs are concatenated instead of written into a zero tensor.
``width`` is n_feats (64), ``depth`` n_resgroups (20); ``n_resblocks`` (10) and ``reduction`` (16)
are keywords. Pixel values 0..255 inside (``rgb_range=255``).
"""
from __future__ import annotations

import torch
from torch import nn

from ._blocks import EDSRStyle, NonLocalBlock2D, check_positive, check_scale, default_conv, squeeze_excite

COV_CROP = 1000  # the authors pool the covariance over at most the central 1000 x 1000 pixels


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Per-image channel covariance over all positions: [B, C, H, W] -> [B, C, C]."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    centred = flat - flat.mean(dim=2, keepdim=True)
    return torch.matmul(centred, centred.transpose(1, 2)) / (h * w)


def sqrtm_newton_schulz(a: torch.Tensor, channels: int, iterations: int = 5) -> torch.Tensor:
    """Matrix square root of SPD matrices [B, C, C] (MPN-COV's pre-normalised Newton-Schulz).

    ``channels`` is C as a Python int, so that the identity matrices export as constants.
    """
    eye = torch.eye(channels, dtype=a.dtype, device=a.device)
    eye3 = 3.0 * eye
    norm = (a * eye).sum(dim=(1, 2)).view(-1, 1, 1)  # trace
    a = a / norm
    zy = 0.5 * (eye3 - a)
    y = torch.matmul(a, zy)
    if iterations < 2:
        return y * torch.sqrt(norm)
    z = zy
    for _ in range(1, iterations - 1):
        zy = 0.5 * (eye3 - torch.matmul(z, y))
        y, z = torch.matmul(y, zy), torch.matmul(zy, z)
    zy = 0.5 * torch.matmul(y, eye3 - torch.matmul(z, y))
    return zy * torch.sqrt(norm)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[2], x.shape[3]
    if h <= size and w <= size:
        return x
    top, left = max(h - size, 0) // 2, max(w - size, 0) // 2
    return x[:, :, top : top + size, left : left + size]


class SOCA(nn.Module):
    """Second-order channel attention: sigmoid(excite(squeeze(mean_row(sqrtm(cov(x)))))) * x."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.channels = channels
        self.conv_du = squeeze_excite(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cov_sqrt = sqrtm_newton_schulz(covariance(_center_crop(x, COV_CROP)), self.channels, 5)
        return self.conv_du(cov_sqrt.mean(dim=1).view(-1, self.channels, 1, 1)) * x


class _NonlocalCA(nn.Module):
    """The non-local block applied to each quadrant of the feature map separately."""

    def __init__(self, in_feat: int, inter_feat: int, reduction: int = 8):
        super().__init__()
        self.soca = SOCA(in_feat, reduction)  # built but unused by the authors
        self.non_local = NonLocalBlock2D(in_feat, inter_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1, w1 = x.shape[2] // 2, x.shape[3] // 2
        top = torch.cat([self.non_local(x[:, :, :h1, :w1]), self.non_local(x[:, :, :h1, w1:])], dim=3)
        bottom = torch.cat([self.non_local(x[:, :, h1:, :w1]), self.non_local(x[:, :, h1:, w1:])], dim=3)
        return torch.cat([top, bottom], dim=2)


class _RB(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.conv_first = nn.Sequential(
            default_conv(n_feats, n_feats, 3), nn.ReLU(True), default_conv(n_feats, n_feats, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_first(x) + x


class _LSRAG(nn.Module):
    """Local-source residual attention group: residual blocks, SOCA, conv, skip."""

    def __init__(self, n_feats: int, reduction: int, n_resblocks: int):
        super().__init__()
        self.rcab = nn.ModuleList([_RB(n_feats) for _ in range(n_resblocks)])
        self.soca = SOCA(n_feats, reduction)
        self.conv_last = default_conv(n_feats, n_feats, 3)
        self.gamma = nn.Parameter(torch.zeros(1))  # unused by the authors' forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for block in self.rcab:
            x = block(x)
        return self.conv_last(self.soca(x)) + residual


class SAN(EDSRStyle):
    def __init__(
        self,
        scale: int = 4,
        width: int = 64,
        depth: int = 20,
        in_channels: int = 3,
        n_resblocks: int = 10,
        reduction: int = 16,
        rgb_range: float = 255.0,
    ):
        super().__init__()
        check_scale("san", scale, (1, 2, 3, 4, 8))
        check_positive("san", depth=depth, n_resblocks=n_resblocks, squeezed=width // reduction, inter=width // 8)
        self._add_head(in_channels, width, rgb_range)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.RG = nn.ModuleList([_LSRAG(width, reduction, n_resblocks) for _ in range(depth)])
        self.conv_last = default_conv(width, width, 3)  # built but unused by the authors
        self._add_tail(scale, width, in_channels)
        self.non_local = _NonlocalCA(width, width // 8, reduction=8)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        xx = residual = self.non_local(x)
        for group in self.RG:  # share-source skip connection
            xx = group(xx) + self.gamma * residual
        return self.non_local(xx) + x
