"""The reference's pictures (LAM-SPEC "Pictures the reference draws") and the paper's path plots.

matplotlib is used through its Agg canvas directly (no pyplot), so rendering never needs a screen
and never changes the backend of the caller's process.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw
from scipy import signal, stats

from lam_trt.errors import InputError
from lam_trt.io import atomic_write
from lam_trt.metrics import format_gap

if TYPE_CHECKING:  # only for hints: LAMResult.save imports this module, so no import back
    from lam_trt.result import LAMResult

PANEL_TITLES = {
    "input": "input (bicubic up) + window",
    "saliency": "LAM",
    "blend": "LAM on input",
    "kde": "area of contribution",
    "output": "SR output + window",
}
WINDOW_COLOUR = (255, 0, 0)
MAP_WINDOW_COLOUR = "#1f4fff"        # on the white-to-red map a red outline would vanish
METHOD_LABELS = {"lam": "LAM", "ig": "IG", "grad": "gradient", "grad-x-input": "gradient x input"}
FORMATS = ("png", "pdf", "svg")
DEFAULT_DPI = 150
ZOOM_MASS = 0.99                     # the zoomed panels hold the pixels with this share of the map
SALIENCY_CMAP = matplotlib.colors.ListedColormap(  # the upper half of seismic: the reference's colours
    matplotlib.colormaps["seismic"](np.linspace(0.5, 1.0, 256)), name="seismic_upper")


def panels(result: LAMResult, alpha: float = 0.5, outlined: bool = True) -> dict[str, np.ndarray]:
    """The five reference panels as uint8 RGB arrays [H, W, 3] at SR-output size, keyed as
    PANEL_TITLES: input with window, seismic map, map blended with the input, KDE area of
    contribution blended with the input, SR output with window (``outlined=False``: no window)."""
    height, width = result.sr_output.shape[1:]
    lr_up = _to_rgb8(result.image)
    lr_up = np.asarray(Image.fromarray(lr_up).resize((width, height), Image.BICUBIC))
    saliency = np.asarray(result.saliency, dtype=np.float64)
    sal_up = np.asarray(Image.fromarray(seismic(saliency)).resize((width, height), Image.NEAREST))
    kde_up = np.asarray(Image.fromarray(seismic(contribution_area(saliency))).resize(
        (width, height), Image.BICUBIC))
    sr = _to_rgb8(np.clip(result.sr_output, 0.0, 1.0))
    return {
        "input": draw_window(lr_up, result.window) if outlined else lr_up,
        "saliency": sal_up,
        "blend": blend(sal_up, lr_up, alpha),
        "kde": blend(kde_up, lr_up, alpha),
        "output": draw_window(sr, result.window) if outlined else sr,
    }


def method_label(method: str) -> str:
    """What the map is called in titles: "LAM", "IG", "gradient", "gradient x input"."""
    return METHOD_LABELS.get(method, method.upper())


def render_lam(result: LAMResult, path: str | os.PathLike, alpha: float = 0.5, dpi: int = DEFAULT_DPI,
               fmt: str | None = None) -> Path:
    """Write ``draw_lam``'s panels to ``path``. ``fmt``: png, pdf or svg (default: the suffix)."""
    return save_figure(lam_figure(result, alpha, dpi), path, fmt)


def lam_figure(result: LAMResult, alpha: float = 0.5, dpi: int = DEFAULT_DPI, pyplot: bool = False) -> Figure:
    """``draw_lam``'s panels in a new Figure: off screen on an Agg canvas, or with ``pyplot`` a
    pyplot figure, which ``plt.show()`` displays (pyplot is imported only then)."""
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(dpi=dpi)
    else:
        fig = Figure(dpi=dpi)
        FigureCanvasAgg(fig)
    return draw_lam(fig, result, alpha)


