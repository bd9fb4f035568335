"""The reverse pass of K windows runs on K x N items while the forward pass ran once, on N.

Every forward tensor the reverse pass reads (an activation, a ReLU's input, a Shape of either)
is replaced by a copy tiled K times along the axis that carries its batch (window-major, like the
detector's items), made just before its first reader so it lives no longer than needed. Tensors
without a batch axis (weights, folded constants) are read as they are; so are tensors computed
from shapes alone (a Shape, the shape arithmetic after it), which are the same for every item.
"""
from __future__ import annotations

import onnx
from onnx import helper

from lam_trt.export.builder import GraphBuilder

SHAPE_READERS = frozenset({"Shape", "Size"})


def batched_tensors(nodes: list[onnx.NodeProto], batch_axes: dict[str, int], source: str,
                    output: str) -> dict[str, int]:
    """Forward tensors whose runtime size follows the path's batch -> the axis that carries it:
    the ones computed from the image's values, not from its shape alone. The image input and
    output carry it on axis 0 whatever the tracking through the graph concluded."""
    batched = {source: 0}
    shape_only: set[str] = set()
    for node in nodes:
        data = [i for i in node.input if i in batched or i in shape_only]
        outputs = [o for o in node.output if o in batch_axes]
        if node.op_type in SHAPE_READERS or (data and all(i in shape_only for i in data)):
            shape_only.update(outputs)
        else:
            batched.update((o, batch_axes[o]) for o in outputs)
    return {**batched, output: 0}


def tile_reads(b: GraphBuilder, first: int, batched: dict[str, int], windows: str) -> None:
    """Make the nodes from ``b.nodes[first]`` on read K-fold tiled copies of ``batched`` tensors
    (K = the number of rows of ``windows``), each copy made just before its first reader."""
    tail, b.nodes = b.nodes[first:], b.nodes[:first]
    count = b.op("Slice", b.op("Shape", windows), b.ints([0]), b.ints([1]))
    tiled: dict[str, str] = {}
    for node in tail:
        for k, name in enumerate(node.input):
            if name not in batched:
                continue
            if name not in tiled:
                tiled[name] = tile(b, name, batched[name], count)
            node.input[k] = tiled[name]
        b.nodes.append(node)


def tile(b: GraphBuilder, name: str, axis: int, count: str) -> str:
    """``name`` repeated ``count`` times along ``axis`` (whole blocks: item k*N + n)."""
    rank = len(b.shape(name))
    if rank == 0:  # a scalar summary: the same for every window
        return name
    repeats = b.op("Concat", b.ints([1] * axis), count, b.ints([1] * (rank - axis - 1)), axis=0)
    out = f"{name}__windows"
    b.nodes.append(helper.make_node("Tile", [name, repeats], [out], name=out))
    b.shapes[out], b.dtypes[out] = b.shapes[name], b.dtypes.get(name, onnx.TensorProto.FLOAT)
    return out
