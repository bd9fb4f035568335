"""Conv and ConvTranspose: each is the other's adjoint with the same weights."""
from __future__ import annotations

import math
from dataclasses import replace

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.crops import Box, CropStep, Span
from lam_trt.export.fields import Field, FieldContext, grow, merge, pair
from lam_trt.export.vjp.registry import crop_rule, field_rule, mac_count, vjp
from lam_trt.export.vjp.conv_weights import bias_grad, weight_grad
from lam_trt.export.vjp.geometry import Geometry, geometry


def node_geometry(b: GraphBuilder, node: Node) -> Geometry:
    """The geometry of a Conv or ConvTranspose in the forward graph (static shapes known)."""
    return geometry(node, b.shape(node.inputs[0]), b.shape(node.inputs[1]), b.shape(node.outputs[0]))


# ONNX Runtime's blocked (NCHWc) CPU convolutions need at least this many output channels. A
# narrower adjoint (the first layer's: 3 channels) runs 2.5-5x faster as ConvTranspose (one GEMM to
# C_in * k * k columns, then col2im) than as the flipped Conv (bench/RESULTS.md, "Conv adjoints").
NCHWC_BLOCK = 8


@vjp("Conv")
def vjp_conv(b, node, grads, needs):
    """Stride 1: the Conv with flipped weights (fastest for wide outputs); otherwise, and for
    narrow inputs, the ConvTranspose with the same weights. Weights or bias computed from the
    image get their own gradients (conv_weights.py)."""
    geo = node_geometry(b, node)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    extra = [weight_grad(b, x, b.shape(x), grads[0], b.shape(y), b.shape(w), geo) if needs[1] else None]
    if len(needs) > 2:
        extra.append(bias_grad(b, grads[0], b.rank(y)) if needs[2] else None)
    if not needs[0]:
        return [None] + extra
    return [conv_input_grad(b, node, grads, geo)] + extra


def conv_input_grad(b: GraphBuilder, node: Node, grads, geo: Geometry) -> str:
    flipped_pads = adjoint_pads(geo)
    narrow = b.shape(node.inputs[0])[1] < NCHWC_BLOCK
    if all(s == 1 for s in geo.strides) and min(flipped_pads) >= 0 and not narrow:
        return b.op("Conv", grads[0], flipped_weights(b, node.inputs[1], geo.group),
                    kernel_shape=geo.kernel, dilations=geo.dilations, pads=flipped_pads, group=geo.group)
    x, y = node.inputs[0], node.outputs[0]
    output_padding = []
    for i in range(geo.spatial):
        covered = (b.shape(y)[2 + i] - 1) * geo.strides[i] + geo.extent(i) - geo.pads[i] - geo.pads[i + geo.spatial]
        output_padding.append(b.shape(x)[2 + i] - covered)
    return b.op("ConvTranspose", grads[0], node.inputs[1], kernel_shape=geo.kernel,
                strides=geo.strides, dilations=geo.dilations, pads=geo.pads,
                group=geo.group, output_padding=output_padding if any(output_padding) else None)


def adjoint_pads(geo: Geometry) -> list[int]:
    """Pads of the stride-1 adjoint convolution: (k - 1) * dilation minus the forward pads."""
    reach = [geo.extent(i) - 1 for i in range(geo.spatial)]
    return [reach[i % geo.spatial] - p for i, p in enumerate(geo.pads)]


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


@vjp("ConvTranspose")
def vjp_conv_transpose(b, node, grads, needs):
    """The Conv with the same weights; image-dependent weights: that Conv's weight gradient with
    input and output gradient exchanged."""
    geo = node_geometry(b, node)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    gx = b.op("Conv", grads[0], w, kernel_shape=geo.kernel, strides=geo.strides,
              dilations=geo.dilations, pads=geo.pads, group=geo.group) if needs[0] else None
    extra = [weight_grad(b, grads[0], b.shape(y), x, b.shape(x), b.shape(w), geo) if needs[1] else None]
    if len(needs) > 2:
        extra.append(bias_grad(b, grads[0], b.rank(y)) if needs[2] else None)
    return [gx] + extra


