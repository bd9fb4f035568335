"""Numbers from an attribution map (LAM-SPEC "Map, Gini and diffusion index", "Completeness")."""
from __future__ import annotations

import math

import numpy as np

from lam_trt.errors import InputError

GINI_EPS = 1e-7  # the reference adds this before sorting, so an all-zero map has Gini 0
# A window is featureless when its detector per pixel is below this share of the whole SR image's
# mean gradient magnitude: LAM then measures rounding, not the network.
FLAT_WINDOW_RATIO = 1e-3
# D(F(I)) and D(F(I')) this close (relative to D(F(I))): the path changes nothing worth attributing.
NO_CHANGE_RATIO = 1e-3
ZERO_MAP_RATIO = 1e-6  # a map whose total |channel sum| is this small against D(F(I)) is rounding noise
GAP_WARNING = 0.05  # default |relative completeness gap| above which a result carries a warning


def gradient_detector(sr: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """LAM's detector D per image of ``sr`` [N, C, H, W] for window (top, left, height, width):
    the sum over channels and the window of sqrt(dy^2 + dx^2) (forward differences), float64."""
    top, left, height, width = window
    t = np.asarray(sr, np.float64)[:, :, top:top + height + 1, left:left + width + 1]
    dy = t[:, :, :-1, :-1] - t[:, :, 1:, :-1]
    dx = t[:, :, :-1, :-1] - t[:, :, :-1, 1:]
    return np.sqrt(dy * dy + dx * dx).sum(axis=(1, 2, 3))


def mean_gradient(sr: np.ndarray) -> float:
    """The whole image's detector per pixel: the mean over all positions of the sum over channels of
    sqrt(dy^2 + dx^2) of ``sr`` [C, H, W] (forward differences, as ``gradient_detector``)."""
    _, height, width = sr.shape
    if height < 2 or width < 2:
        return 0.0
    return float(gradient_detector(sr[None], (0, 0, height - 1, width - 1))[0]) / ((height - 1) * (width - 1))


def degenerate_reason(attribution: np.ndarray, d_input: float, size: int, image_mean_gradient: float) -> str | None:
    """Why DI and Gini of the [C, h, w] map mean nothing for this window, or None: the window is
    featureless (D(F(I)) per pixel at most FLAT_WINDOW_RATIO of the image's mean gradient), or the
    map is zero (its total |channel sum| at most ZERO_MAP_RATIO of D(F(I))): normalising rounding
    noise to [0, 1] would give a DI that describes float error, not the network."""
    per_pixel = float(d_input) / (size * size)
    if per_pixel <= FLAT_WINDOW_RATIO * image_mean_gradient:
        return (f"the window is featureless: D(F(I)) is {per_pixel:.3g} per pixel, at most "
                f"{FLAT_WINDOW_RATIO:g} of the SR image's mean gradient {image_mean_gradient:.3g}")
    total = float(np.abs(np.asarray(attribution, np.float64).sum(axis=0)).sum())
    if total <= ZERO_MAP_RATIO * float(d_input):
        return (f"the attribution map is zero (total |LAM| {total:.3g} against D(F(I)) {float(d_input):.4g}): "
                "no input pixel changes the window's detector along the path")
    return None


def nothing_to_attribute(d_input: float, d_baseline: float) -> bool:
    """True when the path from I' to I hardly changes the detector: |D(F(I)) - D(F(I'))| at most
    NO_CHANGE_RATIO of D(F(I)) (so the map and the relative gap divide almost nothing)."""
    return abs(float(d_input) - float(d_baseline)) <= NO_CHANGE_RATIO * abs(float(d_input))


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


def format_gap(gap: float | None, relative: float | None) -> str:
    """'0.0123 (1.20%)', '0.0123' without a ratio, 'none (no path integral)' without a gap."""
    if gap is None:
        return "none (no path integral)"
    share = f" ({100 * relative:.2f}%)" if relative is not None and np.isfinite(relative) else ""
    return f"{gap:.4g}{share}"
