"""LAM's blurring path on the GPU: kernels/blur_path.cu, compiled and launched through CuPy.

CuPy is an optional extra (``lam-trt[gpu]``), imported only when a function here needs it. The
kernel writes every point and weight of the right (or trapezoid) rule in one launch; the NumPy
path (`paths.blur_path`) is its reference, equal to within one float32 ulp.
"""
from __future__ import annotations

import contextlib
import functools
from importlib import resources
from typing import Any

import numpy as np

from lam_trt.errors import InputError, ProviderError

from .gaussian import check_image, check_kernel_size, check_sigma, gaussian_blur
from .paths import IntegrationPath, blur_kernel_table, check_blur, check_steps, quadrature

_BLOCK = 256
_TRAPEZOID = {"right": 0, "trapezoid": 1}  # the kernel's `trapezoid` flag per supported rule
DEVICE_RULES = tuple(_TRAPEZOID)  # the rules the CUDA kernel writes


def cuda_available() -> tuple[bool, str]:
    """Whether CuPy can run kernels here, and why not if it cannot (one line)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy build that fails to load its CUDA libraries
        return False, f"CuPy is not importable (install lam-trt[gpu]): {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a driver older than CuPy's CUDA
        return False, f"no usable CUDA driver: {exc}"
    if count < 1:
        return False, "no CUDA device found"
    return True, f"CuPy {cupy.__version__} sees {count} CUDA device(s)"


@functools.cache
def _module() -> Any:
    """The compiled RawModule (NVRTC once per process; CuPy loads it per device)."""
    import cupy

    source = resources.files(__package__).joinpath("blur_path.cu").read_text(encoding="utf-8")
    return cupy.RawModule(code=source)


def _device_image(image: Any) -> Any:
    """A C-contiguous float32 [C,h,w] CuPy array of a NumPy or CuPy image, checked like check_image."""
    import cupy

    if isinstance(image, cupy.ndarray):
        if image.ndim != 3 or min(image.shape) == 0:
            raise InputError(f"image must be a non-empty [C, h, w] array, got shape {image.shape}")
        if image.dtype.kind != "f":
            raise InputError(f"image must be a float array with values in [0, 1], got dtype {image.dtype}")
        if not bool(cupy.isfinite(image).all()):
            raise InputError("image contains NaN or infinite values")
        return cupy.ascontiguousarray(image, dtype=cupy.float32)
    return cupy.asarray(check_image(image))


def _check_out(out: tuple[Any, Any], shape: tuple[int, ...]) -> tuple[Any, Any]:
    import cupy

    for name, arr in zip(("points", "weights"), out):
        ok = (isinstance(arr, cupy.ndarray) and arr.shape == shape and arr.dtype == cupy.float32
              and arr.flags.c_contiguous)
        if not ok:
            raise InputError(f"out {name} must be a C-contiguous float32 CuPy array of shape {shape}")
    return out


def blur_path_cuda(image: Any, sigma: float = 1.2, steps: int = 100, kernel_size: int = 9,
                   stream: Any = None, rule: str = "right",
                   out: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """Points and weights (CuPy float32 [N,C,h,w]) of `paths.blur_path(image, ...)` on the GPU.

    N = steps for rule "right", steps + 1 for "trapezoid". Everything (copies, launch) is queued on
    `stream` (a cupy.cuda.Stream; None = CuPy's current stream) and not synchronised. `out` lets a
    caller reuse preallocated device buffers, e.g. ones bound to ONNX Runtime.
    """
    ok, why = cuda_available()
    if not ok:
        raise ProviderError(f"the CUDA path generator cannot run: {why}")
    import cupy

    check_sigma(sigma)
    check_steps(steps)
    check_kernel_size(kernel_size)
    if rule not in _TRAPEZOID:
        raise InputError(f"the CUDA blur path supports rules {', '.join(_TRAPEZOID)}, not {rule!r}")
    m, trapezoid = int(steps), _TRAPEZOID[rule]
    with stream if stream is not None else contextlib.nullcontext():
        img = _device_image(image)
        table = cupy.asarray(blur_kernel_table(sigma, m, kernel_size))
        shape = (m + trapezoid, *img.shape)
        if out is None:
            out = (cupy.empty(shape, dtype=cupy.float32), cupy.empty(shape, dtype=cupy.float32))
        points, weights = _check_out(out, shape)
        channels, h, w = img.shape
        grid = (-(-points.size // _BLOCK),)
        args = (img, table, points, weights, *map(np.int32, (m, channels, h, w, kernel_size, trapezoid)))
        _module().get_function("blur_path")(grid, (_BLOCK,), args)
    return points, weights


def blur_path_device(image: np.ndarray, sigma: float, steps: int, kernel_size: int, rule: str,
                     stream: Any) -> IntegrationPath:
    """LAM's path with points and weights as CuPy arrays written by the CUDA kernel on ``stream``."""
    check_blur(sigma, kernel_size)
    points, weights = blur_path_cuda(image, sigma, steps, kernel_size, stream=stream, rule=rule)
    baseline = gaussian_blur(image, sigma, kernel_size)
    params = {"sigma": float(sigma), "steps": int(steps), "kernel_size": int(kernel_size), "generator": "cuda"}
    return IntegrationPath(points, weights, quadrature(rule, steps)[0], baseline, image, "lam", rule, params)
