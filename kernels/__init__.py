"""Path generation: the images and weights every attribution method integrates over.

NumPy/SciPy on the CPU (`paths`, `gaussian`), and a CUDA kernel for CuPy (`cuda_path`, imported on
demand: CuPy is an optional GPU extra).
"""
from .gaussian import gaussian_blur, gaussian_kernel_1d, gaussian_kernel_1d_dsigma
from .paths import (
    METHODS,
    RULES,
    IntegrationPath,
    blur_path,
    gradient_path,
    gradient_x_input_path,
    linear_path,
    quadrature,
)
from .cuda_path import DEVICE_RULES, blur_path_cuda, blur_path_device, cuda_available
from .make import make_path

__all__ = [
    "DEVICE_RULES",
    "IntegrationPath",
    "METHODS",
    "RULES",
    "blur_path",
    "blur_path_cuda",
    "blur_path_device",
    "cuda_available",
    "gaussian_blur",
    "gaussian_kernel_1d",
    "gaussian_kernel_1d_dsigma",
    "gradient_path",
    "gradient_x_input_path",
    "linear_path",
    "make_path",
    "quadrature",
]
