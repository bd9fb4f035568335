"""The two PyTorch peers lam-trt is measured against (DESIGN.md, "Speed: how we measure").

Written from reference/LAM-SPEC.md, independently of the lam_trt package:

(a) ``lam_authors``: LAM as its authors' demo code runs it. One path image at a time goes through
    the PyTorch model with the parameters requiring grad, ``loss.backward()`` computes input and
    weight gradients, and each step's two blurs (the path image and its derivative) are computed
    on the CPU just before the step. The detector takes the square root over the whole gradient
    map before cropping the window, and a step whose gradient holds a NaN is zeroed, as in the
    reference (LAM-SPEC.md, "Detector").
(b) ``lam_batched``: the same integral done the way a careful PyTorch user would: the whole path
    blurred at once with a separable convolution, path images fed in chunks of ``batch_size``,
    parameters frozen, and ``torch.autograd.grad`` of the summed detector with respect to the
    input only. Its detector differentiates the window only, with d sqrt(s)/ds = 0 at s = 0,
    exactly as lam-trt's attribution graph does.

Both return the signed map [C, h, w] of the right Riemann sum
    LAM = sum_{k=1..m} grad_x D(F(gamma_k)) (.) (gamma_k - gamma_{k-1}),  gamma_k = K_{sigma (1 - k/m)} * I,
so they do the same work as ``lam_trt.Attributor.attribute(..., rule="right")`` and their maps
agree with it to float32 rounding (tests/test_bench_reference.py).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from scipy import ndimage
from torch import nn


@dataclass
class TorchLAM:
    attribution: np.ndarray   # signed map [C, h, w], float32
    detector: np.ndarray      # D(F(gamma_k)) for k = 1..m
    baseline: float | None    # D(F(I')), I' = K_sigma * I (only where the method computes it)


# ---------------------------------------------------------------------------------------------
# The path, exactly as LAM-SPEC.md defines it.

def gaussian_kernel_2d(sigma: float, size: int) -> np.ndarray:
    """K_sigma [size, size] float64: exp(-(x^2 + y^2) / (2 (sigma + 1e-5)^2)), normalised."""
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    ax = np.arange(-(size // 2), size // 2 + 1, dtype=np.float64)
    k = np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * (sigma + 1e-5) ** 2))
    return k / k.sum()


def path_sigmas(sigma: float, steps: int) -> np.ndarray:
    """sigma_k = sigma (1 - k/m), k = 0..m (the last is exactly 0: a delta kernel)."""
    return np.linspace(sigma, 0.0, steps + 1)


def blur_cpu(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate each channel of [C, h, w] with a 2-D kernel, border reflect-101 (cv2.filter2D's)."""
    return np.stack([ndimage.correlate(channel, kernel, mode="mirror") for channel in image])


# ---------------------------------------------------------------------------------------------
# (a) The authors' algorithm.

