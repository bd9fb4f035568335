"""Throughput of one model: attributions per second, path images per second, latency, peak memory.

The library half of ``lam-trt bench``. One ``Attributor`` (one graph, one session) attributes the
same window of one image ``warmup + repeats`` times; the warm-up runs absorb graph building, session
creation and first-run allocations, and are reported apart as the cold start.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import onnx

from lam_trt.version import __version__
from lam_trt.errors import InputError
from lam_trt.export import image_io, load_onnx, static_dims
from lam_trt.images import ImageSource
from lam_trt.window import centre_window

PERCENTILES = (50, 90, 99)
DEFAULT_SIZE = (64, 64)   # the paper's LR size


@dataclass
class BenchReport:
    """One ``lam-trt bench`` run; ``to_dict`` is its JSON form."""

    model: str
    provider: str
    providers_used: list[str]
    input_shape: list[int]
    output_shape: list[int]
    window: dict[str, int]
    steps: int
    rule: str
    path_points: int             # path images per attribution (steps, or steps + 1 for trapezoid)
    batch_size: int
    threads: Optional[int]
    crop: dict[str, Any]
    warmup: int
    repeats: int
    cold_start_seconds: float    # setup and first attribution (graph build or cache, session); NaN without warm-up
    latencies_seconds: list[float]
    integral_seconds: list[float]  # the part of each latency spent in the path integral
    completeness_gap_relative: Optional[float]
    peak_rss_mib: Optional[float]
    rss_before_mib: Optional[float]
    peak_memory_source: str
    image: str
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def median_seconds(self) -> float:
        return float(np.median(self.latencies_seconds))

    @property
    def attributions_per_second(self) -> float:
        return 1.0 / self.median_seconds

    @property
    def path_images_per_second(self) -> float:
        """Path images through forward and input gradient per second of the integral."""
        return self.path_points / float(np.median(self.integral_seconds))

    def percentiles(self) -> dict[str, float]:
        values = np.percentile(np.asarray(self.latencies_seconds), PERCENTILES)
        return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values)}

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_seconds)
        summary = {
            "attributions_per_second": self.attributions_per_second,
            "path_images_per_second": self.path_images_per_second,
            "latency_seconds": {**self.percentiles(), "mean": float(lat.mean()), "min": float(lat.min()),
                                "max": float(lat.max())},
        }
        return _finite({**summary, **asdict(self)})


def _finite(obj: Any) -> Any:
    """NaN and infinities become None, so the dict is valid JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def parse_size(text: str, option: str = "--lr-size") -> tuple[int, int]:
    """The one size parser (``lam-trt --lr-size``, the bench scripts' ``--size``): "HxW" (or "H×W",
    "H*W") -> (H, W); "N" -> (N, N); both >= 1."""
    parts = text.lower().replace("×", "x").replace("*", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise InputError(f"{option} must look like HxW with positive sizes (e.g. 64x64), not {text!r}")
    return dims[0], dims[1]


def model_size(model: onnx.ModelProto) -> Optional[tuple[int, int]]:
    """The model's fixed input (H, W), or None when they are dynamic."""
    dims = static_dims(image_io(model)[0])
    return (dims[2], dims[3]) if len(dims) == 4 and dims[2] and dims[3] else None


def synthetic_image(channels: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A reproducible test image in [0, 1]: smooth structure plus texture, so gradients are generic."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.random((channels, 1, 1)) * 2 * np.pi
    smooth = 0.5 + 0.25 * np.sin(6 * xx + phase) * np.cos(4 * yy - phase)
    return np.clip(smooth + 0.2 * rng.random((channels, h, w)), 0, 1).astype(np.float32)


class PeakMemory:
    """Peak resident memory of this process over a block.

    On Linux the kernel's high-water mark (VmHWM) is reset on entry by writing 5 to
    /proc/self/clear_refs, so the peak belongs to the block; elsewhere it is the process's peak
    since start (getrusage), which is an upper bound.
    """

    def __init__(self) -> None:
        self.source = "getrusage ru_maxrss (process lifetime)"
        self.before_mib: Optional[float] = None
        self.peak_mib: Optional[float] = None

    def __enter__(self) -> "PeakMemory":
        self.before_mib = _proc_status_mib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.source = "VmHWM after reset (this run)"
        except OSError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _proc_status_mib("VmHWM") if self.source.startswith("VmHWM") else None
        if peak is None:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = rss / (1 << 20) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere
        self.peak_mib = float(peak)


def _proc_status_mib(key: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_benchmark(model: str | os.PathLike | onnx.ModelProto, *, size: Optional[tuple[int, int]] = None,
                  steps: int = 100, provider: str = "auto", repeats: int = 5, warmup: int = 1,
                  threads: Optional[int] = None, batch_size: Optional[int] = None,
                  window: Optional[tuple[int, int]] = None, window_size: int = 16, rule: str = "right",
                  sigma: float = 1.2, kernel_size: int = 9, crop: bool | str = "auto",
                  image: Optional[ImageSource] = None, cache_dir: str | os.PathLike | None = None,
                  on_run: Optional[Callable[[int, float], None]] = None) -> BenchReport:
    """Time ``repeats`` LAM attributions of one window (after ``warmup`` untimed ones).

    ``size``: the LR size (H, W) of the synthetic image (default: the model's fixed size, else 64x64);
    ``image``: attribute this image instead. ``window``: (x, y) in SR pixels (default: centred).
    ``on_run(index, seconds)`` is called after every run, warm-up included (index < 0 for those).
    """
    from lam_trt.attributor import Attributor

    if repeats < 1 or warmup < 0:
        raise InputError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    proto = load_onnx(model)
    start = time.perf_counter()
    attributor = Attributor(proto if isinstance(model, onnx.ModelProto) else model, provider=provider,
                            cache_dir=cache_dir, threads=threads, internal_batch_size=batch_size)
    img, label = _bench_image(attributor, image, size, model_size(proto))
    sr_hw = attributor.forward(img[None])[0].shape[1:]
    xy = tuple(window) if window is not None else centre_window(sr_hw, window_size)

    def once() -> Any:
        return attributor.attribute(img, window=xy, size=window_size, steps=steps, sigma=sigma,
                                    kernel_size=kernel_size, rule=rule, internal_batch_size=batch_size, crop=crop)

    runs = _timed_runs(once, warmup, repeats, start, on_run)
    meta, rel = runs.result.meta, runs.result.completeness_gap_relative
    return BenchReport(
        model=str(model) if not isinstance(model, onnx.ModelProto) else "<in-memory model>",
        provider=meta["runtime"]["provider"], providers_used=list(meta["runtime"]["providers_used"]),
        input_shape=list(img.shape), output_shape=list(runs.result.sr_output.shape),
        window={"x": int(xy[0]), "y": int(xy[1]), "size": int(window_size)}, steps=int(steps), rule=rule,
        path_points=int(meta["parameters"]["path_points"]), batch_size=int(meta["runtime"]["batch_size"]),
        threads=threads, crop=dict(meta.get("crop", {})), warmup=warmup, repeats=repeats,
        cold_start_seconds=runs.cold, latencies_seconds=runs.latencies,
        integral_seconds=runs.integrals, completeness_gap_relative=None if rel is None or not np.isfinite(rel) else float(rel),
        peak_rss_mib=runs.memory.peak_mib, rss_before_mib=runs.memory.before_mib,
        peak_memory_source=runs.memory.source, image=label, versions=dict(meta.get("versions", {})),
        machine={**meta.get("machine", {}), "python": platform.python_version(),
                 "lam_trt": __version__, "model_file": Path(str(model)).name
                 if not isinstance(model, onnx.ModelProto) else None})


def _bench_image(attributor: Any, image: Optional[ImageSource], size: Optional[tuple[int, int]],
                 fixed: Optional[tuple[int, int]]) -> tuple[np.ndarray, str]:
    """The LR image to attribute and how to name it: ``image`` read, else a synthetic one."""
    if image is not None:
        img = attributor.load(image, hr=False, scale=None)
        return img, str(image) if isinstance(image, (str, os.PathLike)) else f"array {tuple(img.shape)}"
    if size is not None and fixed is not None and tuple(size) != fixed:
        raise InputError(f"the model takes a fixed {fixed[0]}x{fixed[1]} input; --lr-size {size[0]}x{size[1]} "
                         "cannot run on it")
    hw = tuple(size) if size is not None else (fixed or DEFAULT_SIZE)
    return synthetic_image(attributor.channels, hw), f"synthetic {hw[0]}x{hw[1]} (seed 0)"


@dataclass
class _Runs:
    cold: float
    latencies: list[float]
    integrals: list[float]
    memory: PeakMemory
    result: Any   # the last attribution


def _timed_runs(once: Callable[[], Any], warmup: int, repeats: int, start: float,
                on_run: Optional[Callable[[int, float], None]]) -> _Runs:
    """``warmup`` untimed runs (the first one's end is the cold start, from ``start``), then ``repeats``
    timed ones under the peak-memory watch."""
    cold, result = float("nan"), None
    for i in range(warmup):
        t = time.perf_counter()
        result = once()
        seconds = time.perf_counter() - t
        if i == 0:
            cold = time.perf_counter() - start
        if on_run:
            on_run(i - warmup, seconds)
    latencies, integrals = [], []
    with PeakMemory() as memory:
        for i in range(repeats):
            t = time.perf_counter()
            result = once()
            latencies.append(time.perf_counter() - t)
            integrals.append(float(result.meta["timings_seconds"]["integral"]))
            if on_run:
                on_run(i, latencies[-1])
    return _Runs(cold, latencies, integrals, memory, result)


__all__ = ["BenchReport", "PeakMemory", "centre_window", "model_size", "parse_size", "run_benchmark",
           "synthetic_image"]
