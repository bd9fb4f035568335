"""The ``lam-trt`` command: a thin typer layer; each command group lives in lam_trt/commands/.

Every command runs inside one error boundary (``ErrorBoundary.invoke``): a mistake of the user's,
or of their machine (disk full, read-only folder, out of memory), ends as one plain line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Optional

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 runs its own copy of click: its exceptions are not click's
    from typer._click.exceptions import ClickException
except ImportError:
    from click.exceptions import ClickException

from lam_trt.commands import attribute, batch, bench, cache, compare, demo, dimap, export, inspect, serve, study
from lam_trt.errors import LamTrtWarning, one_line, user_message


class ErrorBoundary(TyperGroup):
    """The group every command runs under: known errors -> one line, their exit code."""

    def invoke(self, ctx: Any) -> Any:
        quiet_libraries()
        warnings.showwarning = show_warning
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except ClickException as error:  # a bad option value: one line, not typer's box
            usage = getattr(error, "ctx", None)
            hint = f" (see `{usage.command_path} --help`)" if usage is not None else ""
            print_error(one_line(error.format_message()) + hint, error.exit_code)
            raise typer.Exit(error.exit_code) from None
        except BaseException as error:  # KeyboardInterrupt included: it is a user's act
            known = user_message(error)
            if known is None:
                raise
            print_error(*known)
            raise typer.Exit(known[1]) from None


def print_error(message: str, code: int = 2) -> None:
    """``error: <message>`` as one plain line (no colour codes, no wrapping) on stderr."""
    sys.stderr.write(f"{'error' if code != 130 else 'stopped'}: {message}\n")
    sys.stderr.flush()


_show_other_warning = warnings.showwarning


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    """lam-trt's own warnings as one ``warning:`` line on stderr; any other as Python shows it."""
    if issubclass(category, LamTrtWarning):
        sys.stderr.write(f"warning: {' '.join(str(message).split())}\n")
    else:
        _show_other_warning(message, category, filename, lineno, file, line)


def quiet_libraries() -> None:
    """Nothing but lam-trt's own lines on stderr: ONNX Runtime logs only fatal errors (every other
    one reaches lam-trt as an exception, said in one line), and NumPy's floating-point warnings
    (0/0 on flat windows) are the metrics' business, reported by them."""
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(4)
    except ImportError:
        pass
    warnings.filterwarnings("ignore", message=".* encountered in ", category=RuntimeWarning)


app = typer.Typer(
    name="lam-trt",
    cls=ErrorBoundary,
    help="Local Attribution Maps for super-resolution networks, from a plain ONNX file.\n\n"
         "Exit codes: 0 done (batch: every QA gate passed), 1 a QA gate failed, 2 bad input.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from lam_trt import __version__

        typer.echo(f"lam-trt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_print_version, is_eager=True,
                                                 help="Print lam-trt's version and exit.")) -> None:
    """Options of ``lam-trt`` itself, before any command."""


# The commands, in the order --help lists them. Each module imports its heavy dependencies (torch,
# ray, uvicorn) inside the command, so a missing optional extra only matters when that command runs.
app.command("attribute")(attribute.attribute_command)
app.command("demo")(demo.demo_command)
app.command("export")(export.export_command)
app.command("inspect")(inspect.inspect_command)
app.command("bench")(bench.bench_command)
app.command("batch")(batch.batch_command)
app.command("compare")(compare.compare_command)
app.add_typer(cache.cache_app, name="cache")
app.command("serve")(serve.serve_command)
app.command("study")(study.study_command)
app.command("dimap")(dimap.dimap_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
