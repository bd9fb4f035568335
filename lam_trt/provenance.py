"""Where a result's input came from: the file and its sha256, and what was done to it on loading.

Kept apart from ``images`` (which converts) so that reading the record never changes the pixels:
the conversions are the ones ``images.read_image`` reports having done.
"""
from __future__ import annotations

import datetime
import hashlib
import os
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


__all__ = ["command_line", "describe_input", "file_sha256", "pixels_sha256", "timestamp"]
