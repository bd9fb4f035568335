"""On-disk cache of attribution graphs, keyed by model hash, input size and options.

An entry is a folder built under a hidden name and renamed into place, with a manifest of its files'
sizes written last: an entry is used only when the manifest matches (a truncated or emptied graph is
rebuilt), and only a graph ONNX Runtime has loaded is ever cached. When the cache cannot be written
(read-only, full, not a folder) the graph is built for this run alone and the result says so.
Hidden folders that killed builds left behind are removed once they are STALE_SECONDS old.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import onnx

from lam_trt.errors import ResourceError
from lam_trt.export import GRAPH_FORMAT, GraphOptions, build_attribution_graph, save_attribution_graph
from lam_trt.io import STALE_SECONDS, remove_stale
from lam_trt.result import GRAPH_CACHE_UNAVAILABLE, ResultWarning

T = TypeVar("T")
GRAPH_FILE = "graph.onnx"
MANIFEST = "entry.json"


def default_cache_dir() -> Path:
    env = os.environ.get("LAM_TRT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lam-trt"


class GraphCache:
    """Attribution graphs on disk: complete and loadable, or absent."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def key(self, sha256: str, input_shape: tuple[int, int, int], reduce: str = "sum",
            options: GraphOptions | None = None) -> str:
        c, h, w = input_shape
        tag = options.cache_tag() if options else ""
        return f"{sha256[:24]}-{c}x{h}x{w}-gradient-{reduce}{tag}-f{GRAPH_FORMAT}"

    def path(self, key: str) -> Path:
        return self.root / key / GRAPH_FILE

    def open(self, model: str | os.PathLike | onnx.ModelProto, sha256: str, input_shape: tuple[int, int, int],
             open_graph: Callable[[Path], T], reduce: str = "sum",
             options: GraphOptions | None = None) -> tuple[T, Path, bool, list[ResultWarning]]:
        """``open_graph`` of the graph for this model, size and options: (opened, path, cache hit,
        warnings).

        A valid entry is opened as it is (if that fails, it is discarded and rebuilt); on a miss the
        graph is built, opened from its staging folder, and only then moved into the cache.
        ``open_graph`` must load the graph fully (an ONNX Runtime session does), since the staging
        folder is renamed or removed once it returns."""
        target = self.path(self.key(sha256, input_shape, reduce, options))
        if valid_entry(target.parent):
            try:
                return open_graph(target), target, True, []
            except Exception:  # noqa: BLE001 - a cached graph that no longer opens is rebuilt below
                discard(target.parent)
        graph = build_attribution_graph(model, input_shape, reduce=reduce, options=options)
        try:
            staging = self._staging(target.parent.name)
        except OSError as e:
            return self._uncached(graph, open_graph, e)
        try:
            try:
                write_entry(graph, staging)
            except OSError as e:
                return self._uncached(graph, open_graph, e)
            opened = open_graph(staging / GRAPH_FILE)   # ONNX Runtime must accept it before it is cached
            if target.parent.exists() and not valid_entry(target.parent):
                discard(target.parent)  # a broken entry (an older layout, or truncated) is in the way
            try:
                os.replace(staging, target.parent)
            except OSError as e:  # another process finished the same entry first, or the cache is read-only
                if not valid_entry(target.parent):
                    return opened, staging / GRAPH_FILE, False, [unavailable(self.root, e)]
            return opened, target, False, []
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _staging(self, key: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        remove_stale(self.root, ".", "", STALE_SECONDS)
        return Path(tempfile.mkdtemp(prefix=f".{key[:24]}.", dir=self.root))

    def _uncached(self, graph: onnx.ModelProto, open_graph: Callable[[Path], T],
                  error: OSError) -> tuple[T, Path, bool, list[ResultWarning]]:
        """Build in the system's temporary folder, open, and remove it again."""
        try:
            folder = Path(tempfile.mkdtemp(prefix="lam-trt-graph."))
        except OSError as e:
            raise ResourceError(f"the graph cache {self.root} is unusable ({_why(error)}) and so is the temporary "
                             f"folder ({_why(e)}); set LAM_TRT_CACHE to a writable folder") from None
        try:
            write_entry(graph, folder)
            return open_graph(folder / GRAPH_FILE), folder / GRAPH_FILE, False, [unavailable(self.root, error)]
        except OSError as e:
            raise ResourceError(f"cannot write the attribution graph anywhere: {_why(e)}; set LAM_TRT_CACHE to a "
                             "writable folder with free space") from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def write_entry(graph: onnx.ModelProto, folder: Path) -> None:
    """The graph, then the manifest of every file's size (its presence marks a complete entry)."""
    save_attribution_graph(graph, folder / GRAPH_FILE)
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"format": GRAPH_FORMAT, "files": sizes}))


def valid_entry(folder: Path) -> bool:
    """The manifest is there and every file it lists has its size."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        return GRAPH_FILE in files and all((folder / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def discard(folder: Path) -> None:
    """Remove a broken entry (renamed to a hidden name first, so no reader sees half of it)."""
    hidden = folder.with_name(f".{folder.name[:24]}.broken.{os.getpid()}")
    try:
        os.replace(folder, hidden)
    except OSError:
        return  # gone already, or a read-only cache: the rebuild then runs uncached
    shutil.rmtree(hidden, ignore_errors=True)


def unavailable(root: Path, error: OSError) -> ResultWarning:
    return ResultWarning(GRAPH_CACHE_UNAVAILABLE, f"graph cache {root} is unusable ({_why(error)}): the attribution "
                         "graph was built for this run only; set LAM_TRT_CACHE to a writable folder",
                         {"cache": str(root), "error": _why(error)})


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


__all__ = ["GraphCache", "STALE_SECONDS", "default_cache_dir", "discard", "valid_entry", "write_entry"]
