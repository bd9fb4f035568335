"""Reductions: the gradient of each output element is spread back over the elements it reduced."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from lam_trt.export.accumulate import Broadcast
from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.fields import Field, FieldContext, global_field, merge, mixes_positions
from lam_trt.export.vjp.registry import field_rule, vjp
from lam_trt.export.vjp.elementwise import mask


def reduced_axes(b: GraphBuilder, node: Node) -> list[int]:
    """Axes reduced by a Reduce* node (canonicalised: axes come as the second input)."""
    rank = b.rank(node.inputs[0])
    if node.input(1):
        axes = [int(a) % rank for a in b.value(node.input(1))]
        if axes:
            return sorted(axes)
    if int(node.attrs.get("noop_with_empty_axes", 0)):
        return []
    return list(range(rank))


def spread(b: GraphBuilder, node: Node, g: str) -> tuple[str, list[int]]:
    """The output gradient with reduced axes restored (size 1), ready to broadcast over x."""
    axes = reduced_axes(b, node)
    if axes and not int(node.attrs.get("keepdims", 1)):
        g = b.op("Unsqueeze", g, b.ints(axes))
    return g, axes


def kept(b: GraphBuilder, node: Node, y: str, axes: list[int]) -> str:
    """The node's output with reduced axes kept, to broadcast against the input."""
    if axes and not int(node.attrs.get("keepdims", 1)):
        return b.op("Unsqueeze", y, b.ints(axes))
    return y


def no_grad_for_axes(node: Node) -> list:
    return [None] * (len(node.inputs) - 1)


@vjp("ReduceSum", takes_broadcast=True)
def vjp_reduce_sum(b, node, grads, needs):
    g, _ = spread(b, node, grads[0])
    return [Broadcast(g)] + no_grad_for_axes(node)


@vjp("ReduceMean", takes_broadcast=True)
def vjp_reduce_mean(b, node, grads, needs):
    g, axes = spread(b, node, grads[0])
    count = int(np.prod([b.shape(node.inputs[0])[a] for a in axes]))
    return [Broadcast(b.op("Div", g, b.const(float(count))))] + no_grad_for_axes(node)


@vjp("ReduceSumSquare")
def vjp_reduce_sum_square(b, node, grads, needs):
    g, _ = spread(b, node, grads[0])
    return [b.op("Mul", b.op("Mul", g, b.const(2.0)), node.inputs[0])] + no_grad_for_axes(node)


@vjp("ReduceL1")
def vjp_reduce_l1(b, node, grads, needs):
    g, _ = spread(b, node, grads[0])
    return [b.op("Mul", g, b.op("Sign", node.inputs[0]))] + no_grad_for_axes(node)


@vjp("ReduceL2")
def vjp_reduce_l2(b, node, grads, needs):
    """x / ||x|| (0 where the norm is 0, as PyTorch)."""
    g, axes = spread(b, node, grads[0])
    norm = kept(b, node, node.outputs[0], axes)
    positive = b.op("Greater", norm, b.const(0.0))
    safe = b.op("Where", positive, norm, b.const(1.0))
    local = b.op("Where", positive, b.op("Div", node.inputs[0], safe), b.const(0.0))
    return [b.op("Mul", g, local)] + no_grad_for_axes(node)


@vjp("ReduceLogSumExp")
def vjp_reduce_log_sum_exp(b, node, grads, needs):
    g, axes = spread(b, node, grads[0])
    y = kept(b, node, node.outputs[0], axes)
    return [b.op("Mul", g, b.op("Exp", b.op("Sub", node.inputs[0], y)))] + no_grad_for_axes(node)


@vjp("ReduceMax", "ReduceMin")
def vjp_reduce_extreme(b, node, grads, needs):
    """Split equally between tied extremes (PyTorch's amax/amin rule)."""
    g, axes = spread(b, node, grads[0])
    hit = mask(b, "Equal", node.inputs[0], kept(b, node, node.outputs[0], axes))
    ties = b.reduce_sum(hit, axes, keepdims=True)
    return [b.op("Mul", hit, b.op("Div", g, ties))] + no_grad_for_axes(node)


@vjp("GlobalAveragePool", takes_broadcast=True)
def vjp_global_average_pool(b, node, grads, needs):
    x = node.inputs[0]
    count = float(np.prod(b.shape(x)[2:]))
    return [Broadcast(b.op("Div", grads[0], b.const(count)))]


@vjp("GlobalMaxPool")
def vjp_global_max_pool(b, node, grads, needs):
    x = node.inputs[0]
    axes = list(range(2, b.rank(x)))
    hit = mask(b, "Equal", x, node.outputs[0])
    ties = b.reduce_sum(hit, axes, keepdims=True)
    return [b.op("Mul", hit, b.op("Div", grads[0], ties))]


# ---- receptive field: a reduction over all positions sees the whole image ----------------------
field_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")(global_field)


def field_axes(node: Node, ctx: FieldContext, rank: int) -> list[int]:
    """Reduced axes as the source graph writes them (attribute before opset 18, else input)."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1] in ctx.consts:
        axes = ctx.consts[node.inputs[1]].tolist()
    if not axes:
        return [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
    return list(axes)


@field_rule("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")
def reduce_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    f = merge([fields[0]])
    shape = ctx.shape(node.inputs[0])
    axes = [node.attrs.get("axis", 0)] if node.op_type.startswith("Arg") else field_axes(node, ctx, len(shape or ()))
    mixes = mixes_positions(f, axes, shape, ctx)
    return replace(f, is_global=f.is_global or mixes, spatial=f.spatial and not mixes)
