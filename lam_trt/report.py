"""Writing a result: the map, the JSON, the pictures; all or nothing under the output folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lam_trt.io import staged_dir, write_json, write_npy
from lam_trt.render import render_lam, render_path
from lam_trt.result import LAMResult


def write_result(result: LAMResult, out_dir: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """attribution.npy, result.json, lam.png and (for a path integral) path.png in ``out_dir``;
    returns the JSON dict with ``files`` added. ``extra`` entries are added to the JSON."""
    summary = result.to_dict()
    summary = {**summary, **extra, "path": summary.pop("path")}  # the per-step arrays stay last
    names = ["attribution.npy", "result.json", "lam.png"]
    with staged_dir(out_dir) as stage:
        write_npy(stage / "attribution.npy", result.attribution)
        write_json(stage / "result.json", summary)
        render_lam(result, stage / "lam.png")
        if result.path_integral:  # grad and grad-x-input have no path: no plot drawn as if they had
            render_path(result, stage / "path.png")
            names.append("path.png")
    summary["files"] = {name: str(Path(out_dir) / name) for name in names}
    return summary
