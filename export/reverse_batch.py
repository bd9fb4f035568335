"""The reverse pass of K windows runs on K x N items while the forward pass ran once, on N.

The reverse pass's nodes were written for one batch; here they are made to read the forward pass's
tensors (activations, a ReLU's input, a Shape of either), which have N items, beside gradients of
K x N items (window-major: item k*N + n is path image n seen through window k), without copies
where broadcasting does the work:
  - a Shape of a forward tensor is multiplied by K on its batch axis (no copy to take a shape of);
  - an elementwise node (or a batched MatMul, a Transpose, a reduction over other axes) that reads
    only forward tensors and constants, the local derivative of an activation, runs once per path
    image instead of once per window;
  - an elementwise node that mixes such a tensor with K x N items views those as [K, N, ...]
    (a Reshape, no copy), so the N-item tensor broadcasts over the windows, and its result back;
  - any other reader gets a copy tiled K times along the tensor's batch axis, made just before its
    first reader so that it lives no longer than needed.
On the zoo networks only the detector's read of the SR image is still copied. Tensors without a batch axis (weights, folded constants) are read as
they are; so are tensors computed from shapes alone, which are the same for every item.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import onnx
from onnx import helper

from lam_trt.export.builder import INT64_MAX, SHAPE_READERS, GraphBuilder

# Ops whose output is their inputs' elements combined under numpy broadcasting (or one input's
# elements mapped one by one): a [K, N, ...] view of one operand broadcasts against [N, ...].
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Mod", "Equal", "Greater",
    "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Xor", "Not", "Neg", "Abs", "Sqrt", "Reciprocal",
    "Exp", "Log", "Tanh", "Sigmoid", "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish",
    "Softplus", "Softsign", "Mish", "Erf", "Sin", "Cos", "Ceil", "Floor", "Round", "Sign", "Cast",
    "Identity", "Clip", "IsNaN", "IsInf",
})
BATCHED_MATMUL = frozenset({"MatMul"})  # broadcasts over every axis but the last two (rank >= 3)
AXES_READERS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"})  # per item over other axes


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


@dataclass
class WindowReads:
    """What each tensor of the reverse pass holds: one item per path image (``per_image``: tensor
    -> (batch axis, rank)), one per window and path image (``per_item``: computed from a tiled
    copy or another per-item tensor), or unknown (constants in ``b.values``; shapes, the windows
    and what is computed from them alone). Only per-item tensors are viewed as [K, N, ...]; a node
    that mixes per-image tensors with unknown ones reads tiled copies, as every node once did."""

    b: GraphBuilder
    per_image: dict[str, tuple[int, int]]
    count: str  # K, int64 [1]
    per_item: set[str] = field(default_factory=set)
    tiled: dict[str, str] = field(default_factory=dict)
    passthrough: set[str] = field(default_factory=set)  # nodes that make K x N items themselves

    def add(self, node: onnx.NodeProto) -> None:
        """Append ``node`` to the graph, reading per-image tensors without copies where it can."""
        if node.name in self.passthrough:  # tail_crop.py's gathers and scatters of window crops
            self.b.nodes.append(node)
            self.per_item.update(o for o in node.output if o)
            return
        images = [i for i in node.input if i in self.per_image]
        items = [i for i in node.input if i in self.per_item]
        outputs = [o for o in node.output if o]  # by_window renames the node's own
        if images and node.op_type in SHAPE_READERS and self.scale_shape(node):
            return
        layout = self.shared_layout(node, images) if images else None
        if layout and not items:  # once per path image, shared by every window
            self.b.nodes.append(node)
            self.per_image.update((o, layout) for o in outputs)
            return
        if layout and layout[0] == 0 and items:
            self.by_window(node, items)
        else:
            for k, name in enumerate(node.input):
                if name in self.per_image:
                    node.input[k] = self.tiled_copy(name)
            self.b.nodes.append(node)
        if (images or items) and node.op_type not in SHAPE_READERS:  # a shape is no item's data
            self.per_item.update(outputs)

    def shared_layout(self, node: onnx.NodeProto, images: list[str]) -> Optional[tuple[int, int]]:
        """(batch axis, rank) that ``node``'s output shares with its per-image inputs, where it
        is elementwise (or a batched MatMul) over them and its other inputs are per item or
        constants of no higher rank (which broadcast alike against N or K x N items); else None."""
        layouts = {self.per_image[i] for i in images}
        if len(layouts) != 1:
            return None
        layout = output_layout(node, *layouts.pop(), self.b.values)
        if layout is None:
            return None
        for name in node.input[:1 if node.op_type in AXES_READERS else None]:
            if name and name not in self.per_image and name not in self.per_item:
                if name not in self.b.values or self.b.values[name].ndim > layout[1]:
                    return None
        return layout

    def scale_shape(self, node: onnx.NodeProto) -> bool:
        """Shape(x) of a per-image x, as the shape of its K x N-item copy: the batch axis times K."""
        if node.op_type != "Shape" or any(a.name in ("start", "end") for a in node.attribute):
            return False
        axis, rank = self.per_image[node.input[0]]
        out = node.output[0]
        node.output[0] = node.name = f"{out}__per_image"
        self.b.nodes += [node, helper.make_node("Mul", [node.output[0], self.k_on(axis, rank)], [out], name=out)]
        return True

    def by_window(self, node: onnx.NodeProto, items: list[str]) -> None:
        """``node`` on [K, N, ...] views of its per-item inputs (per-image ones broadcast over K),
        its output viewed back as [K*N, ...]."""
        b = self.b
        for k, name in enumerate(node.input):
            if name in items:
                rest = b.op("Slice", b.op("Shape", name), b.ints([1]), b.ints([INT64_MAX]))
                node.input[k] = b.op("Reshape", name, b.op("Concat", self.count, b.ints([-1]), rest, axis=0))
        out = node.output[0]
        node.output[0] = node.name = f"{out}__by_window"
        b.nodes.append(node)
        rest = b.op("Slice", b.op("Shape", node.output[0]), b.ints([2]), b.ints([INT64_MAX]))
        b.nodes.append(helper.make_node("Reshape", [node.output[0], b.op("Concat", b.ints([-1]), rest, axis=0)],
                                        [out], name=out))

    def tiled_copy(self, name: str) -> str:
        """``name`` repeated K times along its batch axis (whole blocks: item k*N + n), made once."""
        if name not in self.tiled:
            axis, rank = self.per_image[name]
            if rank == 0:  # a scalar summary: the same for every window
                return name
            self.tiled[name] = f"{name}__windows"
            self.b.nodes.append(helper.make_node("Tile", [name, self.k_on(axis, rank)], [self.tiled[name]],
                                                 name=self.tiled[name]))
        return self.tiled[name]

    def k_on(self, axis: int, rank: int) -> str:
        """[1, .., K, .., 1] (``rank`` entries, K at ``axis``): a shape's factor, Tile's repeats."""
        return self.b.op("Concat", self.b.ints([1] * axis), self.count, self.b.ints([1] * (rank - axis - 1)), axis=0)


def output_layout(node: onnx.NodeProto, axis: int, rank: int, values: dict) -> Optional[tuple[int, int]]:
    """(batch axis, rank) of ``node``'s output, given its per-image inputs' (``axis``, ``rank``),
    where each of its items is computed from the same item of those inputs alone; else None."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ELEMENTWISE or (node.op_type in BATCHED_MATMUL and rank >= 3 and axis == 0):
        return axis, rank
    if node.op_type == "Transpose":
        perm = list(attrs.get("perm", range(rank - 1, -1, -1)))
        return perm.index(axis), rank
    if node.op_type in AXES_READERS and attrs.get("keepdims", 1) == 1:
        axes = attrs.get("axes") if len(node.input) < 2 else values.get(node.input[1])
        if axes is not None and len(axes) and axis not in {int(a) % rank for a in axes}:
            return axis, rank
    return None


def tile_reads(b: GraphBuilder, first: int, batched: dict[str, int], windows: str,
               passthrough: set[str] = frozenset()) -> None:
    """Make the nodes from ``b.nodes[first]`` on (the reverse pass, written for one batch) read
    the ``batched`` forward tensors as K x N items, K the number of rows of ``windows``; the
    ``passthrough`` nodes are kept as they are."""
    tail, b.nodes = b.nodes[first:], b.nodes[:first]
    count = b.op("Slice", b.op("Shape", windows), b.ints([0]), b.ints([1]))
    reads = WindowReads(b, {name: (axis, len(b.shape(name))) for name, axis in batched.items()}, count,
                        passthrough=set(passthrough))
    for node in tail:
        reads.add(node)
