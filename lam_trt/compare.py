"""Comparing SR networks on one window of one image, as the paper does.

- Fig. 5: per model the SR crop around the window, its LAM, the LAM blended on the input, its DI;
- Fig. 6: the "area of interest": the pixels every model uses (red) against the pixels only the
  models with the larger DI use (blue), on the LR image;
- a table of the numbers (DI, Gini, completeness gap, pixels used) for the terminal and JSON.

A model "uses" the fewest pixels, largest first, that hold ``mass`` (default half) of its
abs-normalised map: a threshold that adapts to each map instead of one fixed level for all.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from PIL import Image

from lam_trt.errors import InputError
from lam_trt.images import ImageSource
from lam_trt.io import atomic_write, staged_dir, write_json
from lam_trt.render import draw_window, panels
from lam_trt.result import LAMResult

COMMON_COLOUR = np.array([220, 30, 30])    # used by every model (the paper's red)
LARGER_COLOUR = np.array([30, 90, 230])    # used only by the larger-DI models (the paper's blue)
FILES = ("compare.png", "area_of_interest.png", "compare.json")


@dataclass
class ModelRun:
    """One model's LAM of the compared window."""

    name: str
    path: str
    sha256: str
    result: LAMResult

    @property
    def di(self) -> float | None:
        return self.result.diffusion_index


@dataclass
class AreaOfInterest:
    """Pixels (LR grid) every model uses, and pixels only the larger-DI models use."""

    common: np.ndarray          # bool [h, w]
    larger_only: np.ndarray     # bool [h, w]
    used: dict[str, np.ndarray]  # each model's own mask
    larger: list[str]           # names of the larger-DI half (the upper half when sorted by DI)
    smaller: list[str]
    mass: float


@dataclass
class Comparison:
    runs: list[ModelRun]        # in the order given
    image: str
    window: tuple[int, int, int]
    parameters: dict[str, Any]
    mass: float = 0.5

    def by_di(self) -> list[ModelRun]:
        return sorted(self.runs, key=lambda r: (r.di is None, r.di or 0.0))  # undefined DI ranks last

    @functools.cached_property
    def area(self) -> AreaOfInterest:
        return area_of_interest(self.runs, self.mass)

    def table(self) -> list[dict[str, Any]]:
        """One row per model, in the order given, with its rank by DI (1 = smallest)."""
        rank = {id(r): i for i, r in enumerate(self.by_di(), start=1)}
        used = self.area.used
        return [{"model": r.name, "path": r.path, "sha256": r.sha256, "rank_by_di": rank[id(r)],
                 **{k: v for k, v in r.result.to_dict().items()
                    if k in ("diffusion_index", "gini", "completeness_gap", "completeness_gap_relative",
                             "detector_input", "detector_baseline", "scale")},
                 "pixels_used": int(used[r.name].sum()),
                 "seconds": r.result.meta.get("timings_seconds", {}).get("total")}
                for r in self.runs]

    def to_dict(self) -> dict[str, Any]:
        area = self.area
        x, y, size = self.window
        return {"image": self.image, "window": {"x": x, "y": y, "size": size}, "parameters": self.parameters,
                "models": self.table(),
                "area_of_interest": {"mass": self.mass, "common_pixels": int(area.common.sum()),
                                     "larger_di_only_pixels": int(area.larger_only.sum()),
                                     "larger_di_models": area.larger, "smaller_di_models": area.smaller,
                                     "lr_pixels": int(area.common.size)}}