# ---- crops --------------------------------------------------------------------------------------
def crop_geometry(b: GraphBuilder, node: Node) -> Geometry | None:
    """The geometry of a 2-D convolution (weights and bias are read as they are: the planner
    refuses the crop where they depend on the image)."""
    return node_geometry(b, node) if b.rank(node.inputs[0]) == 4 else None


def crop_attrs(node: Node, pads: list[int]) -> dict:
    kept = {k: v for k, v in node.attrs.items() if k not in ("auto_pad", "output_padding", "output_shape")}
    return {**kept, "pads": pads}


@crop_rule("Conv")
def conv_crop(b: GraphBuilder, node: Node, out: Box) -> CropStep | None:
    """Stride 1: the input box reaches back the forward pad and on by the kernel's extent; on crops
    the Conv has no padding (the box's own rows are the ones it read)."""
    geo = crop_geometry(b, node)
    if geo is None or any(s != 1 for s in geo.strides):
        return None
    x = Box(*(Span(o.m, o.c - geo.pads[i], o.s + geo.extent(i) - 1) for i, o in enumerate(out.spans)))
    return CropStep([x, None, None][:len(node.inputs)], out, crop_attrs(node, [0, 0, 0, 0]))


@crop_rule("ConvTranspose")
def conv_transpose_crop(b: GraphBuilder, node: Node, out: Box) -> CropStep | None:
    """The inputs whose kernels reach the output box (one input pixel per stride of the output), and
    the pads that put the crop's transposed convolution exactly on that box."""
    geo = crop_geometry(b, node)
    if geo is None:
        return None
    spans, begins, ends = [], [], []
    for i, o in enumerate(out.spans):
        stride, extent, pad = geo.strides[i], geo.extent(i), geo.pads[i]
        m = o.shrink(stride)
        if m is None:
            return None
        first = -((extent - 1 - o.c - pad) // stride)  # ceil((c + pad - (extent - 1)) / stride)
        last = (o.end - 1 + pad) // stride
        begin = o.c + pad - stride * first
        while begin < 0:  # one more input row in front: the crop's output starts no later than the box
            first, begin = first - 1, begin + stride
        size = last - first + 1
        end = (size - 1) * stride + extent - begin - o.s
        while end < 0:
            size, end = size + 1, end + stride
        spans.append(Span(m, first, size))
        begins.append(begin)
        ends.append(end)
    return CropStep([Box(*spans), None, None][:len(node.inputs)], out, crop_attrs(node, begins + ends))


# ---- receptive field and cost -------------------------------------------------------------------
def field_geometry(node: Node, ctx: FieldContext) -> Geometry:
    """Geometry as far as the graph's shapes are known (the weight gives a Conv's kernel)."""
    weight = ctx.shape(node.inputs[1]) if len(node.inputs) > 1 else None
    return geometry(node, ctx.shape(node.inputs[0]), weight, ctx.shape(node.outputs[0]))


@field_rule("Conv")
def conv_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """A dilated kernel on the input's grid, then the stride (pooling windows alike)."""
    geo = field_geometry(node, ctx)
    k, d, s = pair(geo.kernel, 1), pair(geo.dilations, 1), pair(geo.strides, 1)
    return grow(merge(fields), ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1), s)


@field_rule("ConvTranspose")
def conv_transpose_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """Zero insertion (the jump divided by the stride), then a kernel over the fine grid."""
    f = merge(fields)
    geo = field_geometry(node, ctx)
    k, d, s = pair(geo.kernel, 1), pair(geo.dilations, 1), pair(geo.strides, 1)
    fine = replace(f, j=(f.j[0] / s[0], f.j[1] / s[1]))
    return grow(fine, ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1), (1, 1))


@mac_count("Conv")
def conv_macs(node: Node, shapes: dict) -> int:
    """Each output value: one product per weight of its group's input channels and kernel."""
    out, w = shapes.get(node.outputs[0]), shapes.get(node.input(1))
    return math.prod(out) * math.prod(w[1:]) if out and w else 0


@mac_count("ConvTranspose")
def conv_transpose_macs(node: Node, shapes: dict) -> int:
    """Each input value: scattered through one kernel per output channel of its group."""
    x, w = shapes.get(node.inputs[0]), shapes.get(node.input(1))
    return math.prod(x) * math.prod(w[1:]) if x and w else 0
