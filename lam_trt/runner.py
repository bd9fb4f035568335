"""GraphRunner: one ONNX Runtime session of an attribution graph, fed in memory-bounded chunks."""
from __future__ import annotations

import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from lam_trt import providers as prov
from lam_trt.errors import InputError, LamTrtWarning, MemoryBudgetError, ModelError
from lam_trt.export import (BATCH_REASON_KEY, EXPORT_WARNINGS_KEY, MAX_BATCH_KEY, MAX_WINDOWS_KEY,
                            GRAPH_OPTIONS_KEY, WINDOW_BOUND_KEY, WINDOWS_REASON_KEY, SourceModel, ort_message)
from lam_trt.result import GRADIENT_CAVEAT, WARNINGS_METADATA_KEY, ResultWarning, warnings_from_json

DEFAULT_MEMORY_BUDGET = 2 << 30   # bytes of activations per chunk on the CPU
MAX_BATCH = 16  # on the CPU, larger chunks only add cache misses (bench/RESULTS.md)
LARGE_IMAGE = 1 << 20             # pixels from which the forward pass's memory is checked first
MEMORY_ENV = "LAM_TRT_MEMORY"     # the most memory lam-trt may use, e.g. 8G; default: what is free now

ProgressFn = Callable[[int], None]   # called with the number of path images just finished


@dataclass
class GraphOutputs:
    detector: np.ndarray        # [K, N]: per window, per path image
    attribution: np.ndarray     # [K, C, h, w] float64 accumulation of the chunks
    contribution: np.ndarray    # [K, N]
    seconds: float
    chunks: int


