"""``lam-trt attribute``: one LAM of one window, written to a folder (and printed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lam_trt.commands._common import (METHODS, RULES, err_console, handle_errors, out_console, print_json,
                                     show_progress)
from lam_trt.errors import InputError


def register(app: typer.Typer) -> None:
    app.command("attribute")(attribute_command)


@handle_errors
def attribute_command(
    model: Path = typer.Argument(..., help="ONNX super-resolution model (NCHW image in, image out)."),
    image: Path = typer.Argument(..., help="The model's LR input (or an HR image with --hr)."),
    window: tuple[int, int] = typer.Option(..., "--window", help="X Y: column and row of the window's "
                                           "top-left corner in SR-output pixels."),
    size: int = typer.Option(16, help="Window size in SR-output pixels."),
    steps: int = typer.Option(100, help="Path steps (the paper uses 100; the authors' notebook 50)."),
    sigma: float = typer.Option(1.2, help="Blur of the baseline."),
    kernel_size: int = typer.Option(9, "--kernel-size", help="Gaussian kernel size (odd)."),
    method: str = typer.Option("lam", help=f"Attribution method: {', '.join(METHODS)}."),
    rule: str = typer.Option("right", help=f"Quadrature rule: {', '.join(RULES)} (right = reference)."),
    hr: bool = typer.Option(False, "--hr", help="IMAGE is an HR image: downscale it by --scale first."),
    scale: Optional[int] = typer.Option(None, help="The model's scale (needed with --hr)."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Path images per run "
                                             "(default: from a memory budget)."),
    out: Path = typer.Option(Path("lam-out"), "--out", help="Output folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    random_ops: str = typer.Option("seeded", "--random-ops", help="Random nodes (noise injection): one fixed "
                                   "draw ('seeded', from --seed) or 'zeros'."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fixed draw that replaces random nodes."),
    straight_through: bool = typer.Option(False, "--straight-through", help="Quantisers z + (q - z) whose "
                                          ".detach() the export lost: identity in the reverse pass, as torch."),
) -> None:
    """Compute the Local Attribution Map of one window of MODEL's output for IMAGE."""
    from lam_trt.attributor import Attributor
    from lam_trt.export.options import GraphOptions
    from lam_trt.report import write_result

    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    attributor = Attributor(model, provider=provider,
                            graph_options=GraphOptions(random_ops.lower(), seed, straight_through))
    with progress_bar(steps) as advance:
        result = attributor.attribute(image, window=window, size=size, steps=steps, sigma=sigma,
                                      kernel_size=kernel_size, method=method.lower(), rule=rule, hr=hr,
                                      scale=scale, internal_batch_size=batch_size, progress=advance)
    summary = write_result(result, out, source_image=str(image))
    if json_out:
        print_json(summary)
    else:
        print_summary(summary, out)


def progress_bar(total: int):
    """A rich progress bar on stderr when a person is watching, else a no-op callback."""
    import contextlib

    if not show_progress():
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    @contextlib.contextmanager
    def bar():
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=True, console=err_console) as p:
            task = p.add_task("path images", total=None)
            yield lambda n: p.advance(task, n)

    return bar()


def print_summary(summary: dict, out: Path) -> None:
    w = summary["window"]
    gap = summary["completeness_gap_relative"]
    out_console.print(
        f"[bold]DI[/] {summary['diffusion_index']:.3f}   Gini {summary['gini']:.4f}   "
        f"window x={w['x']} y={w['y']} size={w['size']}   "
        f"D(F(I)) {summary['detector_input']:.4f}   D(F(I')) {summary['detector_baseline']:.4f}   "
        f"gap {summary['completeness_gap']:.4g}" + (f" ({100 * gap:.2f}%)" if gap is not None else ""))
    rt, t = summary["runtime"], summary["timings_seconds"]
    out_console.print(f"{summary['parameters']['path_points']} path images on {rt['provider']} in "
                      f"{t['integral']:.2f} s (total {t['total']:.2f} s) -> {out}/")
