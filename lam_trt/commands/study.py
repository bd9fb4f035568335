"""``lam-trt study``: the LAM paper's study (DI against PSNR, DI per architecture) for any set of models."""
from __future__ import annotations

from pathlib import Path

import typer

from lam_trt.commands._common import (JsonOut, KernelSize, OutDir, Provider, ProviderOption, Sigma, Size, Steps,
                                     Threads, WindowsPerImage, err_console, out_console, print_json)


def study_command(
    models: list[Path] = typer.Argument(..., help="ONNX super-resolution models of one scale."),
    hr: list[str] = typer.Option(..., "--hr", help="HR images, folders (their images) or globs; repeatable. "
                                 "Each is downscaled (bicubic) to make the LR input."),
    scale: int = typer.Option(..., "--scale", help="The models' upscaling factor (also the PSNR border)."),
    windows: WindowsPerImage = "center",
    size: Size = 16,
    steps: Steps = 100,
    sigma: Sigma = 1.2,
    kernel_size: KernelSize = 9,
    provider: ProviderOption = Provider("auto"),
    threads: Threads = None,
    out: OutDir = Path("lam-study"),
    json_out: JsonOut = False,
) -> None:
    """PSNR/SSIM (Y, BasicSR), mean DI and its spread, receptive field, parameters and MACs per model;
    a table (OUT/study.md, .csv, .json), DI-vs-PSNR scatter with correlations, DI bar chart (rerun OUT
    to resume or add models)."""
    from lam_trt.batch import BatchParams, WindowSpec
    from lam_trt.study import plan_study, run_study

    params = BatchParams(WindowSpec.parse(windows), size, steps, sigma, kernel_size, "lam")
    plan = plan_study([str(m) for m in models], hr, out, params, scale, provider.value, threads)
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
