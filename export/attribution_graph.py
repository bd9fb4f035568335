"""build_attribution_graph: the user's network + the LAM detector + its input gradient, as ONNX."""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np
import onnx
from onnx import helper

from lam_trt.errors import InputError, ModelError
from lam_trt.export.autodiff import active_tensors, backpropagate
from lam_trt.export.batch_probe import BATCH_REASON_KEY, MAX_BATCH_KEY, batch_limit, probe_session
from lam_trt.export.builder import FLOAT, GraphBuilder, Node
from lam_trt.export.reverse_batch import batched_tensors, tile_reads
from lam_trt.export.detector import REDUCTIONS, append_detector, vjp_sqrt_zero_safe
from lam_trt.export.gradient_audit import audit, straight_through_rules
from lam_trt.export.graph_format import code_fingerprint
from lam_trt.export.options import TAIL_CROP_KEY, WINDOW_BOUND_KEY, GraphOptions, graph_notes
from lam_trt.export.ort_check import blame_export
from lam_trt.export.random_ops import with_fixed_random_ops
from lam_trt.export.source import load_onnx, model_sha256
from lam_trt.export.specialise import ForwardGraph, specialise
from lam_trt.export.tail_crop import TailCrop, emit_tail_crop, plan_tail_crop
from lam_trt.export.window_probe import MAX_WINDOWS_KEY, WINDOWS_REASON_KEY, windows_limit

GRAPH_FORMAT = code_fingerprint()


def build_attribution_graph(model: str | os.PathLike | onnx.ModelProto, input_shape: tuple[int, int, int],
                            detector: str = "gradient", reduce: str = "sum",
                            options: GraphOptions | None = None, check_batch: bool = True) -> onnx.ModelProto:
    """One ONNX graph that evaluates LAM's integrand for a batch of path images.

    Inputs:  path [N,C,h,w] float32, weights [N,C,h,w] float32, windows int64 [K,4]: per window
             (top, left, height, width) of an analysed patch in SR-output pixels.
    Outputs: detector [K,N] = D_k(F(path_n)); attribution [K,C,h,w] = sum_n grad D_k(F(path_n)) *
             weights_n; contribution [K,N] = per-item sums of that product; sr [N,C',H,W] = F(path_n).
    The forward pass runs once on the N path images; the reverse pass runs on K x N items.
    ``check_batch``: run three path images as one batch and one at a time; where they differ, the
    metadata says the graph runs one path image at a time (``lam_trt.max_batch``) and why; the same
    for two windows (``lam_trt.max_windows``).
    """
    if detector != "gradient":
        raise InputError(f"unknown detector {detector!r}; lam-trt implements LAM's 'gradient' detector")
    if reduce not in REDUCTIONS:
        raise InputError(f"detector reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise InputError(f"input_shape must be (C, h, w) with positive sizes, got {input_shape}")
    options = options or GraphOptions()
    source = load_onnx(model)
    prepared, random_report = with_fixed_random_ops(source, options.random_policy)
    try:
        fwd = specialise(prepared, input_shape)
    except ModelError as e:
        raise blame_export(e, source, input_shape) from None
    fwd.rename_output("sr")
    if len(fwd.output_shape) != 4 or min(fwd.output_shape[2:]) < 2:
        raise ModelError(f"the model's output {list(fwd.output_shape)} is not an image of at least 2x2")
    b = GraphBuilder(dict(fwd.shapes), dict(fwd.dtypes), dict(fwd.values), fwd.opset, dict(fwd.batch_axes))
    b.nodes.append(helper.make_node("Identity", ["path"], [fwd.input_name], name="lam/path"))
    b.nodes.extend(fwd.nodes)
    found = audit(fwd.nodes, fwd.output_name)
    gradient, crop = reverse_pass(b, fwd, reduce, straight_through_rules(found) if options.straight_through else {},
                                  options.window_bound)
    append_outputs(b, gradient, input_shape)
    model = assemble(b, fwd, source, input_shape, reduce)
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   **graph_notes(options, random_report, found),
                                   **({WINDOW_BOUND_KEY: str(options.window_bound)} if options.window_bound else {}),
                                   **({TAIL_CROP_KEY: json.dumps(crop.describe())} if crop else {})})
    if check_batch:
        mark_limits(model, input_shape, fwd.output_shape[1:], options.window_bound)
    return model


def mark_limits(model: onnx.ModelProto, input_shape: tuple[int, int, int], output_shape: tuple[int, ...],
                bound: Optional[int]) -> None:
    """Probe several path images, then several windows (within the graph's window ``bound``), in one
    run against one at a time; record in the metadata what the graph cannot run together, and why."""
    session = probe_session(model)  # one session for both probes
    if session is None:  # too large to load from bytes: not probed
        return
    batch = batch_limit(session, input_shape, output_shape, bound)
    windows = windows_limit(session, input_shape, output_shape, 1 if batch else 2, bound)
    for key, reason_key, reason in ((MAX_BATCH_KEY, BATCH_REASON_KEY, batch),
                                    (MAX_WINDOWS_KEY, WINDOWS_REASON_KEY, windows)):
        if reason:
            model.metadata_props.add(key=key, value="1")
            model.metadata_props.add(key=reason_key, value=reason)


