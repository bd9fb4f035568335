"""make_path: the path of one attribution method, from the generator that fits where it runs.

Given a CUDA stream, LAM's blurring path under a rule the CUDA kernel writes comes from the kernel
(points and weights stay on the device); every other path comes from NumPy (``paths``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lam_trt.errors import InputError

from .cuda_path import DEVICE_RULES, blur_path_device
from .gaussian import check_kernel_size, check_sigma
from .paths import (METHODS, IntegrationPath, blur_path, check_blur, check_rule, check_steps, gradient_path,
                    gradient_x_input_path, linear_path)


def make_path(method: str, image: np.ndarray, *, steps: int = 100, sigma: float = 1.2,
              kernel_size: int = 9, baseline: np.ndarray | None = None, rule: str = "right",
              stream: Any = None) -> IntegrationPath:
    """The path of one attribution method; ``stream``: a CuPy stream to make LAM's path on the GPU.

    All parameters are checked whatever the method, so a bad value never passes silently; those a
    method does not use (steps, sigma, kernel_size, rule for the one-point methods) are then ignored.
    """
    if method not in METHODS:
        raise InputError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    check_rule(rule)
    check_steps(steps)
    check_sigma(sigma)
    check_kernel_size(kernel_size)
    if method == "lam":
        check_blur(sigma, kernel_size)
    if baseline is not None and method != "ig":
        raise InputError(f"a baseline image applies only to method 'ig', not {method!r}")
    if method == "lam" and stream is not None and rule in DEVICE_RULES:
        return blur_path_device(image, sigma, steps, kernel_size, rule, stream)
    builders: dict[str, Callable[[], IntegrationPath]] = {
        "lam": lambda: blur_path(image, sigma, steps, kernel_size, rule),
        "ig": lambda: linear_path(image, baseline, steps, rule),
        "grad": lambda: gradient_path(image),
        "grad-x-input": lambda: gradient_x_input_path(image),
    }
    return builders[method]()
