"""``lam-trt dimap``: the diffusion index of every window on a grid over the SR output, in one run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lam_trt.commands._common import (FIGURE_DPI, RULES, FigureDpi, FigureFormat, Stride, check_figure_options,
                                     out_console, path_points, print_json, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


def register(app: typer.Typer) -> None:
    app.command("dimap")(dimap_command)


def dimap_command(
    model: Path = typer.Argument(..., help="ONNX super-resolution model (NCHW image in, image out)."),
    image: Path = typer.Argument(..., help="The model's LR input (or an HR image with --hr)."),
    stride: Stride = None,
    size: int = typer.Option(16, help="Window size in SR-output pixels."),
    steps: int = typer.Option(50, help="Path steps (the authors' notebook: 50)."),
    rule: str = typer.Option("trapezoid", help=f"Quadrature rule: {', '.join(RULES)}."),
    hr: bool = typer.Option(False, "--hr", help="IMAGE is an HR image: downscale it by the model's scale first."),
    scale: Optional[int] = typer.Option(None, help="With --hr: the scale to downscale by (default: the model's)."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Path images per run (default: from a "
                                             "memory budget)."),
    out: Path = typer.Option(Path("lam-dimap"), "--out", help="Output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    figure: FigureFormat = "png",
    dpi: FigureDpi = FIGURE_DPI,
) -> None:
    """The DI map of IMAGE: LAM of every window of a grid over MODEL's output, in one run.

    Writes dimap.csv and dimap.json (per window: DI, Gini, completeness gap, LR texture), the DI
    over the image beside it (dimap.png) and DI against texture with Spearman's rho (di_vs_texture.png).
    Exit codes: 0 done, 2 bad input (one line on stderr, nothing written).
    """
    from lam_trt.attributor import Attributor
    from lam_trt.dimap import diffusion_map
    from lam_trt.dimap_report import write_dimap
    from lam_trt.provenance import command_line

    check_figure_options(figure, dpi)
    check_out_dir(out)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    attributor = Attributor(model, provider=provider)
    with stage("path images", path_points("lam", steps, rule)) as advance:
        result = diffusion_map(attributor, image, size=size, stride=stride, steps=steps, rule=rule, hr=hr,
                               scale=scale, internal_batch_size=batch_size, progress=advance)
    result.meta["command"] = command_line()
    summary = write_dimap(result, out, figure=figure.lower(), dpi=dpi, source_image=str(image))
    from lam_trt.commands.attribute import print_warnings

    print_warnings(result.warnings)
    if json_out:
        return print_json(summary)
    di, corr = summary["diffusion_index"], summary["di_vs_texture"]
    span = "undefined" if di["mean"] is None else f"mean {di['mean']:.3f} (min {di['min']:.3f}, max {di['max']:.3f})"
    rho = "undefined" if corr["rho"] is None else f"{corr['rho']:.2f} (p {corr['p']:.2g})"
    out_console.print(f"{summary['windows']} windows of {size} px, stride {result.stride}: DI {span}; "
                      f"Spearman rho of DI and texture {rho} -> {out}/")