class GraphRunner:
    """Runs an attribution graph; keeps the session for many calls."""

    def __init__(self, graph_path: str | os.PathLike, provider: str = "auto", threads: int | None = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 cache_dir: Path | None = None, fp16: bool = False):
        self.provider = prov.resolve(provider)
        self.fp16 = fp16  # TensorRT only: half-precision engines
        self.metadata = meta = graph_metadata(graph_path)  # read once: shapes, batch limit, notes, warnings
        self.input_shape = tuple(int(v) for v in meta["lam_trt.input_shape"].split("x"))
        self.output_shape = tuple(int(v) for v in meta["lam_trt.output_shape"].split("x"))
        self.bytes_per_item = int(meta.get("lam_trt.activation_bytes_per_item", 0))
        opts = prov.session_options(threads)
        self.batch_limit = meta.get(BATCH_REASON_KEY) if meta.get(MAX_BATCH_KEY) == "1" else None
        self.windows_limit = meta.get(WINDOWS_REASON_KEY) if meta.get(MAX_WINDOWS_KEY) == "1" else None
        self.window_bound = int(meta.get(WINDOW_BOUND_KEY, 0)) or None  # the largest window side it attributes
        self.graph_options = json.loads(meta.get(GRAPH_OPTIONS_KEY, "{}"))
        self.batch_fallback: Optional[str] = None  # why path images run one at a time, if they do
        self.memory_limit = memory_limit(self.provider)
        check_one_fits(self.item_bytes, self.memory_limit, self.input_shape)
        # Path images whose activations a run's memory holds, whether or not the graph can batch
        # them: the windows of one path image are separate items even where path images are not.
        self.items_per_run = batch_size or self.auto_batch_size(min(memory_budget or DEFAULT_MEMORY_BUDGET,
                                                                    self.memory_limit))
        self.batch_size = self.items_per_run
        self.batch_hint = self.batch_size
        start = time.perf_counter()
        self.session = ort.InferenceSession(str(graph_path), opts, providers=self.providers(cache_dir))
        self.session_seconds = time.perf_counter() - start

    max_batch = MAX_BATCH

    @property
    def export_notes(self) -> list[str]:
        """The builder's one-line notes on this graph: random nodes fixed, gradients cut."""
        return json.loads(self.metadata.get(EXPORT_WARNINGS_KEY, "[]"))

    @property
    def graph_warnings(self) -> list[ResultWarning]:
        """The warnings stored in the graph, then its notes as gradient caveats."""
        return [*warnings_from_json(self.metadata.get(WARNINGS_METADATA_KEY)),
                *(ResultWarning(GRADIENT_CAVEAT, note) for note in self.export_notes)]

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
        return prov.session_providers(self.provider, cache_dir, self.fp16)

    def auto_batch_size(self, budget: int) -> int:
        """As many path images per run as fit the budget (activations ~ twice the forward's)."""
        if not self.bytes_per_item:
            return 8
        return int(max(1, min(self.max_batch, budget // self.item_bytes)))

    def windows_per_run(self) -> int:
        """Windows whose reverse passes share one run: 1 where the graph cannot run several; else as
        many as the memory of a full chunk holds (a path image with K windows keeps its forward
        activations once and K copies' gradients: about (1 + K) x one forward's), also where path
        images run one at a time (the build-time probe ran its windows on one path image)."""
        return 1 if self.windows_limit else max(1, 2 * self.items_per_run - 1)

    def chunk_size(self, windows: int) -> int:
        """Path images per run with ``windows`` windows: the memory of ``batch_size`` with one."""
        return max(1, min(self.batch_size, 2 * self.batch_size // (1 + windows)))

    def run(self, points: Any, weights: Any, windows: Sequence[tuple[int, int, int, int]],
            progress: Optional[ProgressFn] = None) -> GraphOutputs:
        """Sum the weighted input gradients over all points for every window (top, left, height,
        width): windows in groups that fit the memory, each group over the path in chunks."""
        wins = np.asarray(windows, np.int64).reshape(-1, 4)
        self.check_window_sizes(wins)
        step = self.windows_per_run()
        groups = range(0, len(wins), step)
        tick = scaled_progress(progress, len(groups))
        start = time.perf_counter()
        parts = [self.run_group(points, weights, wins[lo:lo + step], tick) for lo in groups]
        return GraphOutputs(*(np.concatenate([p[i] for p in parts]) for i in range(3)),
                            time.perf_counter() - start, sum(p[3] for p in parts))

    def check_window_sizes(self, windows: np.ndarray) -> None:
        """Refuse windows larger than the graph's bound (its reverse pass would give NaN for them)."""
        if self.window_bound and len(windows) and windows[:, 2:].max() > self.window_bound:
            k = int(np.argmax(windows[:, 2:].max(axis=1)))
            raise InputError(f"window {k} is {windows[k, 3]}x{windows[k, 2]} px, larger than the {self.window_bound} px "
                             "this attribution graph was built for (GraphOptions(window_bound=...) builds one for it)")

    def run_group(self, points: np.ndarray, weights: np.ndarray, windows: np.ndarray,
                  progress: Optional[ProgressFn]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(detector [K, N], attribution [K, C, h, w] float64, contribution [K, N], runs) for the
        K ``windows`` of one run, the path in chunks."""
        detector, contribution = [], []
        attribution = np.zeros((len(windows), *self.input_shape), np.float64)
        chunks, lo = 0, 0
        while lo < len(points):
            hi = min(lo + self.chunk_size(len(windows)), len(points))
            outputs = self.run_chunk(points[lo:hi], weights[lo:hi], windows)
            if outputs is None:  # fell back to one path image at a time: this chunk again
                continue
            detector.append(outputs[0])
            attribution += outputs[1]
            contribution.append(outputs[2])
            chunks += 1
            if progress:
                progress(hi - lo)
            lo = hi
        return np.concatenate(detector, axis=1), attribution, np.concatenate(contribution, axis=1), chunks

    def run_chunk(self, points: np.ndarray, weights: np.ndarray, windows: np.ndarray) -> Optional[list]:
        """(detector, attribution, contribution) of one session run; None where several path images
        at once fail or come back with the wrong count (after falling back to one at a time)."""
        n, k = len(points), len(windows)
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # the failure is reported below, in one line
        try:
            d, a, c = self.session.run(["detector", "attribution", "contribution"], {
                "path": np.ascontiguousarray(points), "weights": np.ascontiguousarray(weights), "windows": windows},
                quiet)
        except Exception as e:  # ORT's exceptions have no common base class
            problem = f"onnxruntime failed at batch {n} ({ort_message(e)})"
        else:
            if d.shape == (k, n) and c.shape == (k, n):
                return [d, a, c]
            problem = f"it returned {d.size} detector values for {n} path images and {k} windows"
        if n == 1:
            raise ModelError(f"the attribution graph cannot run: {problem}")
        self.fall_back(problem)
        return None


def scaled_progress(progress: Optional[ProgressFn], groups: int) -> Optional[ProgressFn]:
    """``progress`` counting path images over ``groups`` passes of the path as one pass: whole
    path images, each reported once the groups have together done that much."""
    if progress is None or groups == 1:
        return progress
    done = [0, 0]  # path images x groups finished, path images reported

    def tick(n: int) -> None:
        done[0] += n
        whole = done[0] // groups
        if whole > done[1]:
            progress(whole - done[1])
            done[1] = whole
    return tick


def memory_limit(provider: str = "cpu") -> int:
    """Bytes lam-trt may use: $LAM_TRT_MEMORY (e.g. 8G, 512M, 2000000000), else the memory free now
    where ``provider`` runs (the GPU's for cuda and tensorrt, see ``free_memory``)."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?", text)
        if not match:
            raise InputError(f"{MEMORY_ENV}={text!r} is not a size; write e.g. 8G, 512M or a number of bytes")
        return int(float(match[1]) * 1024 ** " KMGT".index(match[2].upper() or " "))
    return free_memory(provider)


def free_memory(provider: str) -> int:
    """Free bytes where ``provider`` keeps its tensors: the current CUDA device's (CuPy's
    memGetInfo) for cuda and tensorrt, host memory otherwise or when CuPy cannot tell."""
    if provider in ("cuda", "tensorrt"):
        try:
            import cupy

            return int(cupy.cuda.runtime.memGetInfo()[0])
        except Exception:  # noqa: BLE001 - no CuPy, or no usable driver: host memory is all we know
            pass
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


def check_forward_fits(model: SourceModel, image_shape: tuple[int, ...], provider: str = "cpu") -> None:
    """Refuse, before the forward pass allocates it, an image whose forward pass alone cannot fit
    (the SR output of a 100-megapixel image is tens of GB). Small images are not checked: shape
    inference would cost more than their forward pass, and it fits any machine."""
    c, h, w = image_shape
    if h * w < LARGE_IMAGE:
        return
    need, limit = model.forward_bytes((1, c, h, w)), memory_limit(provider)
    if need > limit:
        raise MemoryBudgetError(f"the network's forward pass on a {h}x{w} image needs at least {gib(need)} of memory, "
                                f"and {gib(limit)} is available ({MEMORY_ENV} sets the limit): crop the image "
                                "around the window or use a smaller one")


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 28 else f"{n / (1 << 20):.0f} MiB"


def graph_metadata(path: str | os.PathLike) -> dict[str, str]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
