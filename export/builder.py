"""GraphBuilder: emits ONNX nodes for the attribution graph and answers what rules need to know.

VJP rules see the forward graph through this object: static (batch-1) shapes and dtypes of forward
tensors, the folded values of constant inputs, which axis of each tensor carries the batch (the
only dynamic dimension; axis 0 unless a Transpose or Reshape moved it), and helpers that emit
nodes with fresh names. A static shape a rule emits must leave that axis to the runtime (``0`` or
``-1`` in a Reshape, ``Shape`` otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

FLOAT = onnx.TensorProto.FLOAT
INT64_MAX = np.iinfo(np.int64).max  # a Slice end meaning "to the end"
# Ops whose outputs depend on their input's shape only, never on its values: specialisation folds
# them, they carry no gradient (part of vjp.NON_DIFFERENTIABLE) and have no receptive field.
SHAPE_READERS = frozenset({"Shape", "Size"})


@dataclass
class Node:
    """A forward node in a read-friendly form (attributes decoded)."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str
    captures: list[str] = field(default_factory=list)  # outer tensors its subgraphs read (If, Loop, Scan)

    @classmethod
    def from_proto(cls, proto: onnx.NodeProto) -> "Node":
        attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        return cls(proto.op_type, list(proto.input), list(proto.output), attrs, proto.name or proto.output[0],
                   subgraph_captures(proto))

    def input(self, i: int) -> str:
        """The i-th input name, or '' when absent (optional inputs)."""
        return self.inputs[i] if i < len(self.inputs) else ""


def subgraph_captures(proto: onnx.NodeProto) -> list[str]:
    """Names the node's subgraphs read from the enclosing graph: data dependencies that are not
    among its inputs (a gradient path through an If branch must not go unseen)."""
    read: set[str] = set()
    for attr in proto.attribute:
        for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            inner = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                read.update(i for i in [*n.input, *subgraph_captures(n)] if i and i not in inner)
                inner.update(n.output)
    return sorted(read)


@dataclass
class GraphBuilder:
    shapes: dict[str, tuple[int, ...]]          # static shapes at batch 1
    dtypes: dict[str, int]                       # ONNX elem types
    values: dict[str, np.ndarray]                # folded constant tensors
    opset: int
    batch_axes: dict[str, int] = field(default_factory=dict)  # forward tensor -> axis of the batch
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    _count: int = 0
    _consts: dict[tuple, str] = field(default_factory=dict)
    _shape_of: dict[str, str] = field(default_factory=dict)

    # ---- naming and emission ---------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"lam/{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs: Any) -> Any:
        """Emit one node; return its output name (or a list when ``outputs`` > 1)."""
        outs = [self.fresh(op_type.lower()) for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        """An initializer holding ``value`` (deduplicated for small constants)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh("const")
        self.initializers.append(numpy_helper.from_array(arr, name))
        self.values[name] = arr
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(list(values), np.int64)

    # ---- facts about forward tensors ---------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def rank(self, name: str) -> int:
        return len(self.shapes[name])

    def batch_axis(self, name: str) -> int:
        """The axis of ``name`` whose runtime size follows the batch (0 where not tracked)."""
        return self.batch_axes.get(name, 0)

    def batch_free(self, dims: Sequence[int], name: str) -> list[int]:
        """``name``'s static (batch-1) ``dims`` as a Reshape target: -1 on its batch axis."""
        dims = list(dims)
        dims[self.batch_axis(name)] = -1
        return dims

    def value(self, name: str) -> np.ndarray:
        """Folded value of a constant (non-data) input; KeyError if it depends on the image."""
        return self.values[name]

    def has_value(self, name: str) -> bool:
        return name in self.values

    def dyn_shape(self, name: str) -> str:
        """``Shape(name)`` emitted once: the runtime shape, batch included."""
        if name not in self._shape_of:
            self._shape_of[name] = self.op("Shape", name)
        return self._shape_of[name]

    # ---- small composite helpers used by many rules -----------------------------------------
    def zeros_like(self, name: str) -> str:
        zero = helper.make_tensor("value", FLOAT, [1], [0.0])
        return self.op("ConstantOfShape", self.dyn_shape(name), value=zero)

    def reduce_sum(self, x: str, axes: Sequence[int], keepdims: bool = True) -> str:
        if not axes:
            return x
        return self.op("ReduceSum", x, self.ints(axes), keepdims=int(keepdims))

    def pad_axis(self, x: str, rank: int, axis: int, begin: int, end: int) -> str:
        """Zero-pad ``x`` along one axis (no-op for zero pads)."""
        if begin == 0 and end == 0:
            return x
        pads = [0] * (2 * rank)
        pads[axis], pads[rank + axis] = begin, end
        return self.op("Pad", x, self.ints(pads), mode="constant")

    def reshape_like(self, x: str, like: str) -> str:
        return self.op("Reshape", x, self.dyn_shape(like))

    def reduce_mean(self, x: str, axes: Sequence[int], keepdims: bool = True) -> str:
        return self.op("ReduceMean", x, self.ints(axes), keepdims=int(keepdims))

    def unbroadcast(self, grad: str, out: str, operand: str) -> str:
        """Sum ``grad`` (shaped like the broadcast result ``out``) down to ``operand``'s shape."""
        return self.unbroadcast_shape(grad, self.shape(out), operand)

    def unbroadcast_shape(self, grad: str, out_shape: Sequence[int], operand: str,
                          skip_last: int = 0) -> str:
        """As ``unbroadcast`` for a grad of static shape ``out_shape``; the last ``skip_last``
        axes are matrix axes (MatMul) and never reduced."""
        op_shape = self.shape(operand)
        lead = len(out_shape) - len(op_shape)
        axes = list(range(lead)) + [
            lead + i for i, d in enumerate(op_shape[: len(op_shape) - skip_last])
            if d == 1 and out_shape[lead + i] != 1
        ]
        if not axes:
            return grad
        summed = self.reduce_sum(grad, axes, keepdims=True)
        return self.reshape_like(summed, operand) if lead else summed


def one_hot_kernels(channels: int, kh: int, kw: int) -> np.ndarray:
    """[channels * kh * kw, 1, kh, kw]: for each channel, one kernel per window position, holding a
    single 1. As grouped (transposed) convolution weights they move values between channels and
    window positions exactly: pixel shuffles, and MaxPool's scatter back to the input."""
    eye = np.eye(kh * kw, dtype=np.float32).reshape(kh * kw, 1, kh, kw)
    return np.tile(eye, (channels, 1, 1, 1))
