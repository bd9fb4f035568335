"""A batch's images: files, folders (their images) and globs, each image once."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from lam_trt.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GLOB = re.compile(r"[*?\[]")


def expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Image paths from files, folders (their images, sorted, not recursive) and globs, in the
    order given, each once. A missing plain file stays in the list (it becomes an error row); a
    glob that matches nothing or a folder without images is a bad argument."""
    images: list[str] = []
    seen: set[str] = set()
    for arg in inputs:
        for path in _expand_one(str(arg)):
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                images.append(path)
    if not images:
        raise InputError("no input images given")
    return images


def _expand_one(arg: str) -> list[str]:
    if os.path.isdir(arg):
        return _folder_images(Path(arg))
    if _GLOB.search(arg) and not os.path.exists(arg):
        matches = sorted(Path().glob(arg) if not os.path.isabs(arg) else _abs_glob(arg))
        if not matches:
            raise InputError(f"no files match {arg!r}")
        return [p for m in matches for p in ([str(m)] if not m.is_dir() else _folder_images(m))]
    return [str(Path(arg))]


def _abs_glob(pattern: str) -> Iterable[Path]:
    anchor = Path(Path(pattern).anchor)
    return anchor.glob(str(Path(pattern).relative_to(anchor)))


def _folder_images(folder: Path) -> list[str]:
    found = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return found
