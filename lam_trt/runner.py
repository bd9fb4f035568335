"""GraphRunner: one ONNX Runtime session of an attribution graph, fed in memory-bounded chunks."""
from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import onnx
import onnxruntime as ort

from lam_trt import providers as prov
from lam_trt.errors import InputError, LamTrtWarning, MemoryBudgetError, ModelError
from lam_trt.export.batch_probe import BATCH_REASON_KEY, MAX_BATCH_KEY, ort_message

DEFAULT_MEMORY_BUDGET = 2 << 30   # bytes of activations per chunk on the CPU
MAX_BATCH = 16  # on the CPU, larger chunks only add cache misses (bench/RESULTS.md)
LARGE_IMAGE = 1 << 20             # pixels from which the forward pass's memory is checked first
MEMORY_ENV = "LAM_TRT_MEMORY"     # the most memory lam-trt may use, e.g. 8G; default: what is free now

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
        self.metadata = meta = graph_metadata(graph_path)  # read once: the Attributor reads its notes
        self.input_shape = tuple(int(v) for v in meta["lam_trt.input_shape"].split("x"))
        self.output_shape = tuple(int(v) for v in meta["lam_trt.output_shape"].split("x"))
        self.bytes_per_item = int(meta.get("lam_trt.activation_bytes_per_item", 0))
        self.threads = threads
        opts = prov.session_options(threads)
        self.batch_limit = meta.get(BATCH_REASON_KEY) if meta.get(MAX_BATCH_KEY) == "1" else None
        self.batch_fallback: Optional[str] = None  # why path images run one at a time, if they do
        self.memory_limit = memory_limit()
        check_one_fits(self.item_bytes, self.memory_limit, self.input_shape)
        self.batch_size = batch_size or self.auto_batch_size(min(memory_budget or DEFAULT_MEMORY_BUDGET,
                                                                 self.memory_limit))
        self.batch_hint = self.batch_size
        start = time.perf_counter()
        self.session = ort.InferenceSession(str(graph_path), opts, providers=self.providers(cache_dir))
        self.session_seconds = time.perf_counter() - start

    max_batch = MAX_BATCH

    @property
    def item_bytes(self) -> int:
        """Estimated memory of one path image: its forward activations, kept for the backward
        pass, and as much again for their gradients (0 when the graph does not say)."""
        return 2 * self.bytes_per_item

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, size: int) -> None:
        """Path images per run: 1 where the graph cannot batch; a size whose estimate exceeds the
        memory there is gets a warning."""
        if size > 1 and self.batch_limit:
            self.fall_back(self.batch_limit)
            size = 1
        need = size * self.item_bytes
        if need > self.memory_limit and size > 1:
            warnings.warn(f"--batch-size {size} needs about {gib(need)} of memory, more than the {gib(self.memory_limit)} "
                          f"available; leave --batch-size out to size the chunks to memory", LamTrtWarning, stacklevel=2)
        self._batch_size = size

    def fall_back(self, reason: str) -> None:
        """Run one path image at a time from now on (exact, slower); results carry a warning."""
        self.batch_fallback = reason
        self._batch_size = 1

    def providers(self, cache_dir: Path | None) -> list:
        return prov.session_providers(self.provider, cache_dir)

    def auto_batch_size(self, budget: int) -> int:
        """As many path images per run as fit the budget (activations ~ twice the forward's)."""
        if not self.bytes_per_item:
            return 8
        return int(max(1, min(self.max_batch, budget // self.item_bytes)))

    def run(self, points: np.ndarray, weights: np.ndarray, window: tuple[int, int, int, int],
            progress: Optional[ProgressFn] = None) -> GraphOutputs:
        """Sum the weighted input gradients over all points, ``batch_size`` at a time."""
        win = np.asarray(window, np.int64)
        detector, contribution = [], []
        attribution = np.zeros(self.input_shape, np.float64)
        start, chunks = time.perf_counter(), 0
        lo = 0
        while lo < len(points):
            hi = min(lo + self.batch_size, len(points))
            outputs = self.run_chunk(points[lo:hi], weights[lo:hi], win)
            if outputs is None:  # fell back to one path image at a time: this chunk again
                continue
            detector.append(outputs[0])
            attribution += outputs[1]
            contribution.append(outputs[2])
            chunks += 1
            if progress:
                progress(hi - lo)
            lo = hi
        return GraphOutputs(np.concatenate(detector), attribution, np.concatenate(contribution),
                            time.perf_counter() - start, chunks)

    def run_chunk(self, points: np.ndarray, weights: np.ndarray, window: np.ndarray) -> Optional[list]:
        """(detector, attribution, contribution) of one session run; None where several path images
        at once fail or come back with the wrong count (after falling back to one at a time)."""
        n = len(points)
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # the failure is reported below, in one line
        try:
            d, a, c = self.session.run(["detector", "attribution", "contribution"], {
                "path": np.ascontiguousarray(points), "weights": np.ascontiguousarray(weights), "window": window},
                quiet)
        except Exception as e:  # ORT's exceptions have no common base class
            problem = f"onnxruntime failed at batch {n} ({ort_message(e)})"
        else:
            if d.shape == (n,) and c.shape == (n,):
                return [d, a, c]
            problem = f"it returned {d.size} detector values for {n} path images"
        if n == 1:
            raise ModelError(f"the attribution graph cannot run: {problem}")
        self.fall_back(problem)
        return None


def memory_limit() -> int:
    """Bytes lam-trt may use: $LAM_TRT_MEMORY (e.g. 8G, 512M, 2000000000), else the memory free now."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?", text)
        if not match:
            raise InputError(f"{MEMORY_ENV}={text!r} is not a size; write e.g. 8G, 512M or a number of bytes")
        return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))
    return available_memory()


def available_memory() -> int:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), else free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def check_one_fits(item_bytes: int, limit: int, input_shape: tuple[int, ...]) -> None:
    """Refuse, before a session exists, work whose single path image cannot fit the memory there is."""
    if item_bytes > limit:
        c, h, w = input_shape
        raise MemoryBudgetError(
            f"one path image of {h}x{w} pixels needs about {gib(item_bytes)} of memory for this network, "
            f"and {gib(limit)} is available ({MEMORY_ENV} sets the limit): crop the image around the window "
            f"or use a smaller one (memory grows with its area)")


def check_forward_fits(model: onnx.ModelProto, image_shape: tuple[int, ...]) -> None:
    """Refuse, before the forward pass allocates it, an image whose forward pass alone cannot fit
    (the SR output of a 100-megapixel image is tens of GB). Small images are not checked: shape
    inference would cost more than their forward pass, and it fits any machine."""
    c, h, w = image_shape
    if h * w < LARGE_IMAGE:
        return
    from lam_trt.export.model_report import forward_bytes

    need, limit = forward_bytes(model, (1, c, h, w)), memory_limit()
    if need > limit:
        raise MemoryBudgetError(f"the network's forward pass on a {h}x{w} image needs at least {gib(need)} of memory, "
                                f"and {gib(limit)} is available ({MEMORY_ENV} sets the limit): crop the image "
                                "around the window or use a smaller one")


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.0f} MiB"


def graph_metadata(path: str | os.PathLike) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
