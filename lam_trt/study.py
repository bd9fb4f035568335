"""The LAM paper's study for any set of models: PSNR/SSIM, diffusion index, receptive field, size.

Metrics follow BasicSR (``basicsr/metrics/psnr_ssim.py`` with ``test_y_channel=True``,
``crop_border=scale``): Y of BT.601 YCbCr in 16-235, computed in float32 from the uint8 images,
a border of ``scale`` pixels shaved; SSIM with an 11x11 Gaussian window (sigma 1.5) on 0-255
values, averaged over the valid part of the map.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

# BasicSR's bgr2ycbcr(y_only=True) weights, in RGB order, for values in [0, 1]; Y is in 16..235.
Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float32)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """Y (0-255 scale, not rounded) of a uint8 HWC RGB image, as BasicSR's to_y_channel."""
    img = rgb.astype(np.float32) / 255.0
    return (img @ Y_WEIGHTS + 16.0).astype(np.float64)


def _shaved_y(img: np.ndarray, border: int) -> np.ndarray:
    img = img[border:img.shape[0] - border, border:img.shape[1] - border] if border else img
    return y_channel(img)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR in dB of two uint8 HWC RGB images on Y, ``border`` pixels shaved (inf when equal)."""
    mse = float(np.mean((_shaved_y(sr, border) - _shaved_y(hr, border)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM of two uint8 HWC RGB images on Y, ``border`` pixels shaved."""
    return _ssim(_shaved_y(sr, border), _shaved_y(hr, border))


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    g = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur_valid(img: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local means over the positions where the whole window fits."""
    g, r = _gaussian_window(), SSIM_WINDOW // 2
    out = correlate1d(correlate1d(img, g, axis=0), g, axis=1)
    return out[r:-r, r:-r]


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the border, got {a.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = _blur_valid(a), _blur_valid(b)
    var_a = _blur_valid(a * a) - mu_a**2
    var_b = _blur_valid(b * b) - mu_b**2
    cov = _blur_valid(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