def draw_lam(fig: Figure, result: LAMResult, alpha: float = 0.5) -> Figure:
    """The reference's LAM panels as a figure for a paper, drawn into ``fig`` (sized here): a small
    view of the whole input with the window and the zoomed region, then the map (with its colour
    bar), the map on the input, the area of contribution and the SR output (and the HR image when
    the result has one), all zoomed to the informative region and with the window outlined."""
    images = panels(result, alpha, outlined=False)
    top, left, bottom, right = zoom_region(result)
    x, y, size = result.window
    label = method_label(result.method)
    hr = hr_image(result)
    zoomed = [("saliency", f"{label} (|map| / max)"), ("blend", f"{label} on input"),
              ("kde", f"area of contribution\nDI = {format_number(result.diffusion_index, '.2f')}"),
              ("output", "SR output")]
    if hr is not None:
        zoomed.append(("hr", "HR image"))
        images["hr"] = hr
    ratios = [0.75, 1.0, 0.05, 0.12] + [1.0] * (len(zoomed) - 1)  # colour bar, room for its ticks
    fig.set_size_inches(0.6 + 2.7 * sum(ratios), 3.5)
    grid = fig.add_gridspec(1, len(ratios), width_ratios=ratios)
    show_overview(fig.add_subplot(grid[0, 0]), images["input"],
                  f"input (x{result.scale} bicubic)\nwindow x={x} y={y} size={size}", result.window,
                  (top, left, bottom, right))
    for column, (name, title) in zip([1, *range(4, len(ratios))], zoomed):
        ax = fig.add_subplot(grid[0, column])
        if name == "saliency":
            shown = show_image(ax, np.asarray(result.saliency, dtype=np.float64), title, cmap=SALIENCY_CMAP,
                               vmin=0.0, vmax=1.0,
                               extent=(0, result.sr_output.shape[2], result.sr_output.shape[1], 0))
            colour_bar(fig, fig.add_subplot(grid[0, 2]), shown)
        else:
            show_image(ax, images[name], title)
        zoom_to(ax, result.window, (top, left, bottom, right), MAP_WINDOW_COLOUR if name == "saliency" else "red")
    fig.suptitle(_summary(result), fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.78, wspace=0.1)
    return fig


def hr_image(result: LAMResult) -> np.ndarray | None:
    """uint8 RGB of the result's HR image at SR-output size, when it has one (``--hr``)."""
    hr = result.hr_image
    if hr is None:
        return None
    return _to_rgb8(np.clip(hr, 0.0, 1.0))


def zoom_region(result: LAMResult, mass: float = ZOOM_MASS) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) in SR pixels of the informative region: the window and the
    smallest box holding ``mass`` of the map, with a margin, squared, inside the image."""
    return informative_region([result.saliency], result.window, result.scale, mass)


def informative_region(saliencies: list[np.ndarray], window: tuple[int, int, int], scale: int,
                       mass: float = ZOOM_MASS) -> tuple[int, int, int, int]:
    """The region (SR pixels, as zoom_region) that shows the window and where every map's ``mass``
    lies: the box around both, a margin of 15% (at least 2 LR pixels), made square where the image
    allows, never smaller than 8 LR pixels or twice the window."""
    h, w = np.asarray(saliencies[0]).shape
    x, y, size = window
    rows, cols = [y / scale, (y + size) / scale], [x / scale, (x + size) / scale]
    for saliency in saliencies:
        used = mass_pixels(saliency, mass)
        if used.any():
            r, c = np.nonzero(used)
            rows += [r.min(), r.max() + 1]
            cols += [c.min(), c.max() + 1]
    (r0, r1), (c0, c1) = (min(rows), max(rows)), (min(cols), max(cols))
    side = max(r1 - r0, c1 - c0)
    side = max(side + 2 * max(2.0, 0.15 * side), 8.0, 2.0 * size / scale)
    r0, r1 = _span((r0 + r1) / 2, side, h)
    c0, c1 = _span((c0 + c1) / 2, side, w)
    return r0 * scale, c0 * scale, r1 * scale, c1 * scale


def _span(centre: float, side: float, limit: int) -> tuple[int, int]:
    """Whole-pixel [lo, hi) of length ~side around centre, shifted (then cut) to fit [0, limit)."""
    side = min(int(np.ceil(side)), limit)
    lo = int(np.floor(centre - side / 2))
    lo = min(max(lo, 0), limit - side)
    return lo, lo + side


def mass_pixels(values: np.ndarray, mass: float) -> np.ndarray:
    """The fewest pixels, largest first, whose values hold ``mass`` of the map's sum (ties at the
    threshold included). An all-zero map holds no pixel."""
    values = np.asarray(values, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        return np.zeros(values.shape, dtype=bool)
    ordered = np.sort(values.ravel())[::-1]
    k = int(np.searchsorted(np.cumsum(ordered), mass * total * (1 - 1e-12)))
    return values >= ordered[min(k, ordered.size - 1)]


def outline_window(ax: Any, window: tuple[int, int, int], colour: str = "red") -> None:
    """The analysed window as a rectangle in SR-pixel coordinates (pixel i spans [i, i + 1])."""
    x, y, size = window
    ax.add_patch(Rectangle((x, y), size, size, fill=False, edgecolor=colour, linewidth=1.2))


def show_overview(ax: Any, image: np.ndarray, title: str, window: tuple[int, int, int],
                  region: tuple[int, int, int, int]) -> None:
    """The whole ``image`` with the window outlined and, dashed, the region the other panels show."""
    show_image(ax, image, title)
    outline_window(ax, window)
    top, left, bottom, right = region
    if (top, left, bottom, right) != (0, 0, *image.shape[:2]):
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, edgecolor="white",
                               linestyle="--", linewidth=1.0))


def zoom_to(ax: Any, window: tuple[int, int, int], region: tuple[int, int, int, int], colour: str = "red") -> None:
    """Show only ``region`` (top, left, bottom, right) of ``ax``, the window outlined."""
    outline_window(ax, window, colour)
    top, left, bottom, right = region
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)


def colour_bar(fig: Figure, cax: Any, mappable: Any) -> None:
    """The map's colour bar in ``cax``, ticks at 0, 0.5 and 1."""
    bar = fig.colorbar(mappable, cax=cax, ticks=[0.0, 0.5, 1.0])
    bar.ax.tick_params(labelsize=7)


