"""What every command shares: one-line errors with exit codes, JSON printing, progress bars."""
from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from lam_trt.errors import LamTrtError

F = TypeVar("F", bound=Callable[..., Any])
# For help texts and early checks: lam_trt.kernels owns these names, but importing it here would put
# SciPy on every CLI start (``--help`` included); tests/test_cli_attribute.py keeps the two equal.
METHODS = ("lam", "ig", "grad", "grad-x-input")
RULES = ("right", "trapezoid", "gauss-legendre")
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def fail(message: str, code: int = 2) -> None:
    """Print one line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, markup=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn LamTrtError (and a few OS errors) into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LamTrtError as e:
            fail(_one_line(str(e)), e.exit_code)
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            fail(_one_line(f"{e.strerror}: {e.filename}"), 2)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def show_progress() -> bool:
    """Progress bars only when a person watches stderr."""
    return sys.stderr.isatty()
