"""Conv and ConvTranspose: each is the other's adjoint with the same weights."""
from __future__ import annotations

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.vjp import vjp
from lam_trt.export.vjp.conv_weights import bias_grad, weight_grad


def conv_geometry(b: GraphBuilder, node: Node) -> dict:
    """Kernel, strides, dilations and explicit pads of a Conv (auto_pad resolved statically)."""
    x_shape, w_shape = b.shape(node.inputs[0]), b.shape(node.inputs[1])
    spatial = len(x_shape) - 2
    kernel = list(node.attrs.get("kernel_shape", w_shape[2:]))
    strides = list(node.attrs.get("strides", [1] * spatial))
    dilations = list(node.attrs.get("dilations", [1] * spatial))
    pads = list(node.attrs.get("pads", [0] * (2 * spatial)))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(spatial):
            size = x_shape[2 + i]
            out = -(-size // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            small, large = total // 2, total - total // 2
            pads[i], pads[i + spatial] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * spatial)
    return dict(kernel=kernel, strides=strides, dilations=dilations, pads=pads,
                group=int(node.attrs.get("group", 1)))


# ONNX Runtime's blocked (NCHWc) CPU convolutions need at least this many output channels. A
# narrower adjoint (the first layer's: 3 channels) runs 2.5-5x faster as ConvTranspose (one GEMM to
# C_in * k * k columns, then col2im) than as the flipped Conv (bench/RESULTS.md, "Conv adjoints").
NCHWC_BLOCK = 8


@vjp("Conv")
def vjp_conv(b, node, grads, needs):
    """Stride 1: the Conv with flipped weights (fastest for wide outputs); otherwise, and for
    narrow inputs, the ConvTranspose with the same weights. Weights or bias computed from the
    image get their own gradients (conv_weights.py)."""
    geo = conv_geometry(b, node)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    extra = [weight_grad(b, x, b.shape(x), grads[0], b.shape(y), b.shape(w), geo) if needs[1] else None]
    if len(needs) > 2:
        extra.append(bias_grad(b, grads[0], b.rank(y)) if needs[2] else None)
    if not needs[0]:
        return [None] + extra
    return [conv_input_grad(b, node, grads, geo)] + extra


def conv_input_grad(b: GraphBuilder, node: Node, grads, geo: dict) -> str:
    flipped_pads = adjoint_pads(geo)
    narrow = b.shape(node.inputs[0])[1] < NCHWC_BLOCK
    if all(s == 1 for s in geo["strides"]) and min(flipped_pads) >= 0 and not narrow:
        return b.op("Conv", grads[0], flipped_weights(b, node.inputs[1], geo["group"]),
                    kernel_shape=geo["kernel"], dilations=geo["dilations"], pads=flipped_pads, group=geo["group"])
    x, y = node.inputs[0], node.outputs[0]
    spatial = len(geo["kernel"])
    output_padding = []
    for i in range(spatial):
        covered = ((b.shape(y)[2 + i] - 1) * geo["strides"][i] + (geo["kernel"][i] - 1) * geo["dilations"][i]
                   + 1 - geo["pads"][i] - geo["pads"][i + spatial])
        output_padding.append(b.shape(x)[2 + i] - covered)
    return b.op("ConvTranspose", grads[0], node.inputs[1], kernel_shape=geo["kernel"],
                strides=geo["strides"], dilations=geo["dilations"], pads=geo["pads"],
                group=geo["group"], output_padding=output_padding if any(output_padding) else None)


def adjoint_pads(geo: dict) -> list[int]:
    """Pads of the stride-1 adjoint convolution: (k - 1) * dilation minus the forward pads."""
    spatial = len(geo["kernel"])
    reach = [(k - 1) * d for k, d in zip(geo["kernel"], geo["dilations"])]
    return [reach[i % spatial] - p for i, p in enumerate(geo["pads"])]


def flipped_weights(b: GraphBuilder, w: str, group: int) -> str:
    """W [Co, Ci/g, k...] -> [Ci, Co/g, k...] with every kernel rotated by 180 degrees.

    A stride-1 Conv's adjoint is the Conv with these weights; ONNX Runtime folds this
    initializer-only subgraph once at session start; for outputs of 8+ channels its Conv kernels are
    faster than ConvTranspose's.
    """
    shape = b.shape(w)
    co, ci_g, kernel = shape[0], shape[1], list(shape[2:])
    spatial = len(kernel)
    grouped = b.op("Reshape", w, b.ints([group, co // group, ci_g] + kernel))
    swapped = b.op("Transpose", grouped, perm=[0, 2, 1] + list(range(3, 3 + spatial)))
    merged = b.op("Reshape", swapped, b.ints([group * ci_g, co // group] + kernel))
    axes = list(range(2, 2 + spatial))
    return b.op("Slice", merged, b.ints([-1] * spatial), b.ints([-(2 ** 62)] * spatial), b.ints(axes),
                b.ints([-1] * spatial))


def conv_transpose_pads(b: GraphBuilder, node: Node) -> tuple[list[int], list[int], list[int], list[int]]:
    """Kernel, strides, dilations and explicit pads of a ConvTranspose (output_shape resolved)."""
    x_shape, w_shape, y_shape = b.shape(node.inputs[0]), b.shape(node.inputs[1]), b.shape(node.outputs[0])
    spatial = len(x_shape) - 2
    kernel = list(node.attrs.get("kernel_shape", w_shape[2:]))
    strides = list(node.attrs.get("strides", [1] * spatial))
    dilations = list(node.attrs.get("dilations", [1] * spatial))
    pads = list(node.attrs.get("pads", [0] * (2 * spatial)))
    out_pad = list(node.attrs.get("output_padding", [0] * spatial))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if "output_shape" in node.attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(spatial):
            full = strides[i] * (x_shape[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
            total = max(full - y_shape[2 + i], 0)
            small, large = total // 2, total - total // 2
            pads[i], pads[i + spatial] = (large, small) if auto_pad == "SAME_LOWER" else (small, large)
    elif auto_pad == "VALID":
        pads = [0] * (2 * spatial)
    return kernel, strides, dilations, pads


@vjp("ConvTranspose")
def vjp_conv_transpose(b, node, grads, needs):
    """The Conv with the same weights; image-dependent weights: that Conv's weight gradient with
    input and output gradient exchanged."""
    kernel, strides, dilations, pads = conv_transpose_pads(b, node)
    group = int(node.attrs.get("group", 1))
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    gx = b.op("Conv", grads[0], w, kernel_shape=kernel, strides=strides,
              dilations=dilations, pads=pads, group=group) if needs[0] else None
    geo = dict(kernel=kernel, strides=strides, dilations=dilations, pads=pads, group=group)
    extra = [weight_grad(b, grads[0], b.shape(y), x, b.shape(x), b.shape(w), geo) if needs[1] else None]
    if len(needs) > 2:
        extra.append(bias_grad(b, grads[0], b.rank(y)) if needs[2] else None)
    return [gx] + extra
