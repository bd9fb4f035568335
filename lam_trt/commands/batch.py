"""``lam-trt batch``: LAM of many images and windows into one results file; resumable, with QA gates."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from lam_trt.commands._common import (AttributionOptions, JsonOut, ModelArg, OutDir, WindowsPerImage, err_console,
                                     option_groups, out_console, print_json, stage)
from lam_trt.errors import GateError
from lam_trt.io import check_out_dir


# batch's own options (the shared ones: lam_trt/commands/_common.py)
ResultsFormat = Annotated[str, typer.Option("--format", help="results.csv or results.jsonl.")]
MinDi = Annotated[Optional[float], typer.Option("--min-di", help="QA gate: exit 1 if any row has a lower "
                                                "diffusion index.")]
MaxGap = Annotated[Optional[float], typer.Option("--max-gap", help="QA gate: exit 1 if any row's |relative "
                                                 "completeness gap| is above this ratio.")]
AllowErrors = Annotated[bool, typer.Option("--allow-errors", help="Do not fail the run on rows with an error "
                                           "(they are still reported).")]
AllowDegenerate = Annotated[bool, typer.Option("--allow-degenerate", help="Let --min-di/--max-gap pass rows whose "
                                               "DI or relative gap is undefined (degenerate windows).")]
FailOnWarning = Annotated[list[str], typer.Option("--fail-on-warning", metavar="CODE", help="QA gate: exit 1 if "
                                                  "any row carries this warning (repeatable; 'all': any).")]
FailOnError = Annotated[bool, typer.Option("--fail-on-error", hidden=True, help="Kept for old scripts: error rows "
                                           "fail by default now.")]
Ray = Annotated[bool, typer.Option("--ray", help="Run on a Ray cluster (RAY_ADDRESS, else a new local instance); "
                                   "needs the lam-trt\\[ray] extra.")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDRESS", help="Address of the Ray "
                                                   "cluster (implies --ray).")]


@option_groups
def batch_command(
    model: ModelArg,
    inputs: list[str] = typer.Argument(..., help="Images, folders (their images) and globs."),
    windows: WindowsPerImage = "center",
    options: AttributionOptions = AttributionOptions(),
    out: OutDir = Path("lam-batch"),
    fmt: ResultsFormat = "csv",
    min_di: MinDi = None,
    max_gap: MaxGap = None,
    allow_errors: AllowErrors = False,
    allow_degenerate: AllowDegenerate = False,
    fail_on_warning: FailOnWarning = [],  # noqa: B006 - typer copies it
    fail_on_error: FailOnError = False,
    ray: Ray = False,
    ray_address: RayAddress = None,
    json_out: JsonOut = False,
) -> None:
    """Attribute windows of many images; one row per (image, window) in OUT/results.csv (rerun to resume).

    Exit codes: 0 every QA gate passed; 1 a gate failed (a row with an error fails unless
    --allow-errors; --min-di/--max-gap fail on degenerate windows unless --allow-degenerate, and
    when no row was measured); 2 bad input (one line on stderr).
    """
    from lam_trt.batch import BatchParams, Gates, WindowSpec, plan_batch

    check_out_dir(out)
    ray_address = ray_cluster(ray, ray_address)  # first: a missing extra is the first thing to say
    params = BatchParams(WindowSpec.parse(windows), **{**options.attribution(), "crop": options.crop})
    gates = Gates(min_di, max_gap, allow_errors and not fail_on_error, allow_degenerate, tuple(fail_on_warning))
    plan = plan_batch(model, inputs, out, params, fmt.lower(), options.provider.value, gates, threads=options.threads)
    outcome = run_with_progress(plan, ray_address)
    summary = {**outcome.summary, "new_rows": outcome.new_rows, "skipped_rows": outcome.skipped_rows,
               "files": {"results": str(plan.log.path), "run": str(out / "run.json"),
                         "summary": str(out / "summary.json")}}
    print_warnings(summary["warnings"], outcome.warning_messages)
    if json_out:
        print_json(summary)
    else:
        print_summary(summary)
    if outcome.violations:
        raise gate_error(outcome.violations, summary["count"], out)


def ray_cluster(ray: bool, address: str | None) -> str | None:
    """The Ray address to run on ("": Ray's default), None for this machine; Ray is checked here."""
    if address is None and not ray:
        return None
    from lam_trt.scaleout import require_ray

    require_ray()
    return address or ""


def run_with_progress(plan: Any, ray_address: str | None) -> Any:
    """Run the plan (on Ray when ``ray_address`` is not None; "": Ray's default), a row at a time."""
    from lam_trt.batch import run_batch

    with stage("rows", len(plan.images) * _windows_per_image(plan.params)) as advance:
        if ray_address is None:
            return run_batch(plan, on_row=lambda _row: advance(1))
        from lam_trt.scaleout import run_batch_on_ray

        return run_batch_on_ray(plan, ray_address or None, on_row=lambda _row: advance(1))


def gate_error(violations: list[dict[str, Any]], count: int, out: Path) -> GateError:
    first = violations[0]
    where = (printable(first["image"]) if first["image"] is not None else "the run") + (
        f" x={first['window_x']} y={first['window_y']}" if first["window_x"] is not None else "")
    return GateError(f"{len(violations)} failures of the QA gates over {count} rows "
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
