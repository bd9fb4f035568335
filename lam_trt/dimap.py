"""The diffusion-index map of a whole image (the LAM paper's Fig. 8 analysis), in one run.

Every window on a regular grid over the SR output is attributed from one path and one forward
pass per path image (``Attributor.attribute(windows=...)``); each window gets its DI, Gini and
completeness gap, and a texture measure of the LR patch under it (the mean gradient energy of its
luminance), so the paper's question, do textured windows use more pixels, is answered for this
image by Spearman's rank correlation of DI and texture.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from lam_trt.errors import InputError
from lam_trt.many_windows import window_row
from lam_trt.result import unique_warnings

TEXTURE = "gradient energy: mean of dx^2 + dy^2 of the LR luminance under the window"


@dataclass
class DiMap:
    image: np.ndarray                      # LR input [C, h, w]
    sr: np.ndarray                         # F(image) [C', H, W]
    size: int
    stride: int
    xs: list[int]                          # window columns (corners), SR pixels
    ys: list[int]                          # window rows (corners)
    rows: list[dict[str, Any]]             # per window, row-major over (ys, xs)
    correlation: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)     # provenance of the run (as result.json's)
    warnings: list[Any] = field(default_factory=list)      # every window's warnings, each once

    def grid(self, key: str = "diffusion_index") -> np.ndarray:
        """[len(ys), len(xs)] of one per-window number (NaN where undefined)."""
        values = [np.nan if r[key] is None else r[key] for r in self.rows]
        return np.array(values, np.float64).reshape(len(self.ys), len(self.xs))


def grid_positions(extent: int, size: int, stride: int) -> list[int]:
    """Window corners 0, stride, ... along an SR axis of ``extent`` pixels whose window fits the
    detector map (its last row and column are neighbours only), the last one flush with its end."""
    last = extent - 1 - size
    if last < 0:
        raise InputError(f"the SR output ({extent} pixels) has no room for a {size}-pixel window")
    positions = list(range(0, last + 1, stride))
    return positions if positions[-1] == last else positions + [last]


def lr_texture(image: np.ndarray, window: tuple[int, int, int], scale: int) -> float:
    """Mean gradient energy of the LR luminance (channel mean) under an SR window (x, y, size)."""
    x, y, size = window
    top, left = y // scale, x // scale
    bottom, right = -(-(y + size) // scale), -(-(x + size) // scale)
    luma = image.mean(axis=0)[max(top - 1, 0):bottom + 1, max(left - 1, 0):right + 1].astype(np.float64)
    dy, dx = np.diff(luma, axis=0)[:, :-1], np.diff(luma, axis=1)[:-1, :]
    return float(np.mean(dy ** 2 + dx ** 2)) if dy.size else 0.0


def spearman(di: list[Optional[float]], texture: list[float]) -> dict[str, Any]:
    """Spearman's rho (and p) of DI against texture over the windows with a defined DI."""
    from scipy import stats

    pairs = [(d, t) for d, t in zip(di, texture) if d is not None]
    out: dict[str, Any] = {"measure": TEXTURE, "windows": len(pairs)}
    if len(pairs) < 3 or len({p[0] for p in pairs}) < 2 or len({p[1] for p in pairs}) < 2:
        return {**out, "rho": None, "p": None, "note": "needs three windows with a DI, not all equal"}
    rho, p = stats.spearmanr(*np.array(pairs).T)
    return {**out, "rho": float(rho), "p": float(p)}


def diffusion_map(attributor: Any, image: Any, size: int = 16, stride: Optional[int] = None,
                  **attribute: Any) -> DiMap:
    """DI, Gini, completeness gap and LR texture of every window of a grid over ``image``'s SR
    output (``stride`` SR pixels apart, default ``size``), attributed in one run."""
    stride = size if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InputError(f"--stride must be an integer >= 1, got {stride!r}")
    img = attributor.load(image, attribute.get("hr", False), attribute.get("scale"))
    _, height, width = attributor.output_shape(img.shape)
    xs, ys = grid_positions(width, size, stride), grid_positions(height, size, stride)
    results = attributor.attribute(image, windows=[(x, y) for y in ys for x in xs], size=size, **attribute)
    first = results[0]
    rows = [{**window_row(r), "texture": lr_texture(first.image, r.window, first.scale)} for r in results]
    return DiMap(first.image, first.sr_output, size, stride, xs, ys, rows,
                 spearman([r["diffusion_index"] for r in rows], [r["texture"] for r in rows]), dict(first.meta),
                 unique_warnings(w for r in results for w in r.warnings))


__all__ = ["DiMap", "TEXTURE", "diffusion_map", "grid_positions", "lr_texture", "spearman"]
