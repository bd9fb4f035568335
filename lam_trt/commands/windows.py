"""What ``attribute --windows`` writes and prints: one folder per window, a summary, a table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lam_trt.commands._common import out_console, print_json, print_warnings


def report_windows(results: list[Any], out: Path, figure: str, dpi: int, source_image: str, json_out: bool) -> None:
    """Save every window's result under ``out`` with summary.csv/json; print the summary."""
    from lam_trt.many_windows import save_windows
    from lam_trt.provenance import command_line

    for result in results:
        result.meta["command"] = command_line()
    summary = save_windows(results, out, figure=figure, dpi=dpi, source_image=source_image)
    print_warnings([w for r in results for w in r.warnings])
    if json_out:
        print_json(summary)
        return
    for row in summary["rows"]:
        di = "undefined" if row["diffusion_index"] is None else f"{row['diffusion_index']:.3f}"
        out_console.print(f"window x={row['x']} y={row['y']} size={row['size']}: DI {di} -> {out}/{row['folder']}/")
    mean = summary["diffusion_index_mean"]
    out_console.print(f"{summary['windows']} windows in one run, mean DI "
                      f"{'undefined' if mean is None else f'{mean:.3f}'} -> {out}/summary.csv")