def detector_authors(sr: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The reference's gradient detector: sqrt over the whole map, then the window's sum."""
    dy = sr[:, :, :-1, :-1] - sr[:, :, 1:, :-1]
    dx = sr[:, :, :-1, :-1] - sr[:, :, :-1, 1:]
    grad = torch.sqrt(dy * dy + dx * dx)
    return grad[:, :, top:top + size, left:left + size].sum()


def lam_authors(model: nn.Module, image: np.ndarray, window: tuple[int, int], size: int = 16,
                steps: int = 100, sigma: float = 1.2, kernel_size: int = 9) -> TorchLAM:
    """LAM one path image at a time with ``backward()`` (parameters require grad), blur per step.

    ``image``: float32 [C, h, w] in [0, 1]; ``window``: (x, y) of the SR patch's top-left corner.
    """
    x, y = window
    device = _device(model)
    kernels = [gaussian_kernel_2d(s, kernel_size) for s in path_sigmas(sigma, steps)]
    img64 = np.asarray(image, np.float64)
    total = np.zeros(image.shape, np.float64)
    detector = np.empty(steps)
    with _parameters_require_grad(model, True):
        for k in range(1, steps + 1):
            # The reference's path image and its derivative m (gamma_k - gamma_{k-1}), per step.
            point = blur_cpu(img64, kernels[k]).astype(np.float32)
            derivative = blur_cpu(img64, (kernels[k] - kernels[k - 1]) * steps).astype(np.float32)
            tensor = torch.from_numpy(point)
            tensor.requires_grad_(True)
            target = detector_authors(model(tensor[None].to(device)), y, x, size)
            target.backward()
            grad = tensor.grad.numpy()
            if np.any(np.isnan(grad)):
                grad[np.isnan(grad)] = 0.0
            total += grad * derivative
            detector[k - 1] = target.item()
    # The reference averages grad * m * (gamma_k - gamma_{k-1}) over the m steps: the same sum.
    return TorchLAM((total / steps).astype(np.float32), detector, None)


# ---------------------------------------------------------------------------------------------
# (b) Batched autograd on the input only.

class _SafeSqrt(torch.autograd.Function):
    """sqrt with derivative 0 at 0 (LAM-SPEC.md's fix of the reference's 0 * inf)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:
        root = torch.sqrt(s)
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (root,) = ctx.saved_tensors
        return torch.where(root > 0, grad * 0.5 / torch.where(root > 0, root, torch.ones_like(root)),
                           torch.zeros_like(grad))


def detector_window(sr: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """D per item [N]: only the window is differentiated (lam-trt's detector)."""
    t = sr[:, :, top:top + size + 1, left:left + size + 1]
    dy = t[:, :, :-1, :-1] - t[:, :, 1:, :-1]
    dx = t[:, :, :-1, :-1] - t[:, :, :-1, 1:]
    return _SafeSqrt.apply(dy * dy + dx * dx).sum(dim=(1, 2, 3))


def blur_path_torch(image: torch.Tensor, sigma: float, steps: int, kernel_size: int) -> torch.Tensor:
    """gamma_0..gamma_m [m + 1, C, h, w] in one separable grouped convolution (float64)."""
    c, h, w = image.shape
    ax = torch.arange(-(kernel_size // 2), kernel_size // 2 + 1, dtype=torch.float64, device=image.device)
    s = torch.as_tensor(path_sigmas(sigma, steps), dtype=torch.float64, device=image.device)[:, None] + 1e-5
    k1 = torch.exp(-ax[None, :] ** 2 / (2 * s * s))
    k1 = k1 / k1.sum(1, keepdim=True)                                   # [m + 1, l]
    p = kernel_size // 2
    x = nn.functional.pad(image[None].double(), (p, p, p, p), mode="reflect")  # reflect-101
    x = x.expand(steps + 1, c, h + 2 * p, w + 2 * p).reshape(1, (steps + 1) * c, h + 2 * p, w + 2 * p)
    weight = k1.repeat_interleave(c, 0)                                 # [(m + 1) C, l]
    x = nn.functional.conv2d(x, weight[:, None, None, :], groups=(steps + 1) * c)
    x = nn.functional.conv2d(x, weight[:, None, :, None], groups=(steps + 1) * c)
    return x.reshape(steps + 1, c, h, w)


def lam_batched(model: nn.Module, image: np.ndarray, window: tuple[int, int], size: int = 16,
                steps: int = 100, sigma: float = 1.2, kernel_size: int = 9,
                batch_size: int = 16) -> TorchLAM:
    """LAM with batched input-only autograd, ``batch_size`` path images per backward pass."""
    x, y = window
    device = _device(model)
    image_t = torch.from_numpy(np.asarray(image, np.float32)).to(device)
    gammas = blur_path_torch(image_t, sigma, steps, kernel_size)
    points = gammas[1:].float()
    weights = (gammas[1:] - gammas[:-1]).float()
    total = torch.zeros(points.shape[1:], dtype=torch.float64, device=device)
    detector = []
    with _parameters_require_grad(model, False):
        for lo, hi in _chunks(steps, batch_size):
            chunk = points[lo:hi].clone().requires_grad_(True)
            d = detector_window(model(chunk), y, x, size)
            (grad,) = torch.autograd.grad(d.sum(), chunk)
            total += (grad * weights[lo:hi]).sum(0)
            detector.append(d.detach())
        with torch.no_grad():
            baseline = detector_window(model(gammas[:1].float()), y, x, size).item()
    return TorchLAM(total.float().cpu().numpy(), torch.cat(detector).cpu().numpy(), baseline)


def forward_only(model: nn.Module, points: torch.Tensor, batch_size: int) -> None:
    """F over the path in chunks without gradients: the cost of the forward passes alone."""
    with torch.no_grad():
        for lo, hi in _chunks(len(points), batch_size):
            model(points[lo:hi])
    if points.is_cuda:
        torch.cuda.synchronize()


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _chunks(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    for lo in range(0, n, batch_size):
        yield lo, min(lo + batch_size, n)


@contextlib.contextmanager
def _parameters_require_grad(model: nn.Module, flag: bool) -> Iterator[None]:
    """Set requires_grad on every parameter for the block; restore it (and drop .grad) after."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(flag)
    try:
        yield
    finally:
        for p, b in zip(params, before):
            p.requires_grad_(b)
            p.grad = None
