"""File output: where a command may write, checked before any work, and atomic writes there.

A reader sees the old file, the new file, or nothing; never half of one. Every command checks its
output path first (``check_out_dir`` for a folder, ``check_out_file`` for a file), so a file in the
way, a dangling link, a read-only or full file system is one line before minutes of computing, and
a failing write names the user's path, never an internal temporary name. Temporary names are short
(``.lam-XXXXXXXX.tmp``) so that any name the file system allows for the output works.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lam_trt.errors import OutputError

TEMP_PREFIX = ".lam-"       # temporary files and staging folders; killed writes leave only these
STAGING_SUFFIX = ".staging"
MIN_FREE_BYTES = 4 << 20    # less free space than this is a full disk, said before the work


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a usable output folder (it need not exist yet), or OutputError saying why not."""
    out = Path(path)
    _check_names(out, option)
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{option} {out} is a symbolic link to nothing ({os.readlink(out)})")
    if out.exists() and not out.is_dir():
        what = "a symbolic link to a file" if out.is_symlink() else "a file"
        raise OutputError(f"{option} {out} is {what}, not a folder; give a folder path")
    _check_writable(out, option)
    return out


def check_out_file(path: str | os.PathLike, option: str = "-o") -> Path:
    """``path`` as a usable output file (replaced atomically if it exists), or OutputError."""
    out = Path(path)
    _check_names(out, option)
    if out.is_symlink() and not out.exists():
        raise OutputError(f"{option} {out} is a symbolic link to nothing ({os.readlink(out)})")
    if out.is_dir():
        raise OutputError(f"{option} {out} is a folder; give a file path")
    _check_writable(out.parent, option, out)
    return out


def _check_names(out: Path, option: str) -> None:
    for part in out.parts:
        if len(os.fsencode(part)) > _name_max(out):
            raise OutputError(f"{option}: the name {part[:40]}... is longer than the file system allows "
                              f"({_name_max(out)} bytes)")


def _name_max(out: Path) -> int:
    try:
        return os.pathconf(_existing_ancestor(out), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _existing_ancestor(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists (the folder a write would start in)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(folder: Path, option: str, shown: Path | None = None) -> None:
    """Can files be created under ``folder``? Tried for real in its nearest existing ancestor: a
    temporary file is made and removed (permission bits do not show read-only mounts, or root)."""
    shown = shown or folder
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(f"{option} {shown}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{option} {shown}: cannot write in {base}: {_reason(e)}") from None
    free = shutil.disk_usage(base).free
    if free < MIN_FREE_BYTES:
        raise OutputError(f"{option} {shown}: no space left on the file system of {base} "
                          f"({free >> 10} KiB free)")


def _reason(error: OSError) -> str:
    return error.strerror or errno.errorcode.get(error.errno or 0, "input/output error")


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """OSErrors while writing ``path`` become one OutputError naming ``path``; nested, the outermost
    name wins, so a file written inside a staging folder is reported as the user's output folder."""
    try:
        yield
    except OutputError as e:
        if e.reason is None:
            raise
        raise OutputError(f"cannot write {path}: {e.reason}", e.reason) from None
    except OSError as e:
        raise OutputError(f"cannot write {path}: {_reason(e)}", _reason(e)) from None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (and NumPy scalar) made JSON: NaN and infinities -> null."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


STALE_SECONDS = 3600  # a hidden staging folder this old belongs to a killed process


def remove_stale(folder: Path, prefix: str, suffix: str, age: float) -> None:
    """Remove the hidden folders ``prefix*suffix`` in ``folder`` last changed over ``age`` seconds ago."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(prefix) and name.endswith(suffix) and name.startswith("."):
            try:
                if entry.is_dir(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > age:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                continue


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; on success move its files into ``out_dir``.

    On any exception the staged files are removed and ``out_dir`` is left as it was, so an
    error never leaves half of a result behind. Each file is moved with an atomic rename.
    """
    out = Path(out_dir)
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out.parent, TEMP_PREFIX, STAGING_SUFFIX, STALE_SECONDS)  # left by killed writes
        stage = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=STAGING_SUFFIX, dir=out.parent))
    try:
        with writing(out):
            yield stage
            out.mkdir(parents=True, exist_ok=True)
            for item in stage.iterdir():
                os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
