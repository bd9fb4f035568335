"""How a result was made: where its input came from (the file and its sha256, and what was done to
it on loading), and the model, parameters, runtime and versions of the run.

Kept apart from ``images`` (which converts) so that reading the record never changes the pixels:
the conversions are the ones ``images.read_image`` reports having done.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_input(source: Any, channels: int, pixels: np.ndarray, conversions: Sequence[str]) -> dict[str, Any]:
    """{path, sha256, source (mode or array shape), conversions, pixels_sha256} of an image source
    loaded as ``pixels`` (float32 CHW) for a model with ``channels`` input channels; ``conversions``:
    what the loader did (``images.LoadedImage.conversions``)."""
    record: dict[str, Any] = {"path": None, "sha256": None, "channels": channels}
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        record.update(path=str(path), absolute_path=str(path.resolve()), sha256=file_sha256(path))
        with Image.open(path) as img:  # reads the header only
            record["source"] = {"format": "file", "mode": img.mode}
    elif isinstance(source, Image.Image):
        record["source"] = {"format": "PIL image", "mode": source.mode}
    else:
        record["source"] = {"format": "array", "shape": list(np.shape(source)),
                            "dtype": str(np.asarray(source).dtype)}
    record["conversions"] = [{"step": step} for step in conversions]
    record["pixels_sha256"] = pixels_sha256(pixels)
    return record


def pixels_sha256(pixels: np.ndarray) -> str:
    """sha256 of the float32 pixels the model is given: the same input, bit for bit, or not."""
    return hashlib.sha256(np.ascontiguousarray(pixels, np.float32).tobytes()).hexdigest()


def command_line() -> str:
    """This process's command line as a shell would take it, the program by its name."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def timestamp() -> str:
    """Now, in UTC, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def describe_run(model: Any, runner: Any, graph: dict[str, Any], path: Any, parameters: dict[str, Any],
                 runtime: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """How a result was made, enough to reproduce it from the result file alone: the model
    (``export.SourceModel``), the path's parameters (``parameters``: steps, sigma, kernel_size, rule;
    the path adds its own), the runner and how its graph was got (``graph``), ``runtime`` (chunks,
    threads, precision) and the timings."""
    import onnx
    import onnxruntime as ort

    from lam_trt.version import __version__

    session = runner.session
    return {
        "model": {"path": str(model.path) if model.path else None, "sha256": model.sha256,
                  "external_data": model.external_data,
                  "input_shape": list(runner.input_shape), "output_shape": list(runner.output_shape)},
        "parameters": {"method": path.method, **parameters, "path_points": len(path), "detector": "gradient",
                       "reduce": "sum", **{k: v for k, v in path.params.items() if k not in parameters}},
        "runtime": {"provider": runner.provider, "providers_used": session.get_providers(),
                    "batch_size": runner.batch_size, "batch_fallback": runner.batch_fallback,
                    "chunks": runtime["chunks"], "windows": runtime["windows"], "threads": runtime["threads"],
                    "precision": runtime["precision"],
                    "path_generator": path.params.get("generator", "numpy"),
                    "denormals_as_zero": session.get_session_options().get_session_config_entry(
                        "session.set_denormal_as_zero") == "1",
                    **{k: graph[k] for k in ("graph_cache_hit", "graph_source", "graph_path")}},
        "timings_seconds": {k: round(v, 6) for k, v in timings.items()},
        "graph_options": graph["graph_options"], "export_warnings": graph["export_warnings"],
        "versions": {"lam_trt": __version__, "onnxruntime": ort.__version__,
                     "onnx": onnx.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count()},
    }


__all__ = ["command_line", "describe_input", "describe_run", "file_sha256", "pixels_sha256", "timestamp"]
