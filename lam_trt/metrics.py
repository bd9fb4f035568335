"""Numbers from an attribution map (LAM-SPEC "Map, Gini and diffusion index", "Completeness")."""
from __future__ import annotations

import math

import numpy as np

from lam_trt.errors import InputError

GINI_EPS = 1e-7  # the reference adds this before sorting, so an all-zero map has Gini 0


def gradient_detector(sr: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """LAM's detector D per image of ``sr`` [N, C, H, W] for window (top, left, height, width):
    the sum over channels and the window of sqrt(dy^2 + dx^2) (forward differences), float64."""
    top, left, height, width = window
    t = np.asarray(sr, np.float64)[:, :, top:top + height + 1, left:left + width + 1]
    dy = t[:, :, :-1, :-1] - t[:, :, 1:, :-1]
    dx = t[:, :, :-1, :-1] - t[:, :, :-1, 1:]
    return np.sqrt(dy * dy + dx * dx).sum(axis=(1, 2, 3))


def abs_normalised(attribution: np.ndarray) -> np.ndarray:
    """|sum over channels| of a signed [C, h, w] map, divided by its max: float32 [h, w] in [0, 1].

    Channels are summed before the absolute value, as the reference does. A map whose max is 0
    comes back as zeros (callers report that case), never as NaN.
    """
    attribution = np.asarray(attribution)
    if attribution.ndim != 3:
        raise InputError(f"an attribution map must be [C, h, w], got shape {attribution.shape}")
    a = np.abs(attribution.sum(axis=0, dtype=np.float64))
    peak = a.max(initial=0.0)
    if not np.isfinite(peak):
        raise InputError("the attribution map holds NaN or infinite values")
    return (a / peak if peak > 0 else np.zeros_like(a)).astype(np.float32)


def gini(x: np.ndarray) -> float:
    """Gini coefficient of the values in ``x`` (any shape), as the LAM reference computes it:
    shift to non-negative, add 1e-7, sort, G = sum_i (2i - n - 1) x_i / (n sum_i x_i)."""
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    if v.size == 0:
        raise InputError("the Gini coefficient of an empty map is undefined")
    if v[0] < 0:
        v = v - v[0]
    v = v + GINI_EPS
    n = v.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.sum((2 * i - n - 1) * v) / (n * np.sum(v)))


def diffusion_index(saliency: np.ndarray) -> float:
    """DI = (1 - Gini) * 100: near 0 when one pixel holds everything, 100 when all share equally."""
    return (1.0 - gini(saliency)) * 100.0


def completeness(attribution_sum: float, d_input: float, d_baseline: float) -> tuple[float, float]:
    """(gap, relative gap) of the completeness check sum(LAM) ~= D(F(I)) - D(F(I')).

    gap = sum(LAM) - (D(F(I)) - D(F(I'))); relative = gap / (D(F(I)) - D(F(I'))), NaN when that
    difference is 0 (the path changed nothing, so no ratio is meaningful).
    """
    difference = float(d_input) - float(d_baseline)
    gap = float(attribution_sum) - difference
    return gap, (gap / difference if difference != 0 else math.nan)
