"""``lam-trt attribute``: one LAM of one window, written to a folder (and printed)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from lam_trt.commands._common import (FIGURE_DPI, BatchSize, Crop, FigureDpi, FigureFormat, Hr, JsonOut,
                                     KernelSize, Method, MethodOption, ModelArg, OutDir, Provider, ProviderOption,
                                     RandomOps, Rule, RuleOption, Scale, Seed, Sigma, Size, Steps, StraightThrough,
                                     Threads, WarnGap, WindowXY,
                                     check_batch_size, check_figure_options, err_console, out_console, path_points,
                                     print_json, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


def attribute_command(
    model: ModelArg,
    image: Path = typer.Argument(..., help="The model's LR input (or an HR image with --hr)."),
    window: WindowXY = None,
    size: Size = 16,
    steps: Steps = 100,
    sigma: Sigma = 1.2,
    kernel_size: KernelSize = 9,
    method: MethodOption = Method("lam"),
    rule: RuleOption = Rule("right"),
    hr: Hr = False,
    scale: Scale = None,
    warn_gap: WarnGap = 0.05,
    provider: ProviderOption = Provider("auto"),
    threads: Threads = None,
    crop: Crop = True,
    batch_size: BatchSize = None,
    out: OutDir = Path("lam-out"),
    json_out: JsonOut = False,
    figure: FigureFormat = "png",
    dpi: FigureDpi = FIGURE_DPI,
    random_ops: RandomOps = "seeded",
    seed: Seed = 0,
    straight_through: StraightThrough = False,
) -> None:
    """Compute the Local Attribution Map of one window of MODEL's output for IMAGE.

    Warnings (a degenerate window, a large completeness gap, ...) go to stderr and result.json.
    Exit codes: 0 done, 2 bad input (one line on stderr, nothing written).
    """
    from lam_trt.attributor import Attributor
    from lam_trt.export.options import GraphOptions
    from lam_trt.provenance import command_line

    check_before_work(out, figure, dpi, batch_size, warn_gap)
    graph_options = GraphOptions(random_ops.lower(), seed, straight_through)
    attributor = Attributor(model, provider=provider.value, threads=threads, graph_options=graph_options)
    with stage("path images", path_points(method.value, steps, rule.value)) as advance:
        result = attributor.attribute(image, window=window, size=size, steps=steps, sigma=sigma,
                                      kernel_size=kernel_size, method=method.value, rule=rule.value, hr=hr,
                                      scale=scale, internal_batch_size=batch_size, progress=advance,
                                      gap_warning=warn_gap, crop="auto" if crop else False)
    result.meta["command"] = command_line()
    summary = result.save(out, figure=figure.lower(), dpi=dpi, source_image=str(image))
    print_warnings(result.warnings)
    if json_out:
        print_json(summary)
    else:
        print_summary(summary, out)


def check_before_work(out: Path, figure: str, dpi: int, batch_size: int | None, warn_gap: float) -> None:
    """The options no attribution can run with, refused before any work."""
    check_figure_options(figure, dpi)
    check_out_dir(out)
    check_batch_size(batch_size)
    if not warn_gap >= 0:
        raise InputError(f"--warn-gap is a ratio >= 0, got {warn_gap}")


def print_warnings(warnings) -> None:
    """Each warning once, one line each, on stderr."""
    from lam_trt.result import unique_warnings

    for w in unique_warnings(warnings):
        err_console.print(f"[yellow]warning:[/] {escape(f'{w.message} [{w.code}]')}", soft_wrap=True)


def print_summary(summary: dict, out: Path) -> None:
    from lam_trt.metrics import format_gap

    w = summary["window"]
    di, gini = summary["diffusion_index"], summary["gini"]
    out_console.print(
        f"[bold]DI[/] {'undefined' if di is None else f'{di:.3f}'}   "
        f"Gini {'undefined' if gini is None else f'{gini:.4f}'}   "
        f"window x={w['x']} y={w['y']} size={w['size']}   "
        f"D(F(I)) {summary['detector_input']:.4f}   D(F(I')) {summary['detector_baseline']:.4f}   "
        f"gap {format_gap(summary['completeness_gap'], summary['completeness_gap_relative'])}")
    rt, t = summary["runtime"], summary["timings_seconds"]
    out_console.print(f"{summary['parameters']['path_points']} path images on {rt['provider']} in "
                      f"{t['integral']:.2f} s (total {t['total']:.2f} s) -> {out}/")
