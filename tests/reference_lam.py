"""Independent PyTorch implementation of LAM-SPEC.md, the reference the ONNX attribution graph is tested against.

Written from the spec alone (not from lam_trt): the detector, the Gaussian blur path, the right
Riemann sum, the abs-normalised map, Gini and the diffusion index. Gradients come from
torch.autograd; pass float64 modules and tensors where precision matters.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

Net = Callable[[torch.Tensor], torch.Tensor]  # an nn.Module or any differentiable function
Window = tuple[int, int, int, int]  # (top, left, height, width) in SR-output pixels


class _SafeSqrt(torch.autograd.Function):
    """sqrt whose derivative at 0 is defined as 0 (LAM-SPEC.md: the reference's 0 * inf fix)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:
        root = torch.sqrt(s)
        ctx.save_for_backward(root)
        return root

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (root,) = ctx.saved_tensors
        safe = torch.where(root > 0, root, torch.ones_like(root))
        return torch.where(root > 0, grad * 0.5 / safe, torch.zeros_like(grad))


def _window(top: int, left: int, win: int | tuple[int, int]) -> Window:
    height, width = (win, win) if isinstance(win, int) else win
    return top, left, height, width


def detector(sr: torch.Tensor, top: int, left: int, win: int | tuple[int, int]) -> torch.Tensor:
    """Gradient detector D of each item of sr [N,C,H,W] -> [N] (sum over channels and the window)."""
    top, left, height, width = _window(top, left, win)
    H, W = sr.shape[-2:]
    if top < 0 or left < 0 or top + height > H - 1 or left + width > W - 1:
        raise ValueError(f"window {(top, left, height, width)} outside the {H - 1}x{W - 1} detector map")
    dy = sr[:, :, :-1, :-1] - sr[:, :, 1:, :-1]
    dx = sr[:, :, :-1, :-1] - sr[:, :, :-1, 1:]
    s = (dy * dy + dx * dx)[:, :, top:top + height, left:left + width]
    return _SafeSqrt.apply(s).sum(dim=(1, 2, 3))


class Gradients(NamedTuple):
    detector: torch.Tensor  # [N]
    attribution: torch.Tensor  # [C,h,w] = sum_n grad_x D(F(path_n)) * weights_n
    contribution: torch.Tensor  # [N] = sum over (c,h,w) of grad_x D(F(path_n)) * weights_n


def weighted_gradients(model: Net, path: torch.Tensor, weights: torch.Tensor,
                       top: int, left: int, win: int | tuple[int, int]) -> Gradients:
    """Detector values, weighted gradient sum and per-item contributions, by torch.autograd."""
    x = path.detach().clone().requires_grad_(True)
    d = detector(model(x), top, left, win)
    (grad,) = torch.autograd.grad(d.sum(), x)  # items are independent: d(sum)/dx_n = dD_n/dx_n
    weighted = grad * weights
    return Gradients(d.detach(), weighted.sum(0), weighted.flatten(1).sum(1))


def input_gradient(model: Net, path: torch.Tensor, weights: torch.Tensor,
                   top: int, left: int, win: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(detector [N], attribution [C,h,w]) for a batch of path images, by torch.autograd."""
    g = weighted_gradients(model, path, weights, top, left, win)
    return g.detector, g.attribution


def gaussian_kernel(sigma: float, l: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised l x l Gaussian; an exact delta at sigma = 0."""
    if l % 2 == 0 or l < 1:
        raise ValueError(f"kernel size must be odd and positive, got {l}")
    ax = torch.arange(-(l // 2), l // 2 + 1, dtype=torch.float64)
    k = torch.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * (sigma + 1e-5) ** 2))
    return (k / k.sum()).to(dtype)


def blur(img: torch.Tensor, sigma: float, l: int) -> torch.Tensor:
    """Per-channel correlation of img [C,h,w] with K_sigma, border reflect-101."""
    c = img.shape[0]
    k = gaussian_kernel(sigma, l, img.dtype).expand(c, 1, l, l)
    p = l // 2
    padded = F.pad(img[None], (p, p, p, p), mode="reflect")  # torch "reflect" is reflect-101
    return F.conv2d(padded, k, groups=c)[0]


def lam_path(img: torch.Tensor, sigma: float, steps: int, l: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(path gamma_1..gamma_m [m,C,h,w], weights gamma_k - gamma_{k-1} [m,C,h,w])."""
    gammas = torch.stack([blur(img, sigma * (1 - k / steps), l) for k in range(steps + 1)])
    return gammas[1:], gammas[1:] - gammas[:-1]


@dataclass
class LamReference:
    signed: torch.Tensor  # [C,h,w] LAM = sum_k grad D(F(gamma_k)) * (gamma_k - gamma_{k-1})
    detector_image: float  # D(F(I))
    detector_baseline: float  # D(F(I')), I' = K_sigma * I
    gap: float  # sum(LAM) - (D(F(I)) - D(F(I')))
    di: float


def lam_details(model: Net, img: torch.Tensor, window: tuple[int, int], size: int = 16,
                steps: int = 100, sigma: float = 1.2, l: int = 9) -> LamReference:
    """The whole LAM of LAM-SPEC.md for img [C,h,w]; window = (x, y) of the SR-output patch."""
    x, y = window
    path, weights = lam_path(img, sigma, steps, l)
    g = weighted_gradients(model, path, weights, y, x, size)
    with torch.no_grad():
        d_base = detector(model(blur(img, sigma, l)[None]), y, x, size)[0].item()
    d_img = g.detector[-1].item()  # gamma_m is I exactly
    gap = g.attribution.sum().item() - (d_img - d_base)
    return LamReference(g.attribution, d_img, d_base, gap, diffusion_index(g.attribution))


def lam_reference(model: Net, img: torch.Tensor, window: tuple[int, int], size: int = 16,
                  steps: int = 100, sigma: float = 1.2, l: int = 9) -> torch.Tensor:
    """Signed LAM map [C,h,w] (right Riemann sum over the progressive blur path)."""
    return lam_details(model, img, window, size, steps, sigma, l).signed


def abs_normalised(signed: torch.Tensor) -> torch.Tensor:
    """|sum over channels| / max; all zeros stays zeros (no NaN)."""
    a = signed.sum(0).abs()
    m = a.max()
    return a / m if m > 0 else a


def gini(a: torch.Tensor) -> float:
    x = a.flatten().to(torch.float64)
    if x.min() < 0:
        x = x - x.min()
    x = torch.sort(x + 1e-7).values
    n = x.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return ((2 * i - n - 1) * x).sum().item() / (n * x.sum().item())


def diffusion_index(signed: torch.Tensor) -> float:
    """DI = (1 - Gini(abs-normalised map)) * 100."""
    return (1 - gini(abs_normalised(signed))) * 100
