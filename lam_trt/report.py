"""Writing a result: the map, the JSON, the pictures; all or nothing under the output folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lam_trt.errors import InputError
from lam_trt.io import staged_dir, write_json, write_npy
from lam_trt.render import DEFAULT_DPI, figure_format, render_lam, render_path

if TYPE_CHECKING:  # only for hints: LAMResult.save imports this module, so no import back
    from lam_trt.result import LAMResult


def write_result(result: LAMResult, out_dir: str | os.PathLike, figure: str = "png", dpi: int = DEFAULT_DPI,
                 **extra: Any) -> dict[str, Any]:
    """attribution.npy, result.json, lam.<figure> and (for a path integral, whose integral it plots)
    path.<figure> in ``out_dir``; returns the JSON dict with ``files`` added. ``extra`` entries are
    added to the JSON."""
    fmt = figure_format(f"lam.{figure}")
    if not 10 <= dpi <= 1200:
        raise InputError(f"--dpi must be between 10 and 1200, got {dpi}")
    summary = result.to_dict()
    path = summary.pop("path")
    summary = {**summary, **extra, "path": path}  # the per-step arrays stay last
    names = ["attribution.npy", "result.json", f"lam.{fmt}"]
    with staged_dir(out_dir) as stage:
        write_npy(stage / "attribution.npy", result.attribution)
        write_json(stage / "result.json", summary)
        render_lam(result, stage / f"lam.{fmt}", dpi=dpi)
        if result.path_integral:  # grad and grad-x-input have no path: no plot drawn as if they had
            render_path(result, stage / f"path.{fmt}", dpi=dpi)
            names.append(f"path.{fmt}")
    summary["files"] = {name: str(Path(out_dir) / name) for name in names}
    return summary
