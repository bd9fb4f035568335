"""What a user's file is, from its first bytes, so that a wrong file is named for what it is.

A checkpoint given where an ONNX model belongs, an image and a model swapped on the command line,
a folder or a device (``/dev/zero``) given as a file: each gets one line that says what the file is
and what to run instead, before anything reads the whole file.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from lam_trt.errors import InputError

_MAGIC = (  # (prefix, what the file is)
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a PyTorch checkpoint (zip archive)"),
)
CHECKPOINT_SUFFIXES = {".pth", ".pt", ".ckpt", ".safetensors", ".bin"}


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is an existing regular file (symbolic links followed), else InputError."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path} is not a regular file (a device, pipe or socket)")
    return path


def sniff(path: Path) -> str | None:
    """What the file is ("a PNG image", "a PyTorch checkpoint ..."), or None if not recognised."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    for prefix, kind in _MAGIC:
        if head.startswith(prefix):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickled PyTorch checkpoint"
    if len(head) > 8 and int.from_bytes(head[:8], "little") < (1 << 27) and head[8:9] == b"{":
        return "a safetensors checkpoint"
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return f"a {path.suffix.lower()} checkpoint"
    return None


def not_a_model_hint(path: Path) -> str | None:
    """The advice for a file that is not an ONNX model but something recognisable, else None."""
    kind = sniff(path)
    if kind is None:
        return None
    if kind.endswith("image"):
        return f"{path} is {kind}, not an ONNX model: MODEL comes first (lam-trt attribute MODEL IMAGE ...)"
    return f"{path} is {kind}, not an ONNX model: convert it with `lam-trt export {path} -o model.onnx`"


def not_an_image_hint(path: Path) -> str | None:
    """The advice for a file given as an image that is a model or checkpoint, else None."""
    kind = sniff(path)
    if kind is not None and "checkpoint" in kind:
        return (f"{path} is {kind}, not an image: export it with `lam-trt export {path}`, then "
                "give the ONNX model first (lam-trt attribute MODEL IMAGE ...)")
    if kind is None and path.suffix.lower() == ".onnx":
        return f"{path} is an ONNX model, not an image: MODEL comes first (lam-trt attribute MODEL IMAGE ...)"
    return None
