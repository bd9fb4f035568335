"""GraphRunner: one ONNX Runtime session of an attribution graph, fed in memory-bounded chunks."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import onnx
import onnxruntime as ort

from lam_trt import providers as prov

DEFAULT_MEMORY_BUDGET = 2 << 30   # bytes of activations per chunk on the CPU
MAX_BATCH = 16  # on the CPU, larger chunks only add cache misses (bench/RESULTS.md)

ProgressFn = Callable[[int], None]   # called with the number of path images just finished


@dataclass
class GraphOutputs:
    detector: np.ndarray        # [N]
    attribution: np.ndarray     # [C, h, w] float64 accumulation of the chunks
    contribution: np.ndarray    # [N]
    seconds: float
    chunks: int
    timings: dict[str, float] = field(default_factory=dict)


class GraphRunner:
    """Runs an attribution graph; keeps the session for many calls."""

    def __init__(self, graph_path: str | os.PathLike, provider: str = "auto", threads: int | None = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 cache_dir: Path | None = None):
        self.provider = prov.resolve(provider)
        meta = graph_metadata(graph_path)
        self.input_shape = tuple(int(v) for v in meta["lam_trt.input_shape"].split("x"))
        self.output_shape = tuple(int(v) for v in meta["lam_trt.output_shape"].split("x"))
        self.bytes_per_item = int(meta.get("lam_trt.activation_bytes_per_item", 0))
        self.threads = threads
        opts = prov.session_options(threads)
        self.batch_size = batch_size or self.auto_batch_size(memory_budget or DEFAULT_MEMORY_BUDGET)
        self.batch_hint = self.batch_size
        start = time.perf_counter()
        self.session = ort.InferenceSession(str(graph_path), opts, providers=self.providers(cache_dir))
        self.session_seconds = time.perf_counter() - start

    max_batch = MAX_BATCH

    def providers(self, cache_dir: Path | None) -> list:
        return prov.session_providers(self.provider, cache_dir)

    def auto_batch_size(self, budget: int) -> int:
        """As many path images per run as fit the budget (activations ~ twice the forward's)."""
        if not self.bytes_per_item:
            return 8
        return int(max(1, min(self.max_batch, budget // (2 * self.bytes_per_item))))

    def run(self, points: np.ndarray, weights: np.ndarray, window: tuple[int, int, int, int],
            progress: Optional[ProgressFn] = None) -> GraphOutputs:
        """Sum the weighted input gradients over all points, ``batch_size`` at a time."""
        win = np.asarray(window, np.int64)
        detector, contribution = [], []
        attribution = np.zeros(self.input_shape, np.float64)
        start, chunks = time.perf_counter(), 0
        for lo in range(0, len(points), self.batch_size):
            hi = min(lo + self.batch_size, len(points))
            d, a, c = self.session.run(["detector", "attribution", "contribution"], {
                "path": np.ascontiguousarray(points[lo:hi]), "weights": np.ascontiguousarray(weights[lo:hi]),
                "window": win})
            detector.append(d)
            contribution.append(c)
            attribution += a
            chunks += 1
            if progress:
                progress(hi - lo)
        return GraphOutputs(np.concatenate(detector), attribution, np.concatenate(contribution),
                            time.perf_counter() - start, chunks)


def graph_metadata(path: str | os.PathLike) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
