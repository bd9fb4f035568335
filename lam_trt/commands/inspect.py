"""``lam-trt inspect``: interface, size, cost, ops and receptive field of an ONNX SR model."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lam_trt.commands._common import JsonOut, LrSize, ModelArg, err_console, out_console, print_json


def inspect_command(model: ModelArg, lr_size: LrSize = None, json_output: JsonOut = False) -> None:
    """Describe an ONNX SR model: its interface, scale, size, cost, ops and receptive field.

    Inputs, outputs, scale, parameters, ops, ops without a gradient rule, GFLOPs per LR pixel and the
    theoretical receptive field. Exit code 1 when an op has no gradient rule (the model cannot be
    attributed), so a script can gate on it."""
    from lam_trt.bench import parse_size
    from lam_trt.export import inspect_model

    report = inspect_model(model, parse_size(lr_size) if lr_size else None)
    if json_output:
        print_json(report)
    else:
        _print(model, report)
    if report["unsupported_ops"]:
        err_console.print(f"lam-trt: this model cannot be attributed: no gradient rule for "
                          f"{', '.join(report['unsupported_ops'])}", soft_wrap=True)
        raise typer.Exit(1)


def _shape(dims: list) -> str:
    return "x".join(str(d) for d in dims)


def _print(model: Path, report: dict) -> None:
    table = Table(title=str(model), show_header=False, title_justify="left", box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for io in ("inputs", "outputs"):
        for item in report[io]:
            table.add_row(io[:-1], f"{item['name']}  {_shape(item['shape'])}")
    h, w = report["analysis_size"]
    table.add_row("scale", f"x{report['scale']}")
    table.add_row("channels", f"{report['channels']['input']} -> {report['channels']['output']}")
    table.add_row("parameters", f"{report['parameters']:,}")
    table.add_row("GFLOPs / LR pixel", f"{report['gflops_per_lr_pixel']:.4g}  (at {h}x{w})")
    rf = report["receptive_field"]
    table.add_row("receptive field", rf if isinstance(rf, str) else f"{rf} x {rf} LR pixels")
    table.add_row("ops", ", ".join(f"{op} {n}" for op, n in report["ops"].items()))
    missing = report["unsupported_ops"]
    table.add_row(
        "no gradient rule",
        ", ".join(missing) if missing else "none (every op can be differentiated)",
    )
    out_console.print(table, soft_wrap=True)
