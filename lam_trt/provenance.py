"""Where a result's input came from: the file and its sha256, and what was done to it on loading.

Kept apart from ``images`` (which converts) so that reading the record never changes the pixels:
the conversions are worked out from the source's own description (Pillow mode, array shape) by the
rules ``images.load_image`` follows (alpha dropped, grey repeated, RGB -> BT.601 luma).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_input(source: Any, channels: int, pixels: np.ndarray) -> dict[str, Any]:
    """{path, sha256, source (mode or array shape), conversions, pixels_sha256} of an image source
    loaded as ``pixels`` (float32 CHW) for a model with ``channels`` input channels."""
    record: dict[str, Any] = {"path": None, "sha256": None}
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        record.update(path=str(path), absolute_path=str(path.resolve()), sha256=file_sha256(path))
        with Image.open(path) as img:  # reads the header only
            mode, has_alpha = img.mode, _alpha(img)
        record["source"] = {"format": "file", "mode": mode}
    elif isinstance(source, Image.Image):
        mode, has_alpha = source.mode, _alpha(source)
        record["source"] = {"format": "PIL image", "mode": mode}
    else:
        shape = np.shape(source)
        c = 1 if len(shape) == 2 else (shape[0] if shape[0] <= 4 else shape[2])
        mode, has_alpha = ("L" if c == 1 else "RGB"), c == 4
        record["source"] = {"format": "array", "shape": list(shape), "dtype": str(np.asarray(source).dtype)}
    record["conversions"] = conversions(mode, has_alpha, channels)
    record["pixels_sha256"] = pixels_sha256(pixels)
    return record


def pixels_sha256(pixels: np.ndarray) -> str:
    """sha256 of the float32 pixels the model is given: the same input, bit for bit, or not."""
    return hashlib.sha256(np.ascontiguousarray(pixels, np.float32).tobytes()).hexdigest()


def conversions(mode: str, has_alpha: bool, channels: int) -> list[dict[str, Any]]:
    """The steps from a source of Pillow ``mode`` to the model's ``channels`` (1 or 3)."""
    steps: list[dict[str, Any]] = []
    if mode not in GREY_MODES | {"RGB", "RGBA", "RGBa"}:
        steps.append({"step": f"{mode} to RGB", "how": "Pillow's conversion"})
    if has_alpha:
        steps.append({"step": "alpha dropped"})
    grey = mode in GREY_MODES
    if grey and channels == 3:
        steps.append({"step": "grey to RGB", "how": "the grey channel repeated three times"})
    elif not grey and channels == 1:
        steps.append({"step": "RGB to grey", "how": "ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B)"})
    return steps


def _alpha(img: Image.Image) -> bool:
    return "A" in img.mode or "a" in img.mode or (img.mode == "P" and "transparency" in img.info)


def command_line() -> str:
    """This process's command line as a shell would take it, the program by its name."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def timestamp() -> str:
    """Now, in UTC, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


__all__ = ["command_line", "conversions", "describe_input", "file_sha256", "pixels_sha256", "timestamp"]
