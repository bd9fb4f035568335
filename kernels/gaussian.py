"""The Gaussian kernel of LAM-SPEC.md, its sigma-derivative, and the reflect-101 blur.

    ax = arange(-(l//2), l//2 + 1);  K_sigma[y, x] = exp(-(x^2 + y^2) / (2 (sigma + 1e-5)^2)) / Z

K_sigma is the outer product of the normalised 1-D kernel with itself, so everything here works
with 1-D kernels and blurs separably (one pass along each image axis).

Border: reflect-101 (OpenCV BORDER_DEFAULT, scipy ``mode="mirror"``, numpy ``np.pad(mode="reflect")``):
index -1 reads 1, index n reads n-2. An axis shorter than the kernel radius + 1 needs more than one
reflection; scipy then keeps reflecting, which is the same as extending the axis periodically with
period 2(n-1) and folding (for n = 4: ... 3 4 3 2 [1 2 3 4] 3 2 1 2 3 ...); numpy's pad and OpenCV's
borderInterpolate do the same, and an axis of length 1 is extended as a constant by all three.
"""
from __future__ import annotations

import numpy as np

from lam_trt.errors import InputError

# The reference adds this to sigma so that sigma = 0 gives exp(-x^2 / 2e-10): an exact delta.
SIGMA_EPSILON = 1e-5


def check_kernel_size(size: int) -> None:
    """Reject kernel sizes the spec does not define (even sizes are off-centre in the reference)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % 2 == 0:
        raise InputError(f"kernel size must be odd and positive, got {size}")


def check_sigma(sigma: float) -> None:
    """Reject a negative, non-finite or non-numeric blur sigma."""
    numeric = isinstance(sigma, (int, float, np.integer, np.floating)) and not isinstance(sigma, bool)
    if not numeric or not np.isfinite(sigma) or sigma < 0:
        raise InputError(f"sigma must be a finite number >= 0, got {sigma!r}")


def _axis(size: int) -> np.ndarray:
    return np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)


def gaussian_kernel_1d(sigma: float, size: int) -> np.ndarray:
    """Normalised 1-D kernel [size] float64; its outer product with itself is the 2-D K_sigma."""
    check_kernel_size(size)
    check_sigma(sigma)
    s = sigma + SIGMA_EPSILON
    g = np.exp(-_axis(size) ** 2 / (2.0 * s * s))
    return g / g.sum()


def gaussian_kernel_1d_dsigma(sigma: float, size: int) -> np.ndarray:
    """d/dsigma of `gaussian_kernel_1d` [size] float64, analytic.

    With k_i = g_i / sum(g) and dg_i/ds = g_i x_i^2 / s^3:  dk_i/ds = k_i (x_i^2 - sum_j k_j x_j^2) / s^3.
    It sums to zero, as the kernel's sum is constant.
    """
    k = gaussian_kernel_1d(sigma, size)
    x2 = _axis(size) ** 2
    s = sigma + SIGMA_EPSILON
    return k * (x2 - np.dot(k, x2)) / s**3


def correlate_separable(image: np.ndarray, k_rows: np.ndarray, k_cols: np.ndarray) -> np.ndarray:
    """Correlate every channel of [C,h,w] with the 2-D kernel outer(k_rows, k_cols), reflect-101.

    k_rows runs along the height (axis -2), k_cols along the width (axis -1). float64 in and out.
    """
    from scipy import ndimage  # here, not at the top: the CLI reads METHODS/RULES at every start

    out = ndimage.correlate1d(image, k_cols, axis=-1, mode="mirror")
    return ndimage.correlate1d(out, k_rows, axis=-2, mode="mirror")


def check_image(image: np.ndarray) -> np.ndarray:
    """Return a [C,h,w] float image as a float32 array, or raise InputError saying what is wrong."""
    arr = np.asarray(image)
    if arr.ndim != 3 or min(arr.shape) == 0:
        raise InputError(f"image must be a non-empty [C, h, w] array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"image must be a float array with values in [0, 1], got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputError("image contains NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def gaussian_blur(image: np.ndarray, sigma: float, kernel_size: int) -> np.ndarray:
    """K_sigma * image for a [C,h,w] image: computed in float64, returned as float32."""
    img = check_image(image).astype(np.float64)
    k = gaussian_kernel_1d(sigma, kernel_size)
    return correlate_separable(img, k, k).astype(np.float32)
