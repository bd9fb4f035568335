"""Attributor: LAM (and the paper's comparison methods) for one ONNX model, end to end.

image -> path (kernels) -> endpoints -> crop -> attribution graph (export, cached) -> runner -> LAMResult.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from lam_trt import metrics
from lam_trt.cache import GraphCache
from lam_trt.crop import Crop
from lam_trt.device import DeviceRunner, device_usable
from lam_trt.errors import InputError, LamTrtError, ModelError
from lam_trt.export import WINDOW_BOUND, GraphOptions, load_source_model
from lam_trt.images import ImageSource, hr_to_lr, read_image
from lam_trt.kernels import IntegrationPath, make_path
from lam_trt.provenance import describe_input, describe_run, pixels_sha256, timestamp
from lam_trt.result import LAMResult, Run, batch_warnings, output_warnings, window_result, windows_warnings
from lam_trt.providers import resolve, session_options, session_providers
from lam_trt.runner import GraphOutputs, GraphRunner, check_forward_fits, scaled_progress
from lam_trt.window import Window, check_window, resolve_windows
from lam_trt.window_groups import group_windows

GraphInfo = dict[str, Any]  # how a runner's graph was got this time (cache hit, seconds, path, warnings)


class Attributor:
    """Keeps one ONNX Runtime session per input size, so many windows and images reuse it.

    ``model``: path to an ONNX SR network (or a ModelProto), read once; ``provider``: auto, cpu, cuda,
    tensorrt; ``fp16``: TensorRT only, half-precision engines (report the error against fp32).

    ``attribute(image, window, size, ...)`` attributes the ``size`` x ``size`` SR-output patch whose
    top-left corner is ``window`` = (x = column, y = row) in SR pixels (None: centred on the SR output);
    with ``windows`` = [(x, y) or (x, y, size), ...] instead, every one of them, returned as a list in
    order: the path and its forward passes are shared, the reverse passes run together.
    ``hr``: ``image`` is an HR image, downscaled by ``scale`` (default: the model's own scale, which a
    given one must match). ``crop``: "auto" (receptive-field cropping where it is exact), True (the
    same, but say why when it is not possible), or False. ``progress``: a callable(n_done) or None.
    ``gap_warning``: the |relative completeness gap| above which the result carries a warning.
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto, provider: str = "auto",
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                 internal_batch_size: int | None = None, fp16: bool = False,
                 graph_options: GraphOptions | None = None):
        self.source = load_source_model(model)  # refuses what cannot be attributed, before any work
        self.model, self.model_path, self.sha256 = self.source.proto, self.source.path, self.source.sha256
        self.channels = self.source.channels
        self.provider = resolve(provider)  # an unavailable provider is refused before any work
        self.cache = GraphCache(cache_dir)
        self.threads = threads
        self.internal_batch_size = internal_batch_size
        self.fp16 = fp16
        self.graph_options = graph_options or GraphOptions()  # random nodes, straight-through, window bound
        self._runners: dict[tuple[int, ...], tuple[GraphRunner, GraphInfo]] = {}  # (C, h, w, window bound)
        self._forward: Optional[ort.InferenceSession] = None
        self._stream: Any = None
        self._scale: Optional[int] = None
        self._output_shapes: dict[tuple[int, ...], tuple[int, ...]] = {}

    def attribute(self, image: ImageSource, window: Optional[tuple[int, int]] = None, size: int = 16,
                  steps: int = 100, sigma: float = 1.2, kernel_size: int = 9, method: str = "lam",
                  baselines: Optional[np.ndarray] = None, rule: str = "right", hr: bool = False,
                  scale: Optional[int] = None, internal_batch_size: Optional[int] = None,
                  crop: bool | str = "auto", progress: Any = None, gap_warning: float = metrics.GAP_WARNING,
                  windows: Optional[Sequence[tuple[int, int]]] = None) -> LAMResult | list[LAMResult]:
        """The attribution of one window of ``image``, or with ``windows`` a list, one per window in
        order, from one path and one forward pass per path image (the class docstring says more)."""
        check_batch_size(internal_batch_size)
        clock = Clock()
        img, source, hr_image = self.prepare(image, hr, scale)
        path = make_path(method, img, steps=steps, sigma=sigma, kernel_size=kernel_size, baseline=baselines,
                         rule=rule, stream=self.stream() if device_usable(self.provider) else None)
        clock.lap("load_and_path")
        sr = self.endpoints(img, path, source if hr else None)
        wins = resolve_windows(window, windows, size, sr.shape[1:])
        call = Call(img, sr, path, source, hr_image, {"steps": steps, "sigma": sigma, "kernel_size": kernel_size,
                                                      "rule": rule}, gap_warning, internal_batch_size, clock)
        results = self.attribute_windows(call, wins, crop, progress)
        return results if windows is not None else results[0]

    def attribute_windows(self, call: Call, wins: list[Window], crop: bool | str, progress: Any) -> list[LAMResult]:
        """The results of ``wins``, in order, from one run per group of windows that share a crop."""
        results: list[Any] = [None] * len(wins)
        groups = self.window_groups(crop, call.image, call.sr, wins)
        tick = scaled_progress(progress, len(groups))
        for members in groups:
            group = [wins[k] for k in members]
            region = self.crop(crop, call.image, call.sr[0], group)
            call.clock.lap("endpoints")
            largest = max(w.size for w in group)  # the graph's window bound must hold it
            runner, info = self.runner(region.cut(call.image[None])[0].shape[1:], largest)
            out = self.integrate(runner, region, call.path, group, call.batch_size, tick)
            run = self.run_record(call.image, call.sr, call.path, region, runner, info, out, call.clock, call.source,
                                  call.hr_image, call.parameters, call.gap_warning)
            for i, k in enumerate(members):
                results[k] = window_result(run, wins[k].xy_size, out.attribution[i], out.detector[i],
                                           out.contribution[i])
        return results

    def window_groups(self, crop: bool | str, img: np.ndarray, sr: np.ndarray, wins: list[Window]) -> list[list[int]]:
        """Windows that share one crop and one run (all of them unless cropping splits them cheaper)."""
        scale = sr.shape[2] / img.shape[1]
        if crop is False or crop == "off" or self.source.fixed_size or len(wins) == 1 or scale != int(scale):
            return [list(range(len(wins)))]
        return group_windows(img.shape[1:], wins, int(scale), self.source.receptive_field(img.shape[1:]))

    def endpoints(self, img: np.ndarray, path: IntegrationPath, hr_source: Optional[dict[str, Any]]) -> np.ndarray:
        """F(I) and F(I') [2, C', H, W]; with --hr, the model must upscale by the scale given."""
        sr = self.forward(np.stack([img, path.baseline]))
        if hr_source is not None:  # before the window: a wrong scale is the first thing to say
            check_hr_scale(hr_source["conversions"][-1]["scale"], img.shape, sr.shape)
        return sr

    def crop(self, crop: bool | str, img: np.ndarray, full_sr: np.ndarray, windows: list[Window]) -> Crop:
        """The receptive-field crop for ``windows``, verified against the full output (or none, and why)."""
        if crop is False or crop == "off":
            return Crop.off("cropping switched off")
        if self.source.fixed_size:
            return Crop.off("the model has a fixed input size")
        sr_scale = full_sr.shape[1] / img.shape[1]
        plan = Crop.plan(img.shape[1:], windows, sr_scale, self.source.receptive_field(img.shape[1:]))
        return plan.verify(self.forward, img, full_sr, windows, int(sr_scale))

    def integrate(self, runner: GraphRunner, region: Crop, path: IntegrationPath, windows: list[Window],
                  batch_size: Optional[int], progress: Any) -> GraphOutputs:
        """The runner's sums over the path, cut to the crop, per window (in the crop's coordinates)."""
        if batch_size is not None:
            runner.batch_size = batch_size
        points, weights = region.cut(path.points, path.weights)
        scale = runner.output_shape[1] // runner.input_shape[1]
        return runner.run(points, weights, [region.window(w, scale).graph for w in windows], progress)

    def run_record(self, img: np.ndarray, sr: np.ndarray, path: IntegrationPath, region: Crop,
                   runner: GraphRunner, info: GraphInfo, out: GraphOutputs, clock: Clock,
                   source: dict[str, Any], hr_image: Optional[np.ndarray], parameters: dict[str, Any],
                   gap_warning: float) -> Run:
        """What the run's windows share: warnings about the model, graph and run, and provenance."""
        warnings = [*output_warnings(img.shape, sr.shape[1:]), *info["warnings"],
                    *batch_warnings(runner.batch_fallback), *windows_warnings(runner.windows_limit, len(out.detector))]
        timings = {**clock.laps, "graph": info["graph_seconds"], "session": info["session_seconds"],
                   "integral": out.seconds}
        timings = {k: timings[k] for k in ("load_and_path", "graph", "session", "endpoints", "integral")}
        runtime = {"chunks": out.chunks, "windows": len(out.detector), "threads": self.threads,
                   "precision": "fp16" if self.fp16 and runner.provider == "tensorrt" else "fp32"}
        meta = {"created": timestamp(), "input": source,
                **describe_run(self.source, runner, {**info, "graph_options": runner.graph_options}, path,
                               parameters, runtime, {**timings, "total": clock.total()}),
                "crop": region.as_dict()}
        return Run(img, sr, path.alphas, path.method, region, warnings, meta, hr_image, gap_warning)

    def runner(self, input_shape: tuple[int, int, int], window: int = WINDOW_BOUND) -> tuple[GraphRunner, GraphInfo]:
        """The runner for one input size and windows up to ``window`` SR pixels a side (graph from
        the cache, built on a miss) and how it was got this time: a runner kept from an earlier call
        costs no graph and no session time."""
        options = self.graph_options.for_windows(window)
        key = (*input_shape, options.window_bound)
        if key in self._runners:
            runner, info = self._runners[key]
            return runner, {**info, "graph_cache_hit": True, "graph_source": "memory", "graph_seconds": 0.0,
                            "session_seconds": 0.0}
        start = time.perf_counter()
        runner, graph_path, hit, warnings = self.cache.open(self.model, self.sha256, input_shape, self._open,
                                                            options=options)
        info = {"graph_cache_hit": hit, "graph_source": "disk cache" if hit else "built",
                "graph_seconds": time.perf_counter() - start - runner.session_seconds,
                "graph_path": str(graph_path), "session_seconds": runner.session_seconds,
                "export_warnings": runner.export_notes, "warnings": [*warnings, *runner.graph_warnings]}
        self._runners[key] = (runner, info)
        return runner, info

    def _open(self, graph_path: Path) -> GraphRunner:
        """A runner (an ONNX Runtime session) of the graph at ``graph_path``; one line if ORT rejects it."""
        try:
            if device_usable(self.provider):
                return DeviceRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                                    cache_dir=self.cache.root, stream=self.stream(), fp16=self.fp16)
            return GraphRunner(graph_path, self.provider, self.threads, self.internal_batch_size,
                               cache_dir=self.cache.root, fp16=self.fp16)
        except LamTrtError:
            raise
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own exception types
            raise ModelError("ONNX Runtime cannot load this model's attribution graph: "
                             f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__}") from None

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
        self.source.check_accepts(lr.shape)
        check_forward_fits(self.source, lr.shape, self.provider)
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

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C, H, W) of the SR output for an LR image of shape (C, h, w): one forward pass of a blank
        image, kept per shape, so windows can be laid out before any attribution."""
        key = tuple(int(d) for d in input_shape)
        if key not in self._output_shapes:
            self._output_shapes[key] = tuple(self.forward(np.zeros((1, *key), np.float32)).shape[1:])
        return self._output_shapes[key]

    def model_scale(self) -> int:
        """The model's integer scale, from the output of a blank probe image (static size if the
        model has one, else 32 x 32)."""
        if self._scale is None:
            h, w = (self.source.fixed_hw[0] or 32), (self.source.fixed_hw[1] or 32)
            try:
                out = self.output_shape((self.channels, h, w))
            except InputError:
                raise InputError("cannot tell the model's scale (it does not run on a blank "
                                 f"{h}x{w} probe); give it with --scale S") from None
            if out[1] * w != out[2] * h or out[1] % h or out[1] < h:
                raise InputError(f"the model's output ({out[2]}x{out[1]} for {w}x{h}) is not an integer "
                                 "upscaling of its input, so it has no scale for --hr")
            self._scale = out[1] // h
        return self._scale


@dataclass
class Call:
    """What every window of one ``attribute`` call shares."""

    image: np.ndarray                 # LR input [C, h, w]
    sr: np.ndarray                    # F(I) and F(I') [2, C', H, W]
    path: IntegrationPath
    source: dict[str, Any]            # where the image came from and how it was converted
    hr_image: Optional[np.ndarray]
    parameters: dict[str, Any]        # steps, sigma, kernel size, rule
    gap_warning: float
    batch_size: Optional[int]
    clock: Clock


class Clock:
    """Seconds since it was made, and named laps between marks."""

    def __init__(self) -> None:
        self.start = self.mark = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self.mark = now - self.mark, now

    def total(self) -> float:
        return time.perf_counter() - self.start


def check_batch_size(batch_size: Optional[int]) -> None:
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")


def check_hr_scale(scale: int, lr_shape: tuple[int, ...], sr_shape: tuple[int, ...]) -> None:
    """--hr downscaled by ``scale``: the model must upscale by exactly that much."""
    h, h_out = lr_shape[1], sr_shape[2]
    if h_out != scale * h:
        raise InputError(f"--scale {scale} does not match the model, whose output is {h_out / h:g}x its input; "
                         "leave --scale out to use the model's own")


def attribute(model: str | os.PathLike | onnx.ModelProto, image: ImageSource, window: Optional[tuple[int, int]] = None,
              provider: str = "auto", **kwargs: Any) -> LAMResult:
    """One-shot ``Attributor(model, provider).attribute(image, window, ...)``."""
    return Attributor(model, provider=provider).attribute(image, window=window, **kwargs)


__all__ = ["Attributor", "attribute", "check_window"]