def compare_models(models: Sequence[str | os.PathLike], image: ImageSource, window: tuple[int, int],
                   size: int = 16, steps: int = 100, sigma: float = 1.2, kernel_size: int = 9,
                   method: str = "lam", provider: str = "auto", mass: float = 0.5,
                   progress: Callable[[str], None] | None = None) -> Comparison:
    """LAM of the same window for every model. All SR outputs must have the same size (same scale),
    or the windows would not be the same pixels; that is checked before anything is attributed."""
    from lam_trt.attributor import Attributor, check_window

    if len(models) < 2:
        raise InputError(f"compare needs at least two models, got {len(models)}")
    if not 0 < mass <= 1:
        raise InputError(f"--mass is a share of each map in (0, 1], got {mass}")
    attributors = [Attributor(m, provider=provider) for m in models]
    images = [a.load(image, False, None) for a in attributors]
    shapes = [a.runner(tuple(img.shape))[0].output_shape for a, img in zip(attributors, images)]
    names = model_names(models)
    if len({s[1:] for s in shapes}) > 1:
        sizes = ", ".join(f"{n} {s[2]}x{s[1]}" for n, s in zip(names, shapes))
        raise InputError(f"the models' SR outputs differ in size ({sizes}); compare needs models of one scale")
    x, y = (int(v) for v in window)
    check_window(x, y, size, shapes[0])
    runs = []
    for name, model, attributor, img in zip(names, models, attributors, images):
        if progress is not None:
            progress(name)
        result = attributor.attribute(img, window=(x, y), size=size, steps=steps, sigma=sigma,
                                      kernel_size=kernel_size, method=method)
        runs.append(ModelRun(name, str(model), attributor.sha256, result))
    parameters = {"size": size, "steps": steps, "sigma": sigma, "kernel_size": kernel_size, "method": method,
                  "provider": runs[0].result.meta.get("runtime", {}).get("provider", provider)}
    return Comparison(runs, str(image) if isinstance(image, (str, os.PathLike)) else "<array>",
                      (x, y, size), parameters, mass)


def model_names(models: Sequence[str | os.PathLike]) -> list[str]:
    """File stems, made unique with -2, -3... when two models share one."""
    names: list[str] = []
    for model in models:
        stem, n = Path(model).stem, 2
        name = stem
        while name in names:
            name, n = f"{stem}-{n}", n + 1
        names.append(name)
    return names


# ----------------------------------------------------------------------------- area of interest

