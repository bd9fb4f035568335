"""``lam-trt cache``: where the attribution graphs are kept, how much room they take, and clearing it."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import typer

from lam_trt.commands._common import JsonOut, out_console, print_json

# What lam-trt writes in the cache folder: graph entries "<model hash>-CxHxW-...", the hidden
# half-built ones ".<entry>.xxxx", and TensorRT's engines under "trt". Nothing else is touched,
# so LAM_TRT_CACHE pointing at a folder that holds other files never loses them.
ENTRY = re.compile(r"^\.?[0-9a-f]{16,64}-\d+x\d+x\d+-")
ENGINES = "trt"

cache_app = typer.Typer(help="Show or clear the cache of attribution graphs (LAM_TRT_CACHE, else "
                             "$XDG_CACHE_HOME/lam-trt, else ~/.cache/lam-trt).", no_args_is_help=True)


def cache_root() -> Path:
    from lam_trt.cache import default_cache_dir

    return default_cache_dir()


def cache_entries(root: Path) -> list[Path]:
    """lam-trt's own folders in ``root`` (none when it does not exist)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and not p.is_symlink() and (ENTRY.match(p.name) or p.name == ENGINES))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@cache_app.command("info")
def info_command(json_out: JsonOut = False) -> None:
    """Where the cache is, why there, and how many graphs and bytes it holds."""
    root = cache_root()
    entries = cache_entries(root)
    facts = {"path": str(root), "chosen_by": _chosen_by(), "entries": len(entries),
             "bytes": sum(folder_bytes(e) for e in entries)}
    if json_out:
        print_json(facts)
        return
    out_console.print(f"graph cache: {facts['path']} ({facts['chosen_by']})", markup=False, soft_wrap=True)
    out_console.print(f"{facts['entries']} entries, {facts['bytes'] / 2**20:.1f} MiB", markup=False)


@cache_app.command("clear")
def clear_command(json_out: JsonOut = False) -> None:
    """Remove every cached graph (they are rebuilt when next needed)."""
    root = cache_root()
    entries = cache_entries(root)
    freed = sum(folder_bytes(e) for e in entries)
    for entry in entries:
        shutil.rmtree(entry)
    facts = {"path": str(root), "removed": len(entries), "bytes": freed}
    if json_out:
        print_json(facts)
    else:
        out_console.print(f"removed {len(entries)} entries ({freed / 2**20:.1f} MiB) from {root}",
                          markup=False, soft_wrap=True)


def _chosen_by() -> str:
    if os.environ.get("LAM_TRT_CACHE"):
        return "LAM_TRT_CACHE"
    return "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "the default"
