"""Attributor: LAM (and the paper's comparison methods) for one ONNX model, end to end.

image -> path (kernels) -> attribution graph (export, cached) -> runner -> LAMResult.
"""
from __future__ import annotations

import json
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
from lam_trt.crop import CropPlan, plan_crop
from lam_trt.device import GPU_RULES, DeviceRunner, device_blur_path, device_usable
from lam_trt.errors import InputError, LamTrtError, ModelError
from lam_trt.export.autodiff import check_differentiable
from lam_trt.export.model_report import check_accepts, inspect_model
from lam_trt.export.options import WARNINGS_KEY as EXPORT_WARNINGS_KEY, GraphOptions
from lam_trt.export.source import external_data_files, image_io, load_model, model_sha256, static_dims
from lam_trt.images import ImageSource, hr_to_lr, read_image
from lam_trt.kernels import make_path
from lam_trt.provenance import describe_input, pixels_sha256, timestamp
from lam_trt.result import (BATCH_FALLBACK, COMPLETENESS_GAP, DEGENERATE_WINDOW, GRADIENT_CAVEAT,
                            NO_PATH_INTEGRAL, NOTHING_TO_ATTRIBUTE, OUTPUT_NOT_SR_IMAGE, PATH_METHODS,
                            WARNINGS_METADATA_KEY, LAMResult, ResultWarning, warnings_from_json)
