"""Normalisations: LayerNorm, InstanceNorm, GroupNorm (standardise over some axes) and BatchNorm."""
from __future__ import annotations

import numpy as np

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.fields import Field, FieldContext, global_field, normalised_over
from lam_trt.export.vjp.registry import field_rule, vjp


def standardised_grad(b: GraphBuilder, x: str, g_hat: str, axes: list[int], eps: float) -> str:
    """Gradient through xhat = (x - mean) / sqrt(var + eps) over ``axes`` given dL/dxhat.

    dx = inv * (g_hat - mean(g_hat) - xhat * mean(g_hat * xhat)); statistics are recomputed.
    """
    centred = b.op("Sub", x, b.reduce_mean(x, axes))
    var = b.reduce_mean(b.op("Mul", centred, centred), axes)
    inv = b.op("Reciprocal", b.op("Sqrt", b.op("Add", var, b.const(eps))))
    x_hat = b.op("Mul", centred, inv)
    mean_g = b.reduce_mean(g_hat, axes)
    mean_gx = b.reduce_mean(b.op("Mul", g_hat, x_hat), axes)
    inner = b.op("Sub", b.op("Sub", g_hat, mean_g), b.op("Mul", x_hat, mean_gx))
    return b.op("Mul", inv, inner)


def channel_vector(b: GraphBuilder, v: str, rank: int) -> str:
    """A per-channel [C] tensor shaped [C, 1, ..., 1] to broadcast over NC... data."""
    return b.op("Reshape", v, b.ints([-1] + [1] * (rank - 2)))


def no_param_grads(needs: list[bool]) -> None:
    if any(needs[1:]):
        raise NotImplementedError("normalisation parameters that depend on the image")


@vjp("LayerNormalization")
def vjp_layer_norm(b, node, grads, needs):
    no_param_grads(needs)
    x = node.inputs[0]
    rank = b.rank(x)
    axes = list(range(int(node.attrs.get("axis", -1)) % rank, rank))
    g_hat = b.op("Mul", grads[0], node.inputs[1])
    eps = float(node.attrs.get("epsilon", 1e-5))
    return [standardised_grad(b, x, g_hat, axes, eps)] + [None] * (len(node.inputs) - 1)


@vjp("InstanceNormalization")
def vjp_instance_norm(b, node, grads, needs):
    no_param_grads(needs)
    x = node.inputs[0]
    rank = b.rank(x)
    g_hat = b.op("Mul", grads[0], channel_vector(b, node.inputs[1], rank))
    eps = float(node.attrs.get("epsilon", 1e-5))
    return [standardised_grad(b, x, g_hat, list(range(2, rank)), eps), None, None]


@vjp("GroupNormalization")
def vjp_group_norm(b, node, grads, needs):
    """Scale is per group at opset 18 and per channel from opset 21."""
    no_param_grads(needs)
    x = node.inputs[0]
    rank, channels = b.rank(x), b.shape(x)[1]
    groups = int(node.attrs["num_groups"])
    scale = node.inputs[1]
    if b.shape(scale)[0] != channels:  # per group: repeat each group's scale over its channels
        scale = b.op("Reshape", b.op("Expand", b.op("Unsqueeze", scale, b.ints([1])),
                                     b.ints([groups, channels // groups])), b.ints([channels]))
    g_hat = b.op("Mul", grads[0], channel_vector(b, scale, rank))
    grouped = [-1, groups, int(np.prod(b.shape(x)[1:])) // groups]
    gx = standardised_grad(b, b.op("Reshape", x, b.ints(grouped)), b.op("Reshape", g_hat, b.ints(grouped)),
                           [2], float(node.attrs.get("epsilon", 1e-5)))
    return [b.reshape_like(gx, x), None, None]


@vjp("BatchNormalization")
def vjp_batch_norm(b, node, grads, needs):
    """Inference mode: a fixed per-channel affine map, scale / sqrt(var + eps)."""
    if int(node.attrs.get("training_mode", 0)) or len(node.outputs) > 1:
        raise NotImplementedError("BatchNormalization in training mode")
    no_param_grads(needs)
    x, scale, _, _, var = node.inputs[:5]
    eps = float(node.attrs.get("epsilon", 1e-5))
    factor = b.op("Div", scale, b.op("Sqrt", b.op("Add", var, b.const(eps))))
    return [b.op("Mul", grads[0], channel_vector(b, factor, b.rank(x)))] + [None] * 4


# ---- receptive field: statistics over all positions make it global ------------------------------
field_rule("InstanceNormalization", "GroupNormalization")(global_field)


@field_rule("LayerNormalization")
def layer_norm_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    rank = len(ctx.shape(node.inputs[0]) or ())
    return normalised_over(node, fields, ctx, list(range(node.attrs.get("axis", -1) % max(rank, 1), rank)))


@field_rule("MeanVarianceNormalization")
def mean_variance_field(node: Node, fields: list[Field | None], ctx: FieldContext) -> Field:
    return normalised_over(node, fields, ctx, list(node.attrs.get("axes", [0, 2, 3])))
