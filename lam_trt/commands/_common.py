"""What every command shares: each option declared once (one ``Annotated`` alias, one help text),
the choices as str Enums, the option groups of the commands that attribute and draw, the one
progress display of every command, JSON printing and consoles that never wrap a value when piped
(errors: the boundary in lam_trt/cli.py; the one HxW parser: lam_trt.bench.parse_size)."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import sys
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from lam_trt.errors import InputError
from lam_trt.io import json_safe
from lam_trt.kernels.paths import METHODS, RULES
from lam_trt.providers import ORT_NAMES

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


# ------------------------------------------------------------------------------------------ choices

def choices(name: str, values: tuple[str, ...] | list[str]) -> type[Enum]:
    """A str Enum of ``values`` (member names are the values themselves)."""
    return Enum(name, [(v, v) for v in values], type=str)  # type: ignore[return-value]


# The libraries own the names: lam_trt.kernels (methods, quadrature rules), lam_trt.providers.
Method = choices("Method", METHODS)
Rule = choices("Rule", RULES)
Provider = choices("Provider", ["auto", *ORT_NAMES])


def _choice(enum: type[Enum], what: str) -> dict[str, Any]:
    """typer settings that parse ``enum`` case-blind, list its values in --help, and refuse anything
    else with the library's own words (the server's too): "unknown <what> 'x'; choose one of ..."."""
    names = [m.value for m in enum]

    def parse(value: Any) -> Enum:
        if isinstance(value, enum):
            return value
        text = str(value).lower()
        if text not in names:
            raise InputError(f"unknown {what} {text!r}; choose one of {', '.join(names)}")
        return enum(text)

    return {"parser": parse, "metavar": f"[{'|'.join(names)}]"}


# ------------------------------------------------------------------------ options, each declared once

ModelArg = Annotated[Path, typer.Argument(help="ONNX super-resolution model (NCHW image in, image out).")]
WindowXY = Annotated[Optional[tuple[int, int]], typer.Option(
    "--window", help="X Y: column and row of the window's top-left corner in SR-output pixels (default: centred).")]
WINDOWS_HELP = ("Windows of each image: center, grid:K (K x K evenly spaced) or a CSV file of x,y[,size] rows in SR "
                "pixels; attribute runs them all in one run (one folder per window plus summary.csv and summary.json).")
WindowsPerImage = Annotated[str, typer.Option("--windows", help=WINDOWS_HELP)]
Size = Annotated[int, typer.Option("--size", help="Window size in SR-output pixels.")]
Steps = Annotated[int, typer.Option("--steps", help="Path steps (the paper uses 100; the authors' notebook 50).")]
Sigma = Annotated[float, typer.Option("--sigma", help="Blur of the baseline.")]
KernelSize = Annotated[int, typer.Option("--kernel-size", help="Gaussian kernel size (odd).")]
MethodOption = Annotated[Method, typer.Option("--method", help="Attribution method.",
                                              **_choice(Method, "attribution method"))]
RuleOption = Annotated[Rule, typer.Option("--rule", help="Quadrature rule of the path integral (right: the "
                                          "reference's).", **_choice(Rule, "quadrature rule"))]
ProviderOption = Annotated[Provider, typer.Option("--provider", help="ONNX Runtime execution provider (auto: "
                                                  "the best available).", **_choice(Provider, "provider"))]
Hr = Annotated[bool, typer.Option("--hr", help="The images are HR: downscale each by the model's scale first "
                                  "(recorded with the results).")]
Scale = Annotated[Optional[int], typer.Option("--scale", help="With --hr: the scale to downscale by; must match "
                                              "the model's (default: the model's own).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="ONNX Runtime intra-op threads (default: "
                                                "ONNX Runtime's choice).")]
Crop = Annotated[bool, typer.Option("--crop/--no-crop", help="Receptive-field cropping where it is exact "
                                    "(the same numbers, faster).")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Path images per run (default: from a "
                                                  "memory budget).")]
LrSize = Annotated[Optional[str], typer.Option(
    "--lr-size", metavar="HxW", help="LR input size HxW: of bench's synthetic image, inspect's analysis, "
                                     "export's trace and check (default: the model's fixed size, else 64x64).")]
OutDir = Annotated[Path, typer.Option("--out", help="Output folder.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

# attribute's own (in its signature they would make it longer than a function should be)
WarnGap = Annotated[float, typer.Option("--warn-gap", help="Warn when the |relative completeness gap| is above "
                                      "this ratio.")]
RandomOps = Annotated[str, typer.Option("--random-ops", help="Random nodes (noise injection): one fixed draw "
                                        "('seeded', from --seed) or 'zeros'.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the fixed draw that replaces random nodes.")]
StraightThrough = Annotated[bool, typer.Option("--straight-through", help="Quantisers z + (q - z) whose .detach() "
                                               "the export lost: identity in the reverse pass, as torch.")]

# The figure options of every command that draws; lam_trt.render owns the values (rendering needs
# matplotlib, too slow to import for --help: tests/test_cli_ux.py keeps the two equal).
FIGURE_FORMATS = ("png", "pdf", "svg")
FIGURE_DPI = 150
FigureFormat = Annotated[str, typer.Option("--format", help=f"Figures as {', '.join(FIGURE_FORMATS)} "
                                           "(pdf and svg: vector, for papers).")]
FigureDpi = Annotated[int, typer.Option("--dpi", help="Figure resolution in dots per inch.")]


def check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")


# ------------------------------------------------------------------------------------- option groups

@dataclass(frozen=True)
class AttributionOptions:
    """The options of every command that attributes a window (attribute, batch, compare): one
    parameter of the command (see ``option_groups``), the same names, order and defaults in each."""

    size: Size = 16
    steps: Steps = 100
    sigma: Sigma = 1.2
    kernel_size: KernelSize = 9
    method: MethodOption = Method("lam")
    rule: RuleOption = Rule("right")
    hr: Hr = False
    scale: Scale = None
    provider: ProviderOption = Provider("auto")
    threads: Threads = None
    crop: Crop = True

    def attribution(self) -> dict[str, Any]:
        """The keyword arguments of ``Attributor.attribute`` (and ``compare_models``) these set."""
        return {"size": self.size, "steps": self.steps, "sigma": self.sigma, "kernel_size": self.kernel_size,
                "method": self.method.value, "rule": self.rule.value, "hr": self.hr, "scale": self.scale,
                "crop": "auto" if self.crop else False}

    @property
    def path_points(self) -> int:
        return path_points(self.method.value, self.steps, self.rule.value)


@dataclass(frozen=True)
class FigureOptions:
    """The figure options of every command that draws (attribute, compare, demo)."""

    figure: FigureFormat = "png"
    dpi: FigureDpi = FIGURE_DPI

    def check(self) -> None:
        """Refuse bad figure options before any work (the writer checks again, for the API)."""
        if self.figure.lower() not in FIGURE_FORMATS:
            raise InputError(f"--format must be one of {', '.join(FIGURE_FORMATS)}, got {self.figure!r}")
        if not 10 <= self.dpi <= 1200:
            raise InputError(f"--dpi must be between 10 and 1200, got {self.dpi}")

    def save_kwargs(self) -> dict[str, Any]:
        return {"figure": self.figure.lower(), "dpi": self.dpi}


def option_groups(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator of a command: each parameter typed as an option group (a dataclass of Annotated
    options, above) stands for the group's fields in typer's eyes, in its place, and reaches the
    command as one object. So a group's options are declared, ordered and defaulted once."""
    signature = inspect.signature(command, eval_str=True)
    groups = {p.name: p.annotation for p in signature.parameters.values() if dataclasses.is_dataclass(p.annotation)}
    shown: list[inspect.Parameter] = []
    for p in signature.parameters.values():
        if p.name not in groups:
            shown.append(p)
            continue
        hints = typing.get_type_hints(groups[p.name], include_extras=True)
        shown += [inspect.Parameter(f.name, p.kind, default=f.default, annotation=hints[f.name])
                  for f in dataclasses.fields(groups[p.name])]

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        for name, group in groups.items():
            values[name] = group(**{f.name: values.pop(f.name) for f in dataclasses.fields(group)})
        return command(**values)

    run.__signature__ = signature.replace(parameters=shown)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in shown}
    return run