from lam_trt.providers import resolve, session_options, session_providers
from lam_trt.runner import GraphRunner, check_forward_fits
from lam_trt.window import centre_window


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
        check_differentiable(self.model)  # the builder's own list: refused before any work
        self.sha256 = model_sha256(model)  # the .onnx and every external data file it names
        self.external_data = external_data_files(self.model_path) if self.model_path else []
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
        self._scale: Optional[int] = None

    def _input_channels(self) -> int:
        dims = static_dims(image_io(self.model)[0])
        return dims[1] if dims[1] else 3

    def runner(self, input_shape: tuple[int, int, int]) -> tuple[GraphRunner, dict[str, Any]]:
        """The runner for one input size (graph from the cache, built on a miss) and how it was
        got this time: a runner kept from an earlier call costs no graph and no session time."""
        if input_shape in self._runners:
            runner, info = self._runners[input_shape]
            return runner, {**info, "graph_cache_hit": True, "graph_source": "memory", "graph_seconds": 0.0,
                            "session_seconds": 0.0}
        start = time.perf_counter()
        source = self.model_path if self.model_path is not None else self.model
        runner, graph_path, hit, warnings = self.cache.open(source, self.sha256, input_shape, self._open,
                                                            options=self.graph_options)
        notes = json.loads(runner.metadata.get(EXPORT_WARNINGS_KEY, "[]"))  # random nodes fixed, gradients cut
        info = {"graph_cache_hit": hit, "graph_source": "disk cache" if hit else "built",
                "graph_seconds": time.perf_counter() - start - runner.session_seconds,
                "graph_path": str(graph_path), "session_seconds": runner.session_seconds, "export_warnings": notes,
                "warnings": [*warnings, *warnings_from_json(runner.metadata.get(WARNINGS_METADATA_KEY)),
                             *(ResultWarning(GRADIENT_CAVEAT, note) for note in notes)]}
        self._runners[input_shape] = (runner, info)
        return runner, info

    def _open(self, graph_path: Path) -> GraphRunner:
        """A runner (an ONNX Runtime session) of the graph at ``graph_path``; one line if ORT rejects it."""
        try:
            if device_usable(self.provider):
                runner = DeviceRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                                      cache_dir=self.cache.root, stream=self.stream(), fp16=self.fp16)
            else:
                runner = GraphRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                                     cache_dir=self.cache.root)
        except LamTrtError:
            raise
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own exception types
            raise ModelError("ONNX Runtime cannot load this model's attribution graph: "
                             f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__}") from None
        return runner

    def attribute(self, image: ImageSource, window: Optional[tuple[int, int]] = None, size: int = 16,
                  steps: int = 100, sigma: float = 1.2, kernel_size: int = 9, method: str = "lam",
                  baselines: Optional[np.ndarray] = None, rule: str = "right", hr: bool = False,
                  scale: Optional[int] = None, internal_batch_size: Optional[int] = None,
                  crop: bool | str = "auto", progress: Any = None,
                  gap_warning: float = metrics.GAP_WARNING) -> LAMResult:
        """Attribute the ``size`` x ``size`` SR-output patch whose top-left corner is ``window``
        = (x = column, y = row) in SR pixels (None: centred on the SR output). ``hr``: ``image`` is
        an HR image, downscaled by ``scale`` (default: the model's own scale, which a given one must
        match). ``crop``: "auto" (receptive-field cropping where it is exact), True (the same, but say
        why when it is not possible), or False. ``progress``: a callable(n_done) or None.
        ``gap_warning``: the |relative completeness gap| above which the result carries a warning."""
        if internal_batch_size is not None and internal_batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {internal_batch_size}")
        t0 = time.perf_counter()
        img, source, hr_image = self.prepare(image, hr, scale)
        if method == "lam" and rule in GPU_RULES and device_usable(self.provider):
            path = device_blur_path(img, sigma, steps, kernel_size, rule, self.stream())
        else:
            path = make_path(method, img, steps=steps, sigma=sigma, kernel_size=kernel_size,
                             baseline=baselines, rule=rule)
        t_path = time.perf_counter()
        sr = self.forward(np.stack([img, path.baseline]))
        if hr:  # before the window: a wrong scale is the first thing to say
            check_hr_scale(source["conversions"][-1]["scale"], img.shape, sr.shape)
        x, y, size = window_integers(window if window is not None else centre_window(sr.shape[2:], size), size)
        check_window(x, y, size, sr.shape[1:])
        sr_scale = sr.shape[2] / img.shape[1]
        ends = metrics.gradient_detector(sr, (y, x, size, size))
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
        numbers, warnings = judge(method, out.attribution, saliency, (float(ends[0]), float(ends[1])),
                                  sr[0], size, gap_warning)
        warnings = [*output_warnings(img.shape, sr.shape[1:]), *info["warnings"],
                    *batch_warnings(runner.batch_fallback), *warnings]
        timings = {"load_and_path": t_path - t0, "graph": info["graph_seconds"],
                   "session": info["session_seconds"], "endpoints": t_ends - t_path,
                   "integral": out.seconds, "total": time.perf_counter() - t0}
        meta = {"created": timestamp(), "input": source,
                **self.describe(runner, info, path, steps, sigma, kernel_size, rule, timings, out.chunks)}
        meta["crop"] = plan.as_dict()
        return LAMResult(
            attribution=attribution, saliency=saliency, detector_input=float(ends[0]),
            detector_baseline=float(ends[1]), alphas=path.alphas, detector_path=out.detector,
            contributions=out.contribution, image=img, sr_output=sr[0], window=(x, y, size),
            scale=int(round(sr_scale)), method=method, meta=meta, warnings=warnings, hr_image=hr_image,
            **numbers)

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


    def load(self, image: ImageSource, hr: bool = False, scale: Optional[int] = None) -> np.ndarray:
        """The model's LR input from ``image`` (with ``hr``: downscaled by ``scale``)."""
        return self.prepare(image, hr, scale)[0]

    def prepare(self, image: ImageSource, hr: bool, scale: Optional[int]
                ) -> tuple[np.ndarray, dict[str, Any], Optional[np.ndarray]]:
        """(LR input, where it came from and how it was converted, the HR image or None)."""
        loaded = read_image(image, self.channels)
        source = describe_input(image, self.channels, loaded.pixels, loaded.conversions)
        if hr:
            lr, hr_image = self.downscale(loaded.pixels, scale, source)
        else:
            lr, hr_image = loaded.pixels, None
        check_accepts(self.model, lr.shape)
        check_forward_fits(self.model, lr.shape)
        return lr, source, hr_image

    def downscale(self, hr_pixels: np.ndarray, scale: Optional[int], source: dict[str, Any]
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(LR input, HR image cropped to a multiple of the scale); the step recorded in ``source``."""
        given = scale is not None
        if given and (not isinstance(scale, (int, np.integer)) or scale < 1):
            raise InputError(f"--scale must be a positive integer, got {scale!r}")
        s = int(scale) if given else self.model_scale()
        lr = hr_to_lr(hr_pixels, s)
        h, w = lr.shape[1] * s, lr.shape[2] * s
        source["conversions"].append({
            "step": "HR downscale", "scale": s, "scale_from": "--scale" if given else "the model",
            "hr_size": list(hr_pixels.shape[1:]), "cropped_to": [h, w], "lr_size": list(lr.shape[1:]),
            "how": "cropped from the top-left to a multiple of the scale, then Pillow's antialiased "
                   "bicubic resize of each channel as float, clipped to [0, 1]"})
        source["pixels_sha256"] = pixels_sha256(lr)
        return lr, hr_pixels[:, :h, :w].copy()

    def model_scale(self) -> int:
        """The model's integer scale, from one forward pass of a blank probe image (static size
        if the model has one, else 32 x 32)."""
        if self._scale is None:
            dims = static_dims(image_io(self.model)[0])
            h, w = dims[2] or 32, dims[3] or 32
            try:
                out = self.forward(np.zeros((1, self.channels, h, w), np.float32)).shape
            except InputError:
                raise InputError("cannot tell the model's scale (it does not run on a blank "
                                 f"{h}x{w} probe); give it with --scale S") from None
            if out[2] * w != out[3] * h or out[2] % h or out[2] < h:
                raise InputError(f"the model's output ({out[3]}x{out[2]} for {w}x{h}) is not an integer "
                                 "upscaling of its input, so it has no scale for --hr")
            self._scale = out[2] // h
        return self._scale

    def describe(self, runner: GraphRunner, info: dict, path, steps, sigma, kernel_size, rule, timings,
                 chunks) -> dict[str, Any]:
        """How this result was made: enough to reproduce it from the result file alone."""
        return {
            "model": {"path": str(self.model_path) if self.model_path else None, "sha256": self.sha256,
                      "external_data": self.external_data,
                      "input_shape": list(runner.input_shape), "output_shape": list(runner.output_shape)},
            "parameters": {"method": path.method, "steps": steps, "sigma": sigma, "kernel_size": kernel_size,
                           "rule": rule, "path_points": len(path), "detector": "gradient", "reduce": "sum",
                           **{k: v for k, v in path.params.items() if k not in ("steps", "sigma", "kernel_size")}},
            "runtime": {"provider": runner.provider, "providers_used": runner.session.get_providers(),
                        "batch_size": runner.batch_size, "batch_fallback": runner.batch_fallback,
                        "chunks": chunks, "threads": self.threads,
                        "precision": "fp16" if self.fp16 and runner.provider == "tensorrt" else "fp32",
                        "path_generator": path.params.get("generator", "numpy"),
                        "denormals_as_zero": runner.session.get_session_options().get_session_config_entry(
                            "session.set_denormal_as_zero") == "1",
                        "graph_cache_hit": info["graph_cache_hit"], "graph_source": info["graph_source"],
                        "graph_path": info["graph_path"]},
            "timings_seconds": {k: round(v, 6) for k, v in timings.items()},
            "graph_options": self.graph_options.to_dict(), "export_warnings": info["export_warnings"],
            "versions": {"lam_trt": lam_trt.__version__, "onnxruntime": ort.__version__,
                         "onnx": onnx.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpu_count": os.cpu_count()},
        }


def judge(method: str, attribution: np.ndarray, saliency: np.ndarray, ends: tuple[float, float],
          sr: np.ndarray, size: int, gap_warning: float) -> tuple[dict[str, Any], list[ResultWarning]]:
    """The result's numbers, None where they mean nothing, and the warnings that say why."""
    d_input, d_baseline = ends
    warnings: list[ResultWarning] = []
    di = gini = gap = rel = None
    reason = metrics.degenerate_reason(attribution, d_input, size, metrics.mean_gradient(sr))
    if reason:
        warnings.append(ResultWarning(DEGENERATE_WINDOW, f"DI and Gini are undefined: {reason}",
                                      {"detector_input": d_input}))
    else:
        gini, di = metrics.gini(saliency), metrics.diffusion_index(saliency)
    if method not in PATH_METHODS:
        warnings.append(ResultWarning(NO_PATH_INTEGRAL, f"{method} is one gradient, not a path integral: "
                                      "it has no completeness gap"))
        return {"gini": gini, "diffusion_index": di, "completeness_gap": None,
                "completeness_gap_relative": None}, warnings
    gap, rel = metrics.completeness(float(attribution.sum(dtype=np.float64)), d_input, d_baseline)
    rel = rel if np.isfinite(rel) else None  # D(F(I)) = D(F(I')) exactly: no ratio
    if metrics.nothing_to_attribute(d_input, d_baseline):
        warnings.append(ResultWarning(NOTHING_TO_ATTRIBUTE, f"D(F(I)) {d_input:.4g} and D(F(I')) {d_baseline:.4g} "
                                      "are nearly equal: the path changes nothing to attribute, and the "
                                      "relative gap divides by almost nothing",
                                      {"difference": d_input - d_baseline}))
    elif abs(rel) > gap_warning:
        warnings.append(ResultWarning(COMPLETENESS_GAP, f"the completeness gap is {100 * rel:.1f}% of "
                                      f"D(F(I)) - D(F(I')), above {100 * gap_warning:g}%: use more --steps "
                                      "or --rule trapezoid", {"relative": rel, "threshold": gap_warning}))
    return {"gini": gini, "diffusion_index": di, "completeness_gap": gap, "completeness_gap_relative": rel}, warnings


