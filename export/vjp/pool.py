"""Windowed pooling: AveragePool (separable, measured per axis) and MaxPool (first maximum wins)."""
from __future__ import annotations

import numpy as np
from onnx import helper

from lam_trt.export.builder import GraphBuilder, Node, one_hot_kernels
from lam_trt.export.vjp.registry import field_rule, vjp
from lam_trt.export.vjp.conv import conv_field
from lam_trt.export.vjp.geometry import Geometry, geometry
from lam_trt.export.vjp.separable import apply_transpose, measure_axis_matrix


def pool_geometry(b: GraphBuilder, node: Node) -> Geometry:
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotImplementedError(f"{node.op_type} with auto_pad {node.attrs['auto_pad']}")
    return geometry(node, b.shape(node.inputs[0]))


# a pooling window grows the field as a kernel does
field_rule("MaxPool", "AveragePool", "LpPool")(conv_field)


@vjp("AveragePool")
def vjp_average_pool(b, node, grads, needs):
    """The average over a window divides by a per-axis product, so it is separable."""
    x, y = node.inputs[0], node.outputs[0]
    geo = pool_geometry(b, node)
    g, shape = grads[0], list(b.shape(y))
    for i in range(geo.spatial):
        axis = 2 + i

        def make(probe_shape, i=i):
            one = lambda values, v: [v if j != i else values[i] for j in range(geo.spatial)]
            attrs = dict(node.attrs)
            attrs.update(kernel_shape=one(geo.kernel, 1), strides=one(geo.strides, 1),
                         pads=one(geo.pads[:geo.spatial], 0) + one(geo.pads[geo.spatial:], 0))
            if "dilations" in attrs:
                attrs["dilations"] = one(geo.dilations, 1)
            attrs.pop("auto_pad", None)
            return helper.make_node("AveragePool", ["x"], ["y"], **attrs), []

        a = measure_axis_matrix(b.opset, b.rank(x), axis, b.shape(x)[axis], make)
        g = apply_transpose(b, g, a, axis, shape)
        shape[axis] = b.shape(x)[axis]
    return [g]


@vjp("MaxPool")
def vjp_max_pool(b, node, grads, needs):
    """Route each output's gradient to the first input position (scan order) holding the max.

    One grouped Conv with one-hot kernels gathers all kh * kw window positions at once (exact for
    finite activations: one product by 1.0 per value, the rest by 0), CumSum along them finds the
    first hit, and the transposed one-hot Conv puts the picks back: a dozen nodes for any window
    size, where one node chain per window position made a 7x7 pool (RFDN's ESA) hundreds of tiny
    kernels."""
    x, y = node.inputs[0], node.outputs[0]
    geo = pool_geometry(b, node)
    if geo.spatial != 2:
        raise NotImplementedError("MaxPool over other than two spatial axes")
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.strides, geo.dilations
    _, c, h, w = b.shape(x)
    ho, wo = b.shape(y)[2:]
    k = kh * kw
    pt, pl, pb, pr = geo.pads
    span_h, span_w = (ho - 1) * sh + (kh - 1) * dh + 1, (wo - 1) * sw + (kw - 1) * dw + 1
    extra_h, extra_w = max(0, span_h - (h + pt + pb)), max(0, span_w - (w + pl + pr))
    # padding must lose every comparison yet stay finite: the one-hot Conv multiplies it by 0
    lowest = b.const(np.finfo(np.float32).min)
    padded = b.op("Pad", x, b.ints([0, 0, pt, pl, 0, 0, pb + extra_h, pr + extra_w]), lowest, mode="constant")
    kernels = b.const(one_hot_kernels(c, kh, kw))
    window = dict(kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw], group=c)
    windows = b.op("Reshape", b.op("Conv", padded, kernels, **window), b.ints([0, c, k, ho, wo]))
    hit = b.op("Equal", windows, b.op("Unsqueeze", y, b.ints([2])))
    seen = b.op("CumSum", b.op("Cast", hit, to=helper.TensorProto.FLOAT), b.const(2, np.int64))
    first = b.op("And", hit, b.op("Equal", seen, b.const(1.0)))
    picks = b.op("Where", first, b.op("Unsqueeze", grads[0], b.ints([2])), b.const(0.0))
    stacked = b.op("Reshape", picks, b.ints([0, c * k, ho, wo]))
    # ConvTranspose puts each pick back at its input position; crop the padding to h x w.
    end_h, end_w = span_h - pt - h, span_w - pl - w
    gx = b.op("ConvTranspose", stacked, kernels, **window, pads=[pt, pl, max(end_h, 0), max(end_w, 0)])
    if end_h < 0 or end_w < 0:  # trailing rows no window reached
        gx = b.op("Pad", gx, b.ints([0, 0, 0, 0, 0, 0, max(-end_h, 0), max(-end_w, 0)]), mode="constant")
    return [gx]