class Exporter(str, Enum):
    """torch's ONNX exporters (lam_trt.export.torch_export.EXPORTERS: that module imports torch)."""

    torchscript = "torchscript"
    dynamo = "dynamo"


ExporterOption = Annotated[Exporter, typer.Option(
    "--exporter", case_sensitive=False,
    help="torch's ONNX exporter: torchscript (opset 17, what TensorRT and every ONNX Runtime provider accept) "
         "or dynamo (torch.export, opset 18 and above).")]


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


def print_warnings(warnings: Iterable[Any]) -> None:
    """Each of a result's warnings once, one line each, on stderr."""
    from lam_trt.result import unique_warnings

    for w in unique_warnings(warnings):
        err_console.print(f"[yellow]warning:[/] {escape(f'{w.message} [{w.code}]')}", soft_wrap=True)


def path_points(method: str, steps: int, rule: str = "right") -> int:
    """How many path images one attribution evaluates (the progress total); the kernels' paths
    have this length (tests/test_cli_ux.py checks it against lam_trt.kernels.make_path)."""
    if method in ("grad", "grad-x-input"):
        return 1
    return steps + (rule == "trapezoid")


# ---- many windows of one image (issue 14: attribute --windows, dimap) --------------------------------
WindowsOfImage = Annotated[Optional[str], typer.Option("--windows", help=WINDOWS_HELP)]
Stride = Annotated[Optional[int], typer.Option(
    "--stride", help="SR pixels between the corners of neighbouring windows (default: the window size).")]
