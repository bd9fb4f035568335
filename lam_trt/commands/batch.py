"""``lam-trt batch``: LAM of many images and windows into one results file; resumable, with QA gates."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from lam_trt.commands._common import METHODS, err_console, out_console, print_json, show_progress
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
    fail_on_error: bool = typer.Option(False, "--fail-on-error", help="QA gate: exit 1 if any row has an error."),
    ray: bool = typer.Option(False, "--ray", help="Run on a Ray cluster (RAY_ADDRESS, else a new local "
                             "instance); needs the lam-trt\\[ray] extra."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDRESS",
                                              help="Address of the Ray cluster (implies --ray)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Attribute windows of many images; one row per (image, window) in OUT/results.csv."""
    from lam_trt.batch import BatchParams, Gates, WindowSpec, plan_batch, run_batch

    check_out_dir(out)
    use_ray = ray or ray_address is not None
    if use_ray:  # before anything is checked or written: a missing extra is the first thing to say
        from lam_trt.scaleout import require_ray

        require_ray()
    params = BatchParams(WindowSpec.parse(windows), size, steps, sigma, kernel_size, method.lower())
    plan = plan_batch(model, inputs, out, params, fmt.lower(), provider, Gates(min_di, max_gap, fail_on_error))
    with row_progress(len(plan.images) * _windows_per_image(params)) as advance:
        outcome = run_batch(plan, ray=use_ray, ray_address=ray_address, on_row=advance)
    summary = {**outcome.summary, "new_rows": outcome.new_rows, "skipped_rows": outcome.skipped_rows,
               "files": {"results": str(plan.log.path), "run": str(out / "run.json"),
                         "summary": str(out / "summary.json")}}
    if json_out:
        print_json(summary)
    else:
        print_summary(summary)
    if outcome.violations:
        first = outcome.violations[0]
        where = f"{first['image']}" + (f" x={first['window_x']} y={first['window_y']}"
                                        if first["window_x"] is not None else "")
        raise GateError(f"{len(outcome.violations)} of {summary['count']} rows fail the QA gates "
                        f"(first: {where}: {', '.join(first['reasons'])}); see {out / 'summary.json'}")


def _windows_per_image(params: Any) -> int:
    spec = params.windows
    return {"center": 1, "grid": spec.grid ** 2}.get(spec.kind, len(spec.listed))


def row_progress(total: int) -> contextlib.AbstractContextManager[Callable[[Any], None] | None]:
    """A rich bar of rows on stderr when a person is watching, else no callback."""
    if not show_progress():
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    @contextlib.contextmanager
    def bar() -> Iterator[Callable[[Any], None]]:
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=True, console=err_console) as p:
            task = p.add_task("rows", total=total)
            yield lambda _row: p.advance(task)

    return bar()


def print_summary(summary: dict[str, Any]) -> None:
    di, gap = summary["diffusion_index"], summary["completeness_gap_relative_abs"]
    out_console.print(f"[bold]{summary['count']} rows[/] ({summary['ok']} ok, {summary['errors']} errors; "
                      f"{summary['new_rows']} new, {summary['skipped_rows']} from an earlier run)")
    if di["mean"] is not None:
        out_console.print(f"DI mean {di['mean']:.3f}   median {di['median']:.3f}   p5 {di['p5']:.3f}   "
                          f"p95 {di['p95']:.3f}   (min {di['min']:.3f}, max {di['max']:.3f})")
    if gap["max"] is not None:
        out_console.print(f"|relative completeness gap| median {gap['median']:.3g}   max {gap['max']:.3g}")
    gates = summary["gates"]
    if gates["min_di"] is not None or gates["max_gap"] is not None or gates["fail_on_error"]:
        verdict = "[green]passed[/]" if gates["passed"] else f"[red]{gates['violations']} rows fail[/]"
        out_console.print(f"QA gates: {verdict}")
    out_console.print(f"-> {summary['files']['results']}")
