"""``lam-trt attribute``: one LAM of one window, written to a folder (and printed)."""
from __future__ import annotations

from pathlib import Path

import typer

from lam_trt.commands._common import (AttributionOptions, BatchSize, FigureOptions, JsonOut, ModelArg, OutDir,
                                     RandomOps, Seed, StraightThrough, WarnGap, WindowsOfImage, WindowXY,
                                     check_batch_size, option_groups, out_console, print_json, print_warnings, stage)
from lam_trt.errors import InputError
from lam_trt.io import check_out_dir


@option_groups
def attribute_command(
    model: ModelArg,
    image: Path = typer.Argument(..., help="The model's LR input (or an HR image with --hr)."),
    window: WindowXY = None,
    options: AttributionOptions = AttributionOptions(),
    warn_gap: WarnGap = 0.05,
    batch_size: BatchSize = None,
    out: OutDir = Path("lam-out"),
    json_out: JsonOut = False,
    figures: FigureOptions = FigureOptions(),
    random_ops: RandomOps = "seeded",
    seed: Seed = 0,
    straight_through: StraightThrough = False,
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

    figures.check()
    check_out_dir(out)
    check_batch_size(batch_size)
    if not warn_gap >= 0:
        raise InputError(f"--warn-gap is a ratio >= 0, got {warn_gap}")
    attributor = Attributor(model, provider=options.provider.value, threads=options.threads,
                            graph_options=GraphOptions(random_ops.lower(), seed, straight_through))
    many = None if windows is None else spec_windows(attributor, image, windows, options.size, options.hr,
                                                     options.scale)
    with stage("path images", options.path_points) as advance:
        result = attributor.attribute(image, window=window, **options.attribution(), internal_batch_size=batch_size,
                                      progress=advance, gap_warning=warn_gap, windows=many)
    if many is not None:
        return report_windows(result, out, figures.figure.lower(), figures.dpi, str(image), json_out)
    result.meta["command"] = command_line()
    summary = result.save(out, **figures.save_kwargs(), source_image=str(image))
    print_warnings(result.warnings)
    if json_out:
        print_json(summary)
    else:
        print_summary(summary, out)


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
