"""What every command shares: JSON printing, consoles that never wrap a value when piped, figure
options, and the one progress display of every command (errors: the boundary in lam_trt/cli.py)."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleDimensions

from lam_trt.errors import InputError
from lam_trt.io import json_safe

# For help texts and early checks: lam_trt.kernels owns these names, but importing it here would put
# SciPy on every CLI start (``--help`` included); tests/test_cli_attribute.py keeps the two equal.
METHODS = ("lam", "ig", "grad", "grad-x-input")
RULES = ("right", "trapezoid", "gauss-legendre")
UNWRAPPED_WIDTH = 10_000  # "no wrapping": wider than any line lam-trt prints


class PipeConsole(Console):
    """A rich console that wraps at the terminal's width, and never when its stream is a pipe or a
    file (``lam-trt ... | cat``, CI logs): there rich would fold lines, and values, at 80 columns.
    Decided at each print, since the stream can change (tests swap sys.stdout)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self.is_terminal or self._width is not None:
            return size
        return ConsoleDimensions(UNWRAPPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


# The figure options of every command that draws (attribute, compare); lam_trt.render owns the values.
FIGURE_FORMATS = ("png", "pdf", "svg")
FIGURE_DPI = 150
FigureFormat = Annotated[str, typer.Option("--format", help=f"Figures as {', '.join(FIGURE_FORMATS)} "
                                           "(pdf and svg: vector, for papers).")]
FigureDpi = Annotated[int, typer.Option("--dpi", help="Figure resolution in dots per inch.")]


class Exporter(str, Enum):
    """torch's ONNX exporters (lam_trt.export.torch_export.EXPORTERS: that module imports torch)."""

    torchscript = "torchscript"
    dynamo = "dynamo"


ExporterOption = Annotated[Exporter, typer.Option(
    "--exporter", case_sensitive=False,
    help="torch's ONNX exporter: torchscript (opset 17, what TensorRT and every ONNX Runtime provider accept) "
         "or dynamo (torch.export, opset 18 and above).")]


def check_figure_options(figure: str, dpi: int) -> None:
    """Refuse bad figure options before any work (the writer checks again, for the API)."""
    if figure.lower() not in FIGURE_FORMATS:
        raise InputError(f"--format must be one of {', '.join(FIGURE_FORMATS)}, got {figure!r}")
    if not 10 <= dpi <= 1200:
        raise InputError(f"--dpi must be between 10 and 1200, got {dpi}")


err_console = PipeConsole(stderr=True, highlight=False)
out_console = PipeConsole(highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


# ------------------------------------------------------------------------------------------ progress

Advance = Callable[[int], None]   # called with the number of items just finished


@contextlib.contextmanager
def stage(description: str, total: int | None = None) -> Iterator[Advance]:
    """Progress of one stage of a command's work, on stderr; every command shows progress this way.

    On a terminal: a live bar (done/total when ``total`` is known, else a spinner), gone when the
    stage ends. Elsewhere (a pipe, a CI log): one plain line when the stage ends,
    "lam-trt: <description> [done/total] in 1.23 s". A stage that raises prints nothing, so when
    the input is bad the error stays the only line.
    """
    start, done = time.perf_counter(), [0]
    if err_console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

        columns = [SpinnerColumn(), "{task.description}", BarColumn()]
        columns += [MofNCompleteColumn()] if total is not None else []
        with Progress(*columns, TimeElapsedColumn(), transient=True, console=err_console) as live:
            task = live.add_task(description, total=total)
            yield lambda n=1: live.advance(task, n)
        return

    def advance(n: int = 1) -> None:
        done[0] += n

    yield advance
    count = f" {done[0]}/{total}" if total is not None else ""
    err_console.print(f"lam-trt: {description}{count} in {time.perf_counter() - start:.2f} s",
                      markup=False, soft_wrap=True)


def path_points(method: str, steps: int, rule: str) -> int:
    """How many path images one attribution evaluates (the progress total); the kernels' paths
    have this length (tests/test_cli_ux.py checks it against lam_trt.kernels.make_path)."""
    if method in ("grad", "grad-x-input"):
        return 1
    return steps + (rule == "trapezoid")
