"""Selections by index along an axis: TopK (values and their indices) and GatherElements. The
gradient goes back to the positions selected (ScatterElements); indices carry none."""
from __future__ import annotations

from lam_trt.export.vjp.registry import vjp


@vjp("TopK")
def vjp_top_k(b, node, grads, needs):
    """Scatter the values' gradient to the indices TopK chose (distinct along the axis)."""
    x = node.inputs[0]
    axis = int(node.attrs.get("axis", -1)) % b.rank(x)
    g_values, indices = grads[0], node.outputs[1]
    if g_values is None:
        return [None, None]
    gx = b.op("ScatterElements", b.zeros_like(x), indices, g_values, axis=axis)
    return [gx, None]


@vjp("GatherElements")
def vjp_gather_elements(b, node, grads, needs):
    """Repeated indices add up: ScatterElements with reduction 'add' into zeros."""
    x = node.inputs[0]
    axis = int(node.attrs.get("axis", 0)) % b.rank(x)
    gx = b.op("ScatterElements", b.zeros_like(x), node.inputs[1], grads[0], axis=axis, reduction="add")
    return [gx, None]
