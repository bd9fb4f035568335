"""Many windows of one image: which windows a spec names, and their results as rows and folders.

``attribute --windows`` and ``dimap`` attribute many windows of one image in one run
(``Attributor.attribute(windows=...)``); this module turns a window spec (``center``, ``grid:K``,
a CSV file: the same spec as ``batch``) into windows of that image and writes the results: one
folder per window plus a summary of the per-window numbers.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lam_trt.batch import WindowSpec
from lam_trt.io import write_json, write_text

ROW_FIELDS = ("x", "y", "size", "diffusion_index", "gini", "completeness_gap", "completeness_gap_relative",
              "detector_input", "detector_baseline", "warnings")


def spec_windows(attributor: Any, image: Any, spec: str, size: int, hr: bool = False,
                 scale: Optional[int] = None) -> list[tuple[int, int, int]]:
    """(x, y, size) of every window ``spec`` names on ``image``'s SR output (the windows are checked
    when they are attributed)."""
    windows = WindowSpec.parse(spec)
    img = attributor.load(image, hr, scale)
    return windows.windows(attributor.output_shape(img.shape), size)


def window_row(result: Any) -> dict[str, Any]:
    """The numbers of one window's result, flat (None where undefined)."""
    x, y, size = result.window
    return {"x": x, "y": y, "size": size, "diffusion_index": result.diffusion_index, "gini": result.gini,
            "completeness_gap": result.completeness_gap,
            "completeness_gap_relative": result.completeness_gap_relative,
            "detector_input": result.detector_input, "detector_baseline": result.detector_baseline,
            "warnings": ";".join(result.warning_codes())}


def folder_name(k: int, result: Any) -> str:
    x, y, size = result.window
    return f"window-{k + 1:03d}-x{x}-y{y}-s{size}"


def rows_csv(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> str:
    """CSV text of ``rows`` (empty cells for None)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in row.items()} for row in rows])
    return text.getvalue()


def save_windows(results: list[Any], out: Path, figure: str = "png", dpi: int = 150, **extra: Any) -> dict[str, Any]:
    """One folder per window (``result.save``) and ``summary.csv``/``summary.json`` in ``out``."""
    rows = []
    for k, result in enumerate(results):
        result.save(out / folder_name(k, result), figure=figure, dpi=dpi, **extra)
        rows.append({**window_row(result), "folder": folder_name(k, result)})
    summary = {"windows": len(rows), "method": results[0].method, "scale": results[0].scale,
               "diffusion_index_mean": mean_defined([r["diffusion_index"] for r in rows]),
               "command": results[0].meta.get("command"), "rows": rows}
    write_text(out / "summary.csv", rows_csv(rows, (*ROW_FIELDS, "folder")))
    write_json(out / "summary.json", summary)
    return summary


def mean_defined(values: list[Optional[float]]) -> Optional[float]:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


__all__ = ["ROW_FIELDS", "folder_name", "mean_defined", "rows_csv", "save_windows", "spec_windows", "window_row"]
