"""What every command shares: JSON printing, progress bars (errors: the boundary in lam_trt/cli.py)."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from lam_trt.io import json_safe

# For help texts and early checks: lam_trt.kernels owns these names, but importing it here would put
# SciPy on every CLI start (``--help`` included); tests/test_cli_attribute.py keeps the two equal.
METHODS = ("lam", "ig", "grad", "grad-x-input")
RULES = ("right", "trapezoid", "gauss-legendre")
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def show_progress() -> bool:
    """Progress bars only when a person watches stderr."""
    return sys.stderr.isatty()
