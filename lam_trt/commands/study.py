"""``lam-trt study``: the LAM paper's study (DI against PSNR, DI per architecture) for any set of models."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lam_trt.commands._common import err_console, out_console, print_json


def register(app: typer.Typer) -> None:
    app.command("study")(study_command)


def study_command(
    models: list[Path] = typer.Argument(..., help="ONNX super-resolution models of one scale."),
    hr: list[str] = typer.Option(..., "--hr", help="HR images, folders (their images) or globs; repeatable. "
                                 "Each is downscaled (bicubic) to make the LR input."),
    scale: int = typer.Option(..., "--scale", help="The models' upscaling factor (also the PSNR border)."),
    windows: str = typer.Option("center", "--windows", help="center, grid:K or a CSV file of x,y[,size] rows "
                                "in SR pixels: the windows whose DI is averaged."),
    size: int = typer.Option(16, help="Window size in SR-output pixels."),
    steps: int = typer.Option(100, help="Path steps."),
    sigma: float = typer.Option(1.2, help="Blur of the baseline."),
    kernel_size: int = typer.Option(9, "--kernel-size", help="Gaussian kernel size (odd)."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads (default: all cores)."),
    out: Path = typer.Option(Path("lam-study"), "--out", help="Output folder (rerun to resume or add models)."),
    json_out: bool = typer.Option(False, "--json", help="Print the table and correlations as JSON."),
) -> None:
    """PSNR/SSIM (Y, BasicSR), mean DI and its spread, receptive field, parameters and MACs per model;
    a table (OUT/study.md, .csv, .json), DI-vs-PSNR scatter with correlations, DI bar chart."""
    from lam_trt.batch import BatchParams, WindowSpec
    from lam_trt.study import plan_study, run_study

    params = BatchParams(WindowSpec.parse(windows), size, steps, sigma, kernel_size, "lam")
    plan = plan_study([str(m) for m in models], hr, out, params, scale, provider, threads)
    result = run_study(plan, progress=lambda line: err_console.print(line, soft_wrap=True, markup=False))
    if json_out:
        print_json({k: result[k] for k in ("table", "correlations", "new_rows", "kept_rows", "errors", "files")})
        return
    from lam_trt.study import markdown_table

    out_console.print(markdown_table(result["table"]), markup=False, soft_wrap=True)
    corr = result["correlations"]
    if corr.get("spearman"):
        out_console.print(f"Pearson r(log DI, PSNR) {corr['pearson_log_di']['r']:.3f}, Spearman rho "
                          f"{corr['spearman']['rho']:.3f} over {corr['models']} models")
    else:
        out_console.print(f"correlations: {corr['note']}")
    out_console.print(f"{result['new_rows']} new rows, {result['kept_rows']} from an earlier run, "
                      f"{result['errors']} with errors -> {result['files']['markdown']}", markup=False)
