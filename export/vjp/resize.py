"""Resize (Upsample is canonicalised to it): separable and linear, so its adjoint is A^T per axis."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.crops import Box, CropStep, Span
from lam_trt.export.fields import Field, FieldContext, grow, merge
from lam_trt.export.vjp.registry import crop_rule, field_rule, vjp
from lam_trt.export.vjp.separable import apply_transpose, measure_axis_matrix, replication_factor


def full_rank(node: Node, values: np.ndarray, rank: int, fill: float) -> list:
    """Scales or sizes for every axis (Resize-18 may give them for some ``axes`` only)."""
    axes = node.attrs.get("axes")
    if axes is None:
        return list(values)
    full = [fill] * rank
    for a, v in zip(axes, values):
        full[int(a) % rank] = v
    return full


def resize_probe(b: GraphBuilder, node: Node, axis: int):
    """A probe factory: the node's own Resize, scaling only ``axis``."""
    rank = b.rank(node.inputs[0])
    attrs = {k: v for k, v in node.attrs.items() if k not in ("axes", "keep_aspect_ratio_policy")}
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")

    def make(probe_shape: list[int]):
        if node.input(2) and b.value(node.input(2)).size:
            scales = [1.0] * rank
            scales[axis] = float(full_rank(node, b.value(node.input(2)), rank, 1.0)[axis])
            arg = numpy_helper.from_array(np.array(scales, np.float32), "scales")
            inputs = ["x", "roi", "scales"]
        else:
            sizes = list(probe_shape)
            sizes[axis] = int(full_rank(node, b.value(node.input(3)), rank, 0)[axis])
            arg = numpy_helper.from_array(np.array(sizes, np.int64), "sizes")
            inputs = ["x", "roi", "", "sizes"]
        return helper.make_node("Resize", inputs, ["y"], **attrs), [roi, arg]

    return make


@vjp("Resize")
def vjp_resize(b, node, grads, needs):
    x, y = node.inputs[0], node.outputs[0]
    if node.attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        raise NotImplementedError("Resize with tf_crop_and_resize")
    if node.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise NotImplementedError("Resize with keep_aspect_ratio_policy")
    if b.shape(x)[0] != b.shape(y)[0]:
        raise NotImplementedError("Resize along the batch axis")
    g, shape = grads[0], list(b.shape(y))
    for axis in range(1, b.rank(x)):
        if axis == 1 and b.shape(x)[1] == b.shape(y)[1]:
            continue  # exporters never interpolate channels
        a = measure_axis_matrix(b.opset, b.rank(x), axis, b.shape(x)[axis], resize_probe(b, node, axis))
        if a.shape[0] != b.shape(y)[axis]:
            raise NotImplementedError(f"Resize probe gave {a.shape[0]} samples, expected {b.shape(y)[axis]}")
        g = apply_transpose(b, g, a, axis, shape)
        shape[axis] = b.shape(x)[axis]
    return [g] + [None] * (len(node.inputs) - 1)


# ---- crops ------------------------------------------------------------------------------------
@crop_rule("Resize")
def resize_crop(b: GraphBuilder, node: Node, out: Box) -> CropStep | None:
    """Nearest-neighbour upsampling by whole factors (each input pixel repeated r times, measured on
    the node itself): the input rows under the box, and the box grown to whole blocks of r."""
    x, y = node.inputs[0], node.outputs[0]
    if b.rank(x) != 4 or b.shape(x)[:2] != b.shape(y)[:2] or node.attrs.get("mode", "nearest") != "nearest":
        return None
    factors = []
    for axis in (2, 3):
        a = measure_axis_matrix(b.opset, 4, axis, b.shape(x)[axis], resize_probe(b, node, axis))
        factors.append(replication_factor(a) if a.shape[0] == b.shape(y)[axis] else None)
    if None in factors or any(o.shrink(r) is None for o, r in zip(out.spans, factors)):
        return None
    ins, outs = [], []
    for o, r in zip(out.spans, factors):
        first, last = o.c // r, -(-o.end // r)
        ins.append(Span(o.shrink(r), first, last - first))
        outs.append(Span(o.m, first * r, (last - first) * r))
    scales = np.array([1.0, 1.0, *factors], np.float32)
    attrs = {k: v for k, v in node.attrs.items() if k not in ("axes", "keep_aspect_ratio_policy")}
    return CropStep([Box(*ins), None, None], Box(*outs), attrs, consts={2: scales}, arity=3)


# ---- receptive field ---------------------------------------------------------------------------
RESIZE_TAPS = {"nearest": 1, "linear": 2, "cubic": 4}  # input pixels one output interpolates


@field_rule("Resize", "Upsample")
def resize_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    """The interpolation's taps on the input grid; the jump shrinks by the scale."""
    f = merge([fields[0]])
    src, dst = ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0])
    if src is None or dst is None or len(src) != 4:
        return f
    taps = RESIZE_TAPS.get(node.attrs.get("mode", "nearest"), 2)
    grown = grow(f, (taps, taps), (1, 1))
    return replace(grown, j=(f.j[0] * src[2] / dst[2], f.j[1] * src[3] / dst[3]))
