"""SwinIR (Liang et al., ICCVW 2021): residual Swin transformer blocks (window self-attention,
alternately shifted by half a window) between a conv head and a PixelShuffle tail.

Parameter and buffer names follow the authors' code, github.com/JingyunLiang/SwinIR
(``models/network_swinir.py``: ``conv_first``, ``patch_embed.norm``,
``layers.<i>.residual_group.blocks.<j>.{norm1,attn.{relative_position_bias_table,
relative_position_index,qkv,proj},norm2,mlp.fc{1,2},attn_mask}``, ``layers.<i>.conv``, ``norm``,
``conv_after_body``, ``conv_before_upsample.0``, ``upsample.<k>``, ``conv_last``), the naming of
the released ``001_classicalSR_DF2K_s64w8_SwinIR-M_x{2,3,4,8}.pth`` (defaults here: width 180,
depth 6, ``img_size=64``) and, with ``upsampler="pixelshuffledirect"``, width 60 and depth 4, of
the lightweight models; ``strict=True`` needs the training ``img_size`` because the shifted
blocks store their attention mask. ``width`` is embed_dim, ``depth`` the number of RSTBs, each
with ``blocks_per_layer`` transformer blocks (6) of ``num_heads`` heads (6).

Window attention needs H and W to be multiples of ``window_size``: inputs are reflect-padded up
to one and cropped back, and the ONNX export fixes H and W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lam_trt.errors import InputError

from ._blocks import Upsampler, check_positive, check_scale, pixelshuffle_block, rgb_mean


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * H/ws * W/ws, ws*ws, C] (the batch stays dynamic in ONNX)."""
    _, h, w, c = x.shape
    x = x.view(-1, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """-100 between tokens that came from different regions before the cyclic shift, else 0."""
    img = torch.zeros(1, h, w, 1)
    regions = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in regions:
        for wsl in regions:
            img[:, hs, wsl, :] = label
            label += 1
    windows = window_partition(img, ws).squeeze(-1)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        self.window_size, self.num_heads = window_size, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
        self.register_buffer("relative_position_index", rel[:, :, 0] * (2 * window_size - 1) + rel[:, :, 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, c = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(-1, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(x.shape[0] // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, c)
        return self.proj(x)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window_size: int, shift: int, mlp_ratio: float):
        super().__init__()
        if min(resolution) <= window_size:  # one window covers the image: no partition, no shift
            window_size, shift = min(resolution), 0
        self.window_size, self.shift, self.resolution = window_size, shift, resolution
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(*resolution, window_size, shift) if shift else None
        self.register_buffer("attn_mask", mask)

    def _mask(self, h: int, w: int) -> torch.Tensor | None:
        if not self.shift:
            return None
        if (h, w) == self.resolution:
            return self.attn_mask
        return shifted_window_mask(h, w, self.window_size, self.shift).to(self.attn_mask)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        c = x.shape[-1]
        shortcut, x = x, self.norm1(x).view(-1, h, w, c)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(x, self.window_size), self._mask(h, w))
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        x = shortcut + x.reshape(-1, h * w, c)
        return x + self.mlp(self.norm2(x))


class _BasicLayer(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, size)
        return x


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def _to_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(-1, x.shape[2], size[0], size[1])


class RSTB(nn.Module):
    """Residual Swin transformer block: transformer blocks, a 3x3 conv, a skip."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window_size: int, mlp_ratio: float):
        super().__init__()
        self.residual_group = _BasicLayer(dim, resolution, depth, num_heads, window_size, mlp_ratio)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _to_tokens(self.conv(_to_image(self.residual_group(x, size), size))) + x


class _PatchEmbedNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_to_tokens(x))


class SwinIR(nn.Module):
    def __init__(
        self,
        scale: int = 4,
        width: int = 180,
        depth: int = 6,
        in_channels: int = 3,
        blocks_per_layer: int = 6,
        num_heads: int = 6,
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        img_size: int = 64,
        upsampler: str = "pixelshuffle",
    ):
        super().__init__()
        check_scale("swinir", scale, (1, 2, 3, 4, 8))
        check_positive("swinir", width=width, depth=depth, blocks_per_layer=blocks_per_layer, window_size=window_size)
        if width % num_heads:
            raise InputError(f"swinir: width {width} is not divisible by num_heads {num_heads}")
        if upsampler not in ("pixelshuffle", "pixelshuffledirect"):
            raise InputError(f"swinir: upsampler must be pixelshuffle or pixelshuffledirect, not {upsampler!r}")
        self.scale, self.window_size, self.upsampler = scale, window_size, upsampler
        self.register_buffer("mean", rgb_mean(in_channels).view(1, in_channels, 1, 1), persistent=False)
        resolution = (img_size, img_size)
        num_feat = 64  # fixed in the authors' code
        self.conv_first = nn.Conv2d(in_channels, width, 3, 1, 1)
        self.patch_embed = _PatchEmbedNorm(width)
        self.layers = nn.ModuleList(
            RSTB(width, resolution, blocks_per_layer, num_heads, window_size, mlp_ratio) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.conv_after_body = nn.Conv2d(width, width, 3, 1, 1)
        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(width, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
            self.upsample = Upsampler(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_channels, 3, 1, 1)
        else:
            self.upsample = pixelshuffle_block(width, in_channels, scale)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[2], x.shape[3])
        tokens = self.patch_embed(x)
        for layer in self.layers:
            tokens = layer(tokens, size)
        return _to_image(self.norm(tokens), size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        pad_h, pad_w = (-h) % self.window_size, (-w) % self.window_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        x = x - self.mean
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.upsample(x)
        x = x + self.mean
        if pad_h or pad_w:
            x = x[:, :, : h * self.scale, : w * self.scale]
        return x


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
