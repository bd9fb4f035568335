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

The points and weights of the integrals are made chunk by chunk, when a consumer slices them
(``PathImages``): ``--steps 100000`` on a large image holds one chunk, never the whole path.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

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


Chunk = tuple[np.ndarray, np.ndarray]  # (points, weights), float32 [n, C, h, w] each
ChunkMaker = Callable[[int, int], Chunk]


class PathImages:
    """The points (or the weights) of a path as a float32 [N, C, h, w] array made on demand.

    ``images[lo:hi]`` computes that chunk (an ndarray); ``images[:, :, rows, cols]`` is a lazy view
    of a crop; anything else (``np.asarray(images)``, ``images.sum()``) builds the whole array.
    The points and weights of one path share the chunk last made, so reading both costs one.
    """

    def __init__(self, maker: "_Chunks", which: int, crop: tuple[slice, slice] = (slice(None), slice(None))):
        self._maker, self._which, self._crop = maker, which, crop
        n, c, h, w = maker.shape
        rows, cols = (len(range(*s.indices(dim))) for s, dim in zip(crop, (h, w)))
        self.shape = (n, c, rows, cols)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice) and key.step in (None, 1):
            lo, hi, _ = key.indices(len(self))
            return self._maker.chunk(lo, max(lo, hi))[self._which][(slice(None), slice(None), *self._crop)]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            k = range(len(self))[key]
            return self[k:k + 1][0]
        if (isinstance(key, tuple) and len(key) == 4 and key[:2] == (slice(None), slice(None))
                and self._crop == (slice(None), slice(None)) and all(isinstance(k, slice) for k in key[2:])):
            return PathImages(self._maker, self._which, key[2:])
        return np.asarray(self)[key]

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(len(self)):
            yield self[k]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[0:len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def copy(self) -> "PathImages":
        """Itself: every slice is a fresh array, so a lazy view never needs copying."""
        return self

    def __getattr__(self, name: str) -> Any:  # astype, any, sum, ...: on the whole array
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)


class _Chunks:
    """Makes chunks [lo, hi) of a path with ``make`` and keeps the last one."""

    def __init__(self, shape: tuple[int, int, int, int], make: ChunkMaker):
        self.shape, self._make = shape, make
        self._last: Optional[tuple[int, int, Chunk]] = None

    def chunk(self, lo: int, hi: int) -> Chunk:
        if self._last is None or self._last[:2] != (lo, hi):
            self._last = (lo, hi, self._make(lo, hi))
        return self._last[2]


def lazy_path(n: int, image_shape: tuple[int, ...], make: ChunkMaker) -> tuple[PathImages, PathImages]:
    """(points, weights) of ``n`` path images of ``image_shape``; ``make(lo, hi)`` computes a chunk."""
    chunks = _Chunks((n, *image_shape), make)
    return PathImages(chunks, 0), PathImages(chunks, 1)


