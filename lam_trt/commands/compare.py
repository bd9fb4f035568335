"""``lam-trt compare``: several SR models on one window: the paper's Fig. 5 and Fig. 6, and a table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from lam_trt.commands._common import (FIGURE_DPI, Crop, FigureDpi, FigureFormat, Hr, JsonOut, KernelSize, Method,
                                     MethodOption, OutDir, Provider, ProviderOption, Rule, RuleOption, Scale, Sigma,
                                     Size, Steps, Threads, WindowXY, check_figure_options, out_console, path_points,
                                     print_json, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


def compare_command(
    paths: list[Path] = typer.Argument(..., metavar="MODEL1 MODEL2 ... IMAGE",
                                       help="Two or more ONNX SR models of one scale, then the LR image."),
    window: WindowXY = None,
    size: Size = 16,
    steps: Steps = 100,
    sigma: Sigma = 1.2,
    kernel_size: KernelSize = 9,
    method: MethodOption = Method("lam"),
    rule: RuleOption = Rule("right"),
    hr: Hr = False,
    scale: Scale = None,
    provider: ProviderOption = Provider("auto"),
    threads: Threads = None,
    crop: Crop = True,
    mass: float = typer.Option(0.5, help="Area of interest: a model uses the top pixels holding this "
                               "share of its |map|."),
    out: OutDir = Path("lam-compare"),
    json_out: JsonOut = False,
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
    points = path_points(method.value, steps, rule.value)
    comparison = compare_models(models, image, window, size=size, steps=steps, sigma=sigma,
                                kernel_size=kernel_size, method=method.value, provider=provider.value, mass=mass,
                                stage=lambda name: stage(f"path images of {name}", points), rule=rule.value,
                                hr=hr, scale=scale, threads=threads, crop="auto" if crop else False)
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
