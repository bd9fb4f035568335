"""Attributor: LAM (and the paper's comparison methods) for one ONNX model, end to end.

image -> path (kernels) -> attribution graph (export, cached) -> runner -> LAMResult.
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import onnxruntime as ort

import lam_trt
from lam_trt import metrics
from lam_trt.cache import GraphCache
from lam_trt.errors import InputError
from lam_trt.export.source import image_io, load_model, model_sha256, static_dims
from lam_trt.images import ImageSource, hr_to_lr, load_image
from lam_trt.kernels import make_path
from lam_trt.result import LAMResult
from lam_trt.runner import GraphRunner


class Attributor:
    """Keeps one ONNX Runtime session per input size, so many windows and images reuse it.

    ``model``: path to an ONNX SR network (or a ModelProto); ``provider``: auto, cpu, cuda, tensorrt.
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, provider: str = "auto",
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 internal_batch_size: int | None = None):
        self.model_path = None if isinstance(model, onnx.ModelProto) else Path(model)
        self.model = load_model(model)
        image_io(self.model)  # fail early on anything that is not image-to-image
        self.sha256 = model_sha256(model)
        self.channels = self._input_channels()
        self.provider = provider
        self.cache = GraphCache(cache_dir)
        self.threads = threads
        self.internal_batch_size = internal_batch_size
        self._runners: dict[tuple[int, int, int], tuple[GraphRunner, dict[str, Any]]] = {}

    def _input_channels(self) -> int:
        dims = static_dims(image_io(self.model)[0])
        return dims[1] if dims[1] else 3

    def runner(self, input_shape: tuple[int, int, int]) -> tuple[GraphRunner, dict[str, Any]]:
        """The runner for one input size (graph from the cache, built on a miss)."""
        if input_shape not in self._runners:
            start = time.perf_counter()
            source = self.model_path if self.model_path is not None else self.model
            graph_path, hit = self.cache.get_or_build(source, self.sha256, input_shape)
            graph_seconds = time.perf_counter() - start
            runner = GraphRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                                 cache_dir=self.cache.root)
            info = {"graph_cache_hit": hit, "graph_seconds": graph_seconds, "graph_path": str(graph_path),
                    "session_seconds": runner.session_seconds}
            self._runners[input_shape] = (runner, info)
        return self._runners[input_shape]

    def attribute(self, image: ImageSource, window: tuple[int, int] = (0, 0), size: int = 16,
                  steps: int = 100, sigma: float = 1.2, kernel_size: int = 9, method: str = "lam",
                  baselines: Optional[np.ndarray] = None, rule: str = "right", hr: bool = False,
                  scale: Optional[int] = None, internal_batch_size: Optional[int] = None,
                  progress: Any = None) -> LAMResult:
        """Attribute the ``size`` x ``size`` SR-output patch whose top-left corner is ``window``
        = (x = column, y = row) in SR pixels. ``progress``: a callable(n_done) or None."""
        t0 = time.perf_counter()
        img = self.load(image, hr, scale)
        path = make_path(method, img, steps=steps, sigma=sigma, kernel_size=kernel_size,
                         baseline=baselines, rule=rule)
        t_path = time.perf_counter()
        runner, info = self.runner(tuple(img.shape))
        if internal_batch_size is not None:
            if internal_batch_size < 1:
                raise InputError(f"batch size must be >= 1, got {internal_batch_size}")
            runner.batch_size = internal_batch_size
        x, y = (int(v) for v in window)
        win = check_window(x, y, size, runner.output_shape)
        ends, sr = runner.evaluate(np.stack([img, path.baseline]), win)
        t_ends = time.perf_counter()
        out = runner.run(path.points, path.weights, win, progress)
        attribution = out.attribution.astype(np.float32)
        saliency = metrics.abs_normalised(attribution)
        gap, rel = metrics.completeness(float(out.attribution.sum()), float(ends[0]), float(ends[1]))
        timings = {"load_and_path": t_path - t0, "graph": info["graph_seconds"],
                   "session": info["session_seconds"], "endpoints": t_ends - t_path,
                   "integral": out.seconds, "total": time.perf_counter() - t0}
        meta = self.describe(runner, info, path, steps, sigma, kernel_size, rule, timings, out.chunks)
        return LAMResult(
            attribution=attribution, saliency=saliency, gini=metrics.gini(saliency),
            diffusion_index=metrics.diffusion_index(saliency), detector_input=float(ends[0]),
            detector_baseline=float(ends[1]), completeness_gap=gap, completeness_gap_relative=rel,
            alphas=path.alphas, detector_path=out.detector, contributions=out.contribution, image=img,
            sr_output=sr[0], window=(x, y, int(size)), scale=int(round(runner.output_shape[1] / img.shape[1])),
            method=method, meta=meta)

    def load(self, image: ImageSource, hr: bool, scale: Optional[int]) -> np.ndarray:
        img = load_image(image, self.channels)
        if hr:
            if not scale or scale < 1:
                raise InputError("--hr needs the model's scale (--scale S, S >= 1)")
            img = hr_to_lr(img, int(scale))
        return img

    def describe(self, runner: GraphRunner, info: dict, path, steps, sigma, kernel_size, rule, timings,
                 chunks) -> dict[str, Any]:
        """How this result was made: enough to reproduce it from the result file alone."""
        return {
            "model": {"path": str(self.model_path) if self.model_path else None, "sha256": self.sha256,
                      "input_shape": list(runner.input_shape), "output_shape": list(runner.output_shape)},
            "parameters": {"method": path.method, "steps": steps, "sigma": sigma, "kernel_size": kernel_size,
                           "rule": rule, "path_points": len(path), "detector": "gradient", "reduce": "sum",
                           **{k: v for k, v in path.params.items() if k not in ("steps", "sigma", "kernel_size")}},
            "runtime": {"provider": runner.provider, "providers_used": runner.session.get_providers(),
                        "batch_size": runner.batch_size, "chunks": chunks, "threads": self.threads,
                        "graph_cache_hit": info["graph_cache_hit"], "graph_path": info["graph_path"]},
            "timings_seconds": {k: round(v, 6) for k, v in timings.items()},
            "versions": {"lam_trt": lam_trt.__version__, "onnxruntime": ort.__version__,
                         "onnx": onnx.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpu_count": os.cpu_count()},
        }


def check_window(x: int, y: int, size: int, output_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(top, left, height, width) for the graph; the window must lie inside the detector map."""
    _, height, width = output_shape
    if size < 1:
        raise InputError(f"window size must be >= 1, got {size}")
    if x < 0 or y < 0 or x + size > width - 1 or y + size > height - 1:
        raise InputError(f"window x={x} y={y} size={size} is outside the SR output {width}x{height}: need "
                         f"0 <= x <= {width - 1 - size} and 0 <= y <= {height - 1 - size}")
    return y, x, size, size


def attribute(model: str | os.PathLike | onnx.ModelProto, image: ImageSource, window: tuple[int, int] = (0, 0),
              provider: str = "auto", **kwargs: Any) -> LAMResult:
    """One-shot ``Attributor(model, provider).attribute(image, window, ...)``."""
    return Attributor(model, provider=provider).attribute(image, window=window, **kwargs)


__all__ = ["Attributor", "attribute", "check_window"]