def output_warnings(input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> list[ResultWarning]:
    """One warning when the output is not an image of the input's channels at an integer scale >= 2."""
    (c, h, w), (c_out, h_out, w_out) = input_shape, output_shape
    if c_out == c and h_out % h == 0 and h_out * w == w_out * h and h_out >= 2 * h:
        return []
    return [ResultWarning(OUTPUT_NOT_SR_IMAGE, f"the model maps {c}x{h}x{w} to {c_out}x{h_out}x{w_out}, not to "
                          f"an image of {c} channels at an integer scale >= 2; LAM assumes super-resolution",
                          {"input_shape": [c, h, w], "output_shape": [c_out, h_out, w_out]})]


def batch_warnings(fallback: Optional[str]) -> list[ResultWarning]:
    """One warning when the path images ran one per run (exact, slower) because the graph cannot batch."""
    if not fallback:
        return []
    return [ResultWarning(BATCH_FALLBACK, f"the attribution graph cannot run several path images at once "
                          f"({fallback}); they ran one at a time (exact, slower)", {"reason": fallback})]


def check_hr_scale(scale: int, lr_shape: tuple[int, ...], sr_shape: tuple[int, ...]) -> None:
    """--hr downscaled by ``scale``: the model must upscale by exactly that much."""
    h, h_out = lr_shape[1], sr_shape[2]
    if h_out != scale * h:
        raise InputError(f"--scale {scale} does not match the model, whose output is {h_out / h:g}x its input; "
                         "leave --scale out to use the model's own")


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
    if size > min(width, height) - 1:  # the detector needs one pixel beyond the window
        raise InputError(f"window size {size} is larger than the SR output {width}x{height} allows "
                         f"(at most {min(width, height) - 1})")
    if x < 0 or y < 0 or x + size > width - 1 or y + size > height - 1:
        raise InputError(f"window x={x} y={y} size={size} is outside the SR output {width}x{height}: need "
                         f"0 <= x <= {width - 1 - size} and 0 <= y <= {height - 1 - size}")
    return y, x, size, size


def window_integers(window: tuple[int, int], size: int) -> tuple[int, int, int]:
    """(x, y, size) as ints; a float or other non-integer coordinate is refused, never truncated."""
    values = (*tuple(window)[:2], size)
    if len(tuple(window)) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values):
        raise InputError(f"window (x, y) and size must be integers, got window={tuple(window)!r} size={size!r}")
    return int(values[0]), int(values[1]), int(values[2])


def attribute(model: str | os.PathLike | onnx.ModelProto, image: ImageSource, window: Optional[tuple[int, int]] = None,
              provider: str = "auto", **kwargs: Any) -> LAMResult:
    """One-shot ``Attributor(model, provider).attribute(image, window, ...)``."""
    return Attributor(model, provider=provider).attribute(image, window=window, **kwargs)


__all__ = ["Attributor", "attribute", "check_window"]