def used_pixels(saliency: np.ndarray, mass: float = 0.5) -> np.ndarray:
    """The fewest pixels, largest first, whose values hold ``mass`` of the map's sum (ties at the
    threshold included). An all-zero map uses no pixel."""
    values = np.asarray(saliency, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        return np.zeros(values.shape, dtype=bool)
    ordered = np.sort(values.ravel())[::-1]
    k = int(np.searchsorted(np.cumsum(ordered), mass * total * (1 - 1e-12)))
    return values >= ordered[min(k, ordered.size - 1)]


def area_of_interest(runs: Sequence[ModelRun], mass: float = 0.5) -> AreaOfInterest:
    """Fig. 6: models sorted by DI split into a smaller-DI half and a larger-DI half (the larger
    half takes the middle one of an odd count); common = used by all, larger_only = used by some
    larger-DI model and by no smaller-DI model."""
    order = sorted(runs, key=lambda r: r.di)
    used = {r.name: used_pixels(r.result.saliency, mass) for r in runs}
    smaller, larger = order[:len(order) // 2], order[len(order) // 2:]
    common = np.logical_and.reduce([used[r.name] for r in runs])
    any_larger = np.logical_or.reduce([used[r.name] for r in larger])
    any_smaller = np.logical_or.reduce([used[r.name] for r in smaller]) if smaller else np.zeros_like(common)
    return AreaOfInterest(common, any_larger & ~any_smaller, used, [r.name for r in larger],
                          [r.name for r in smaller], mass)


# ------------------------------------------------------------------------------------- pictures

def render_comparison(cmp: Comparison, path: str | os.PathLike) -> Path:
    """Fig. 5 as one PNG: the input with the window, then one column per model sorted by DI
    (rows: SR crop around the window, LAM, LAM on the input), DI in each column's title."""
    runs = cmp.by_di()
    views = [panels(r.result) for r in runs]
    x, y, size = cmp.window
    fig = Figure(figsize=(2.4 * (len(runs) + 1), 7.6), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, len(runs) + 1)
    first = fig.add_subplot(grid[0, 0])
    _show(first, views[0]["input"], f"input\nwindow x={x} y={y} size={size}")
    for row, label in enumerate(("SR crop", "LAM", "LAM on input")):
        fig.text(0.01, 0.78 - 0.31 * row, label, rotation=90, va="center", fontsize=10, weight="bold")
    for col, (run, view) in enumerate(zip(runs, views), start=1):
        _show(fig.add_subplot(grid[0, col]), _crop(view["output"], cmp.window),
              f"{run.name}\nDI {run.di:.2f}")
        _show(fig.add_subplot(grid[1, col]), view["saliency"], "")
        _show(fig.add_subplot(grid[2, col]), draw_window(view["blend"], cmp.window), "")
    fig.suptitle(f"LAM of {len(runs)} models, sorted by diffusion index ({cmp.parameters['method']}, "
                 f"{cmp.parameters['steps']} steps)", fontsize=11)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.02, top=0.88, wspace=0.06, hspace=0.12)
    return _save(fig, path)


def render_area_of_interest(cmp: Comparison, path: str | os.PathLike) -> Path:
    """Fig. 6 as one PNG: the input with the window, and the area of interest on the LR image."""
    area = cmp.area
    result = cmp.runs[0].result
    height, width = result.sr_output.shape[1:]
    overlay = np.asarray(Image.fromarray(area_picture(result.image, area)).resize((width, height), Image.NEAREST))
    fig = Figure(figsize=(8.6, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    _show(left, panels(result)["input"], "input + window")
    _show(right, overlay, f"area of interest (top pixels holding {100 * area.mass:.0f}% of each |LAM|)")
    x, y, size = cmp.window  # outlined in black: red and blue are taken by the two pixel sets
    right.add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, edgecolor="black", linestyle="--"))
    n_common, n_larger = int(area.common.sum()), int(area.larger_only.sum())
    handles = [Patch(color=COMMON_COLOUR / 255, label=f"used by every model ({n_common} px)"),
               Patch(color=LARGER_COLOUR / 255, label=f"used only by larger-DI {', '.join(area.larger)} "
                                                      f"({n_larger} px)")]
    if area.smaller:
        handles.append(Patch(color="none", label=f"(not by smaller-DI {', '.join(area.smaller)})"))
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize=9, frameon=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.2, top=0.92, wspace=0.06)
    return _save(fig, path)


def area_picture(image: np.ndarray, area: AreaOfInterest) -> np.ndarray:
    """uint8 RGB [h, w, 3]: the LR image in faded gray, common pixels red, larger-DI-only pixels blue."""
    gray = np.asarray(image, dtype=np.float64).mean(axis=0)
    rgb = np.repeat((255 * (0.35 + 0.5 * np.clip(gray, 0, 1)))[..., None], 3, axis=2)
    rgb[area.larger_only] = LARGER_COLOUR
    rgb[area.common] = COMMON_COLOUR
    return rgb.astype(np.uint8)


def write_comparison(cmp: Comparison, out_dir: str | os.PathLike) -> dict[str, Any]:
    """compare.png, area_of_interest.png and compare.json in ``out_dir``, all or nothing."""
    summary = cmp.to_dict()
    with staged_dir(out_dir) as stage:
        render_comparison(cmp, stage / "compare.png")
        render_area_of_interest(cmp, stage / "area_of_interest.png")
        write_json(stage / "compare.json", summary)
    summary["files"] = {name: str(Path(out_dir) / name) for name in FILES}
    return summary


def _crop(image: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    """The window with half a window of context on each side (less at the border)."""
    x, y, size = window
    margin = max(2, size // 2)
    return image[max(0, y - margin):y + size + margin, max(0, x - margin):x + size + margin]


def _show(ax: Any, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))


__all__ = ["AreaOfInterest", "Comparison", "ModelRun", "area_of_interest", "area_picture", "compare_models",
           "model_names", "render_area_of_interest", "render_comparison", "used_pixels", "write_comparison"]
