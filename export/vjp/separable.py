"""Linear spatial ops measured as one matrix per axis (Resize, AveragePool) and their adjoints.

With static shapes such an op is ``y = A_H x A_W^T`` (separable), so its adjoint is
``g -> A_H^T g A_W``. Each A is measured by running the op itself in ONNX Runtime on a one-hot
basis, so the adjoint follows the runtime's conventions exactly (coordinate modes, border counts).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from lam_trt.export.builder import GraphBuilder

# make_node(probe_shape) -> (NodeProto reading "x" and writing "y", initializers)
ProbeFactory = Callable[[list[int]], tuple[onnx.NodeProto, list[onnx.TensorProto]]]


def measure_axis_matrix(opset: int, rank: int, axis: int, n_in: int, make_node: ProbeFactory) -> np.ndarray:
    """A [out, in] along ``axis``: feed e_k at position k of ``axis`` for every k (batch = k)."""
    basis = max(n_in, 2)
    probe_shape = [basis] + [1] * (rank - 1)
    probe_shape[axis] = n_in
    probe = np.zeros(probe_shape, np.float32)
    for k in range(n_in):
        index = [k] + [0] * (rank - 1)
        index[axis] = k
        probe[tuple(index)] = 1.0
    node, inits = make_node(probe_shape)
    graph = helper.make_graph(
        [node], "probe", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, probe_shape)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", opset)]
    # The oldest IR version the opset allows: onnx's newest may be beyond the ONNX Runtime installed.
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"x": probe})[0]
    index = [slice(0, n_in)] + [0] * (rank - 1)
    index[axis] = slice(None)
    return np.ascontiguousarray(out[tuple(index)].T)


def replication_factor(a: np.ndarray) -> int | None:
    """s when A repeats every input exactly s times in order (nearest, integer scale), else None."""
    n_out, n_in = a.shape
    if n_out % n_in:
        return None
    s = n_out // n_in
    expected = np.zeros_like(a)
    expected[np.arange(n_out), np.arange(n_out) // s] = 1.0
    return s if np.array_equal(a, expected) else None


def apply_transpose(b: GraphBuilder, g: str, a: np.ndarray, axis: int, shape: list[int]) -> str:
    """Apply A^T along ``axis`` of g, whose static shape (batch first) is ``shape``."""
    rank = len(shape)
    if a.shape[0] == a.shape[1] and np.array_equal(a, np.eye(a.shape[0], dtype=a.dtype)):
        return g
    s = replication_factor(a)
    if s is not None and axis > 0:
        split = shape[:axis] + [shape[axis] // s, s] + shape[axis + 1:]
        grouped = b.op("Reshape", g, b.ints([-1] + split[1:]))
        return b.reduce_sum(grouped, [axis + 1], keepdims=False)
    if axis == rank - 1:
        return b.op("MatMul", g, b.const(a))
    if axis == rank - 2:
        return b.op("MatMul", b.const(np.ascontiguousarray(a.T)), g)
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = b.op("MatMul", b.op("Transpose", g, perm=perm), b.const(a))
    return b.op("Transpose", moved, perm=[int(i) for i in np.argsort(perm)])
