"""The reference's pictures (LAM-SPEC "Pictures the reference draws") and the paper's path plots.

matplotlib is used through its Agg canvas directly (no pyplot), so rendering never needs a screen
and never changes the backend of the caller's process.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw
from scipy import signal, stats

from lam_trt.io import atomic_write
from lam_trt.result import LAMResult, format_gap

PANEL_TITLES = {
    "input": "input (bicubic up) + window",
    "saliency": "LAM",
    "blend": "LAM on input",
    "kde": "area of contribution",
    "output": "SR output + window",
}
WINDOW_COLOUR = (255, 0, 0)


def panels(result: LAMResult, alpha: float = 0.5) -> dict[str, np.ndarray]:
    """The five reference panels as uint8 RGB arrays [H, W, 3] at SR-output size, keyed as
    PANEL_TITLES: input with window, seismic map, map blended with the input, KDE area of
    contribution blended with the input, SR output with window."""
    height, width = result.sr_output.shape[1:]
    lr_up = _to_rgb8(result.image)
    lr_up = np.asarray(Image.fromarray(lr_up).resize((width, height), Image.BICUBIC))
    saliency = np.asarray(result.saliency, dtype=np.float64)
    sal_up = np.asarray(Image.fromarray(seismic(saliency)).resize((width, height), Image.NEAREST))
    kde_up = np.asarray(Image.fromarray(seismic(contribution_area(saliency))).resize(
        (width, height), Image.BICUBIC))
    return {
        "input": draw_window(lr_up, result.window),
        "saliency": sal_up,
        "blend": blend(sal_up, lr_up, alpha),
        "kde": blend(kde_up, lr_up, alpha),
        "output": draw_window(_to_rgb8(np.clip(result.sr_output, 0.0, 1.0)), result.window),
    }


def render_lam(result: LAMResult, path: str | os.PathLike, alpha: float = 0.5) -> Path:
    """Write the five-panel LAM picture (the reference notebook's grid) as a PNG, atomically."""
    images = panels(result, alpha)
    fig = Figure(figsize=(3.0 * len(images), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    x, y, size = result.window
    titles = dict(PANEL_TITLES)
    titles["input"] += f"\n(x={x}, y={y}, size={size})"
    titles["kde"] += f"\nDI = {_fmt(result.diffusion_index, '.2f')}"
    titles["saliency"] = f"{result.method.upper()}\n(abs-normalised)"
    for i, (name, image) in enumerate(images.items()):
        ax = fig.add_subplot(1, len(images), i + 1)
        ax.imshow(image, interpolation="nearest")
        ax.set_title(titles[name], fontsize=9)
        ax.set_axis_off()
    fig.suptitle(_summary(result), fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.78, wspace=0.05)
    return _save(fig, path)


def render_path(result: LAMResult, path: str | os.PathLike) -> Path:
    """Write the paper's Fig. 3 (f) and (h): D(F(gamma(alpha))) along the path, and the cumulative
    attribution against D(F(I)) - D(F(I')), whose end gap is the completeness gap."""
    alphas = np.asarray(result.alphas, dtype=np.float64)
    detector = np.asarray(result.detector_path, dtype=np.float64)
    cumulative = np.cumsum(np.asarray(result.contributions, dtype=np.float64))
    if alphas.size and alphas[0] > 0:  # the baseline (alpha 0) is not evaluated by the sum
        alphas = np.concatenate([[0.0], alphas])
        detector = np.concatenate([[result.detector_baseline], detector])
        cumulative = np.concatenate([[0.0], cumulative])
    fig = Figure(figsize=(10.0, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    left.plot(alphas, detector, marker=".", color="tab:blue")
    left.set(xlabel="alpha (0 = baseline, 1 = input)", ylabel="D(F(gamma(alpha)))",
             title="detector along the path")
    target = result.detector_input - result.detector_baseline
    right.plot(alphas, cumulative, marker=".", color="tab:red", label="cumulative attribution")
    right.axhline(target, color="k", linestyle="--", label="D(F(I)) - D(F(I'))")
    right.set(xlabel="alpha", ylabel="sum of contributions",
              title=f"completeness: gap {_fmt_gap(result)}")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.9, wspace=0.3)
    return _save(fig, path)


def seismic(values: np.ndarray) -> np.ndarray:
    """uint8 RGB of matplotlib's seismic colormap at ``values * 0.5 + 0.5`` (0 white, 1 red)."""
    rgba = matplotlib.colormaps["seismic"](np.asarray(values) * 0.5 + 0.5)
    return (255 * rgba[..., :3]).astype(np.uint8)


def contribution_area(saliency: np.ndarray) -> np.ndarray:
    """The reference's "area of contribution": scipy's gaussian_kde over pixel coordinates
    weighted by the map (Scott bandwidth), evaluated at every pixel, divided by its max.

    The data points are the pixel grid itself, so evaluating the KDE is a convolution of the map
    with the KDE's Gaussian; done by FFT it is O(n log n) instead of O(n^2). A map with no spread
    to estimate (all zero, one pixel, one row) returns the map itself.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    h, w = saliency.shape
    if not np.any(saliency > 0) or h < 2 or w < 2:
        return saliency.copy()
    ys, xs = np.mgrid[0:h, 0:w]
    weights = saliency.ravel()
    nonzero = weights > 0
    try:  # only the bandwidth is taken from scipy; the weights' covariance must be invertible
        kde = stats.gaussian_kde(np.vstack([xs.ravel()[nonzero], ys.ravel()[nonzero]]),
                                 weights=weights[nonzero])
        inverse = np.linalg.inv(kde.covariance)
    except (np.linalg.LinAlgError, ValueError):
        return saliency.copy()
    dy, dx = np.mgrid[-(h - 1):h, -(w - 1):w]
    offsets = np.stack([dx, dy], axis=-1)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", offsets, inverse, offsets))
    density = signal.fftconvolve(saliency, kernel, mode="same")
    density = np.clip(density, 0.0, None)  # FFT round-off can dip just below zero
    return density / density.max()


def blend(overlay: np.ndarray, base: np.ndarray, alpha: float) -> np.ndarray:
    """overlay * (1 - alpha) + base * alpha, as the reference blends the map onto the input."""
    mixed = overlay.astype(np.float64) * (1.0 - alpha) + base.astype(np.float64) * alpha
    return np.clip(mixed, 0, 255).astype(np.uint8)


def draw_window(image: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    """A copy of uint8 RGB ``image`` with the size x size window at (x, y) outlined in red."""
    x, y, size = window
    pil = Image.fromarray(image)
    line = max(1, min(pil.size) // 200)
    ImageDraw.Draw(pil).rectangle([x, y, x + size - 1, y + size - 1], outline=WINDOW_COLOUR,
                                  width=line)
    return np.asarray(pil)


def _to_rgb8(chw: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3] from float [C, h, w] in [0, 1]; one channel is shown as gray."""
    hwc = np.asarray(chw, dtype=np.float64).transpose(1, 2, 0)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return np.round(np.clip(hwc[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)


def _fmt_gap(result: LAMResult) -> str:
    return format_gap(result.completeness_gap, result.completeness_gap_relative)


def _fmt(value: float | None, spec: str) -> str:
    return "undefined" if value is None else format(value, spec)


def _summary(result: LAMResult) -> str:
    steps = len(result.alphas)
    return (f"{result.method.upper()}  x{result.scale}  DI {_fmt(result.diffusion_index, '.2f')}  "
            f"Gini {_fmt(result.gini, '.3f')}  D(F(I)) {result.detector_input:.4g}  "
            f"completeness gap {_fmt_gap(result)}  ({steps} path points)")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))
