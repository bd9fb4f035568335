"""On-disk cache of attribution graphs, keyed by model hash, input size and options."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

from lam_trt.export.attribution_graph import GRAPH_FORMAT, build_attribution_graph, save_attribution_graph
from lam_trt.export.options import GraphOptions


def default_cache_dir() -> Path:
    env = os.environ.get("LAM_TRT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lam-trt"


class GraphCache:
    """Each entry is a folder written elsewhere and renamed into place: complete or absent."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def key(self, sha256: str, input_shape: tuple[int, int, int], reduce: str = "sum",
            options: GraphOptions | None = None) -> str:
        c, h, w = input_shape
        tag = options.cache_tag() if options else ""
        return f"{sha256[:24]}-{c}x{h}x{w}-gradient-{reduce}{tag}-f{GRAPH_FORMAT}"

    def path(self, key: str) -> Path:
        return self.root / key / "graph.onnx"

    def get_or_build(self, model: str | os.PathLike | onnx.ModelProto, sha256: str,
                     input_shape: tuple[int, int, int], reduce: str = "sum",
                     options: GraphOptions | None = None) -> tuple[Path, bool]:
        """Path of the cached graph for this model and size, building it on a miss. (path, hit)"""
        key = self.key(sha256, input_shape, reduce, options)
        target = self.path(key)
        if target.exists():
            return target, True
        graph = build_attribution_graph(model, input_shape, reduce=reduce, options=options)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            save_attribution_graph(graph, staging / "graph.onnx")
            try:
                os.replace(staging, target.parent)
            except OSError:  # another process finished the same entry first
                if not target.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target, False
