"""What ``lam-trt dimap`` writes: the DI map beside the image, DI against texture, CSV and JSON."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lam_trt.dimap import DiMap
from lam_trt.io import staged_dir, write_json, write_text
from lam_trt.many_windows import ROW_FIELDS, mean_defined, rows_csv

FIELDS = (*ROW_FIELDS[:3], "texture", *ROW_FIELDS[3:])


def write_dimap(result: DiMap, out_dir: str | os.PathLike, figure: str = "png", dpi: int = 150,
                **extra: Any) -> dict[str, Any]:
    """dimap.csv, dimap.json, dimap.<figure> and di_vs_texture.<figure> in ``out_dir``, all or nothing;
    returns the JSON dict with ``files`` added."""
    summary = summarise(result, **extra)
    names = ["dimap.csv", "dimap.json", f"dimap.{figure}", f"di_vs_texture.{figure}"]
    with staged_dir(out_dir) as stage:
        write_text(stage / names[0], rows_csv(result.rows, FIELDS))
        write_json(stage / names[1], summary)
        save(draw_map(result), stage / names[2], dpi)
        save(draw_scatter(result), stage / names[3], dpi)
    summary["files"] = {name: str(Path(out_dir) / name) for name in names}
    return summary


def summarise(result: DiMap, **extra: Any) -> dict[str, Any]:
    di = [r["diffusion_index"] for r in result.rows]
    defined = [v for v in di if v is not None]
    return {**{k: result.meta[k] for k in ("command", "created") if k in result.meta},
            "windows": len(result.rows), "grid": {"columns": len(result.xs), "rows": len(result.ys)},
            "size": result.size, "stride": result.stride,
            "diffusion_index": {"mean": mean_defined(di), "min": min(defined, default=None),
                                "max": max(defined, default=None), "undefined": len(di) - len(defined)},
            "di_vs_texture": result.correlation, "warnings": [w.to_dict() for w in result.warnings],
            **extra, **{k: v for k, v in result.meta.items() if k not in ("command", "created")},
            "rows": result.rows}


def draw_map(result: DiMap) -> Figure:
    """The SR output beside the DI of every window, painted over the window's area."""
    fig = Figure(figsize=(9, 4.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sr = np.clip(np.moveaxis(result.sr, 0, -1), 0, 1)
    left.imshow(sr if sr.shape[-1] == 3 else sr[..., 0], cmap=None if sr.shape[-1] == 3 else "gray")
    left.set_title("SR output")
    right.imshow(sr.mean(axis=-1), cmap="gray", alpha=0.35)
    painted = right.imshow(di_canvas(result), cmap="viridis", alpha=0.85, interpolation="nearest")
    right.set_title(f"DI of {len(result.rows)} windows ({result.size} px, stride {result.stride})")
    for ax in (left, right):
        ax.set_axis_off()
    fig.colorbar(painted, ax=right, fraction=0.046, pad=0.04, label="diffusion index")
    fig.tight_layout()
    return fig


def di_canvas(result: DiMap) -> np.ndarray:
    """An SR-sized image holding each window's DI over the stride x stride cell centred on the
    window (the window itself when stride = size; NaN, transparent, where DI is undefined)."""
    _, height, width = result.sr.shape
    canvas = np.full((height, width), np.nan)
    half = result.stride / 2
    for row in result.rows:
        if row["diffusion_index"] is not None:
            cy, cx = row["y"] + row["size"] / 2, row["x"] + row["size"] / 2
            rows = slice(max(int(round(cy - half)), 0), int(round(cy + half)))
            cols = slice(max(int(round(cx - half)), 0), int(round(cx + half)))
            canvas[rows, cols] = row["diffusion_index"]
    return canvas


def draw_scatter(result: DiMap) -> Figure:
    """DI against the LR patch's texture, one point per window, with Spearman's rho."""
    fig = Figure(figsize=(4.6, 4))
    ax = fig.add_subplot(1, 1, 1)
    pairs = [(r["texture"], r["diffusion_index"]) for r in result.rows if r["diffusion_index"] is not None]
    if pairs:
        ax.scatter(*np.array(pairs).T, s=14, alpha=0.7)
    rho = result.correlation.get("rho")
    ax.set_title("DI against texture" + ("" if rho is None else f": Spearman rho {rho:.2f} "
                                         f"(p {result.correlation['p']:.2g}, n {result.correlation['windows']})"),
                 fontsize=9)
    ax.set_xlabel("LR gradient energy under the window")
    ax.set_ylabel("diffusion index")
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path, dpi: int) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)


__all__ = ["draw_map", "draw_scatter", "write_dimap"]
