"""``lam-trt compare``: several SR models on one window: the paper's Fig. 5 and Fig. 6, and a table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lam_trt.commands._common import METHODS, err_console, out_console, print_json, show_progress
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)


def compare_command(
    paths: list[Path] = typer.Argument(..., metavar="MODEL1 MODEL2 ... IMAGE",
                                       help="Two or more ONNX SR models of one scale, then the LR image."),
    window: tuple[int, int] = typer.Option(..., "--window", help="X Y: column and row of the window's "
                                           "top-left corner in SR-output pixels."),
    size: int = typer.Option(16, help="Window size in SR-output pixels."),
    steps: int = typer.Option(100, help="Path steps."),
    sigma: float = typer.Option(1.2, help="Blur of the baseline."),
    kernel_size: int = typer.Option(9, "--kernel-size", help="Gaussian kernel size (odd)."),
    method: str = typer.Option("lam", help=f"Attribution method: {', '.join(METHODS)}."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    mass: float = typer.Option(0.5, help="Area of interest: a model uses the top pixels holding this "
                               "share of its |LAM|."),
    out: Path = typer.Option(Path("lam-compare"), "--out", help="Output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Compare the LAM of one window across SR models (the paper's Fig. 5 and Fig. 6)."""
    from lam_trt.compare import compare_models, write_comparison

    check_out_dir(out)
    if len(paths) < 3:
        raise InputError("give at least two models and then the image: MODEL1 MODEL2 ... IMAGE")
    *models, image = paths
    note = (lambda name: err_console.print(f"attributing {name} ...")) if show_progress() else None
    comparison = compare_models(models, image, window, size=size, steps=steps, sigma=sigma,
                                kernel_size=kernel_size, method=method.lower(), provider=provider, mass=mass,
                                progress=note)
    summary = write_comparison(comparison, out)
    if json_out:
        print_json(summary)
    else:
        print_table(summary, out)


def print_table(summary: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"LAM of window x={summary['window']['x']} y={summary['window']['y']} "
                        f"size={summary['window']['size']}", title_justify="left")
    for column in ("model", "DI", "rank", "Gini", "gap", "gap %", "pixels used", "seconds"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in summary["models"]:
        rel = row["completeness_gap_relative"]
        table.add_row(row["model"], f"{row['diffusion_index']:.3f}", str(row["rank_by_di"]), f"{row['gini']:.4f}",
                      f"{row['completeness_gap']:.4g}", f"{100 * rel:.2f}" if rel is not None else "-",
                      str(row["pixels_used"]), f"{row['seconds']:.2f}" if row["seconds"] is not None else "-")
    out_console.print(table)
    area = summary["area_of_interest"]
    out_console.print(f"area of interest (top {100 * area['mass']:.0f}% of each |LAM|): {area['common_pixels']} "
                      f"pixels used by all, {area['larger_di_only_pixels']} only by larger-DI "
                      f"{', '.join(area['larger_di_models'])}  -> {out}/")
