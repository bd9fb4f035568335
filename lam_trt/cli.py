"""The ``lam-trt`` command: a thin typer layer; each command group lives in lam_trt/commands/."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="lam-trt",
    help="Local Attribution Maps for super-resolution networks, from a plain ONNX file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules are imported by name so that a missing optional extra (torch, ray) only
# matters when its command runs, never for `lam-trt attribute`.
COMMAND_MODULES = ("attribute", "demo", "export", "inspect", "bench", "batch", "compare", "study")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"lam_trt.commands.{_name}")
    except ModuleNotFoundError as _e:  # a command module not written yet, never a missing extra
        if _e.name != f"lam_trt.commands.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