def reverse_pass(b: GraphBuilder, fwd: ForwardGraph, reduce: str, rules: dict, bound: Optional[int]
                 ) -> tuple[str, Optional[TailCrop]]:
    """The detector of every window and path image, and its input gradient [K*N, C, h, w], on
    K x N items (window-major) reading the forward pass's activations (reverse_batch.py: broadcast where
    it can, K-fold tiled copies elsewhere); the upsampling tail's on a crop per window (tail_crop.py)."""
    first = len(b.nodes)
    d, detector_rules = append_detector(b, fwd.output_name, "windows", "path", reduce)
    forward = [Node.from_proto(n) for n in b.nodes]
    active = active_tensors(forward, fwd.input_name, d, b.dtypes)
    ones = b.op("ConstantOfShape", b.dyn_shape(d), value=helper.make_tensor("value", FLOAT, [1], [1.0]))
    sr_grad = backpropagate(b, forward[first:], active, {d: ones}, detector_rules).get(fwd.output_name)
    if sr_grad is None:
        raise ModelError("the detector does not depend on the input (no gradient reaches it)")
    batched = batched_tensors(fwd.nodes, fwd.batch_axes, fwd.input_name, fwd.output_name)
    crop = plan_tail_crop(b, forward[:first], active, batched, fwd.input_name, fwd.output_name, bound, rules) \
        if bound else None
    seeds, passthrough = emit_tail_crop(b, crop, sr_grad, "windows", active) if crop else \
        ({fwd.output_name: sr_grad}, set())
    rest = [n for n in forward[:first] if crop is None or n.name not in crop.steps]
    grads = backpropagate(b, rest, active, seeds, rules)
    if fwd.input_name not in grads:
        raise ModelError("the detector does not depend on the input (no gradient reaches it)")
    b.nodes.append(helper.make_node("Reshape", [d, per_window(b, [-1])], ["detector"], name="lam/detector"))
    tile_reads(b, first, batched, "windows", passthrough)
    return grads[fwd.input_name], crop


def per_window(b: GraphBuilder, rest: list[int]) -> str:
    """A Reshape target [K, *rest]: K, the number of windows, read from the graph input."""
    count = b.op("Slice", b.op("Shape", "windows"), b.ints([0]), b.ints([1]))
    return b.op("Concat", count, b.ints(rest), axis=0)


def append_outputs(b: GraphBuilder, gradient: str, input_shape: tuple[int, int, int]) -> None:
    """attribution [K, C, h, w] and contribution [K, N] from the gradient of K x N items."""
    by_window = b.op("Reshape", gradient, per_window(b, [-1, *input_shape]))
    weighted = b.op("Mul", by_window, "weights")
    b.nodes += [
        helper.make_node("ReduceSum", [weighted, b.ints([1])], ["attribution"], keepdims=0, name="lam/sum"),
        helper.make_node("ReduceSum", [weighted, b.ints([2, 3, 4])], ["contribution"], keepdims=0,
                         name="lam/contribution"),
    ]


def assemble(b: GraphBuilder, fwd: ForwardGraph, source: onnx.ModelProto, input_shape, reduce: str):
    c, h, w = input_shape
    _, c_out, h_out, w_out = fwd.output_shape
    image = lambda name, dims: helper.make_tensor_value_info(name, FLOAT, dims)
    graph = helper.make_graph(
        b.nodes, "lam_attribution",
        inputs=[image("path", ["N", c, h, w]), image("weights", ["N", c, h, w]),
                helper.make_tensor_value_info("windows", onnx.TensorProto.INT64, ["K", 4])],
        outputs=[image("detector", ["K", "N"]), image("attribution", ["K", c, h, w]),
                 image("contribution", ["K", "N"]),
                 image("sr", ["N", c_out, h_out, w_out])],
        initializer=fwd.initializers + b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", fwd.opset)] + fwd.extra_opsets,
                              producer_name="lam-trt", ir_version=fwd.ir_version)
    meta = {"lam_trt.graph_format": GRAPH_FORMAT, "lam_trt.input_shape": f"{c}x{h}x{w}",
            "lam_trt.output_shape": f"{c_out}x{h_out}x{w_out}", "lam_trt.detector": f"gradient/{reduce}",
            "lam_trt.source_sha256": model_sha256(source),
            "lam_trt.activation_bytes_per_item": str(activation_bytes(fwd))}
    helper.set_model_props(model, meta)
    return model


def activation_bytes(fwd: ForwardGraph) -> int:
    """Bytes of forward activations one path image keeps alive for the backward pass."""
    total = 0
    for node in fwd.nodes:
        for out in node.output:
            if out in fwd.shapes:
                total += 4 * int(np.prod(fwd.shapes[out], dtype=np.int64))
    return total


def save_attribution_graph(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Save, with weights as external data when the graph would pass protobuf's 2 GB limit."""
    large = model.ByteSize() > (1 << 31) - (1 << 24)
    onnx.save(model, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
              location=f"{os.path.basename(str(path))}.data" if large else None)
