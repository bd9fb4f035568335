"""Attributor: LAM (and the paper's comparison methods) for one ONNX model, end to end.

image -> path (kernels) -> attribution graph (export, cached) -> runner -> LAMResult.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import onnx
import onnxruntime as ort

import lam_trt
from lam_trt import metrics
from lam_trt.cache import GraphCache
from lam_trt.crop import CropPlan, plan_crop
from lam_trt.device import GPU_RULES, DeviceRunner, device_blur_path, device_usable
from lam_trt.errors import InputError, UnsupportedOpError
from lam_trt.export.autodiff import unsupported_nodes
from lam_trt.export.inspect import inspect_model
from lam_trt.export.options import GraphOptions, export_warnings
from lam_trt.export.source import image_io, load_model, model_sha256, static_dims
from lam_trt.images import ImageSource, hr_to_lr, load_image
from lam_trt.kernels import make_path
from lam_trt.result import LAMResult
from lam_trt.providers import resolve, session_options, session_providers
from lam_trt.runner import GraphRunner


class Attributor:
    """Keeps one ONNX Runtime session per input size, so many windows and images reuse it.

    ``model``: path to an ONNX SR network (or a ModelProto); ``provider``: auto, cpu, cuda, tensorrt.
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, provider: str = "auto",
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 internal_batch_size: int | None = None, fp16: bool = False,
                 graph_options: GraphOptions | None = None):
        self.model_path = None if isinstance(model, onnx.ModelProto) else Path(model)
        self.model = load_model(model)
        image_io(self.model)  # fail early on anything that is not image-to-image
        missing = unsupported_nodes(self.model)
        if missing:
            raise UnsupportedOpError(missing)
        self.sha256 = model_sha256(model)
        self.channels = self._input_channels()
        self.provider = resolve(provider)  # an unavailable provider is refused before any work
        self.cache = GraphCache(cache_dir)
        self.threads = threads
        self.internal_batch_size = internal_batch_size
        self.fp16 = fp16  # TensorRT only: half-precision engines (report the error against fp32)
        self.graph_options = graph_options or GraphOptions()  # random nodes, straight-through
        self._runners: dict[tuple[int, int, int], tuple[GraphRunner, dict[str, Any]]] = {}
        self._forward: Optional[ort.InferenceSession] = None
        self._stream: Any = None
        self._fields: dict[tuple[int, int], Any] = {}

    def _input_channels(self) -> int:
        dims = static_dims(image_io(self.model)[0])
        return dims[1] if dims[1] else 3

    def runner(self, input_shape: tuple[int, int, int]) -> tuple[GraphRunner, dict[str, Any]]:
        """The runner for one input size (graph from the cache, built on a miss)."""
        if input_shape not in self._runners:
            start = time.perf_counter()
            source = self.model_path if self.model_path is not None else self.model
            graph_path, hit = self.cache.get_or_build(source, self.sha256, input_shape, options=self.graph_options)
            graph_seconds = time.perf_counter() - start
            if device_usable(self.provider):
                runner = DeviceRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                                      cache_dir=self.cache.root, stream=self.stream(), fp16=self.fp16)
            else:
                runner = GraphRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                                     cache_dir=self.cache.root)
            info = {"graph_cache_hit": hit, "graph_seconds": graph_seconds, "graph_path": str(graph_path),
                    "session_seconds": runner.session_seconds, "export_warnings": say_export_warnings(graph_path)}
            self._runners[input_shape] = (runner, info)
        return self._runners[input_shape]

    def attribute(self, image: ImageSource, window: tuple[int, int] = (0, 0), size: int = 16,
                  steps: int = 100, sigma: float = 1.2, kernel_size: int = 9, method: str = "lam",
                  baselines: Optional[np.ndarray] = None, rule: str = "right", hr: bool = False,
                  scale: Optional[int] = None, internal_batch_size: Optional[int] = None,
                  crop: bool | str = "auto", progress: Any = None) -> LAMResult:
        """Attribute the ``size`` x ``size`` SR-output patch whose top-left corner is ``window``
        = (x = column, y = row) in SR pixels. ``crop``: "auto" (receptive-field cropping where it
        is exact), True (the same, but say why when it is not possible), or False.
        ``progress``: a callable(n_done) or None."""
        if internal_batch_size is not None and internal_batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {internal_batch_size}")
        t0 = time.perf_counter()
        img = self.load(image, hr, scale)
        if method == "lam" and rule in GPU_RULES and device_usable(self.provider):
            path = device_blur_path(img, sigma, steps, kernel_size, rule, self.stream())
        else:
            path = make_path(method, img, steps=steps, sigma=sigma, kernel_size=kernel_size,
                             baseline=baselines, rule=rule)
        x, y, size = int(window[0]), int(window[1]), int(size)
        t_path = time.perf_counter()
        sr = self.forward(np.stack([img, path.baseline]))
        check_window(x, y, size, sr.shape[1:])
        ends = metrics.gradient_detector(sr, (y, x, size, size))
        sr_scale = sr.shape[2] / img.shape[1]
        plan = self.verified(self.plan(img, (x, y, size), sr_scale, crop), img, sr[0], (x, y, size), sr_scale)
        t_ends = time.perf_counter()
        runner, info = self.runner(crop_arrays(plan, img[None])[0].shape[1:])
        if internal_batch_size is not None:
            runner.batch_size = internal_batch_size
        points, weights = crop_arrays(plan, path.points, path.weights)
        cx, cy = plan.sr_window(x, y, int(sr_scale)) if plan.applied else (x, y)
        out = runner.run(points, weights, (cy, cx, size, size), progress)
        attribution = paste(plan, out.attribution.astype(np.float32), img.shape)
        saliency = metrics.abs_normalised(attribution)
        gap, rel = metrics.completeness(float(out.attribution.sum()), float(ends[0]), float(ends[1]))
        timings = {"load_and_path": t_path - t0, "graph": info["graph_seconds"],
                   "session": info["session_seconds"], "endpoints": t_ends - t_path,
                   "integral": out.seconds, "total": time.perf_counter() - t0}
        meta = self.describe(runner, info, path, steps, sigma, kernel_size, rule, timings, out.chunks)
        meta["crop"] = plan.as_dict()
        return LAMResult(
            attribution=attribution, saliency=saliency, gini=metrics.gini(saliency),
            diffusion_index=metrics.diffusion_index(saliency), detector_input=float(ends[0]),
            detector_baseline=float(ends[1]), completeness_gap=gap, completeness_gap_relative=rel,
            alphas=path.alphas, detector_path=out.detector, contributions=out.contribution, image=img,
            sr_output=sr[0], window=(x, y, size), scale=int(round(sr_scale)), method=method, meta=meta)

    def stream(self) -> Any:
        """The one CUDA stream shared by the path kernel and ONNX Runtime (made on first use)."""
        if self._stream is None:
            import cupy
            self._stream = cupy.cuda.Stream(non_blocking=True)
        return self._stream

    def forward(self, images: np.ndarray) -> np.ndarray:
        """F(images) [N, C', H, W] from the plain model (one ONNX Runtime session, made on first use)."""
        if self._forward is None:
            self._forward = ort.InferenceSession(self.model.SerializeToString(), session_options(self.threads),
                                                 providers=session_providers(self.provider))
        name = self._forward.get_inputs()[0].name
        try:
            return np.concatenate([self._forward.run(None, {name: image[None]})[0] for image in images])
        except Exception as e:  # ORT raises its own exception types for shape mismatches
            _, c, h, w = images.shape
            raise InputError(f"the model cannot run on a {h}x{w} image with {c} channels: "
                             f"{str(e).splitlines()[0][:200]}") from None

    def plan(self, img: np.ndarray, window: tuple[int, int, int], sr_scale: float, crop: bool | str) -> CropPlan:
        if crop is False or crop == "off":
            return CropPlan(False, "cropping switched off")
        if any(static_dims(image_io(self.model)[0])[2:]):
            return CropPlan(False, "the model has a fixed input size")
        h, w = img.shape[1:]
        if (h, w) not in self._fields:
            self._fields[(h, w)] = inspect_model(self.model, size=(h, w))["receptive_field"]
        return plan_crop((h, w), window, sr_scale, self._fields[(h, w)])

    def verified(self, plan: CropPlan, img: np.ndarray, full_sr: np.ndarray, window: tuple[int, int, int],
                 sr_scale: float) -> CropPlan:
        """The plan, if the cropped network reproduces the full output in the window (else no crop)."""
        if not plan.applied:
            return plan
        x, y, size = window
        cx, cy = plan.sr_window(x, y, int(sr_scale))
        mine = self.forward(crop_arrays(plan, img[None])[0])[0][:, cy:cy + size + 1, cx:cx + size + 1]
        full = full_sr[:, y:y + size + 1, x:x + size + 1]
        err = float(np.abs(mine - full).max())
        if err <= 1e-5 * max(float(np.abs(full).max()), 1.0):
            return plan
        return CropPlan(False, f"the cropped network's output differs in the window (max {err:.2g})")


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
                        "precision": "fp16" if self.fp16 and runner.provider == "tensorrt" else "fp32",
                        "path_generator": path.params.get("generator", "numpy"),
                        "denormals_as_zero": runner.session.get_session_options().get_session_config_entry(
                            "session.set_denormal_as_zero") == "1",
                        "graph_cache_hit": info["graph_cache_hit"], "graph_path": info["graph_path"]},
            "timings_seconds": {k: round(v, 6) for k, v in timings.items()},
            "graph_options": self.graph_options.to_dict(), "export_warnings": info["export_warnings"],
            "versions": {"lam_trt": lam_trt.__version__, "onnxruntime": ort.__version__,
                         "onnx": onnx.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpu_count": os.cpu_count()},
        }


def say_export_warnings(graph_path: Path) -> list[str]:
    """What the graph build found (random nodes fixed, gradients cut): on stderr once, and returned."""
    found = export_warnings(onnx.load(str(graph_path), load_external_data=False))
    for warning in found:
        print(f"lam-trt: warning: {warning}", file=sys.stderr)
    return found


def crop_arrays(plan: CropPlan, *arrays: np.ndarray) -> list[np.ndarray]:
    """[N, C, h, w] arrays cut to the plan's region (contiguous), or as they are."""
    if not plan.applied:
        return list(arrays)
    rows, cols = slice(plan.top, plan.top + plan.height), slice(plan.left, plan.left + plan.width)
    return [a[:, :, rows, cols].copy() for a in arrays]  # copy: contiguous, NumPy or CuPy


def paste(plan: CropPlan, attribution: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The cropped map placed in a full-size map of zeros (exact: nothing outside can contribute)."""
    if not plan.applied:
        return attribution
    full = np.zeros(shape, np.float32)
    full[:, plan.top:plan.top + plan.height, plan.left:plan.left + plan.width] = attribution
    return full


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