@dataclass(frozen=True, eq=False)
class IntegrationPath:
    """A batch of path images and their weights, plus what produced them.

    points, weights: float32 [N, C, h, w] (arrays, or PathImages made chunk by chunk); alphas: float64 [N], the position of each point on the
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


def _grid_chunk(gamma: Callable[[int], np.ndarray], steps: int, rule: str, lo: int, hi: int,
                shape: tuple[int, ...]) -> Chunk:
    """Points [lo, hi) and weights of the right or trapezoid rule from gamma_k (float64 [C, h, w]).

    right: point j = gamma_{j+1}, weight gamma_{j+1} - gamma_j. trapezoid: point j = gamma_j,
    weight half_j + half_{j+1} with half_j = (gamma_j - gamma_{j-1}) / 2 (0 beyond the ends).
    Each gamma is computed once per chunk; a chunk needs one or two beyond its own.
    """
    first, last = (lo, hi) if rule == "right" else (max(lo - 1, 0), min(hi, steps))
    gammas = {k: gamma(k) for k in range(first, last + 1)} if hi > lo else {}
    if rule == "right":
        return _stack([(gammas[j + 1], gammas[j + 1] - gammas[j]) for j in range(lo, hi)], shape)
    half = lambda j: (gammas[j] - gammas[j - 1]) * 0.5 if 1 <= j <= steps else 0.0  # noqa: E731
    return _stack([(gammas[j], half(j) + half(j + 1)) for j in range(lo, hi)], shape)


def blur_kernel_table(sigma: float, steps: int, kernel_size: int) -> np.ndarray:
    """The 1-D kernels of sigma_k = sigma (1 - k/m), k = 0..m, as one float64 [m + 1, l] array.

    The sigmas come from linspace, as in the reference: the last is exactly 0, so its kernel is an
    exact delta and gamma_m == I bit for bit.
    """
    sigmas = np.linspace(float(sigma), 0.0, int(steps) + 1)
    return np.stack([gaussian_kernel_1d(float(s), kernel_size) for s in sigmas])


def _blur_gauss_legendre(image: np.ndarray, sigma: float, steps: int, kernel_size: int) -> ChunkMaker:
    """Points gamma(alpha_j) and weights omega_j gamma'(alpha_j), gamma' = -sigma dgamma/dsigma_eff."""
    alphas, omegas = quadrature("gauss-legendre", steps)

    def node(j: int) -> tuple[np.ndarray, np.ndarray]:
        s = sigma * (1.0 - alphas[j])
        k = gaussian_kernel_1d(s, kernel_size)
        dk = gaussian_kernel_1d_dsigma(s, kernel_size)
        # d(k (x) k)/ds = dk (x) k + k (x) dk: the product rule on the separable kernel.
        dgamma = correlate_separable(image, dk, k) + correlate_separable(image, k, dk)
        return correlate_separable(image, k, k), -sigma * omegas[j] * dgamma

    return lambda lo, hi: _stack([node(j) for j in range(lo, hi)], image.shape)


def _stack(pairs: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, ...]) -> Chunk:
    if not pairs:
        return np.empty((0, *shape), np.float32), np.empty((0, *shape), np.float32)
    return (np.stack([p for p, _ in pairs]).astype(np.float32),
            np.stack([w for _, w in pairs]).astype(np.float32))


def check_blur(sigma: float, kernel_size: int) -> None:
    """Refuse a blur that leaves the image as it is: the path would be empty and every map zero.
    (``blur_path`` itself allows it, as the limit of the path; ``make_path`` and the GPU path refuse.)"""
    if float(sigma) == 0.0 or int(kernel_size) == 1:
        what = "--sigma 0" if float(sigma) == 0.0 else "--kernel-size 1"
        raise InputError(f"with {what} the blurred baseline is the image itself, so LAM has nothing to "
                         "attribute (an all-zero map); use a sigma > 0 and a kernel size >= 3")


def blur_path(image: np.ndarray, sigma: float = 1.2, steps: int = 100, kernel_size: int = 9,
              rule: str = "right") -> IntegrationPath:
    """LAM's progressive blurring path from K_sigma * I to I (sigma_k = sigma (1 - k/m))."""
    img32 = check_image(image)
    check_sigma(sigma)
    check_steps(steps)
    check_kernel_size(kernel_size)
    check_rule(rule)
    m = int(steps)
    img = img32.astype(np.float64)
    params = {"sigma": float(sigma), "steps": m, "kernel_size": int(kernel_size)}
    alphas = quadrature(rule, m)[0]
    k0 = gaussian_kernel_1d(float(sigma), kernel_size)
    baseline = correlate_separable(img, k0, k0).astype(np.float32)
    if rule == "gauss-legendre":
        make = _blur_gauss_legendre(img, float(sigma), m, int(kernel_size))
    else:
        table = blur_kernel_table(sigma, m, int(kernel_size))
        gamma = lambda k: correlate_separable(img, table[k], table[k])  # noqa: E731
        make = lambda lo, hi: _grid_chunk(gamma, m, rule, lo, hi, img.shape)  # noqa: E731
    points, weights = lazy_path(len(alphas), img32.shape, make)
    return IntegrationPath(points, weights, alphas, baseline, img32, "lam", rule, params)


def linear_path(image: np.ndarray, baseline: np.ndarray | None = None, steps: int = 50,
                rule: str = "right") -> IntegrationPath:
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
    make = lambda lo, hi: _stack([(base + alphas[j] * delta, q[j] * delta) for j in range(lo, hi)],  # noqa: E731
                                 img32.shape)
    points, weights = lazy_path(len(alphas), img32.shape, make)
    params = {"steps": int(steps), "baseline": "black" if baseline is None else "given"}
    return IntegrationPath(points, weights, alphas, base32, img32, "ig", rule, params)


def gradient_path(image: np.ndarray) -> IntegrationPath:
    """The vanilla gradient: one point, the image, with weight one.

    Its baseline is image - 1, a formal value that keeps sum(weights) == image - baseline.
    """
    img32 = check_image(image)
    ones = np.ones_like(img32)
    return IntegrationPath(img32[None], ones[None], np.ones(1), img32 - ones, img32, "grad", "right", {})


def gradient_x_input_path(image: np.ndarray) -> IntegrationPath:
    """Gradient x input: one point, the image, weighted by the image (first-order Taylor from 0)."""
    img32 = check_image(image)
    return IntegrationPath(img32[None], img32[None].copy(), np.ones(1), np.zeros_like(img32), img32,
                "grad-x-input", "right", {})