def render_path(result: LAMResult, path: str | os.PathLike, dpi: int = DEFAULT_DPI, fmt: str | None = None) -> Path:
    """Write the paper's Fig. 3 (f) and (h): D(F(gamma(alpha))) along the path, and the cumulative
    attribution against D(F(I)) - D(F(I')), whose end gap is the completeness gap."""
    alphas = np.asarray(result.alphas, dtype=np.float64)
    detector = np.asarray(result.detector_path, dtype=np.float64)
    cumulative = np.cumsum(np.asarray(result.contributions, dtype=np.float64))
    if alphas.size and alphas[0] > 0:  # the baseline (alpha 0) is not evaluated by the sum
        alphas = np.concatenate([[0.0], alphas])
        detector = np.concatenate([[result.detector_baseline], detector])
        cumulative = np.concatenate([[0.0], cumulative])
    fig = Figure(figsize=(10.0, 3.8), dpi=dpi)
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
    return save_figure(fig, path, fmt)


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
    """uint8 [h, w, 3] from float [C, h, w] in [0, 1]: three or more channels as RGB (the first
    three), one or two (gray, or chroma pairs as DDColor's) as the gray of their mean."""
    hwc = np.asarray(chw, dtype=np.float64).transpose(1, 2, 0)
    if hwc.shape[2] < 3:
        hwc = np.repeat(hwc.mean(axis=2, keepdims=True), 3, axis=2)
    return np.round(np.clip(hwc[..., :3], 0.0, 1.0) * 255.0).astype(np.uint8)


def show_image(ax: Any, image: np.ndarray, title: str, **style: Any) -> Any:
    """``image`` on ``ax`` in SR-pixel coordinates (pixel i spans [i, i + 1]), axes hidden."""
    height, width = image.shape[:2]
    style.setdefault("extent", (0, width, height, 0))
    shown = ax.imshow(image, interpolation="nearest", **style)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # a thin frame: the map's white must not melt into the page
        spine.set_color("0.6")
        spine.set_linewidth(0.6)
    return shown


def format_number(value: float | None, spec: str) -> str:
    """A number, or "undefined" for the None / NaN of a degenerate window."""
    return "undefined" if value is None or not np.isfinite(value) else format(value, spec)


def _fmt_gap(result: LAMResult) -> str:
    return format_gap(result.completeness_gap, result.completeness_gap_relative)


def _summary(result: LAMResult) -> str:
    text = (f"{method_label(result.method)}  x{result.scale}  DI {format_number(result.diffusion_index, '.2f')}  "
            f"Gini {format_number(result.gini, '.3f')}  D(F(I)) {format_number(result.detector_input, '.4g')}")
    if result.path_integral:  # a one-point method has no integral to complete
        text += f"  completeness gap {_fmt_gap(result)}  ({len(result.alphas)} path points)"
    return text


def figure_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """png, pdf or svg: ``fmt`` when given, else the file's suffix."""
    fmt = (fmt or Path(path).suffix.lstrip(".") or "png").lower()
    if fmt not in FORMATS:
        raise InputError(f"figure format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def save_figure(fig: Figure, path: str | os.PathLike, fmt: str | None = None) -> Path:
    fmt = figure_format(path, fmt)
    # SVG and PDF embed text as text, with no creation date: the same result gives the same file
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    if fmt == "pdf":
        metadata = {"CreationDate": None, "ModDate": None}
    return atomic_write(path, lambda p: fig.savefig(p, format=fmt, metadata=metadata))
