"""``lam-trt compare``: several SR models on one window: the paper's Fig. 5 and Fig. 6, and a table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lam_trt.commands._common import (AttributionOptions, FigureOptions, JsonOut, OutDir, WindowXY, option_groups,
                                     out_console, print_json, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


@option_groups
def compare_command(
    paths: list[Path] = typer.Argument(..., metavar="MODEL1 MODEL2 ... IMAGE",
                                       help="Two or more ONNX SR models of one scale, then the LR image."),
    window: WindowXY = None,
    options: AttributionOptions = AttributionOptions(),
    mass: float = typer.Option(0.5, help="Area of interest: a model uses the top pixels holding this "
                               "share of its |map|."),
    out: OutDir = Path("lam-compare"),
    json_out: JsonOut = False,
    figures: FigureOptions = FigureOptions(),
) -> None:
    """Compare the LAM of one window across SR models (the paper's Fig. 5 and Fig. 6)."""
    from lam_trt.compare import compare_models, write_comparison

    figures.check()
    check_out_dir(out)
    if len(paths) < 3:
        raise InputError("give at least two models and then the image: MODEL1 MODEL2 ... IMAGE")
    *models, image = paths
    comparison = compare_models(models, image, window, **options.attribution(), provider=options.provider.value,
                                threads=options.threads, mass=mass,
                                stage=lambda name: stage(f"path images of {name}", options.path_points))
    summary = write_comparison(comparison, out, **figures.save_kwargs())
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
