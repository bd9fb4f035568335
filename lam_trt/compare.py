"""Comparing SR networks on one window of one image, as the paper does.

- Fig. 5: per model the SR crop around the window, its LAM, the LAM blended on the input, its DI;
- Fig. 6: the "area of interest": the pixels every model uses (red) against the pixels only the
  models with the larger DI use (blue), on the LR image;
- a table of the numbers (DI, Gini, completeness gap, pixels used) for the terminal and JSON.

A model "uses" the fewest pixels, largest first, that hold ``mass`` (default half) of its
abs-normalised map: a threshold that adapts to each map instead of one fixed level for all.
"""
from __future__ import annotations

import contextlib
import functools
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from lam_trt.errors import InputError
from lam_trt.images import ImageSource
from lam_trt.io import staged_dir, write_json
from lam_trt.render import (DEFAULT_DPI, MAP_WINDOW_COLOUR, SALIENCY_CMAP, blend, format_number, hr_image,
                            informative_region, mass_pixels, method_label, panels, save_figure, seismic, show_image,
                            show_overview, zoom_to)
from lam_trt.result import LAMResult
from lam_trt.window import centre_window

COMMON_COLOUR = np.array([220, 30, 30])    # used by every model (the paper's red)
LARGER_COLOUR = np.array([30, 90, 230])    # used only by the larger-DI models (the paper's blue)


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

    @functools.cached_property
    def region(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) in SR pixels that the figures zoom to: the window and where
        99% of every model's map lies."""
        return informative_region([r.result.saliency for r in self.runs], self.window, self.runs[0].result.scale)

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


def compare_models(models: Sequence[str | os.PathLike], image: ImageSource, window: tuple[int, int] | None = None,
                   size: int = 16, steps: int = 100, sigma: float = 1.2, kernel_size: int = 9,
                   method: str = "lam", provider: str = "auto", mass: float = 0.5,
                   stage: Callable[[str], ContextManager[Callable[[int], None]]] | None = None,
                   rule: str = "right", hr: bool = False, scale: int | None = None, threads: int | None = None,
                   crop: bool | str = "auto") -> Comparison:
    """LAM of the same window for every model. All SR outputs must have the same size (same scale),
    or the windows would not be the same pixels; that is checked before anything is attributed.
    ``stage(model name)``: a context giving each model's progress callback (path images done).
    ``hr``: ``image`` is an HR image, downscaled by ``scale`` (each model's own when None)."""
    from lam_trt.attributor import Attributor, check_window

    if len(models) < 2:
        raise InputError(f"compare needs at least two models, got {len(models)}")
    if not 0 < mass <= 1:
        raise InputError(f"--mass is a share of each map in (0, 1], got {mass}")
    attributors = [Attributor(m, provider=provider, threads=threads) for m in models]
    images = [a.load(image, hr, scale) for a in attributors]
    shapes = [a.output_shape(tuple(img.shape)) for a, img in zip(attributors, images)]
    names = model_names(models)
    if len({s[1:] for s in shapes}) > 1:
        sizes = ", ".join(f"{n} {s[2]}x{s[1]}" for n, s in zip(names, shapes))
        raise InputError(f"the models' SR outputs differ in size ({sizes}); compare needs models of one scale")
    x, y = (int(v) for v in (window if window is not None else centre_window(shapes[0][1:], size)))
    check_window(x, y, size, shapes[0])
    runs = []
    for name, model, attributor, img in zip(names, models, attributors, images):
        with (stage(name) if stage is not None else contextlib.nullcontext(None)) as advance:
            result = attributor.attribute(img, window=(x, y), size=size, steps=steps, sigma=sigma,
                                          kernel_size=kernel_size, method=method, rule=rule, crop=crop,
                                          progress=advance)
        runs.append(ModelRun(name, str(model), attributor.sha256, result))
    parameters = {"size": size, "steps": steps, "sigma": sigma, "kernel_size": kernel_size, "method": method,
                  "provider": runs[0].result.meta.get("runtime", {}).get("provider", provider),
                  "rule": rule, "hr": hr, "scale": scale}
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
    return mass_pixels(saliency, mass)


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

