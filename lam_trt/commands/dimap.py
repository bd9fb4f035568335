"""``lam-trt dimap``: the diffusion index of every window on a grid over the SR output, in one run."""
from __future__ import annotations

from pathlib import Path

import typer

from lam_trt.commands._common import (AttributionOptions, BatchSize, FigureOptions, JsonOut, ModelArg, OutDir, Stride,
                                     check_batch_size, option_groups, out_console, print_json, print_warnings,
                                     stage)
from lam_trt.io import check_out_dir


@option_groups
def dimap_command(
    model: ModelArg,
    image: Path = typer.Argument(..., help="The model's LR input (or an HR image with --hr)."),
    stride: Stride = None,
    options: AttributionOptions = AttributionOptions(),
    batch_size: BatchSize = None,
    out: OutDir = Path("lam-dimap"),
    json_out: JsonOut = False,
    figures: FigureOptions = FigureOptions(),
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

    figures.check()
    check_out_dir(out)
    check_batch_size(batch_size)
    attributor = Attributor(model, provider=options.provider.value, threads=options.threads)
    with stage("path images", options.path_points) as advance:
        result = diffusion_map(attributor, image, stride=stride, **options.attribution(),
                               internal_batch_size=batch_size, progress=advance)
    result.meta["command"] = command_line()
    summary = write_dimap(result, out, **figures.save_kwargs(), source_image=str(image))
    print_warnings(result.warnings)
    if json_out:
        return print_json(summary)
    di, corr = summary["diffusion_index"], summary["di_vs_texture"]
    span = "undefined" if di["mean"] is None else f"mean {di['mean']:.3f} (min {di['min']:.3f}, max {di['max']:.3f})"
    rho = "undefined" if corr["rho"] is None else f"{corr['rho']:.2f} (p {corr['p']:.2g})"
    out_console.print(f"{summary['windows']} windows of {options.size} px, stride {result.stride}: DI {span}; "
                      f"Spearman rho of DI and texture {rho} -> {out}/")
