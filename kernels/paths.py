"""Attribution paths: the images p_k and weights w_k of  attribution = sum_k grad D(F(p_k)) (.) w_k.

Every method of the paper is such a path (LAM-SPEC.md, "Path, weights and the integral"):

- ``lam``: the progressive blurring path gamma(alpha) = K_{sigma (1 - alpha)} * I from the blurred
  baseline I' = K_sigma * I (alpha = 0) to I (alpha = 1);
- ``ig``: integrated gradients, the straight line b + alpha (x - b) from a baseline b (black by default);
- ``grad``: the vanilla gradient, one point (the image) with weight one;
- ``grad-x-input``: one point (the image) weighted by the image.

Quadrature rules for the path integral (``steps`` = m):

- ``right`` (the reference default): points k = 1..m on the grid alpha_k = k/m, weights
  gamma_k - gamma_{k-1}; for a straight line this is Captum's ``riemann_right``;
- ``trapezoid``: points k = 0..m, weights (Delta_k + Delta_{k+1}) / 2 with Delta_0 = Delta_{m+1} = 0;
  this is the trapezoid rule along the polygon through the grid points, error O(1/m^2);
- ``gauss-legendre``: m Gauss-Legendre nodes alpha_j on [0, 1] with weights omega_j,
  points gamma(alpha_j), path weights omega_j gamma'(alpha_j).

For every path, ``sum_k w_k == image - baseline`` (up to float32 rounding; exactly for the quadrature
in exact arithmetic), so completeness reads ``sum(attribution) ~= D(F(image)) - D(F(baseline))``.
Grid points are computed in float64 and stored as float32.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lam_trt.errors import InputError

from .gaussian import (
    check_image,
    check_kernel_size,
    check_sigma,
    correlate_separable,
    gaussian_kernel_1d,
    gaussian_kernel_1d_dsigma,
)

METHODS = ("lam", "ig", "grad", "grad-x-input")
RULES = ("right", "trapezoid", "gauss-legendre")


@dataclass(frozen=True, eq=False)
class Path:
    """A batch of path images and their weights, plus what produced them.

    points, weights: float32 [N, C, h, w]; alphas: float64 [N], the position of each point on the
    path (0 = baseline, 1 = image); baseline: float32 [C, h, w], the alpha = 0 end (LAM's I');
    image: float32 [C, h, w]; params: the method's parameters, JSON-serialisable.
    """

    points: np.ndarray
    weights: np.ndarray
    alphas: np.ndarray
    baseline: np.ndarray
    image: np.ndarray
    method: str
    rule: str
    params: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def chunks(self, batch_size: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (start, points[start:stop], weights[start:stop]) views, batch_size points at a time."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(f"batch size must be an integer >= 1, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield start, self.points[start:stop], self.weights[start:stop]


def check_steps(steps: int) -> None:
    """Reject a step count that is not a positive integer."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")


def check_rule(rule: str) -> None:
    """Reject an unknown quadrature rule."""
    if rule not in RULES:
        raise InputError(f"unknown quadrature rule {rule!r}; choose one of {', '.join(RULES)}")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes alpha and weights q (float64) with sum_j q_j f(alpha_j) ~= integral_0^1 f."""
    check_rule(rule)
    check_steps(steps)
    m = int(steps)
    if rule == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(m)
        return (x + 1.0) / 2.0, w / 2.0
    if rule == "right":
        return np.arange(1, m + 1, dtype=np.float64) / m, np.full(m, 1.0 / m)
    q = np.full(m + 1, 1.0 / m)
    q[[0, -1]] /= 2.0
    return np.arange(m + 1, dtype=np.float64) / m, q


def _grid_path(
    gammas: Iterator[np.ndarray], steps: int, rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points and weights of the right or trapezoid rule from gamma_0..gamma_m (float64 [C,h,w] each).

    Returns float32 points, float32 weights, float32 baseline (gamma_0). Streams the gammas so that
    only two float64 images live at a time.
    """
    prev = next(gammas)
    n = steps + (rule == "trapezoid")
    points = np.empty((n, *prev.shape), dtype=np.float32)
    weights = np.empty_like(points)
    baseline = prev.astype(np.float32)
    if rule == "right":
        for k, gamma in enumerate(gammas):
            points[k] = gamma
            weights[k] = gamma - prev
            prev = gamma
        return points, weights, baseline
    points[0] = prev
    half_prev = np.zeros_like(prev)
    for k, gamma in enumerate(gammas, start=1):
        half = (gamma - prev) * 0.5
        points[k] = gamma
        weights[k - 1] = half_prev + half
        half_prev, prev = half, gamma
    weights[steps] = half_prev
    return points, weights, baseline


def blur_kernel_table(sigma: float, steps: int, kernel_size: int) -> np.ndarray:
    """The 1-D kernels of sigma_k = sigma (1 - k/m), k = 0..m, as one float64 [m + 1, l] array.

    The sigmas come from linspace, as in the reference: the last is exactly 0, so its kernel is an
    exact delta and gamma_m == I bit for bit.
    """
    sigmas = np.linspace(float(sigma), 0.0, int(steps) + 1)
    return np.stack([gaussian_kernel_1d(float(s), kernel_size) for s in sigmas])