def render_comparison(cmp: Comparison, path: str | os.PathLike, dpi: int = DEFAULT_DPI, fmt: str | None = None) -> Path:
    """Fig. 5: a small view of the input with the window and the zoomed region (and the HR crop
    when the results carry the HR image), then one column per model sorted by DI, every row zoomed
    to one region (the window and where 99% of every map lies): the SR crop, the map on one colour
    scale shared by all models, the map on the input, and the area of contribution."""
    runs = cmp.by_di()
    label = method_label(cmp.parameters["method"])
    rows = ("SR output", f"{label}, shared scale", f"{label} on input", "area of contribution")
    fig = Figure(figsize=(0.8 + 2.3 * (len(runs) + 1), 0.9 + 2.3 * len(rows)), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(rows), len(runs) + 2, width_ratios=[1.0] * (len(runs) + 1) + [0.06])
    lr_up = panels(runs[0].result, outlined=False)["input"]
    x, y, size = cmp.window
    show_overview(fig.add_subplot(grid[0, 0]), lr_up, f"input, window\nx={x} y={y} size={size}", cmp.window,
                  cmp.region)
    hr = hr_image(runs[0].result)
    if hr is not None:
        _zoomed(fig.add_subplot(grid[1, 0]), hr, "HR image", cmp)
    for row, text in enumerate(rows):
        fig.text(0.005, 1 - (row + 0.5) / len(rows) * 0.9 - 0.07, text, rotation=90, va="center",
                 fontsize=9, weight="bold")
    for col, (run, shared_map) in enumerate(zip(runs, shared_maps([r.result for r in runs])), start=1):
        shown = _model_column(fig, [grid[row, col] for row in range(len(rows))], run, shared_map, lr_up, cmp)
    bar = fig.colorbar(shown, cax=fig.add_subplot(grid[1, -1]), ticks=[0.0, 0.5, 1.0])
    bar.ax.tick_params(labelsize=7)
    bar.set_label("|map| / largest of all models", fontsize=7)
    fig.suptitle(f"{label} of {len(runs)} models, sorted by diffusion index, smallest first "
                 f"({cmp.parameters['steps']} steps)", fontsize=11)
    fig.subplots_adjust(left=0.03, right=0.91, bottom=0.02, top=0.9, wspace=0.08, hspace=0.12)
    return save_figure(fig, path, fmt)


def _model_column(fig: Figure, cells: list[Any], run: ModelRun, shared_map: np.ndarray, lr_up: np.ndarray,
                  cmp: Comparison) -> Any:
    """One model's column of Fig. 5, top to bottom; returns the map's image (for the colour bar)."""
    view = panels(run.result, outlined=False)
    height, width = lr_up.shape[:2]
    map_up = np.asarray(Image.fromarray(seismic(shared_map)).resize((width, height), Image.NEAREST))
    name = "\n".join(textwrap.wrap(run.name, 22)) or run.name
    _zoomed(fig.add_subplot(cells[0]), view["output"], f"{name}\nDI {format_number(run.di, '.2f')}", cmp)
    ax = fig.add_subplot(cells[1])
    shown = show_image(ax, shared_map, "", cmap=SALIENCY_CMAP, vmin=0.0, vmax=1.0, extent=(0, width, height, 0))
    zoom_to(ax, cmp.window, cmp.region, MAP_WINDOW_COLOUR)
    _zoomed(fig.add_subplot(cells[2]), blend(map_up, lr_up, 0.5), "", cmp)
    _zoomed(fig.add_subplot(cells[3]), view["kde"], "", cmp)
    return shown


