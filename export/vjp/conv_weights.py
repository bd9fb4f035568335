"""Gradients of Conv and ConvTranspose with respect to weights and bias that depend on the image
(GFPGAN's and StyleGAN's modulated convolution: weights scaled by a style computed from the input).

The weight gradient of a Conv is itself a convolution: the input, batch and channel axes swapped,
convolved with the output gradient as the kernel (strides and dilations trade places), cropped
to the kernel size. Groups stay groups: each output channel meets only its group's input channels.
A ConvTranspose is the adjoint of the Conv with the same weights, so its weight gradient is that
Conv's with the roles of input and output gradient exchanged.
"""
from __future__ import annotations

from lam_trt.export.builder import GraphBuilder
from lam_trt.export.vjp.geometry import Geometry


def weight_grad(b: GraphBuilder, x: str, x_shape: tuple[int, ...], g: str, g_shape: tuple[int, ...],
                w_shape: tuple[int, ...], geo: Geometry) -> str:
    """dL/dW [C_out, C_in / group, k...] of y = Conv(x, W) given g = dL/dy (N may be dynamic)."""
    group, spatial = geo.group, geo.spatial
    sizes = list(x_shape[2:])
    cin_g = w_shape[1]
    rest = list(range(3, 3 + spatial))
    grouped = b.op("Reshape", x, b.ints([0, group, cin_g] + sizes))          # [N, G, Ci/G, S]
    channels_first = b.op("Transpose", grouped, perm=[2, 1, 0] + rest)  # [Ci/G, G, N, S]
    xt = b.op("Reshape", channels_first, b.ints([cin_g, -1] + sizes))        # [Ci/G, G*N, S]
    gt = b.op("Transpose", g, perm=[1, 0] + list(range(2, 2 + spatial)))     # [Co, N, So]
    full = b.op("Conv", xt, gt, kernel_shape=list(g_shape[2:]), strides=geo.dilations,
                dilations=geo.strides, pads=geo.pads, group=group)      # [Ci/G, Co, >= k]
    kernel = list(w_shape[2:])
    axes = list(range(2, 2 + spatial))
    cropped = b.op("Slice", full, b.ints([0] * spatial), b.ints(kernel), b.ints(axes))
    return b.op("Transpose", cropped, perm=[1, 0] + axes)


def bias_grad(b: GraphBuilder, g: str, rank: int) -> str:
    return b.reduce_sum(g, [0] + list(range(2, rank)), keepdims=False)
