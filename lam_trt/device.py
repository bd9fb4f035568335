"""The GPU path: path images made on the device, bound to ONNX Runtime by pointer, summed there.

With the CUDA or TensorRT provider and CuPy present, the CuPy kernel (kernels/blur_path.cu) writes
every path image and weight into device memory; ONNX Runtime reads them through IOBinding with no
host copy, writes each chunk's outputs into device buffers, and CuPy accumulates the map on the
device. CuPy and ONNX Runtime share one CUDA stream (ORT's ``user_compute_stream``), because ORT
does not synchronise with other streams. Only the final map and per-step values come back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lam_trt.errors import ModelError
from lam_trt.export import ort_message
from lam_trt.kernels import cuda_available
from lam_trt.runner import GraphRunner, ProgressFn


def device_usable(provider: str) -> bool:
    return provider in ("cuda", "tensorrt") and cuda_available()[0]


def uniform_chunks(points: Any, weights: Any, size: int, xp: Any = np) -> tuple[Any, Any, int]:
    """The path padded so that every run has the same batch: (points, weights, images per run).

    On an H100 (bench/RESULTS.md, "GPU") every attribution whose last chunk was ragged ran up to 10x
    slower than its graph at one batch: ONNX Runtime's CUDA provider pays heavily when the batch
    changes between runs. The chunks are as even as the count allows, and the last one is
    filled with copies of the last point under zero weight: they add exactly 0 to the map, and
    their detector and contribution values are dropped. ``xp``: numpy or cupy, as the arrays are."""
    n = len(points)
    count = -(-n // size)
    per = -(-n // count)
    pad = count * per - n
    if pad == 0:
        return points, weights, per
    padded_points = xp.concatenate([points, xp.repeat(points[-1:], pad, axis=0)])
    padded_weights = xp.concatenate([weights, xp.zeros((pad, *weights.shape[1:]), weights.dtype)])
    return padded_points, padded_weights, per


class DeviceRunner(GraphRunner):
    """A GraphRunner whose inputs and outputs stay on the GPU."""

    max_batch = 128  # a GPU wants large chunks; the memory budget still bounds them

    def __init__(self, graph_path: str | os.PathLike, provider: str, threads: int | None = None,
                 batch_size: int | None = None, memory_budget: int | None = None,
                 cache_dir: Path | None = None, fp16: bool = False, stream: Any = None):
        import cupy

        self.stream = stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
        self.device_id = cupy.cuda.Device().id
        super().__init__(graph_path, provider, threads, batch_size, memory_budget or (8 << 30), cache_dir, fp16)

    def providers(self, cache_dir: Path | None) -> list[Any]:
        """CUDA/TensorRT on our stream; TensorRT gets an engine cache and profiles for our chunks."""
        c, h, w = self.input_shape
        # device_id only off the default device: ONNX Runtime 1.26+ warns on stderr at every session
        # that names one ("No registered plugin EP device found"), seen on the H100 check.
        device = {"device_id": self.device_id} if self.device_id else {}
        cuda = ("CUDAExecutionProvider", {**device, "user_compute_stream": str(self.stream.ptr), "use_tf32": 0})
        if self.provider != "tensorrt":
            return [cuda, "CPUExecutionProvider"]
        shape = lambda n, k: f"path:{n}x{c}x{h}x{w},weights:{n}x{c}x{h}x{w},windows:{k}x4"
        trt = ("TensorrtExecutionProvider", {
            **device, "user_compute_stream": str(self.stream.ptr),
            "trt_fp16_enable": self.fp16, "trt_engine_cache_enable": cache_dir is not None,
            "trt_engine_cache_path": str((cache_dir or Path(".")) / "trt"),
            "trt_profile_min_shapes": shape(1, 1), "trt_profile_opt_shapes": shape(self.batch_hint, 1),
            "trt_profile_max_shapes": shape(self.batch_hint, self.windows_per_run())})
        return [trt, cuda, "CPUExecutionProvider"]

    def run_group(self, points: Any, weights: Any, windows: np.ndarray, progress: Optional[ProgressFn]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        import cupy

        k, n = len(windows), len(points)
        with self.stream:
            points, weights = cupy.asarray(points, cupy.float32), cupy.asarray(weights, cupy.float32)
            padded, padded_weights, size = uniform_chunks(points, weights, self.chunk_size(k), cupy)
            detector, contribution = cupy.empty((k, len(padded)), cupy.float32), cupy.empty((k, len(padded)), cupy.float32)
            total = cupy.zeros((k, *self.input_shape), cupy.float64)
            chunk_map = cupy.empty((k, *self.input_shape), cupy.float32)
            binding = self.session.io_binding()
            binding.bind_cpu_input("windows", np.ascontiguousarray(windows, np.int64))
            for chunks, lo in enumerate(range(0, len(padded), size), 1):
                per_item = self.run_bound(binding, padded[lo:lo + size], padded_weights[lo:lo + size], chunk_map)
                if per_item is None:  # fell back to one path image per run: the group again
                    return self.run_group(points, weights, windows, progress)
                total += chunk_map  # queued on the shared stream after ORT's kernels
                detector[:, lo:lo + size], contribution[:, lo:lo + size] = per_item
                if progress:
                    progress(min(lo + size, n) - lo)
            self.stream.synchronize()
        return cupy.asnumpy(detector[:, :n]), cupy.asnumpy(total), cupy.asnumpy(contribution[:, :n]), chunks

    def run_bound(self, binding: Any, points: Any, weights: Any, chunk_map: Any) -> Optional[list[Any]]:
        """One run on device buffers: the chunk's map into ``chunk_map``, and its (detector,
        contribution) [K, n]; None where a run of several path images fails, as on the CPU (from
        then on they run one at a time, and the result says so)."""
        import cupy

        n = len(points)
        per_item = [cupy.empty((chunk_map.shape[0], n), cupy.float32) for _ in range(2)]
        for name, array in (("path", points), ("weights", weights)):
            binding.bind_input(name, "cuda", self.device_id, np.float32, list(array.shape), array.data.ptr)
        for name, array in (("detector", per_item[0]), ("contribution", per_item[1]), ("attribution", chunk_map)):
            binding.bind_output(name, "cuda", self.device_id, np.float32, list(array.shape), array.data.ptr)
        try:
            self.session.run_with_iobinding(binding)
        except Exception as e:  # noqa: BLE001 - ORT's exceptions have no common base class
            if n == 1:
                raise ModelError(f"the attribution graph cannot run: onnxruntime failed ({ort_message(e)})") from None
            self.fall_back(f"onnxruntime failed at batch {n} ({ort_message(e)})")
            return None
        return per_item
