"""Path generation: the images and weights every attribution method integrates over.

NumPy/SciPy on the CPU (`paths`, `gaussian`), and a CUDA kernel for CuPy (`cuda_path`, imported on
demand: CuPy is an optional GPU extra).
"""
from .gaussian import gaussian_blur, gaussian_kernel_1d, gaussian_kernel_1d_dsigma
from .paths import (
    METHODS,
    RULES,
    Path,
    blur_path,
    gradient_path,
    gradient_x_input_path,
    linear_path,
    make_path,
    quadrature,
)
from .cuda_path import blur_path_cuda, cuda_available

__all__ = [
    "METHODS",
    "RULES",
    "Path",
    "blur_path",
    "blur_path_cuda",
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
