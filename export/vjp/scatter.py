"""Writes into a tensor: ScatterND and ScatterElements (reductions none, add and mul).

The adjoint of a scatter reads back what it wrote: the output gradient at the written positions
goes to ``updates`` (GatherND / GatherElements), the rest to ``data``. With reduction 'none' a
position written twice keeps one write, which ONNX leaves undefined: constant indices that repeat
are refused; indices computed in the graph (slice assignments, argmax picks) are taken as distinct.
With 'mul', an update's gradient needs the others written to its position: constant indices only.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lam_trt.export.builder import GraphBuilder, Node
from lam_trt.export.vjp.registry import vjp

REDUCTIONS = ("none", "add", "mul")


def refuse_reduction(node: Node, needs: list[bool]) -> Optional[str]:
    reduction = node.attrs.get("reduction", "none")
    if reduction not in REDUCTIONS:
        return f"reduction '{reduction}' (only none, add and mul have exact gradients here)"
    return None


def written_positions(b: GraphBuilder, node: Node, axis: Optional[int]) -> Optional[np.ndarray]:
    """Flat positions each update writes, when the indices are constants (None otherwise)."""
    idx_name, data = node.inputs[1], node.inputs[0]
    if not b.has_value(idx_name):
        return None
    idx, shape = np.asarray(b.value(idx_name)).astype(np.int64), b.shape(data)
    if axis is None:  # ScatterND: the last index axis addresses the leading dims of data
        k = idx.shape[-1]
        return np.ravel_multi_index(tuple(np.mod(idx.reshape(-1, k), shape[:k]).T), shape[:k])
    grid = list(np.indices(idx.shape))
    grid[axis] = np.mod(idx, shape[axis])
    return np.ravel_multi_index(tuple(grid), shape[:idx.ndim]).reshape(-1)


def check_distinct(b: GraphBuilder, node: Node, axis: Optional[int]) -> None:
    positions = written_positions(b, node, axis)
    if positions is not None and len(np.unique(positions)) < len(positions):
        raise NotImplementedError(f"{node.op_type} writes one position twice with reduction "
                                  f"'{node.attrs.get('reduction', 'none')}' (ONNX leaves which write wins undefined)")


def scatter_vjp(b: GraphBuilder, node: Node, grads, needs, gather: str, axis: Optional[int]) -> list:
    g = grads[0]
    data, idx, updates = node.inputs
    reduction = node.attrs.get("reduction", "none")
    if reduction != "add" and needs[2]:
        check_distinct(b, node, axis)
        if reduction == "mul" and not b.has_value(idx):
            raise NotImplementedError(f"{node.op_type} with reduction 'mul' into indices computed in the graph "
                                      "(a repeated index would need the product of the other updates)")
    attrs = {} if axis is None else {"axis": axis}
    g_data = g_updates = None
    if needs[0]:
        if reduction == "add":
            g_data = g
        elif reduction == "mul":  # d out / d data = product of the updates written there
            g_data = b.op(node.op_type, g, idx, updates, reduction="mul", **attrs)
        else:
            g_data = b.op(node.op_type, g, idx, b.zeros_like(updates), **attrs)
    if needs[2]:
        picked = b.op("Mul", g, data) if reduction == "mul" else g
        g_updates = b.op(gather, picked, idx, **attrs)
    return [g_data, None, g_updates]


@vjp("ScatterND", refuses=refuse_reduction)
def vjp_scatter_nd(b, node, grads, needs):
    return scatter_vjp(b, node, grads, needs, "GatherND", None)


@vjp("ScatterElements", refuses=refuse_reduction)
def vjp_scatter_elements(b, node, grads, needs):
    axis = int(node.attrs.get("axis", 0)) % b.rank(node.inputs[0])
    return scatter_vjp(b, node, grads, needs, "GatherElements", axis)