def shared_maps(results: Sequence[LAMResult]) -> list[np.ndarray]:
    """Each model's |sum over channels| divided by the largest value of all models: one scale, so
    a weaker map looks weaker (each result's own saliency is divided by its own max)."""
    maps = [np.abs(np.asarray(r.attribution, dtype=np.float64).sum(axis=0)) for r in results]
    peak = max(float(m.max(initial=0.0)) for m in maps)
    return [m / peak if peak > 0 else m for m in maps]


def _zoomed(ax: Any, image: np.ndarray, title: str, cmp: Comparison) -> None:
    """``image`` zoomed to the comparison's region, its window outlined."""
    show_image(ax, image, title)
    zoom_to(ax, cmp.window, cmp.region)


def render_area_of_interest(cmp: Comparison, path: str | os.PathLike, dpi: int = DEFAULT_DPI,
                            fmt: str | None = None) -> Path:
    """Fig. 6 as one PNG: the input with the window, and the area of interest on the LR image."""
    area = cmp.area
    result = cmp.runs[0].result
    height, width = result.sr_output.shape[1:]
    overlay = np.asarray(Image.fromarray(area_picture(result.image, area)).resize((width, height), Image.NEAREST))
    fig = Figure(figsize=(8.6, 5.0), dpi=dpi)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    show_overview(left, panels(result, outlined=False)["input"], "input, window and zoomed region", cmp.window,
                  cmp.region)
    label = method_label(cmp.parameters["method"])
    show_image(right, overlay, f"area of interest (top pixels holding {100 * area.mass:.0f}% of each |{label}|)")
    zoom_to(right, cmp.window, cmp.region, "black")  # black: red and blue are taken by the two pixel sets
    n_common, n_larger = int(area.common.sum()), int(area.larger_only.sum())
    handles = [Patch(color=COMMON_COLOUR / 255, label=f"used by every model ({n_common} px)"),
               Patch(color=LARGER_COLOUR / 255, label=f"used only by larger-DI {', '.join(area.larger)} "
                                                      f"({n_larger} px)")]
    if area.smaller:
        handles.append(Patch(color="none", label=f"(not by smaller-DI {', '.join(area.smaller)})"))
    fig.legend(handles=handles, loc="lower center", ncol=1, fontsize=9, frameon=False)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.2, top=0.92, wspace=0.06)
    return save_figure(fig, path, fmt)


def area_picture(image: np.ndarray, area: AreaOfInterest) -> np.ndarray:
    """uint8 RGB [h, w, 3]: the LR image in faded gray, common pixels red, larger-DI-only pixels blue."""
    gray = np.asarray(image, dtype=np.float64).mean(axis=0)
    rgb = np.repeat((255 * (0.35 + 0.5 * np.clip(gray, 0, 1)))[..., None], 3, axis=2)
    rgb[area.larger_only] = LARGER_COLOUR
    rgb[area.common] = COMMON_COLOUR
    return rgb.astype(np.uint8)


def write_comparison(cmp: Comparison, out_dir: str | os.PathLike, figure: str = "png",
                     dpi: int = DEFAULT_DPI) -> dict[str, Any]:
    """compare.<figure>, area_of_interest.<figure> and compare.json in ``out_dir``, all or nothing."""
    names = {"compare": f"compare.{figure}", "area": f"area_of_interest.{figure}", "json": "compare.json"}
    summary = cmp.to_dict()
    with staged_dir(out_dir) as stage:
        render_comparison(cmp, stage / names["compare"], dpi=dpi)
        render_area_of_interest(cmp, stage / names["area"], dpi=dpi)
        write_json(stage / names["json"], summary)
    summary["files"] = {name: str(Path(out_dir) / name) for name in names.values()}
    return summary


__all__ = ["AreaOfInterest", "Comparison", "ModelRun", "area_of_interest", "area_picture", "compare_models",
           "model_names", "render_area_of_interest", "render_comparison", "used_pixels", "write_comparison"]
