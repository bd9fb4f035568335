"""``lam-trt compare``: several SR models on one window: the paper's Fig. 5 and Fig. 6, and a table."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from lam_trt.commands._common import (FIGURE_DPI, METHODS, FigureDpi, FigureFormat, check_figure_options,
                                     out_console, path_points, print_json, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)


def compare_command(
    paths: list[Path] = typer.Argument(..., metavar="MODEL1 MODEL2 ... IMAGE",
                                       help="Two or more ONNX SR models of one scale, then the LR image."),
    window: Optional[tuple[int, int]] = typer.Option(None, "--window", help="X Y: column and row of the window's "
                                                     "top-left corner in SR-output pixels (default: centred)."),
    size: int = typer.Option(16, help="Window size in SR-output pixels."),
    steps: int = typer.Option(100, help="Path steps."),
    sigma: float = typer.Option(1.2, help="Blur of the baseline."),
    kernel_size: int = typer.Option(9, "--kernel-size", help="Gaussian kernel size (odd)."),
    method: str = typer.Option("lam", help=f"Attribution method: {', '.join(METHODS)}."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    mass: float = typer.Option(0.5, help="Area of interest: a model uses the top pixels holding this "
                               "share of its |map|."),
    out: Path = typer.Option(Path("lam-compare"), "--out", help="Output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    figure: FigureFormat = "png",
    dpi: FigureDpi = FIGURE_DPI,
) -> None:
    """Compare the LAM of one window across SR models (the paper's Fig. 5 and Fig. 6)."""
    from lam_trt.compare import compare_models, write_comparison

    check_figure_options(figure, dpi)
    check_out_dir(out)
    if len(paths) < 3:
        raise InputError("give at least two models and then the image: MODEL1 MODEL2 ... IMAGE")
    *models, image = paths
    points = path_points(method.lower(), steps, "right")
    comparison = compare_models(models, image, window, size=size, steps=steps, sigma=sigma,
                                kernel_size=kernel_size, method=method.lower(), provider=provider, mass=mass,
                                stage=lambda name: stage(f"path images of {name}", points))
    summary = write_comparison(comparison, out, figure=figure.lower(), dpi=dpi)
    if json_out:
        print_json(summary)
    else:
        print_table(summary, out)


def print_table(summary: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"LAM of window x={summary['window']['x']} y={summary['window']['y']} "
                        f"size={summary['window']['size']}", title_justify="left")
    table.add_column("model", overflow="fold")  # the whole name, folded on a narrow terminal, never cut
    for column in ("DI", "rank", "Gini", "gap", "gap %", "pixels used", "seconds"):
        table.add_column(column, justify="right")
    for row in summary["models"]:
        rel = row["completeness_gap_relative"]
        table.add_row(row["model"], _number(row["diffusion_index"], ".3f"), str(row["rank_by_di"]),
                      _number(row["gini"], ".4f"), _number(row["completeness_gap"], ".4g"),
                      _number(None if rel is None else 100 * rel, ".2f"), str(row["pixels_used"]),
                      _number(row["seconds"], ".2f"))
    out_console.print(table)
    out_console.print("DI (diffusion index): how widely a model draws on the input; rank 1 = the smallest DI, "
                      "the most local model")
    area = summary["area_of_interest"]
    out_console.print(f"area of interest (top {100 * area['mass']:.0f}% of each |map|): {area['common_pixels']} "
                      f"pixels used by all, {area['larger_di_only_pixels']} only by larger-DI "
                      f"{', '.join(area['larger_di_models'])}  -> {out}/")


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
