"""``lam-trt attribute``: one LAM of one window, written to a folder (and printed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from lam_trt.commands._common import (FIGURE_DPI, METHODS, RULES, FigureDpi, FigureFormat, WindowsOfImage,
                                     check_figure_options, err_console, out_console, path_points, print_json, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


def register(app: typer.Typer) -> None:
    app.command("attribute")(attribute_command)


def attribute_command(
    model: Path = typer.Argument(..., help="ONNX super-resolution model (NCHW image in, image out)."),
    image: Path = typer.Argument(..., help="The model's LR input (or an HR image with --hr)."),
    window: Optional[tuple[int, int]] = typer.Option(None, "--window", help="X Y: column and row of the window's "
                                                     "top-left corner in SR-output pixels (default: centred)."),
    size: int = typer.Option(16, help="Window size in SR-output pixels."),
    steps: int = typer.Option(100, help="Path steps (the paper uses 100; the authors' notebook 50)."),
    sigma: float = typer.Option(1.2, help="Blur of the baseline."),
    kernel_size: int = typer.Option(9, "--kernel-size", help="Gaussian kernel size (odd)."),
    method: str = typer.Option("lam", help=f"Attribution method: {', '.join(METHODS)}."),
    rule: str = typer.Option("right", help=f"Quadrature rule: {', '.join(RULES)} (right = reference)."),
    hr: bool = typer.Option(False, "--hr", help="IMAGE is an HR image: downscale it by the model's scale "
                            "first (recorded in result.json)."),
    scale: Optional[int] = typer.Option(None, help="With --hr: the scale to downscale by; must match the "
                                        "model's (default: the model's own)."),
    warn_gap: float = typer.Option(0.05, "--warn-gap", help="Warn when the |relative completeness gap| "
                                   "is above this ratio."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Path images per run "
                                             "(default: from a memory budget)."),
    out: Path = typer.Option(Path("lam-out"), "--out", help="Output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    figure: FigureFormat = "png",
    dpi: FigureDpi = FIGURE_DPI,
    random_ops: str = typer.Option("seeded", "--random-ops", help="Random nodes (noise injection): one fixed "
                                   "draw ('seeded', from --seed) or 'zeros'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fixed draw that replaces random nodes."),
    straight_through: bool = typer.Option(False, "--straight-through", help="Quantisers z + (q - z) whose "
                                          ".detach() the export lost: identity in the reverse pass, as torch."),
    windows: WindowsOfImage = None,
) -> None:
    """Compute the Local Attribution Map of one window of MODEL's output for IMAGE.

    Warnings (a degenerate window, a large completeness gap, ...) go to stderr and result.json.
    Exit codes: 0 done, 2 bad input (one line on stderr, nothing written).
    """
    from lam_trt.attributor import Attributor
    from lam_trt.commands.windows import report_windows
    from lam_trt.export import GraphOptions
    from lam_trt.many_windows import spec_windows
    from lam_trt.provenance import command_line

    check_figure_options(figure, dpi)
    check_out_dir(out)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    if not warn_gap >= 0:
        raise InputError(f"--warn-gap is a ratio >= 0, got {warn_gap}")
    attributor = Attributor(model, provider=provider,
                            graph_options=GraphOptions(random_ops.lower(), seed, straight_through))
    many = None if windows is None else spec_windows(attributor, image, windows, size, hr, scale)
    with stage("path images", path_points(method.lower(), steps, rule)) as advance:
        result = attributor.attribute(image, window=window, size=size, steps=steps, sigma=sigma,
                                      kernel_size=kernel_size, method=method.lower(), rule=rule, hr=hr,
                                      scale=scale, internal_batch_size=batch_size, progress=advance,
                                      gap_warning=warn_gap, windows=many)
    if many is not None:
        return report_windows(result, out, figure.lower(), dpi, str(image), json_out)
    result.meta["command"] = command_line()
    summary = result.save(out, figure=figure.lower(), dpi=dpi, source_image=str(image))
    print_warnings(result.warnings)
    if json_out:
        print_json(summary)
    else:
        print_summary(summary, out)


def print_warnings(warnings) -> None:
    """Each warning once, one line each, on stderr."""
    from lam_trt.result import unique_warnings

    for w in unique_warnings(warnings):
        err_console.print(f"[yellow]warning:[/] {escape(f'{w.message} [{w.code}]')}", soft_wrap=True)


def print_summary(summary: dict, out: Path) -> None:
    from lam_trt.result import format_gap

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
