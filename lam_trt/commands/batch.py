"""``lam-trt batch``: LAM of many images and windows into one results file; resumable, with QA gates."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from lam_trt.commands._common import METHODS, err_console, out_console, print_json, stage
from lam_trt.errors import GateError
from lam_trt.io import check_out_dir


def register(app: typer.Typer) -> None:
    app.command("batch")(batch_command)


def batch_command(
    model: Path = typer.Argument(..., help="ONNX super-resolution model."),
    inputs: list[str] = typer.Argument(..., help="Images, folders (their images) and globs."),
    windows: str = typer.Option("center", "--windows", help="center, grid:K (K x K evenly spaced windows) "
                                "or a CSV file of x,y[,size] rows in SR pixels."),
    size: int = typer.Option(16, help="Window size in SR-output pixels (a CSV size column overrides it)."),
    steps: int = typer.Option(100, help="Path steps."),
    sigma: float = typer.Option(1.2, help="Blur of the baseline."),
    kernel_size: int = typer.Option(9, "--kernel-size", help="Gaussian kernel size (odd)."),
    method: str = typer.Option("lam", help=f"Attribution method: {', '.join(METHODS)}."),
    provider: str = typer.Option("auto", help="auto, cpu, cuda or tensorrt."),
    out: Path = typer.Option(Path("lam-batch"), "--out", help="Output folder (rerun to resume)."),
    fmt: str = typer.Option("csv", "--format", help="results.csv or results.jsonl."),
    min_di: Optional[float] = typer.Option(None, "--min-di", help="QA gate: exit 1 if any row has a "
                                           "lower diffusion index."),
    max_gap: Optional[float] = typer.Option(None, "--max-gap", help="QA gate: exit 1 if any row's "
                                            "|relative completeness gap| is above this ratio."),
    allow_errors: bool = typer.Option(False, "--allow-errors", help="Do not fail the run on rows with an "
                                      "error (they are still reported)."),
    allow_degenerate: bool = typer.Option(False, "--allow-degenerate", help="Let --min-di/--max-gap pass "
                                          "rows whose DI or relative gap is undefined (degenerate windows)."),
    fail_on_warning: list[str] = typer.Option([], "--fail-on-warning", metavar="CODE", help="QA gate: exit 1 "
                                              "if any row carries this warning (repeatable; 'all': any)."),
    fail_on_error: bool = typer.Option(False, "--fail-on-error", hidden=True,
                                       help="Kept for old scripts: error rows fail by default now."),
    ray: bool = typer.Option(False, "--ray", help="Run on a Ray cluster (RAY_ADDRESS, else a new local "
                             "instance); needs the lam-trt\\[ray] extra."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDRESS",
                                              help="Address of the Ray cluster (implies --ray)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Attribute windows of many images; one row per (image, window) in OUT/results.csv.

    Exit codes: 0 every QA gate passed; 1 a gate failed (a row with an error fails unless
    --allow-errors; --min-di/--max-gap fail on degenerate windows unless --allow-degenerate, and
    when no row was measured); 2 bad input (one line on stderr).
    """
    from lam_trt.batch import BatchParams, Gates, WindowSpec, plan_batch, run_batch

    check_out_dir(out)
    use_ray = ray or ray_address is not None
    if use_ray:  # before anything is checked or written: a missing extra is the first thing to say
        from lam_trt.scaleout import require_ray

        require_ray()
    params = BatchParams(WindowSpec.parse(windows), size, steps, sigma, kernel_size, method.lower())
    gates = Gates(min_di, max_gap, allow_errors and not fail_on_error, allow_degenerate, tuple(fail_on_warning))
    plan = plan_batch(model, inputs, out, params, fmt.lower(), provider, gates)
    with stage("rows", len(plan.images) * _windows_per_image(params)) as advance:
        outcome = run_batch(plan, ray=use_ray, ray_address=ray_address, on_row=lambda _row: advance(1))
    summary = {**outcome.summary, "new_rows": outcome.new_rows, "skipped_rows": outcome.skipped_rows,
               "files": {"results": str(plan.log.path), "run": str(out / "run.json"),
                         "summary": str(out / "summary.json")}}
    print_warnings(summary["warnings"], outcome.warning_messages)
    if json_out:
        print_json(summary)
    else:
        print_summary(summary)
    if outcome.violations:
        first = outcome.violations[0]
        where = (printable(first["image"]) if first["image"] is not None else "the run") + (
            f" x={first['window_x']} y={first['window_y']}" if first["window_x"] is not None else "")
        raise GateError(f"{len(outcome.violations)} failures of the QA gates over {summary['count']} rows "
                        f"(first: {where}: {', '.join(first['reasons'])}); see {printable(str(out / 'summary.json'))}")


def _windows_per_image(params: Any) -> int:
    spec = params.windows
    return {"center": 1, "grid": spec.grid ** 2}.get(spec.kind, len(spec.listed))


def printable(name: str) -> str:
    """A file name safe to print: bytes that are not UTF-8 shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def print_warnings(counts: dict[str, int], messages: dict[str, str]) -> None:
    """Each warning code once on stderr: how many rows carry it, and one of its messages."""
    for code, n in counts.items():
        example = messages.get(code, "see the warnings column")
        err_console.print(f"[yellow]warning:[/] {escape(f'{n} rows: {example} [{code}]')}", soft_wrap=True)


def print_summary(summary: dict[str, Any]) -> None:
    di, gap = summary["diffusion_index"], summary["completeness_gap_relative_abs"]
    out_console.print(f"[bold]{summary['count']} rows[/] ({summary['measured']} measured, "
                      f"{summary['degenerate']} degenerate, {summary['errors']} errors; "
                      f"{summary['new_rows']} new, {summary['skipped_rows']} from an earlier run)")
    if di["mean"] is not None:
        out_console.print(f"DI mean {di['mean']:.3f}   median {di['median']:.3f}   p5 {di['p5']:.3f}   "
                          f"p95 {di['p95']:.3f}   (min {di['min']:.3f}, max {di['max']:.3f})")
    if gap["max"] is not None:
        out_console.print(f"|relative completeness gap| median {gap['median']:.3g}   max {gap['max']:.3g}")
    gates = summary["gates"]
    verdict = "[green]passed[/]" if gates["passed"] else f"[red]{gates['violations']} failures[/]"
    out_console.print(f"QA gates: {verdict}")
    out_console.print(f"-> {escape(printable(summary['files']['results']))}")
