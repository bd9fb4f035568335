"""Errors users can cause, each with the exit code the CLI returns for it."""
from __future__ import annotations


class LamTrtError(Exception):
    """Base of every error lam-trt reports to a user as one line (CLI exit code 2)."""

    exit_code = 2


class InputError(LamTrtError):
    """A file, image, model or parameter the user gave cannot be used."""


class ModelError(InputError):
    """The ONNX model is unreadable or not a single-image-in, single-image-out network."""


class UnsupportedOpError(ModelError):
    """Ops on the gradient path that have no vector-Jacobian rule, named before anything runs."""

    def __init__(self, nodes: list[tuple[str, str]], reason: str = ""):
        self.nodes = nodes  # (op_type, node name)
        self.op_types = sorted({t for t, _ in nodes})
        listed = ", ".join(f"{t} ({n})" for t, n in nodes[:8])
        more = f" and {len(nodes) - 8} more" if len(nodes) > 8 else ""
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"no gradient rule for op type(s) {', '.join(self.op_types)}: {listed}{more}{detail}")


class ProviderError(LamTrtError):
    """The execution provider asked for is not available here."""


class ResourceError(LamTrtError):
    """This machine lacks what the work needs (memory, disk, a writable folder): not the input's
    fault, so a batch retries such rows on its next run."""


class GateError(LamTrtError):
    """A QA gate (--min-di, --max-gap) was violated (CLI exit code 1)."""

    exit_code = 1