def _blur_gammas(image: np.ndarray, table: np.ndarray) -> Iterator[np.ndarray]:
    for k in table:
        yield correlate_separable(image, k, k)


def _blur_gauss_legendre(
    image: np.ndarray, sigma: float, steps: int, kernel_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points gamma(alpha_j) and weights omega_j gamma'(alpha_j), gamma' = -sigma dgamma/dsigma_eff."""
    alphas, omegas = quadrature("gauss-legendre", steps)
    points = np.empty((steps, *image.shape), dtype=np.float32)
    weights = np.empty_like(points)
    for j, (alpha, omega) in enumerate(zip(alphas, omegas)):
        s = sigma * (1.0 - alpha)
        k = gaussian_kernel_1d(s, kernel_size)
        dk = gaussian_kernel_1d_dsigma(s, kernel_size)
        points[j] = correlate_separable(image, k, k)
        # d(k (x) k)/ds = dk (x) k + k (x) dk: the product rule on the separable kernel.
        dgamma = correlate_separable(image, dk, k) + correlate_separable(image, k, dk)
        weights[j] = -sigma * omega * dgamma
    return points, weights, alphas


def blur_path(image: np.ndarray, sigma: float = 1.2, steps: int = 100, kernel_size: int = 9,
              rule: str = "right") -> Path:
    """LAM's progressive blurring path from K_sigma * I to I (sigma_k = sigma (1 - k/m))."""
    img32 = check_image(image)
    check_sigma(sigma)
    check_steps(steps)
    check_kernel_size(kernel_size)
    check_rule(rule)
    m = int(steps)
    img = img32.astype(np.float64)
    params = {"sigma": float(sigma), "steps": m, "kernel_size": int(kernel_size)}
    if rule == "gauss-legendre":
        points, weights, alphas = _blur_gauss_legendre(img, float(sigma), m, int(kernel_size))
        k0 = gaussian_kernel_1d(float(sigma), kernel_size)
        baseline = correlate_separable(img, k0, k0).astype(np.float32)
    else:
        table = blur_kernel_table(sigma, m, int(kernel_size))
        points, weights, baseline = _grid_path(_blur_gammas(img, table), m, rule)
        alphas = quadrature(rule, m)[0]
    return Path(points, weights, alphas, baseline, img32, "lam", rule, params)


def linear_path(image: np.ndarray, baseline: np.ndarray | None = None, steps: int = 50,
                rule: str = "right") -> Path:
    """Integrated gradients' straight line b + alpha (x - b); weights q_j (x - b)."""
    img32 = check_image(image)
    check_steps(steps)
    check_rule(rule)
    if baseline is None:
        base32 = np.zeros_like(img32)
    else:
        base32 = check_image(baseline)
        if base32.shape != img32.shape:
            raise InputError(f"baseline shape {base32.shape} does not match image shape {img32.shape}")
    alphas, q = quadrature(rule, int(steps))
    base = base32.astype(np.float64)
    delta = img32.astype(np.float64) - base
    points = np.empty((len(alphas), *img32.shape), dtype=np.float32)
    weights = np.empty_like(points)
    for j, (alpha, q_j) in enumerate(zip(alphas, q)):  # a loop keeps one float64 image alive
        points[j] = base + alpha * delta
        weights[j] = q_j * delta
    params = {"steps": int(steps), "baseline": "black" if baseline is None else "given"}
    return Path(points, weights, alphas, base32, img32, "ig", rule, params)


def gradient_path(image: np.ndarray) -> Path:
    """The vanilla gradient: one point, the image, with weight one.

    Its baseline is image - 1, a formal value that keeps sum(weights) == image - baseline.
    """
    img32 = check_image(image)
    ones = np.ones_like(img32)
    return Path(img32[None], ones[None], np.ones(1), img32 - ones, img32, "grad", "right", {})


def gradient_x_input_path(image: np.ndarray) -> Path:
    """Gradient x input: one point, the image, weighted by the image (first-order Taylor from 0)."""
    img32 = check_image(image)
    return Path(img32[None], img32[None].copy(), np.ones(1), np.zeros_like(img32), img32,
                "grad-x-input", "right", {})


def make_path(method: str, image: np.ndarray, *, steps: int = 100, sigma: float = 1.2,
              kernel_size: int = 9, baseline: np.ndarray | None = None, rule: str = "right") -> Path:
    """The path of one attribution method.

    All parameters are checked whatever the method, so a bad value never passes silently; those a
    method does not use (steps, sigma, kernel_size, rule for the one-point methods) are then ignored.
    """
    if method not in METHODS:
        raise InputError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    check_rule(rule)
    check_steps(steps)
    check_sigma(sigma)
    check_kernel_size(kernel_size)
    if baseline is not None and method != "ig":
        raise InputError(f"a baseline image applies only to method 'ig', not {method!r}")
    builders: dict[str, Callable[[], Path]] = {
        "lam": lambda: blur_path(image, sigma, steps, kernel_size, rule),
        "ig": lambda: linear_path(image, baseline, steps, rule),
        "grad": lambda: gradient_path(image),
        "grad-x-input": lambda: gradient_x_input_path(image),
    }
    return builders[method]()
