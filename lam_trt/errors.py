"""Errors users can cause, each with the exit code the CLI returns for it, and the one line that
says what went wrong for the errors the environment causes (disk, memory, permissions)."""
from __future__ import annotations

import errno


class LamTrtError(Exception):
    """Base of every error lam-trt reports to a user as one line (CLI exit code 2)."""

    exit_code = 2


class InputError(LamTrtError):
    """A file, image, model or parameter the user gave cannot be used."""


class ModelError(InputError):
    """The ONNX model is unreadable or not a single-image-in, single-image-out network."""


class OutputError(InputError):
    """An output path (``--out``, ``-o``) cannot be written: a file in the way, no permission, no space."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason  # the operating system's words, when a write failed


class MemoryBudgetError(InputError):
    """The work cannot fit the memory there is, said before anything large is allocated."""


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


class LamTrtWarning(UserWarning):
    """Something a user should know, the work goes on; the CLI prints it as one ``warning:`` line."""


# ONNX Runtime raises its own exception types (onnxruntime.capi...Fail, RuntimeException); these
# fragments of their messages mean the allocator ran out, not that the model is wrong.
ALLOCATION_FAILURES = ("Failed to allocate memory", "bad_alloc", "out of memory", "CUDNN_STATUS_ALLOC_FAILED",
                       "CUBLAS_STATUS_ALLOC_FAILED")
MEMORY_HINT = "crop the image around the window or use a smaller one, try --batch-size 1, or use a machine with more memory"


def one_line(text: str) -> str:
    """Any message as one line: whitespace runs (newlines included) become one space."""
    return " ".join(str(text).split())


def user_message(error: BaseException) -> tuple[str, int] | None:
    """(one line, exit code) for an error a user (or their machine) caused; None for a bug."""
    if isinstance(error, LamTrtError):
        return one_line(str(error)), error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(error, MemoryError):  # NumPy's "Unable to allocate 73.2 GiB ..." is one
        detail = one_line(str(error)) or "a memory allocation failed"
        return f"out of memory: {detail}; {MEMORY_HINT}", 2
    if isinstance(error, OSError) and error.errno is not None:
        return os_message(error), 2
    text = str(error)
    if type(error).__module__.startswith("onnxruntime") and any(s in text for s in ALLOCATION_FAILURES):
        return f"out of memory: ONNX Runtime could not allocate memory; {MEMORY_HINT}", 2
    return None


def os_message(error: OSError) -> str:
    """'<what>: <file>' for an OSError, naming the files involved and nothing internal."""
    names = [str(f) for f in (error.filename, error.filename2) if f is not None]
    what = error.strerror or errno.errorcode.get(error.errno or 0, "input/output error")
    return one_line(f"{what}: {' -> '.join(names)}" if names else what)
